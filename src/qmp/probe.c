/* The commands libvirt's capability probe runs against `EMULATOR -machine none` (recorded in
 * steering shared/libvirt/qmp-transcript-probe-x86_64.txt), answered for what kvmm is: one x86_64
 * PC machine on KVM, the host CPU, a virtio-balloon-pci, an isa-serial and RAM backends. Shapes
 * and error texts are QEMU's (qapi/machine.json, qapi/qom.json, qapi/qdev.json,
 * qapi/machine-target.json, qapi/migration.json, qapi/misc-target.json). The handlers need no
 * VM; opaque is the VM when there is one. */
#include "compat.h"

#include <kvmm/vm.h>

#include <string.h>
#include <unistd.h>

static int cmd_query_target(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	*ret = json_pack("{s:s}", "arch", "x86_64");
	return *ret ? 0 : -ENOMEM;
}

static int cmd_query_kvm(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	/* kvmm runs on KVM only: with a VM it is in use; without, it would be if /dev/kvm opens. */
	bool present = opaque || access("/dev/kvm", R_OK | W_OK) == 0;

	*ret = json_pack("{s:b, s:b}", "enabled", present, "present", present);
	return *ret ? 0 : -ENOMEM;
}

/* The QOM types kvmm has. piix3-usb-uhci: libvirt adds it to every i440fx domain without a
 * <controller type='usb'>; the front accepts it and the guest sees no USB controller (kvmm
 * emulates none), like model='none'. */
static const struct qom_type {
	const char *name, *parent;
	bool abstract;
} qom_types[] = {
	{ COMPAT_MACHINE "-machine", "generic-pc-machine", false },
	{ "none-machine", "machine", false },
	{ "generic-pc-machine", "machine", true },
	{ "machine", "object", true },
	{ "x86_64-cpu", "cpu", true },
	{ "max-x86_64-cpu", "x86_64-cpu", false },
	{ COMPAT_CPU_TYPE, "max-x86_64-cpu", false },
	{ "kvm-accel", "accel", false },
	{ "virtio-balloon-pci", "virtio-balloon-pci-base", false },
	{ "isa-serial", "isa-device", false },
	{ "piix3-usb-uhci", "pci-uhci-usb", false },
	{ "memory-backend", "object", true },
	{ "memory-backend-ram", "memory-backend", false },
	{ "memory-backend-memfd", "memory-backend", false },
	{ "secret", "secret_common", false },
	{ "container", "object", false },
};
#define NTYPES (sizeof(qom_types) / sizeof(qom_types[0]))

static const struct qom_type *type_find(const char *name)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (!strcmp(qom_types[i].name, name))
			return &qom_types[i];
	return NULL;
}

static bool type_implements(const struct qom_type *t, const char *ancestor)
{
	for (int depth = 0; t && depth < 8; depth++) {
		if (!strcmp(t->name, ancestor) || !strcmp(t->parent, ancestor))
			return true;
		t = type_find(t->parent);
	}
	return false;
}

static int cmd_qom_list_types(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	const char *impl = json_string_value(json_object_get(args, "implements"));
	bool abstract = json_is_true(json_object_get(args, "abstract"));
	json_t *list = json_array();

	for (size_t i = 0; list && i < NTYPES; i++) {
		const struct qom_type *t = &qom_types[i];

		if ((t->abstract && !abstract) || (impl && !type_implements(t, impl)))
			continue;
		json_array_append_new(list, json_pack("{s:s, s:s}", "name", t->name, "parent",
						      t->parent));
	}
	*ret = list;
	return list ? 0 : -ENOMEM;
}

/* A property as device-list-properties and qom-list-properties give it (ObjectPropertyInfo):
 * JSON text for an optional default, NULL for none. */
struct prop {
	const char *name, *type, *description, *defval;
};

static const struct prop balloon_props[] = {
	{ "addr", "int32", "Slot and optional function number, example: 06.0 or 06", "-1" },
	{ "multifunction", "bool", "on/off", "false" },
	{ "deflate-on-oom", "bool", "on/off", "false" },
	{ "free-page-reporting", "bool", "on/off", "false" },
	{ "guest-stats", "guest statistics", NULL, NULL },
	{ "guest-stats-polling-interval", "int", NULL, NULL },
	{ NULL },
};
static const struct prop serial_props[] = {
	{ "index", "uint32", NULL, "4294967295" },
	{ "iobase", "uint32", NULL, "4294967295" },
	{ "irq", "uint32", NULL, "4294967295" },
	{ "chardev", "str", "ID of a chardev to use as a backend", NULL },
	{ NULL },
};
static const struct prop uhci_props[] = {
	{ "addr", "int32", "Slot and optional function number, example: 06.0 or 06", "-1" },
	{ "multifunction", "bool", "on/off", "false" },
	{ "masterbus", "str", NULL, NULL },
	{ "firstport", "uint32", NULL, "0" },
	{ NULL },
};
static const struct prop backend_props[] = {
	{ "type", "string", NULL, NULL },
	{ "size", "int", "Size of the memory region (ex: 500M)", NULL },
	{ "share", "bool", "Mark the memory as private to QEMU or shared", NULL },
	{ "prealloc", "bool", "Preallocate memory", NULL },
	{ "dump", "bool", "Set to 'off' to exclude from core dump", NULL },
	{ "merge", "bool", "Mark memory as mergeable", NULL },
	{ NULL },
};
static const struct prop memfd_props[] = {
	{ "hugetlb", "bool", "Use huge pages", NULL },
	{ "hugetlbsize", "int", "Huge pages size (ex: 2M, 1G)", NULL },
	{ NULL },
};
static const struct prop machine_props[] = {
	{ "type", "string", NULL, NULL },
	{ "kernel", "string", "Linux kernel image file", NULL },
	{ "initrd", "string", "Linux initial ramdisk file", NULL },
	{ "append", "string", "Linux kernel command line", NULL },
	{ "dump-guest-core", "bool", "Include guest memory in a core dump", NULL },
	{ "memory-backend", "link<memory-backend>", "Set RAM backend", NULL },
	{ "usb", "bool", "Set on/off to enable/disable usb", NULL },
	{ NULL },
};
static const struct prop cpu_props[] = {
	{ "type", "string", NULL, NULL },
	{ "realized", "bool", NULL, NULL },
	{ "hotplugged", "bool", NULL, NULL },
	{ "hotpluggable", "bool", NULL, NULL },
	{ "start-powered-off", "bool", NULL, NULL },
	{ "family", "int", NULL, NULL },
	{ "model", "int", NULL, NULL },
	{ "stepping", "int", NULL, NULL },
	{ "vendor", "string", NULL, NULL },
	{ "model-id", "string", NULL, NULL },
	{ "unavailable-features", "strList", NULL, NULL },
	{ "filtered-features", "X86CPUFeatureWordInfo", NULL, NULL },
	{ NULL },
};

static void props_append(json_t *list, const struct prop *p, bool with_defaults)
{
	for (; p && p->name; p++) {
		json_t *o = json_pack("{s:s, s:s}", "name", p->name, "type", p->type);

		if (!o)
			continue;
		if (p->description)
			json_object_set_new(o, "description", json_string(p->description));
		if (with_defaults && p->defval)
			json_object_set_new(o, "default-value", json_loads(p->defval, JSON_DECODE_ANY,
									     NULL));
		json_array_append_new(list, o);
	}
}

/* The CPU's properties: the fixed ones, then one bool per CPUID feature (as QEMU lists them). */
static json_t *cpu_prop_list(void)
{
	json_t *list = json_array();

	props_append(list, cpu_props, false);
	for (size_t i = 0; list && i < compat_cpu_nfeatures(); i++)
		json_array_append_new(list, json_pack("{s:s, s:s}", "name", compat_cpu_feature_name(i),
						      "type", "bool"));
	return list;
}

json_t *compat_cpu_qom_list(void)
{
	return cpu_prop_list();
}

static int cmd_device_list_properties(void *opaque, json_t *args, json_t **ret,
				      struct qmp_error *err)
{
	const char *name = json_string_value(json_object_get(args, "typename"));
	const struct qom_type *t = type_find(name);
	const struct prop *p;

	if (!strcmp(name, "virtio-balloon-pci"))
		p = balloon_props;
	else if (!strcmp(name, "isa-serial"))
		p = serial_props;
	else if (!strcmp(name, "piix3-usb-uhci"))
		p = uhci_props;
	else if (t) {
		qmp_error_set(err, QMP_ERR_GENERIC,
			      "Parameter 'typename' expects a non-abstract device type");
		return -EINVAL;
	} else {
		qmp_error_set(err, QMP_ERR_DEVICE_NOT_FOUND, "Device '%s' not found", name);
		return -ENOENT;
	}
	*ret = json_array();
	if (!*ret)
		return -ENOMEM;
	props_append(*ret, p, true);
	return 0;
}

static int cmd_qom_list_properties(void *opaque, json_t *args, json_t **ret,
				   struct qmp_error *err)
{
	const char *name = json_string_value(json_object_get(args, "typename"));

	*ret = json_array();
	if (!*ret)
		return -ENOMEM;
	/* memory-backend-file is answered though kvmm has no such type (qom-list-types leaves it
	 * out, which is what libvirt's capability comes from): libvirt asks for it unconditionally. */
	if (!strncmp(name, "memory-backend-", 15) &&
	    (type_find(name) || !strcmp(name, "memory-backend-file"))) {
		props_append(*ret, backend_props, false);
		if (!strcmp(name, "memory-backend-memfd"))
			props_append(*ret, memfd_props, false);
	} else if (!strcmp(name, "none-machine") || !strcmp(name, COMPAT_MACHINE "-machine")) {
		props_append(*ret, machine_props, false);
	} else if (!strcmp(name, "max-x86_64-cpu") || !strcmp(name, COMPAT_CPU_TYPE)) {
		json_decref(*ret);
		*ret = cpu_prop_list();
	} else if (type_find(name)) {
		props_append(*ret, (const struct prop[]){ { "type", "string", NULL, NULL }, { NULL } },
			     false);
	} else {
		json_decref(*ret);
		*ret = NULL;
		qmp_error_set(err, QMP_ERR_DEVICE_NOT_FOUND, "Class '%s' not found", name);
		return -ENOENT;
	}
	return *ret ? 0 : -ENOMEM;
}

static int cmd_query_machines(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	*ret = json_pack("[{s:s, s:s, s:b, s:i, s:b, s:b, s:b, s:s, s:s},"
			 " {s:s, s:i, s:b, s:b, s:b}]",
			 "name", COMPAT_MACHINE, "alias", COMPAT_MACHINE_ALIAS, "is-default", 1,
			 "cpu-max", COMPAT_CPU_MAX, "hotpluggable-cpus", 0, "numa-mem-supported", 0,
			 "deprecated", 0, "default-cpu-type", COMPAT_CPU_TYPE, "default-ram-id",
			 "pc.ram",
			 "name", "none", "cpu-max", 1, "hotpluggable-cpus", 0, "numa-mem-supported", 0,
			 "deprecated", 0);
	return *ret ? 0 : -ENOMEM;
}

static int cmd_query_cpu_definitions(void *opaque, json_t *args, json_t **ret,
				     struct qmp_error *err)
{
	*ret = json_pack("[{s:s, s:s, s:[], s:b, s:b, s:b}, {s:s, s:s, s:[], s:b, s:b, s:b}]",
			 "name", "host", "typename", COMPAT_CPU_TYPE, "unavailable-features",
			 "static", 0, "migration-safe", 0, "deprecated", 0,
			 "name", "max", "typename", "max-x86_64-cpu", "unavailable-features",
			 "static", 0, "migration-safe", 0, "deprecated", 0);
	return *ret ? 0 : -ENOMEM;
}

static int kvm_fd_of(void *opaque)
{
	return opaque ? ((struct vm *)opaque)->kvm_fd : -1;
}

/* QEMU's x86 expansion: "static" names the static base model "base" plus every feature as a
 * property; "full" keeps the model's name. kvmm's host and max are the same CPU. Properties in
 * the request (migratable, hv-passthrough) change nothing here. */
static int cmd_query_cpu_model_expansion(void *opaque, json_t *args, json_t **ret,
					 struct qmp_error *err)
{
	const char *type = json_string_value(json_object_get(args, "type"));
	json_t *model = json_object_get(args, "model");
	const char *name = json_string_value(json_object_get(model, "name"));
	json_t *props;

	if (strcmp(type, "static") && strcmp(type, "full")) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'type' does not accept value '%s'",
			      type);
		return -EINVAL;
	}
	if (!name) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'model.name' is missing");
		return -EINVAL;
	}
	if (strcmp(name, "host") && strcmp(name, "max")) {
		qmp_error_set(err, QMP_ERR_GENERIC,
			      "The CPU type '%s' is not a recognized CPU model", name);
		return -EINVAL;
	}
	props = compat_cpu_props(compat_cpu_host(kvm_fd_of(opaque)));
	*ret = json_pack("{s:{s:s, s:o}}", "model", "name", strcmp(type, "static") ? name : "base",
			 "props", props);
	return *ret ? 0 : -ENOMEM;
}

static int cmd_empty_list(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	*ret = json_array();
	return *ret ? 0 : -ENOMEM;
}

/* query-command-line-options: the QEMU-compatible front's options that QEMU keeps in QemuOpts
 * groups (the group name is what QEMU reports: -smp is smp-opts, -boot boot-opts), each with the
 * parameters the front reads (src/libvirt/qemu_args.c). libvirt derives capabilities from these
 * (9.0: machine.hpet, sandbox, fsdev.multidevs, spice, vnc.power-control; older ones also
 * machine.mem-merge, msg.timestamp, name.guest, chardev.append, chardev.fd, overcommit,
 * smp-opts.dies...), so nothing is listed the front would refuse. -sandbox is not listed: the
 * front accepts and ignores it, and kvmm has no seccomp filter; QEMU built without seccomp leaves
 * it out of this list too, and libvirt then adds no -sandbox. */
struct cmdline_param {
	const char *name, *type;
};

static const struct cmdline_option {
	const char *option;
	struct cmdline_param params[10];
} cmdline_options[] = {
	{ "machine", { { "type", "string" }, { "accel", "string" }, { "usb", "boolean" },
		       { "dump-guest-core", "boolean" }, { "memory-backend", "string" },
		       { "mem-merge", "boolean" }, { "vmport", "string" }, { "hpet", "boolean" } } },
	{ "accel", { { "accel", "string" } } },
	{ "name", { { "guest", "string" }, { "process", "string" }, { "debug-threads", "boolean" } } },
	{ "memory", { { "size", "size" }, { "slots", "number" }, { "maxmem", "size" } } },
	{ "smp-opts", { { "cpus", "number" }, { "sockets", "number" }, { "dies", "number" },
			{ "cores", "number" }, { "threads", "number" }, { "maxcpus", "number" } } },
	{ "chardev", { { "backend", "string" }, { "path", "string" }, { "fd", "string" },
		       { "server", "boolean" }, { "wait", "boolean" }, { "append", "boolean" } } },
	{ "mon", { { "chardev", "string" }, { "mode", "string" }, { "pretty", "boolean" } } },
	{ "add-fd", { { "fd", "number" }, { "set", "number" }, { "opaque", "string" } } },
	{ "overcommit", { { "mem-lock", "boolean" }, { "cpu-pm", "boolean" } } },
	{ "msg", { { "timestamp", "boolean" } } },
	{ "rtc", { { "base", "string" }, { "clock", "string" }, { "driftfix", "string" } } },
	{ "boot-opts", { { "strict", "boolean" } } },
};
#define NCMDLINE (sizeof(cmdline_options) / sizeof(cmdline_options[0]))

static json_t *cmdline_option_info(const struct cmdline_option *o)
{
	json_t *params = json_array();

	for (size_t i = 0; params && i < 10 && o->params[i].name; i++)
		json_array_append_new(params, json_pack("{s:s, s:s}", "name", o->params[i].name,
							"type", o->params[i].type));
	return params ? json_pack("{s:s, s:o}", "option", o->option, "parameters", params) : NULL;
}

static int cmd_query_command_line_options(void *opaque, json_t *args, json_t **ret,
					  struct qmp_error *err)
{
	const char *option = json_string_value(json_object_get(args, "option"));

	*ret = json_array();
	for (size_t i = 0; *ret && i < NCMDLINE; i++)
		if (!option || !strcmp(option, cmdline_options[i].option))
			json_array_append_new(*ret, cmdline_option_info(&cmdline_options[i]));
	if (!*ret)
		return -ENOMEM;
	if (option && !json_array_size(*ret)) {
		json_decref(*ret);
		*ret = NULL;
		qmp_error_set(err, QMP_ERR_GENERIC, "invalid option name: %s", option);
		return -EINVAL;
	}
	return 0;
}

/* kvmm does not migrate; "events" is there because libvirt turns it on at every start. */
static int cmd_query_migrate_capabilities(void *opaque, json_t *args, json_t **ret,
					  struct qmp_error *err)
{
	*ret = json_pack("[{s:s, s:b}]", "capability", "events", "state",
			 compat_migrate_events());
	return *ret ? 0 : -ENOMEM;
}

static int cmd_query_sev_capabilities(void *opaque, json_t *args, json_t **ret,
				      struct qmp_error *err)
{
	qmp_error_set(err, QMP_ERR_GENERIC, "SEV is not enabled in KVM");
	return -ENOTSUP;
}

static int cmd_query_sgx_capabilities(void *opaque, json_t *args, json_t **ret,
				      struct qmp_error *err)
{
	qmp_error_set(err, QMP_ERR_GENERIC, "SGX is not enabled in KVM");
	return -ENOTSUP;
}

/* Devices and objects come from the command line only (the schema lists these two so that
 * libvirt writes -device and -object as JSON, which the front parses). */
static int cmd_device_add(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	qmp_error_set(err, QMP_ERR_GENERIC,
		      "Device hotplug is not supported by kvmm: give devices on the command line");
	return -ENOTSUP;
}

static int cmd_object_add(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	qmp_error_set(err, QMP_ERR_GENERIC,
		      "Object hotplug is not supported by kvmm: give objects on the command line");
	return -ENOTSUP;
}

static const struct qmp_param qom_list_types_params[] = {
	{ "implements", QMP_STR, true, NULL }, { "abstract", QMP_BOOL, true, NULL }, { NULL } };
static const struct qmp_param typename_params[] = { { "typename", QMP_STR, false, NULL },
						    { NULL } };
static const struct qmp_param query_machines_params[] = {
	{ "compat-props", QMP_BOOL, true, NULL }, { NULL } };
static const struct qmp_param expansion_params[] = {
	{ "type", QMP_STR, false, "CpuModelExpansionType" },
	{ "model", QMP_OBJECT, false, "CpuModelInfo" },
	{ NULL } };
static const struct qmp_param cmdline_params[] = { { "option", QMP_STR, true, NULL }, { NULL } };
static const struct qmp_param device_add_params[] = {
	{ "driver", QMP_STR, false, NULL }, { "bus", QMP_STR, true, NULL },
	{ "id", QMP_STR, true, NULL }, { NULL } };
static const struct qmp_param object_add_params[] = {
	{ "qom-type", QMP_STR, false, "ObjectType" }, { "id", QMP_STR, false, NULL }, { NULL } };

/* QEMU 7.2's device_add features: "json-cli" (-device takes JSON) and "json-cli-hotplug" (and
 * keeps it through hotplug); libvirt writes JSON -device when it sees them. */
static const char *const device_add_features[] = { "json-cli", "json-cli-hotplug", NULL };

const struct qmp_command compat_probe_commands[] = {
	{ "query-target", cmd_query_target, NULL, NULL, NULL },
	{ "query-kvm", cmd_query_kvm, NULL, NULL, NULL },
	{ "qom-list-types", cmd_qom_list_types, qom_list_types_params, NULL, NULL },
	{ "device-list-properties", cmd_device_list_properties, typename_params,
	  NULL, NULL },
	{ "qom-list-properties", cmd_qom_list_properties, typename_params,
	  NULL, NULL },
	{ "query-machines", cmd_query_machines, query_machines_params, NULL, NULL },
	{ "query-cpu-definitions", cmd_query_cpu_definitions, NULL, NULL, NULL },
	{ "query-cpu-model-expansion", cmd_query_cpu_model_expansion, expansion_params,
	  NULL, NULL },
	{ "query-tpm-models", cmd_empty_list, NULL, "[str]", NULL },
	{ "query-tpm-types", cmd_empty_list, NULL, "[str]", NULL },
	{ "query-command-line-options", cmd_query_command_line_options, cmdline_params,
	  NULL, NULL },
	{ "query-migrate-capabilities", cmd_query_migrate_capabilities, NULL,
	  NULL, NULL },
	{ "query-sev-capabilities", cmd_query_sev_capabilities, NULL, NULL, NULL },
	{ "query-sgx-capabilities", cmd_query_sgx_capabilities, NULL, NULL, NULL },
	{ "device_add", cmd_device_add, device_add_params, "q_empty", device_add_features },
	{ "object-add", cmd_object_add, object_add_params, "q_empty", NULL },
	{ NULL },
};
