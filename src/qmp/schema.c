/* query-qmp-schema: QEMU's introspection (qapi/introspect.json, SchemaInfo), generated from the
 * command tables registered on the server, so it lists exactly the commands kvmm answers. Each
 * command's arguments become an object type built from its struct qmp_param list (a parameter
 * may name a type from the table below instead of its builtin); its return type is
 * qmp_command.ret (default "any"); its features are qmp_command.features. Events are the ones
 * kvmm raises. Type names are readable rather than QEMU's masked numbers; clients resolve them
 * by name either way. libvirt derives capabilities from paths through this schema
 * (virQEMUQAPISchemaPathGet): e.g. device_add/$json-cli-hotplug (JSON -device) and
 * object-add/arg-type/qom-type/^secret (JSON -object). Every referenced type must exist, or
 * libvirt refuses the whole schema. */
#include "compat.h"
#include "server.h"

#include <string.h>

/* Enums: name and space-separated values. */
static const struct {
	const char *name, *values;
} enums[] = {
	/* The -object types the front takes (qapi/qom.json's ObjectType, kvmm's part of it). */
	{ "ObjectType", "memory-backend-memfd memory-backend-ram secret" },
	{ "CpuModelExpansionType", "static full" },
	{ "MigrationCapability", "events" },
	{ "RebootAction", "reset shutdown" },
	{ "ShutdownAction", "poweroff pause" },
	{ "PanicAction", "pause shutdown exit-failure none" },
	{ "WatchdogAction", "reset shutdown poweroff pause debug none inject-nmi" },
	{ "ShutdownCause", "none host-error host-qmp-quit host-qmp-system-reset host-signal "
			   "host-ui guest-shutdown guest-reset guest-panic subsystem-reset" },
};

/* Objects: name and space-separated members "name:type", "name?:type" when optional. */
static const struct {
	const char *name, *members;
} objects[] = {
	{ "q_empty", "" },
	{ "CpuModelInfo", "name:str props?:any" },
	{ "MigrationCapabilityStatus", "capability:MigrationCapability state:bool" },
	{ "q_obj_SHUTDOWN-arg", "guest:bool reason:ShutdownCause" },
	{ "q_obj_RESET-arg", "guest:bool reason:ShutdownCause" },
	{ "q_obj_BALLOON_CHANGE-arg", "actual:int" },
	{ "q_obj_KVMM_SWAP_FULL-arg", "path:str" },
	{ "q_obj_KVMM_SWAP_ERROR-arg", "path:str error:str" },
};

/* The events kvmm raises (src/core/vm.c, reset.c, src/qmp/commands.c, balloon_kvm.c,
 * src/mem/reclaim.c) and their data. */
static const struct {
	const char *name, *arg;
} events[] = {
	{ "SHUTDOWN", "q_obj_SHUTDOWN-arg" },
	{ "POWERDOWN", "q_empty" },
	{ "RESET", "q_obj_RESET-arg" },
	{ "STOP", "q_empty" },
	{ "RESUME", "q_empty" },
	{ "BALLOON_CHANGE", "q_obj_BALLOON_CHANGE-arg" },
	{ "KVMM_SWAP_FULL", "q_obj_KVMM_SWAP_FULL-arg" },
	{ "KVMM_SWAP_ERROR", "q_obj_KVMM_SWAP_ERROR-arg" },
};

/* Builtins and their JSON types (QEMU's JSONType). */
static const struct {
	const char *name, *json;
} builtins[] = {
	{ "str", "string" }, { "int", "int" },   { "number", "number" }, { "bool", "boolean" },
	{ "null", "null" },  { "any", "value" }, { "size", "int" },
};

static const char *builtin_of(enum qmp_type t)
{
	switch (t) {
	case QMP_INT:
		return "int";
	case QMP_NUMBER:
		return "number";
	case QMP_BOOL:
		return "bool";
	case QMP_STR:
		return "str";
	case QMP_ARRAY:
		return "[any]";
	default:
		return "any";
	}
}

/* Array types ("[T]") are emitted for every name that refers to one. */
static void ref(json_t *arrays, const char *type)
{
	if (type[0] == '[')
		json_object_set_new(arrays, type, json_true());
}

static json_t *member(const char *name, const char *type, bool optional)
{
	json_t *m = json_pack("{s:s, s:s}", "name", name, "type", type);

	/* Optional members carry "default": null (QEMU: no default value is documented). */
	if (m && optional)
		json_object_set_new(m, "default", json_null());
	return m;
}

static json_t *object_type(const char *name, json_t *members)
{
	return json_pack("{s:s, s:s, s:o}", "name", name, "meta-type", "object", "members",
			 members);
}

/* "a:int b?:str" -> members. */
static json_t *parse_members(const char *spec, json_t *arrays)
{
	json_t *members = json_array();
	char buf[512], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *tok = strtok_r(buf, " ", &save); members && tok; tok = strtok_r(NULL, " ", &save)) {
		char *type = strchr(tok, ':');
		bool optional;

		if (!type)
			continue;
		*type++ = '\0';
		optional = type[-2] == '?';
		if (optional)
			type[-2] = '\0';
		ref(arrays, type);
		json_array_append_new(members, member(tok, type, optional));
	}
	return members;
}

static json_t *enum_type(const char *name, const char *spec)
{
	json_t *values = json_array(), *members = json_array();
	char buf[512], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		json_array_append_new(values, json_string(tok));
		json_array_append_new(members, json_pack("{s:s}", "name", tok));
	}
	/* "values" for clients before QEMU 6.2, "members" (which can carry features) after. */
	return json_pack("{s:s, s:s, s:o, s:o}", "name", name, "meta-type", "enum", "values", values,
			 "members", members);
}

static json_t *command(const struct qmp_command *cmd, json_t *out, json_t *arrays)
{
	char argname[128] = "q_empty";
	const char *ret = cmd->ret ? cmd->ret : "any";
	json_t *c;

	if (cmd->params && cmd->params->name) {
		json_t *members = json_array();

		snprintf(argname, sizeof(argname), "q_obj_%s-arg", cmd->name);
		for (const struct qmp_param *p = cmd->params; members && p->name; p++) {
			const char *type = p->schema ? p->schema : builtin_of(p->type);

			ref(arrays, type);
			json_array_append_new(members, member(p->name, type, p->optional));
		}
		json_array_append_new(out, object_type(argname, members));
	}
	ref(arrays, ret);
	c = json_pack("{s:s, s:s, s:s, s:s}", "name", cmd->name, "meta-type", "command", "arg-type",
		      argname, "ret-type", ret);
	if (c && cmd->features) {
		json_t *f = json_array();

		for (const char *const *name = cmd->features; *name; name++)
			json_array_append_new(f, json_string(*name));
		json_object_set_new(c, "features", f);
	}
	return c;
}

json_t *compat_schema(struct qmp_server *s)
{
	json_t *out = json_array(), *arrays = json_object(), *v;
	const char *name;
	size_t i;

	if (!out || !arrays)
		goto fail;
	for (size_t t = 0; t < s->ntables; t++)
		for (const struct qmp_command *cmd = s->tables[t].cmds; cmd->name; cmd++)
			json_array_append_new(out, command(cmd, out, arrays));
	for (i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "name", events[i].name,
						     "meta-type", "event", "arg-type", events[i].arg));
	for (i = 0; i < sizeof(objects) / sizeof(objects[0]); i++)
		json_array_append_new(out, object_type(objects[i].name,
						       parse_members(objects[i].members, arrays)));
	for (i = 0; i < sizeof(enums) / sizeof(enums[0]); i++)
		json_array_append_new(out, enum_type(enums[i].name, enums[i].values));
	for (i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "name", builtins[i].name,
						     "meta-type", "builtin", "json-type",
						     builtins[i].json));
	json_object_foreach(arrays, name, v) {
		char elem[128];
		size_t n = strlen(name);

		snprintf(elem, sizeof(elem), "%.*s", (int)(n - 2), name + 1);
		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "name", name, "meta-type",
						     "array", "element-type", elem));
	}
	json_decref(arrays);
	return out;
fail:
	json_decref(out);
	json_decref(arrays);
	return NULL;
}

static int cmd_query_qmp_schema(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	*ret = compat_schema(opaque);
	return *ret ? 0 : -ENOMEM;
}

const struct qmp_command compat_schema_commands[] = {
	{ "query-qmp-schema", cmd_query_qmp_schema, NULL, NULL, NULL },
	{ NULL },
};

int qmp_compat_register(struct qmp_server *s, struct vm *vm)
{
	int r = qmp_server_register(s, compat_schema_commands, s);

	if (r == 0)
		r = qmp_server_register(s, compat_probe_commands, vm);
	if (r == 0 && vm)
		r = qmp_server_register(s, compat_domain_commands, vm);
	return r;
}
