/* `kvmm qmp SOCKET [COMMAND [JSON]]`: a small QMP client for people and scripts. With a command it
 * runs that one command and prints its return value as JSON (exit 0) or its error as
 * "CLASS: desc" on stderr (exit 1). Without, it reads "COMMAND [JSON]" lines from stdin and
 * prints each reply; a prompt when stdin is a terminal. Exit 2: bad usage, no such socket. */
#include <kvmm/log.h>
#include <kvmm/qmp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QMP_CLI_CONNECT_MS 5000
#define QMP_CLI_REPLY_MS 60000

/* Parses the optional argument object; NULL with a message when it is not a JSON object. */
static json_t *qmp_cli_args(const char *text, bool *bad)
{
	json_error_t jerr;
	json_t *args;

	*bad = false;
	if (!text || !*text)
		return NULL;
	args = json_loads(text, JSON_DECODE_ANY, &jerr);
	if (!json_is_object(args)) {
		fprintf(stderr, "kvmm qmp: arguments must be a JSON object, got '%s'%s%s\n", text,
			args ? "" : ": ", args ? "" : jerr.text);
		json_decref(args);
		*bad = true;
		return NULL;
	}
	return args;
}

/* Runs one command and prints the outcome; returns 0 (return), 1 (error reply or lost server). */
static int qmp_cli_run(struct qmp_client *c, const char *cmd, json_t *args)
{
	json_t *reply = NULL, *ret, *e;
	char *text;
	int r = qmp_client_execute(c, cmd, args, QMP_CLI_REPLY_MS, &reply);

	if (r < 0) {
		fprintf(stderr, "kvmm qmp: %s: %s\n", cmd,
			r == -ETIMEDOUT ? "no reply in time" : strerror(-r));
		return 1;
	}
	ret = json_object_get(reply, "return");
	e = json_object_get(reply, "error");
	if (ret) {
		text = json_dumps(ret, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_SORT_KEYS);
		printf("%s\n", text ? text : "{}");
		free(text);
		fflush(stdout);
		json_decref(reply);
		return 0;
	}
	fprintf(stderr, "kvmm qmp: %s: %s: %s\n", cmd,
		json_string_value(json_object_get(e, "class")) ?: "?",
		json_string_value(json_object_get(e, "desc")) ?: "?");
	json_decref(reply);
	return 1;
}

static int qmp_cli_interactive(struct qmp_client *c)
{
	bool tty = isatty(STDIN_FILENO), bad;
	char *line = NULL, *cmd, *rest;
	size_t cap = 0;
	int status = 0;
	json_t *args;

	for (;;) {
		if (tty) {
			fputs("(qmp) ", stdout);
			fflush(stdout);
		}
		if (getline(&line, &cap, stdin) < 0)
			break;
		cmd = line + strspn(line, " \t");
		cmd[strcspn(cmd, "\r\n")] = '\0';
		if (!*cmd)
			continue;
		rest = cmd + strcspn(cmd, " \t");
		if (*rest)
			*rest++ = '\0';
		args = qmp_cli_args(rest + strspn(rest, " \t"), &bad);
		if (bad) {
			status = 1;
			continue;
		}
		if (qmp_cli_run(c, cmd, args) != 0)
			status = 1;
		json_decref(args);
		if (strcmp(cmd, "quit") == 0)
			break;
	}
	free(line);
	return status;
}

int qmp_cli_main(int argc, char **argv)
{
	struct qmp_client *c;
	json_t *args = NULL;
	bool bad = false;
	int r, status;

	if (argc < 2 || argc > 4 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fprintf(argc < 2 || argc > 4 ? stderr : stdout,
			"usage: kvmm qmp SOCKET [COMMAND [JSON]]\n"
			"  SOCKET   the path given to kvmm run --qmp unix:PATH\n"
			"  COMMAND  a QMP command, e.g. query-status; JSON: its arguments object\n"
			"Without COMMAND, reads 'COMMAND [JSON]' lines from stdin.\n");
		return argc < 2 || argc > 4 ? 2 : 0;
	}
	if (argc >= 4) {
		args = qmp_cli_args(argv[3], &bad);
		if (bad)
			return 2;
	}
	r = qmp_client_connect(argv[1], QMP_CLI_CONNECT_MS, &c);
	if (r < 0) {
		fprintf(stderr, "kvmm qmp: cannot talk QMP on %s: %s\n", argv[1],
			r == -EPROTO ? "not a QMP server" : r == -ETIMEDOUT ? "no greeting in time"
								: strerror(-r));
		json_decref(args);
		return 2;
	}
	status = argc >= 3 ? qmp_cli_run(c, argv[2], args) : qmp_cli_interactive(c);
	json_decref(args);
	qmp_client_close(c);
	return status;
}
