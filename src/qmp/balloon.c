/* QMP for the balloon, as QEMU documents it (qapi/machine.json, qapi/qom.json, docs/interop/
 * virtio-balloon-stats.rst): balloon, query-balloon, and the QOM view libvirt uses –
 * /machine/peripheral/balloon0 with the properties guest-stats and guest-stats-polling-interval
 * (qom-get, qom-set, qom-list). kvmm's own x-kvmm-query-balloon adds what the host measured.
 *
 * Where kvmm differs from QEMU: a stat the guest never sent reads -1 (QEMU prints it as the
 * unsigned 18446744073709551615; JSON integers here are signed 64-bit), and so does a reported
 * value of 2^63 or more. libvirt skips both alike. */
#include <kvmm/balloon.h>
#include <kvmm/gmem.h>
#include <kvmm/mem.h>
#include <kvmm/qmp.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define PERIPHERAL "/machine/peripheral"
#define BALLOON_PATH PERIPHERAL "/" BALLOON_ID
#define BALLOON_TYPE "virtio-balloon-pci"
#define PROP_STATS "guest-stats"
#define PROP_INTERVAL "guest-stats-polling-interval"

static struct balloon *active(struct vm *vm, struct qmp_error *err)
{
	if (!vm->balloon)
		qmp_error_set(err, QMP_ERR_DEVICE_NOT_ACTIVE, "No balloon device has been activated");
	return vm->balloon;
}

static int cmd_balloon(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct balloon *b = active(opaque, err);
	json_int_t value = json_integer_value(json_object_get(args, "value"));

	(void)ret;
	if (!b)
		return -ENODEV;
	if (value <= 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'target' expects a size");
		return -EINVAL;
	}
	return balloon_set_target(b, (uint64_t)value);
}

static int cmd_query_balloon(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct balloon *b = active(opaque, err);

	(void)args;
	if (!b)
		return -ENODEV;
	*ret = json_pack("{s:I}", "actual", (json_int_t)balloon_actual(b));
	return *ret ? 0 : -ENOMEM;
}

static int cmd_x_kvmm_query_balloon(void *opaque, json_t *args, json_t **ret,
				    struct qmp_error *err)
{
	struct vm *vm = opaque;
	struct balloon *b = active(vm, err);
	struct balloon_counters c;
	struct mem_stats ms;
	int64_t resident;

	(void)args;
	if (!b)
		return -ENODEV;
	balloon_get_counters(b, &c);
	resident = mem_get_stats(vm->memmgr, &ms) < 0 ? -1 : (int64_t)ms.consumed;
	*ret = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "target", (json_int_t)balloon_target(b),
			 "actual", (json_int_t)balloon_actual(b),
			 "inflated-pages", (json_int_t)c.inflated_pages,
			 "deflated-pages", (json_int_t)c.deflated_pages,
			 "released-ranges", (json_int_t)c.released_ranges,
			 "reported-pages", (json_int_t)c.reported_pages,
			 "bad-pfns", (json_int_t)c.bad_pfns,
			 "stats-updates", (json_int_t)c.stats_updates,
			 "guest-ram-resident", (json_int_t)(resident < 0 ? -1 : resident));
	return *ret ? 0 : -ENOMEM;
}

/* The object a QOM path names: the peripheral container, the balloon, or neither (NULL). QEMU
 * also resolves a partial path ("balloon0") when it is unambiguous. */
enum qom_obj { QOM_NONE, QOM_PERIPHERAL, QOM_BALLOON };

static enum qom_obj resolve(struct vm *vm, const char *path, struct qmp_error *err)
{
	if (!strcmp(path, PERIPHERAL))
		return QOM_PERIPHERAL;
	if (vm->balloon && (!strcmp(path, BALLOON_PATH) || !strcmp(path, BALLOON_ID)))
		return QOM_BALLOON;
	qmp_error_set(err, QMP_ERR_DEVICE_NOT_FOUND, "Device '%s' not found", path);
	return QOM_NONE;
}

static const char *type_name(enum qom_obj o)
{
	return o == QOM_BALLOON ? BALLOON_TYPE : "container";
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

static int cmd_qom_get(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	const char *path = json_string_value(json_object_get(args, "path"));
	const char *prop = json_string_value(json_object_get(args, "property"));
	enum qom_obj o = resolve(vm, path, err);

	if (o == QOM_NONE)
		return -ENOENT;
	if (!strcmp(prop, "type"))
		*ret = json_string(type_name(o));
	else if (o == QOM_BALLOON && !strcmp(prop, PROP_STATS))
		*ret = guest_stats(vm->balloon);
	else if (o == QOM_BALLOON && !strcmp(prop, PROP_INTERVAL))
		*ret = json_integer(balloon_stats_interval(vm->balloon));
	else {
		qmp_error_set(err, QMP_ERR_GENERIC, "Property '%s.%s' not found", type_name(o), prop);
		return -ENOENT;
	}
	return *ret ? 0 : -ENOMEM;
}

static int cmd_qom_set(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	const char *path = json_string_value(json_object_get(args, "path"));
	const char *prop = json_string_value(json_object_get(args, "property"));
	json_t *value = json_object_get(args, "value");
	enum qom_obj o = resolve(vm, path, err);
	json_int_t secs;

	(void)ret;
	if (o == QOM_NONE)
		return -ENOENT;
	if (o != QOM_BALLOON || strcmp(prop, PROP_INTERVAL)) {
		if (!strcmp(prop, "type") || (o == QOM_BALLOON && !strcmp(prop, PROP_STATS)))
			qmp_error_set(err, QMP_ERR_GENERIC, "Property '%s.%s' is not writable",
				      type_name(o), prop);
		else
			qmp_error_set(err, QMP_ERR_GENERIC, "Property '%s.%s' not found",
				      type_name(o), prop);
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

static int cmd_qom_list(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	const char *path = json_string_value(json_object_get(args, "path"));
	enum qom_obj o = resolve(vm, path, err);

	if (o == QOM_NONE)
		return -ENOENT;
	*ret = json_pack("[{s:s, s:s}]", "name", "type", "type", "string");
	if (!*ret)
		return -ENOMEM;
	if (o == QOM_PERIPHERAL && vm->balloon)
		json_array_append_new(*ret, json_pack("{s:s, s:s}", "name", BALLOON_ID, "type",
						      "child<" BALLOON_TYPE ">"));
	if (o == QOM_BALLOON) {
		json_array_append_new(*ret, json_pack("{s:s, s:s}", "name", PROP_STATS, "type",
						      "guest statistics"));
		json_array_append_new(*ret,
				      json_pack("{s:s, s:s}", "name", PROP_INTERVAL, "type", "int"));
	}
	return 0;
}

static const struct qmp_param balloon_params[] = { { "value", QMP_INT, false }, { NULL } };
static const struct qmp_param qom_path_params[] = { { "path", QMP_STR, false }, { NULL } };
static const struct qmp_param qom_get_params[] = {
	{ "path", QMP_STR, false }, { "property", QMP_STR, false }, { NULL } };
static const struct qmp_param qom_set_params[] = {
	{ "path", QMP_STR, false }, { "property", QMP_STR, false }, { "value", QMP_ANY, false },
	{ NULL } };

static const struct qmp_command balloon_commands[] = {
	{ "balloon", cmd_balloon, balloon_params },
	{ "query-balloon", cmd_query_balloon, NULL },
	{ "x-kvmm-query-balloon", cmd_x_kvmm_query_balloon, NULL },
	{ "qom-get", cmd_qom_get, qom_get_params },
	{ "qom-set", cmd_qom_set, qom_set_params },
	{ "qom-list", cmd_qom_list, qom_path_params },
	{ NULL, NULL, NULL },
};

int qmp_balloon_register(struct qmp_server *s, struct vm *vm)
{
	return qmp_server_register(s, balloon_commands, vm);
}
