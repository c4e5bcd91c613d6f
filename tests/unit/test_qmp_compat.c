/* The QMP answers for libvirt (src/qmp/probe.c, qom.c, schema.c, cpu.c): the generated schema is
 * valid SchemaInfo that libvirt's path queries can walk, and the probe and domain commands answer
 * as QEMU does. Handlers are run directly, through the same argument check the dispatcher runs. */
#include "qmp/compat.h"
#include "qmp/server.h"

#include <kvmm/config.h>
#include <kvmm/vcpu.h>
#include <kvmm/vm.h>

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static struct qmp_server srv;
static struct vm vm;
static struct vm_config cfg;
static struct vcpu vcpus[2];

static void setup(void)
{
	memset(&srv, 0, sizeof(srv));
	memset(&vm, 0, sizeof(vm));
	config_init(&cfg);
	vm.cfg = &cfg;
	vm.kvm_fd = -1;
	vm.nr_vcpus = 2;
	vm.vcpus = vcpus;
	cr_assert_eq(qmp_server_register(&srv, qmp_builtin_commands, &srv), 0);
	cr_assert_eq(qmp_vm_register(&srv, &vm), 0);
}

static void teardown(void)
{
	free(srv.tables);
	config_free(&cfg);
}

/* Runs a registered command as the dispatcher does; returns the reply {"return"} / {"error"}. */
static json_t *run(const char *name, const char *args_text)
{
	json_t *args = args_text ? json_loads(args_text, 0, NULL) : json_object(), *ret = NULL;
	struct qmp_error err = { 0 };
	const struct qmp_command *cmd = NULL;
	void *opaque = NULL;
	int rc;

	cr_assert_not_null(args, "bad test JSON %s", args_text);
	for (size_t t = 0; !cmd && t < srv.ntables; t++)
		for (const struct qmp_command *c = srv.tables[t].cmds; c->name; c++)
			if (!strcmp(c->name, name)) {
				cmd = c;
				opaque = srv.tables[t].opaque;
				break;
			}
	cr_assert_not_null(cmd, "%s is registered", name);
	rc = qmp_args_check(args, cmd->params, &err);
	if (rc == 0)
		rc = cmd->fn(opaque, args, &ret, &err);
	json_decref(args);
	if (rc < 0) {
		json_decref(ret);
		cr_assert(err.set, "%s: an error has a class and text", name);
		return json_pack("{s:{s:s, s:s}}", "error", "class", qmp_error_class_name(err.cls),
				 "desc", err.desc);
	}
	return json_pack("{s:o}", "return", ret ? ret : json_object());
}

static json_t *ok(const char *name, const char *args)
{
	json_t *r = run(name, args), *ret;
	char *text = json_dumps(r, 0);

	cr_assert_not_null(json_object_get(r, "return"), "%s %s: %s", name, args ? args : "", text);
	free(text);
	ret = json_incref(json_object_get(r, "return"));
	json_decref(r);
	return ret;
}

static void fails(const char *name, const char *args, const char *cls, const char *desc)
{
	json_t *r = run(name, args);
	json_t *e = json_object_get(r, "error");

	cr_assert_not_null(e, "%s %s fails", name, args);
	cr_expect_str_eq(json_string_value(json_object_get(e, "class")), cls);
	cr_expect_str_eq(json_string_value(json_object_get(e, "desc")), desc);
	json_decref(r);
}

static json_t *by_name(json_t *list, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v)
		if (!strcmp(json_string_value(json_object_get(v, "name")) ?: "", name))
			return v;
	return NULL;
}

/* ---- the schema ---- */

static json_t *schema;

static json_t *type_of(const char *name)
{
	json_t *t = by_name(schema, name);

	cr_assert_not_null(t, "type '%s' is in the schema", name);
	return t;
}

/* libvirt's path queries (qemu_qapi.c's virQEMUQAPISchemaPathGet), enough of them to check
 * what kvmm promises: "cmd/arg-type/member/^enumval" and "cmd/$feature". */
static bool path_exists(const char *query)
{
	char buf[256], *save = NULL;
	json_t *cur;

	snprintf(buf, sizeof(buf), "%s", query);
	cur = by_name(schema, strtok_r(buf, "/", &save));
	for (char *q = strtok_r(NULL, "/", &save); cur && q; q = strtok_r(NULL, "/", &save)) {
		const char *meta = json_string_value(json_object_get(cur, "meta-type"));
		json_t *list;
		size_t i;
		json_t *v;

		if (q[0] == '$' || q[0] == '^') {
			list = json_object_get(cur, q[0] == '$' ? "features" : "values");
			json_array_foreach(list, i, v)
				if (!strcmp(json_string_value(v), q + 1))
					return true;
			return false;
		}
		if (!strcmp(meta, "command") || !strcmp(meta, "event"))
			cur = type_of(json_string_value(json_object_get(cur, q)));
		else if (!strcmp(meta, "object")) {
			v = by_name(json_object_get(cur, "members"), q);
			cur = v ? type_of(json_string_value(json_object_get(v, "type"))) : NULL;
		} else
			return false;
	}
	return cur != NULL;
}

static void check_ref(json_t *entry, const char *key)
{
	const char *name = json_string_value(json_object_get(entry, key));

	if (name)
		type_of(name);
}

static size_t count_params(const struct qmp_param *p)
{
	size_t n = 0;

	while (p && p[n].name)
		n++;
	return n;
}

TestSuite(qmp_compat, .init = setup, .fini = teardown, .timeout = 10);

Test(qmp_compat, schema_is_valid_schemainfo, .timeout = 10)
{
	size_t i;
	json_t *e;

	schema = ok("query-qmp-schema", NULL);
	cr_assert(json_array_size(schema) > 50);
	json_array_foreach(schema, i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *meta = json_string_value(json_object_get(e, "meta-type"));
		size_t j;
		json_t *m;

		cr_assert_not_null(name, "entry %zu has a name", i);
		cr_assert_not_null(meta, "%s has a meta-type", name);
		/* libvirt puts entries in a hash table by name: a duplicate refuses the schema. */
		for (j = i + 1; j < json_array_size(schema); j++)
			cr_assert_str_neq(json_string_value(json_object_get(json_array_get(schema, j),
									     "name")), name,
					  "%s is unique", name);
		cr_assert(!strcmp(meta, "command") || !strcmp(meta, "event") ||
			  !strcmp(meta, "object") || !strcmp(meta, "enum") ||
			  !strcmp(meta, "builtin") || !strcmp(meta, "array"), "%s: %s", name, meta);
		check_ref(e, "arg-type");
		check_ref(e, "ret-type");
		check_ref(e, "element-type");
		json_array_foreach(json_object_get(e, "members"), j, m)
			if (!strcmp(meta, "object"))
				check_ref(m, "type");
		if (!strcmp(meta, "builtin"))
			cr_assert_not_null(json_object_get(e, "json-type"));
		if (!strcmp(meta, "enum"))
			cr_assert_eq(json_array_size(json_object_get(e, "values")),
				     json_array_size(json_object_get(e, "members")));
	}
	json_decref(schema);
}

Test(qmp_compat, schema_lists_every_command_with_its_arguments, .timeout = 10)
{
	schema = ok("query-qmp-schema", NULL);
	for (size_t t = 0; t < srv.ntables; t++)
		for (const struct qmp_command *c = srv.tables[t].cmds; c->name; c++) {
			json_t *e = by_name(schema, c->name), *members;

			cr_assert_not_null(e, "%s is in the schema", c->name);
			cr_assert_str_eq(json_string_value(json_object_get(e, "meta-type")), "command");
			members = json_object_get(
				type_of(json_string_value(json_object_get(e, "arg-type"))), "members");
			for (const struct qmp_param *p = c->params; p && p->name; p++) {
				json_t *m = by_name(members, p->name);

				cr_assert_not_null(m, "%s: argument %s", c->name, p->name);
				cr_assert_eq(json_object_get(m, "default") != NULL, p->optional,
					     "%s.%s: optional iff it has a default", c->name, p->name);
				if (p->type == QMP_INT)
					cr_assert_str_eq(json_string_value(json_object_get(m, "type")),
							 "int");
			}
			cr_assert_eq(json_array_size(members), count_params(c->params),
				     "%s: no other arguments", c->name);
		}
	json_decref(schema);
}

Test(qmp_compat, schema_answers_libvirts_queries, .timeout = 10)
{
	schema = ok("query-qmp-schema", NULL);
	cr_expect(path_exists("device_add/$json-cli-hotplug"), "JSON -device");
	cr_expect(path_exists("object-add/arg-type/qom-type/^secret"), "JSON -object");
	cr_expect(path_exists("object-add/arg-type/qom-type/^memory-backend-ram"));
	cr_expect(path_exists("query-named-block-nodes/arg-type/flat"));
	cr_expect(path_exists("set-action"));
	cr_expect(path_exists("SHUTDOWN/arg-type/reason/^host-signal"));
	cr_expect(path_exists("BALLOON_CHANGE/arg-type/actual"));
	cr_expect(!path_exists("blockdev-add/arg-type/+file"), "nothing kvmm lacks");
	cr_expect(!path_exists("object-add/arg-type/qom-type/^memory-backend-file"));
	json_decref(schema);
}

/* ---- the probe ---- */

Test(qmp_compat, probe_commands_answer_without_a_vm, .timeout = 10)
{
	struct qmp_server s = { 0 };
	json_t *r;

	cr_assert_eq(qmp_compat_register(&s, NULL), 0);
	cr_assert_eq(s.ntables, 2, "probe mode: schema and probe tables, no QOM tree");
	schema = compat_schema(&s);
	cr_assert_not_null(by_name(schema, "query-machines"));
	cr_assert_null(by_name(schema, "qom-get"));
	json_decref(schema);
	r = NULL;
	for (const struct qmp_command *c = s.tables[1].cmds; c->name; c++)
		if (!strcmp(c->name, "query-kvm")) {
			struct qmp_error err = { 0 };

			cr_assert_eq(c->fn(NULL, NULL, &r, &err), 0);
		}
	cr_assert(json_is_boolean(json_object_get(r, "present")));
	json_decref(r);
	free(s.tables);
}

Test(qmp_compat, probe_answers, .timeout = 10)
{
	json_t *r, *m;

	r = ok("query-target", NULL);
	cr_expect_str_eq(json_string_value(json_object_get(r, "arch")), "x86_64");
	json_decref(r);

	r = ok("qom-list-types", NULL);
	cr_expect_not_null(by_name(r, "virtio-balloon-pci"));
	cr_expect_not_null(by_name(r, "isa-serial"));
	cr_expect_not_null(by_name(r, "memory-backend-ram"));
	cr_expect_not_null(by_name(r, "max-x86_64-cpu"));
	cr_expect_not_null(by_name(r, COMPAT_MACHINE "-machine"));
	cr_expect_null(by_name(r, "x86_64-cpu"), "abstract types only when asked");
	cr_expect_null(by_name(r, "tcg-accel"), "KVM only");
	json_decref(r);
	r = ok("qom-list-types", "{\"implements\": \"memory-backend\", \"abstract\": true}");
	cr_expect_eq(json_array_size(r), 3);
	json_decref(r);

	r = ok("device-list-properties", "{\"typename\": \"virtio-balloon-pci\"}");
	cr_expect_not_null(by_name(r, "deflate-on-oom"));
	cr_expect_not_null(by_name(r, "free-page-reporting"));
	m = by_name(r, "guest-stats-polling-interval");
	cr_expect_not_null(m);
	cr_expect(json_is_false(json_object_get(by_name(r, "deflate-on-oom"), "default-value")));
	cr_expect_null(by_name(r, "packed"), "only what kvmm's balloon has");
	json_decref(r);
	fails("device-list-properties", "{\"typename\": \"virtio-net-ccw\"}", "DeviceNotFound",
	      "Device 'virtio-net-ccw' not found");
	fails("device-list-properties", "{}", "GenericError", "Parameter 'typename' is missing");

	r = ok("qom-list-properties", "{\"typename\": \"memory-backend-memfd\"}");
	cr_expect_not_null(by_name(r, "hugetlb"));
	json_decref(r);
	r = ok("qom-list-properties", "{\"typename\": \"max-x86_64-cpu\"}");
	cr_expect_not_null(by_name(r, "unavailable-features"));
	cr_expect_not_null(by_name(r, "avx2"));
	json_decref(r);
	r = ok("qom-list-properties", "{\"typename\": \"none-machine\"}");
	cr_expect_null(by_name(r, "confidential-guest-support"));
	json_decref(r);

	r = ok("query-machines", NULL);
	m = by_name(r, COMPAT_MACHINE);
	cr_assert_not_null(m);
	cr_expect_str_eq(json_string_value(json_object_get(m, "alias")), "pc");
	cr_expect_str_eq(json_string_value(json_object_get(m, "default-ram-id")), "pc.ram");
	cr_expect(json_is_true(json_object_get(m, "is-default")));
	cr_expect_not_null(by_name(r, "none"));
	json_decref(r);

	r = ok("query-cpu-definitions", NULL);
	cr_expect_str_eq(json_string_value(json_object_get(by_name(r, "host"), "typename")),
			 COMPAT_CPU_TYPE);
	json_decref(r);
	r = ok("query-cpu-model-expansion", "{\"type\": \"static\", \"model\": {\"name\": \"host\", "
					    "\"props\": {\"migratable\": false}}}");
	m = json_object_get(r, "model");
	cr_expect_str_eq(json_string_value(json_object_get(m, "name")), "base");
	cr_expect(json_is_boolean(json_object_get(json_object_get(m, "props"), "sse2")));
	json_decref(r);
	r = ok("query-cpu-model-expansion", "{\"type\": \"full\", \"model\": {\"name\": \"host\"}}");
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(r, "model"), "name")),
			 "host");
	json_decref(r);
	fails("query-cpu-model-expansion", "{\"type\": \"full\", \"model\": {\"name\": \"EPYC\"}}",
	      "GenericError", "The CPU type 'EPYC' is not a recognized CPU model");
	fails("query-cpu-model-expansion", "{\"type\": \"other\", \"model\": {\"name\": \"host\"}}",
	      "GenericError", "Parameter 'type' does not accept value 'other'");

	r = ok("query-tpm-models", NULL);
	cr_expect_eq(json_array_size(r), 0);
	json_decref(r);
	r = ok("query-command-line-options", NULL);
	cr_expect(json_array_size(r) >= 1);
	json_decref(r);
	fails("query-sev-capabilities", NULL, "GenericError", "SEV is not enabled in KVM");
	fails("query-sgx-capabilities", NULL, "GenericError", "SGX is not enabled in KVM");
	fails("device_add", "{\"driver\": \"e1000\"}", "GenericError",
	      "Device hotplug is not supported by kvmm: give devices on the command line");
}

/* ---- the domain monitor ---- */

Test(qmp_compat, domain_start_sequence, .timeout = 10)
{
	json_t *r, *m;

	r = ok("query-migrate-capabilities", NULL);
	cr_expect(json_is_false(json_object_get(json_array_get(r, 0), "state")));
	json_decref(r);
	json_decref(ok("migrate-set-capabilities",
		       "{\"capabilities\": [{\"capability\": \"events\", \"state\": true}]}"));
	r = ok("query-migrate-capabilities", NULL);
	cr_expect(json_is_true(json_object_get(json_array_get(r, 0), "state")));
	json_decref(r);
	json_decref(ok("migrate-set-capabilities",
		       "{\"capabilities\": [{\"capability\": \"events\", \"state\": false}]}"));
	fails("migrate-set-capabilities",
	      "{\"capabilities\": [{\"capability\": \"xbzrle\", \"state\": true}]}", "GenericError",
	      "Parameter 'capability' does not accept value 'xbzrle'");

	r = ok("query-chardev", NULL);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "label")),
			 "charserial0");
	json_decref(r);
	r = ok("query-hotpluggable-cpus", NULL);
	cr_expect_eq(json_array_size(r), 2);
	m = json_array_get(r, 1);
	cr_expect_str_eq(json_string_value(json_object_get(m, "qom-path")),
			 "/machine/unattached/device[1]");
	json_decref(r);

	/* The vCPU: qom-list, then one qom-get per bool, then unavailable-features. */
	r = ok("qom-list", "{\"path\": \"/machine/unattached/device[0]\"}");
	cr_expect_not_null(by_name(r, "unavailable-features"));
	cr_expect(json_array_size(r) > 100);
	{
		size_t i;
		json_t *p;
		char args[160];

		json_array_foreach(r, i, p) {
			snprintf(args, sizeof(args),
				 "{\"path\": \"/machine/unattached/device[0]\", \"property\": \"%s\"}",
				 json_string_value(json_object_get(p, "name")));
			json_decref(ok("qom-get", args));
		}
	}
	json_decref(r);
	r = ok("qom-get", "{\"path\": \"/machine/unattached/device[0]\", "
			  "\"property\": \"unavailable-features\"}");
	cr_expect(json_is_array(r) && json_array_size(r) == 0);
	json_decref(r);
	r = ok("qom-get", "{\"path\": \"/machine/unattached/device[0]\", \"property\": \"sse4_1\"}");
	cr_expect(json_is_boolean(r), "QEMU's legacy spelling of sse4.1");
	json_decref(r);
	fails("qom-get", "{\"path\": \"/machine/unattached/device[2]\", \"property\": \"lm\"}",
	      "DeviceNotFound", "Device '/machine/unattached/device[2]' not found");
	fails("qom-get", "{\"path\": \"/machine/unattached/device[0]\", \"property\": \"nope\"}",
	      "GenericError", "Property '" COMPAT_CPU_TYPE ".nope' not found");
	fails("qom-set", "{\"path\": \"/machine/unattached/device[0]\", \"property\": \"lm\", "
			 "\"value\": false}",
	      "GenericError", "Property '" COMPAT_CPU_TYPE ".lm' is not writable");

	json_decref(ok("query-iothreads", NULL));
	r = ok("qom-list", "{\"path\": \"/machine/peripheral\"}");
	cr_expect_eq(json_array_size(r), 1, "no balloon: only 'type' ");
	json_decref(r);
	fails("qom-get", "{\"path\": \"balloon0\", \"property\": \"guest-stats\"}", "DeviceNotFound",
	      "Device 'balloon0' not found");
	json_decref(ok("query-named-block-nodes", "{\"flat\": true}"));
	json_decref(ok("set-action", "{\"reboot\": \"shutdown\"}"));
	fails("set-action", "{\"reboot\": \"explode\"}", "GenericError",
	      "Parameter 'reboot' does not accept value 'explode'");
	cr_expect(vm.reboot_shutdown, "on_reboot='destroy': a reset is now a shutdown");
	json_decref(ok("query-block", NULL));
	r = ok("query-cpus-fast", NULL);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "qom-path")),
			 "/machine/unattached/device[0]");
	json_decref(r);
}

/* set-action applies reboot and shutdown at run time; a bad value anywhere changes nothing. */
Test(qmp_compat, set_action_applies, .timeout = 10)
{
	json_decref(ok("set-action", "{\"reboot\": \"shutdown\", \"shutdown\": \"pause\"}"));
	cr_expect(vm.reboot_shutdown);
	cr_expect(vm.shutdown_pause);
	fails("set-action", "{\"reboot\": \"reset\", \"watchdog\": \"explode\"}", "GenericError",
	      "Parameter 'watchdog' does not accept value 'explode'");
	cr_expect(vm.reboot_shutdown, "nothing applied when one value is bad");
	json_decref(ok("set-action", "{\"reboot\": \"reset\", \"shutdown\": \"poweroff\", "
				     "\"panic\": \"none\", \"watchdog\": \"inject-nmi\"}"));
	cr_expect(!vm.reboot_shutdown);
	cr_expect(!vm.shutdown_pause);
	json_decref(ok("set-action", "{\"shutdown\": \"pause\"}"));
	cr_expect(!vm.reboot_shutdown, "an action not given is kept");
	cr_expect(vm.shutdown_pause);
	fails("set-action", "{\"shutdown\": 1}", "GenericError",
	      "Invalid parameter type for 'shutdown', expected: string");
}

static void expect_status(const char *status, bool running)
{
	json_t *r = ok("query-status", NULL);

	cr_expect_str_eq(json_string_value(json_object_get(r, "status")), status);
	cr_expect_eq(json_is_true(json_object_get(r, "running")), running, "%s", status);
	json_decref(r);
}

/* QEMU's RunState: prelaunch under -S until cont, shutdown after a power-off under the shutdown
 * action pause, which cont refuses until a reset. */
Test(qmp_compat, query_status_run_states, .timeout = 10)
{
	expect_status("running", true);
	vm.prelaunch = true;
	atomic_store(&vm.pause_requested, true);
	expect_status("prelaunch", false);
	vm.prelaunch = false;
	expect_status("paused", false);
	vm.shut_down = true;
	expect_status("shutdown", false);
	fails("cont", NULL, "GenericError", "Resetting the Virtual Machine is required");
	expect_status("shutdown", false);
	cr_expect(vm_is_paused(&vm));
	vm.shut_down = false;
	vm.prelaunch = true;
	cr_expect_eq(vm_resume(&vm), 0);
	expect_status("running", true);
}

/* The front's ids: the balloon's QOM path and the chardev labels. */
Test(qmp_compat, front_ids, .timeout = 10)
{
	static char present; /* qom-list and type read only whether there is a balloon */
	json_t *r;

	cfg.balloon_id = strdup("membal");
	cfg.chardev_serial = strdup("charserial7");
	cfg.qmp = strdup("/run/m.sock");
	cfg.chardev_monitor = strdup("compat_monitor0");
	vm.balloon = (struct balloon *)&present;
	r = ok("qom-list", "{\"path\": \"/machine/peripheral\"}");
	cr_expect_not_null(by_name(r, "membal"));
	cr_expect_null(by_name(r, "balloon0"));
	json_decref(r);
	r = ok("qom-get", "{\"path\": \"/machine/peripheral/membal\", \"property\": \"type\"}");
	cr_expect_str_eq(json_string_value(r), "virtio-balloon-pci");
	json_decref(r);
	r = ok("qom-get", "{\"path\": \"membal\", \"property\": \"type\"}");
	json_decref(r);
	fails("qom-get", "{\"path\": \"/machine/peripheral/balloon0\", \"property\": \"type\"}",
	      "DeviceNotFound", "Device '/machine/peripheral/balloon0' not found");
	r = ok("query-chardev", NULL);
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "label")),
			 "charserial7");
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(r, 1), "label")),
			 "compat_monitor0");
	cr_expect_str_eq(json_string_value(json_object_get(json_array_get(r, 1), "filename")),
			 "unix:/run/m.sock,server=on");
	json_decref(r);
	vm.balloon = NULL;
}

/* The options libvirt 9.0 derives capabilities from that the front takes, and only those. */
Test(qmp_compat, command_line_options, .timeout = 10)
{
	json_t *r = ok("query-command-line-options", NULL), *o;
	size_t i;

	cr_expect_not_null(by_name(json_object_get(json_array_get(r, 0), "parameters"), "hpet"));
	json_array_foreach(r, i, o) {
		const char *name = json_string_value(json_object_get(o, "option"));

		cr_expect(strcmp(name, "sandbox") && strcmp(name, "spice") && strcmp(name, "vnc") &&
			  strcmp(name, "fsdev"), "%s is not listed", name);
	}
	json_decref(r);
	r = ok("query-command-line-options", "{\"option\": \"chardev\"}");
	cr_expect_eq(json_array_size(r), 1);
	cr_expect_not_null(by_name(json_object_get(json_array_get(r, 0), "parameters"), "append"));
	json_decref(r);
	fails("query-command-line-options", "{\"option\": \"sandbox\"}", "GenericError",
	      "invalid option name: sandbox");
}
