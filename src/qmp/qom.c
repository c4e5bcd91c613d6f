/* kvmm's QOM tree, as much of QEMU's as libvirt walks (qapi/qom.json: qom-list, qom-get,
 * qom-set), and the domain monitor's other start-up commands (steering
 * shared/libvirt/qmp-transcript-domain.txt):
 *
 *   /machine                       the machine (COMPAT_MACHINE)
 *   /machine/unattached            container; device[N] is vCPU N (query-cpus-fast's qom-path)
 *   /machine/unattached/device[N]  host-x86_64-cpu: CPUID features as bools, unavailable-features
 *   /machine/peripheral            container; the balloon as child<virtio-balloon-pci>
 *   /machine/peripheral/ID         the balloon: guest-stats, guest-stats-polling-interval
 *
 * QEMU also resolves a partial path naming one object unambiguously ("balloon0"). A stat the
 * guest never sent reads -1 (QEMU prints it as the unsigned 18446744073709551615; JSON integers
 * here are signed 64-bit), and so does a reported value of 2^63 or more; libvirt skips both. */
#include "compat.h"

#include <kvmm/balloon.h>
#include <kvmm/vcpu.h>
#include <kvmm/vm.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#define MACHINE "/machine"
#define PERIPHERAL MACHINE "/peripheral"
#define UNATTACHED MACHINE "/unattached"
#define BALLOON_TYPE "virtio-balloon-pci"
#define PROP_STATS "guest-stats"
#define PROP_INTERVAL "guest-stats-polling-interval"

static bool migrate_events;

bool compat_migrate_events(void)
{
	return migrate_events;
}

/* The balloon's -device id: the QEMU-compatible front's; `kvmm run` names none. */
static const char *balloon_id(struct vm *vm)
{
	return vm->cfg->balloon_id ? vm->cfg->balloon_id : BALLOON_ID;
}

enum qom_kind { QOM_NONE, QOM_MACHINE, QOM_PERIPHERAL, QOM_UNATTACHED, QOM_BALLOON, QOM_CPU };

struct qom_obj {
	enum qom_kind kind;
	unsigned cpu;
};

/* "device[N]" with N a vCPU index, nothing after. */
static bool parse_cpu(struct vm *vm, const char *s, unsigned *cpu)
{
	char *end;
	unsigned long n;

	if (strncmp(s, "device[", 7) || s[7] < '0' || s[7] > '9')
		return false;
	n = strtoul(s + 7, &end, 10);
	if (strcmp(end, "]") || n >= vm->nr_vcpus)
		return false;
	*cpu = (unsigned)n;
	return true;
}

static struct qom_obj resolve(struct vm *vm, const char *path, struct qmp_error *err)
{
	struct qom_obj o = { QOM_NONE, 0 };
	const char *id = balloon_id(vm);
	size_t plen = strlen(PERIPHERAL);

	if (!strcmp(path, MACHINE))
		o.kind = QOM_MACHINE;
	else if (!strcmp(path, PERIPHERAL))
		o.kind = QOM_PERIPHERAL;
	else if (!strcmp(path, UNATTACHED))
		o.kind = QOM_UNATTACHED;
	else if (vm->balloon && (!strcmp(path, id) || (!strncmp(path, PERIPHERAL "/", plen + 1) &&
						       !strcmp(path + plen + 1, id))))
		o.kind = QOM_BALLOON;
	else if (!strncmp(path, UNATTACHED "/", strlen(UNATTACHED) + 1) &&
		 parse_cpu(vm, path + strlen(UNATTACHED) + 1, &o.cpu))
		o.kind = QOM_CPU;
	else
		qmp_error_set(err, QMP_ERR_DEVICE_NOT_FOUND, "Device '%s' not found", path);
	return o;
}

static const char *type_name(enum qom_kind k)
{
	switch (k) {
	case QOM_MACHINE:
		return COMPAT_MACHINE "-machine";
	case QOM_BALLOON:
		return BALLOON_TYPE;
	case QOM_CPU:
		return COMPAT_CPU_TYPE;
	default:
		return "container";
	}
}

static json_t *guest_stats(struct balloon *b)
{
	struct balloon_stats st;
	json_t *stats = json_object();

	balloon_get_stats(b, &st);
	for (unsigned i = 0; stats && i < BALLOON_S_NR; i++) {
		json_int_t v = st.valid[i] && st.value[i] <= INT64_MAX ? (json_int_t)st.value[i] : -1;

		json_object_set_new(stats, balloon_stat_name(i), json_integer(v));
	}
	return json_pack("{s:o, s:I}", "stats", stats, "last-update", (json_int_t)st.last_update);
}

static json_t *balloon_get(struct vm *vm, const char *prop)
{
	if (!strcmp(prop, PROP_STATS))
		return guest_stats(vm->balloon);
	if (!strcmp(prop, PROP_INTERVAL))
		return json_integer(balloon_stats_interval(vm->balloon));
	if (!strcmp(prop, "deflate-on-oom"))
		return json_boolean(vm->cfg->balloon_deflate_on_oom);
	if (!strcmp(prop, "free-page-reporting"))
		return json_boolean(vm->cfg->balloon_free_page_reporting);
	return NULL;
}

static json_t *cpu_get(struct vm *vm, const char *prop)
{
	const struct kvm_cpuid2 *c = compat_cpu_host(vm->kvm_fd);
	struct compat_cpu_ident id;
	bool on;

	if (!strcmp(prop, "realized") || !strcmp(prop, "hotpluggable"))
		return json_true();
	if (!strcmp(prop, "hotplugged") || !strcmp(prop, "start-powered-off"))
		return json_false();
	/* Every feature kvmm shows is one KVM gives: nothing asked for was left out. */
	if (!strcmp(prop, "unavailable-features") || !strcmp(prop, "filtered-features"))
		return json_array();
	if (compat_cpu_feature(c, prop, &on) == 0)
		return json_boolean(on);
	compat_cpu_ident(c, &id);
	if (!strcmp(prop, "vendor"))
		return json_string(id.vendor);
	if (!strcmp(prop, "model-id"))
		return json_string(id.model_id);
	if (!strcmp(prop, "family"))
		return json_integer(id.family);
	if (!strcmp(prop, "model"))
		return json_integer(id.model);
	if (!strcmp(prop, "stepping"))
		return json_integer(id.stepping);
	return NULL;
}

static int cmd_qom_get(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	const char *path = json_string_value(json_object_get(args, "path"));
	const char *prop = json_string_value(json_object_get(args, "property"));
	struct qom_obj o = resolve(vm, path, err);

	if (o.kind == QOM_NONE)
		return -ENOENT;
	if (!strcmp(prop, "type"))
		*ret = json_string(type_name(o.kind));
	else if (o.kind == QOM_BALLOON)
		*ret = balloon_get(vm, prop);
	else if (o.kind == QOM_CPU)
		*ret = cpu_get(vm, prop);
	if (!*ret) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Property '%s.%s' not found", type_name(o.kind),
			      prop);
		return -ENOENT;
	}
	return 0;
}

static int cmd_qom_set(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	const char *path = json_string_value(json_object_get(args, "path"));
	const char *prop = json_string_value(json_object_get(args, "property"));
	json_t *value = json_object_get(args, "value");
	struct qom_obj o = resolve(vm, path, err);
	json_t *cur = NULL;
	json_int_t secs;

	if (o.kind == QOM_NONE)
		return -ENOENT;
	if (o.kind != QOM_BALLOON || strcmp(prop, PROP_INTERVAL)) {
		if (!strcmp(prop, "type"))
			cur = json_true();
		else if (o.kind == QOM_BALLOON)
			cur = balloon_get(vm, prop);
		else if (o.kind == QOM_CPU)
			cur = cpu_get(vm, prop);
		qmp_error_set(err, QMP_ERR_GENERIC,
			      cur ? "Property '%s.%s' is not writable" : "Property '%s.%s' not found",
			      type_name(o.kind), prop);
		json_decref(cur);
		return -EINVAL;
	}
	/* QEMU's balloon_stats_set_poll_interval. */
	if (!json_is_integer(value)) {
		qmp_error_set(err, QMP_ERR_GENERIC,
			      "Invalid parameter type for '%s', expected: integer", PROP_INTERVAL);
		return -EINVAL;
	}
	secs = json_integer_value(value);
	if (secs < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "timer value must be greater than zero");
		return -EINVAL;
	}
	if (secs > UINT32_MAX) {
		qmp_error_set(err, QMP_ERR_GENERIC, "timer value is too big");
		return -EINVAL;
	}
	balloon_set_stats_interval(vm->balloon, (unsigned)secs);
	return 0;
}

static int list_add(json_t *list, const char *name, const char *type)
{
	return json_array_append_new(list, json_pack("{s:s, s:s}", "name", name, "type", type));
}

static int cmd_qom_list(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	const char *path = json_string_value(json_object_get(args, "path"));
	struct qom_obj o = resolve(vm, path, err);
	char name[32];

	if (o.kind == QOM_NONE)
		return -ENOENT;
	if (o.kind == QOM_CPU) {
		*ret = compat_cpu_qom_list();
		return *ret ? 0 : -ENOMEM;
	}
	*ret = json_array();
	if (!*ret)
		return -ENOMEM;
	list_add(*ret, "type", "string");
	switch (o.kind) {
	case QOM_MACHINE:
		list_add(*ret, "peripheral", "child<container>");
		list_add(*ret, "unattached", "child<container>");
		break;
	case QOM_PERIPHERAL:
		if (vm->balloon)
			list_add(*ret, balloon_id(vm), "child<" BALLOON_TYPE ">");
		break;
	case QOM_UNATTACHED:
		for (unsigned i = 0; i < vm->nr_vcpus; i++) {
			snprintf(name, sizeof(name), "device[%u]", i);
			list_add(*ret, name, "child<" COMPAT_CPU_TYPE ">");
		}
		break;
	case QOM_BALLOON:
		list_add(*ret, "deflate-on-oom", "bool");
		list_add(*ret, "free-page-reporting", "bool");
		list_add(*ret, PROP_STATS, "guest statistics");
		list_add(*ret, PROP_INTERVAL, "int");
		break;
	default:
		break;
	}
	return 0;
}

/* libvirt turns "events" on at every start; kvmm has no migration, so there is nothing else. */
static int cmd_migrate_set_capabilities(void *opaque, json_t *args, json_t **ret,
					struct qmp_error *err)
{
	json_t *caps = json_object_get(args, "capabilities"), *c;
	bool events = migrate_events;
	size_t i;

	json_array_foreach(caps, i, c) {
		const char *name = json_string_value(json_object_get(c, "capability"));
		json_t *state = json_object_get(c, "state");

		if (!json_is_object(c) || !name || !json_is_boolean(state)) {
			qmp_error_set(err, QMP_ERR_GENERIC,
				      "Invalid parameter type for 'capabilities[%zu]', expected: "
				      "object with 'capability' (string) and 'state' (boolean)", i);
			return -EINVAL;
		}
		if (strcmp(name, "events")) {
			qmp_error_set(err, QMP_ERR_GENERIC,
				      "Parameter 'capability' does not accept value '%s'", name);
			return -EINVAL;
		}
		events = json_is_true(state);
	}
	migrate_events = events;
	return 0;
}

/* set-action (qapi/run-state.json): every value QEMU takes is checked first, as QEMU's visitor
 * does, so a bad one changes nothing. reboot and shutdown apply from the next reset or power-off:
 * reboot=shutdown is what libvirt sends for on_reboot='destroy' (QEMU's -no-reboot), and
 * shutdown=pause is -no-shutdown. kvmm has no pvpanic and no watchdog device, so no panic or
 * watchdog action can ever fire; their values are checked and kept nowhere. */
enum { ACTION_REBOOT, ACTION_SHUTDOWN, ACTION_PANIC, ACTION_WATCHDOG, ACTION_NR };

static const char *const action_values[ACTION_NR][8] = {
	[ACTION_REBOOT] = { "reboot", "reset", "shutdown" },
	[ACTION_SHUTDOWN] = { "shutdown", "poweroff", "pause" },
	[ACTION_PANIC] = { "panic", "pause", "shutdown", "exit-failure", "none" },
	[ACTION_WATCHDOG] = { "watchdog", "reset", "shutdown", "poweroff", "pause", "debug", "none",
			      "inject-nmi" },
};

static int cmd_set_action(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	const char *v[ACTION_NR];

	for (size_t a = 0; a < ACTION_NR; a++) {
		bool ok;

		v[a] = json_string_value(json_object_get(args, action_values[a][0]));
		ok = !v[a];
		for (size_t i = 1; v[a] && i < 8 && action_values[a][i]; i++)
			ok = ok || !strcmp(v[a], action_values[a][i]);
		if (!ok) {
			qmp_error_set(err, QMP_ERR_GENERIC,
				      "Parameter '%s' does not accept value '%s'", action_values[a][0],
				      v[a]);
			return -EINVAL;
		}
	}
	if (v[ACTION_REBOOT])
		vm->reboot_shutdown = !strcmp(v[ACTION_REBOOT], "shutdown");
	if (v[ACTION_SHUTDOWN])
		vm->shutdown_pause = !strcmp(v[ACTION_SHUTDOWN], "pause");
	return 0;
}

/* QEMU's filename of a unix socket chardev (qemu_chr_compute_filename): the inherited monitor
 * socket's own path, from the socket itself. */
static void socket_filename(int fd, char *buf, size_t len)
{
	struct sockaddr_un sa = { 0 };
	socklen_t salen = sizeof(sa);
	int listening = 0;
	socklen_t optlen = sizeof(listening);

	if (getsockname(fd, (struct sockaddr *)&sa, &salen) < 0 || sa.sun_family != AF_UNIX)
		sa.sun_path[0] = '\0';
	sa.sun_path[sizeof(sa.sun_path) - 1] = '\0';
	getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen);
	snprintf(buf, len, "unix:%s%s", sa.sun_path, listening ? ",server=on" : "");
}

/* The serial port's and the monitor's chardevs, by the front's ids when it had them. */
static int cmd_query_chardev(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	const struct vm_config *cfg = vm->cfg;
	char filename[256];

	if (cfg->serial == SERIAL_STDIO)
		snprintf(filename, sizeof(filename), "stdio");
	else
		snprintf(filename, sizeof(filename), "%s:%s",
			 cfg->serial == SERIAL_UNIX ? "unix" : "file",
			 cfg->serial_path ? cfg->serial_path : "");
	*ret = json_pack("[{s:s, s:s, s:b}]", "label",
			 cfg->chardev_serial ? cfg->chardev_serial : "charserial0", "filename",
			 filename, "frontend-open", 1);
	if (!*ret)
		return -ENOMEM;
	if (cfg->qmp_fd > 2)
		socket_filename(cfg->qmp_fd, filename, sizeof(filename));
	else if (cfg->qmp)
		snprintf(filename, sizeof(filename), "unix:%s,server=on", cfg->qmp);
	if (cfg->qmp_fd > 2 || cfg->qmp)
		json_array_append_new(*ret, json_pack("{s:s, s:s, s:b}", "label",
						      cfg->chardev_monitor ? cfg->chardev_monitor
									   : "charmonitor",
						      "filename", filename, "frontend-open", 1));
	return 0;
}

/* One socket of nr_vcpus cores, one thread each (src/vcpu/x86.c's CPUID topology), as
 * query-cpus-fast reports them. kvmm plugs no vCPU later. */
static int cmd_query_hotpluggable_cpus(void *opaque, json_t *args, json_t **ret,
				       struct qmp_error *err)
{
	struct vm *vm = opaque;
	char path[64];

	*ret = json_array();
	for (unsigned i = 0; *ret && i < vm->nr_vcpus; i++) {
		snprintf(path, sizeof(path), UNATTACHED "/device[%u]", i);
		json_array_append_new(*ret, json_pack("{s:{s:i, s:i, s:i}, s:i, s:s, s:s}", "props",
						      "core-id", (int)i, "thread-id", 0,
						      "socket-id", 0, "vcpus-count", 1, "qom-path",
						      path, "type", COMPAT_CPU_TYPE));
	}
	return *ret ? 0 : -ENOMEM;
}

/* kvmm has no iothreads and no block devices. */
static int cmd_empty(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	*ret = json_array();
	return *ret ? 0 : -ENOMEM;
}

static const struct qmp_param qom_path_params[] = { { "path", QMP_STR, false, NULL }, { NULL } };
static const struct qmp_param qom_get_params[] = {
	{ "path", QMP_STR, false, NULL }, { "property", QMP_STR, false, NULL }, { NULL } };
static const struct qmp_param qom_set_params[] = {
	{ "path", QMP_STR, false, NULL }, { "property", QMP_STR, false, NULL },
	{ "value", QMP_ANY, false, NULL }, { NULL } };
static const struct qmp_param migrate_caps_params[] = {
	{ "capabilities", QMP_ARRAY, false, "[MigrationCapabilityStatus]" }, { NULL } };
static const struct qmp_param set_action_params[] = {
	{ "reboot", QMP_STR, true, "RebootAction" }, { "shutdown", QMP_STR, true, "ShutdownAction" },
	{ "panic", QMP_STR, true, "PanicAction" }, { "watchdog", QMP_STR, true, "WatchdogAction" },
	{ NULL } };
static const struct qmp_param named_nodes_params[] = { { "flat", QMP_BOOL, true, NULL },
						       { NULL } };

const struct qmp_command compat_domain_commands[] = {
	{ "qom-get", cmd_qom_get, qom_get_params, NULL, NULL },
	{ "qom-set", cmd_qom_set, qom_set_params, "q_empty", NULL },
	{ "qom-list", cmd_qom_list, qom_path_params, NULL, NULL },
	{ "migrate-set-capabilities", cmd_migrate_set_capabilities, migrate_caps_params, "q_empty",
	  NULL },
	{ "set-action", cmd_set_action, set_action_params, "q_empty", NULL },
	{ "query-chardev", cmd_query_chardev, NULL, NULL, NULL },
	{ "query-hotpluggable-cpus", cmd_query_hotpluggable_cpus, NULL, NULL, NULL },
	{ "query-iothreads", cmd_empty, NULL, NULL, NULL },
	{ "query-named-block-nodes", cmd_empty, named_nodes_params, NULL, NULL },
	{ "query-block", cmd_empty, NULL, NULL, NULL },
	{ NULL },
};
