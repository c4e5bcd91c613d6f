/* QMP request checking, command lookup and the built-in commands (kvmm/qmp.h). Error texts are
 * QEMU's, so clients that match on them keep working. */
#include "server.h"

#include <kvmm/version.h>

#include <errno.h>
#include <string.h>

/* The QEMU version kvmm answers as: management tools gate features on it (libvirt wants >= 6.2). */
#define QMP_QEMU_MAJOR 8
#define QMP_QEMU_MINOR 2
#define QMP_QEMU_MICRO 0

static const struct qmp_command *srv_lookup(struct qmp_server *s, const char *name, void **opaque)
{
	for (size_t t = 0; t < s->ntables; t++)
		for (const struct qmp_command *cmd = s->tables[t].cmds; cmd->name; cmd++)
			if (!strcmp(cmd->name, name)) {
				*opaque = s->tables[t].opaque;
				return cmd;
			}
	return NULL;
}

/* Checks the request's own members the way QEMU's qmp_dispatch_check_obj() words it. */
static bool conn_check_request(json_t *req, const char **name, bool *oob, struct qmp_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach(req, key, v) {
		if (!strcmp(key, "execute") || !strcmp(key, "exec-oob")) {
			if (!json_is_string(v)) {
				qmp_error_set(err, QMP_ERR_GENERIC,
					      "QMP input member '%s' must be a string", key);
				return false;
			}
			*name = json_string_value(v);
			*oob = !strcmp(key, "exec-oob");
		} else if (!strcmp(key, "arguments")) {
			if (!json_is_object(v)) {
				qmp_error_set(err, QMP_ERR_GENERIC,
					      "QMP input member 'arguments' must be an object");
				return false;
			}
		} else if (strcmp(key, "id")) {
			qmp_error_set(err, QMP_ERR_GENERIC, "QMP input member '%s' is unexpected", key);
			return false;
		}
	}
	if (json_object_get(req, "execute") && json_object_get(req, "exec-oob")) {
		qmp_error_set(err, QMP_ERR_GENERIC,
			      "QMP input must not have both 'execute' and 'exec-oob'");
		return false;
	}
	if (!*name) {
		qmp_error_set(err, QMP_ERR_GENERIC, "QMP input lacks member 'execute'");
		return false;
	}
	return true;
}

void qmp_dispatch(struct qmp_conn *c, json_t *req)
{
	struct qmp_server *s = c->srv;
	struct qmp_error err = { 0 };
	const struct qmp_command *cmd;
	const char *name = NULL;
	json_t *args, *id, *ret = NULL;
	void *opaque = NULL;
	bool oob = false;
	int rc;

	if (!json_is_object(req)) {
		qmp_conn_reply_error(c, NULL, QMP_ERR_GENERIC, "QMP input must be a JSON object");
		return;
	}
	id = json_object_get(req, "id");
	if (!conn_check_request(req, &name, &oob, &err)) {
		qmp_conn_reply(c, id, NULL, &err);
		return;
	}
	cmd = srv_lookup(s, name, &opaque);
	/* Before negotiation QEMU knows only qmp_capabilities and answers everything else so. */
	if (!c->negotiated && (!cmd || strcmp(cmd->name, "qmp_capabilities"))) {
		qmp_conn_reply_error(c, id, QMP_ERR_COMMAND_NOT_FOUND,
				 "Expecting capabilities negotiation with 'qmp_capabilities'");
		return;
	}
	if (!cmd) {
		qmp_error_set(&err, QMP_ERR_COMMAND_NOT_FOUND, "The command %s has not been found", name);
		qmp_conn_reply(c, id, NULL, &err);
		return;
	}
	if (oob) {
		qmp_error_set(&err, QMP_ERR_GENERIC, "The command %s does not support OOB", name);
		qmp_conn_reply(c, id, NULL, &err);
		return;
	}
	args = json_object_get(req, "arguments");
	args = args ? json_incref(args) : json_object();
	rc = qmp_args_check(args, cmd->params, &err);
	if (rc == 0) {
		s->cur = c;
		rc = cmd->fn(opaque, args, &ret, &err);
		s->cur = NULL;
		if (rc < 0 && !err.set)
			qmp_error_set(&err, QMP_ERR_GENERIC, "%s", strerror(-rc));
	}
	json_decref(args);
	qmp_conn_reply(c, id, ret, &err);
}

json_t *qmp_version_json(void)
{
	return json_pack("{s:{s:i, s:i, s:i}, s:s}", "qemu", "micro", QMP_QEMU_MICRO, "minor",
			 QMP_QEMU_MINOR, "major", QMP_QEMU_MAJOR, "package", "kvmm " KVMM_VERSION);
}
int qmp_server_register(struct qmp_server *s, const struct qmp_command *table, void *opaque)
{
	struct qmp_table *nt;
	void *unused;

	for (const struct qmp_command *cmd = table; cmd->name; cmd++) {
		if (srv_lookup(s, cmd->name, &unused))
			return -EEXIST;
		for (const struct qmp_command *prev = table; prev < cmd; prev++)
			if (!strcmp(prev->name, cmd->name))
				return -EEXIST;
	}
	nt = realloc(s->tables, (s->ntables + 1) * sizeof(*nt));
	if (!nt)
		return -ENOMEM;
	s->tables = nt;
	s->tables[s->ntables++] = (struct qmp_table){ table, opaque };
	return 0;
}

static const struct qmp_param qmp_capabilities_params[] = {
	{ "enable", QMP_ARRAY, true },
	{ NULL },
};

/* We offer no capabilities (no "oob"): the greeting's list is empty. */
static int qmp_cmd_capabilities(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct qmp_server *s = opaque;
	json_t *enable = json_object_get(args, "enable");
	size_t i;
	json_t *v;

	json_array_foreach(enable, i, v) {
		if (!json_is_string(v)) {
			qmp_error_set(err, QMP_ERR_GENERIC,
				      "Invalid parameter type for 'enable[%zu]', expected: string", i);
			return -EINVAL;
		}
		if (strcmp(json_string_value(v), "oob")) {
			qmp_error_set(err, QMP_ERR_GENERIC,
				      "Parameter 'enable[%zu]' does not accept value '%s'", i,
				      json_string_value(v));
			return -EINVAL;
		}
	}
	if (s->cur->negotiated) {
		qmp_error_set(err, QMP_ERR_COMMAND_NOT_FOUND,
			      "Capabilities negotiation is already complete, command ignored");
		return -EINVAL;
	}
	if (json_array_size(enable)) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Capability 'oob' not available");
		return -EINVAL;
	}
	s->cur->negotiated = true;
	return 0;
}

static int qmp_cmd_query_commands(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct qmp_server *s = opaque;
	json_t *list = json_array();

	for (size_t t = 0; t < s->ntables; t++)
		for (const struct qmp_command *cmd = s->tables[t].cmds; cmd->name; cmd++)
			json_array_append_new(list, json_pack("{s:s}", "name", cmd->name));
	*ret = list;
	return 0;
}

static int qmp_cmd_query_version(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	*ret = qmp_version_json();
	return *ret ? 0 : -ENOMEM;
}

const struct qmp_command qmp_builtin_commands[] = {
	{ "qmp_capabilities", qmp_cmd_capabilities, qmp_capabilities_params },
	{ "query-commands", qmp_cmd_query_commands, NULL },
	{ "query-version", qmp_cmd_query_version, NULL },
	{ NULL },
};

