/* The QMP server and client against QEMU's wire format (docs/interop/qmp-spec.rst), driven over
 * real unix sockets with the event loop running in a thread. */
#include "../../src/qmp/json.h"

#include <kvmm/loop.h>
#include <kvmm/qmp.h>
#include <kvmm/version.h>

#include "looprunner.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct loop_runner lr;
static struct qmp_server *srv;
static char dir[64];
static char sock_path[128];
static int echo_opaque;

/* ---- test commands ---- */

static const struct qmp_param echo_params[] = {
	{ "value", QMP_INT, false },
	{ "text", QMP_STR, true },
	{ "flag", QMP_BOOL, true },
	{ NULL },
};

static int cmd_echo(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	cr_assert_eq(opaque, &echo_opaque);
	*ret = json_deep_copy(args);
	return 0;
}

static int cmd_fail(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	qmp_error_set(err, QMP_ERR_DEVICE_NOT_ACTIVE, "No balloon device has been activated");
	return -ENODEV;
}

static int cmd_errno(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	return -EIO;
}

static int cmd_raise(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	return qmp_server_event(srv, "TEST_RAISED", NULL);
}

static const struct qmp_command test_cmds[] = {
	{ "test-echo", cmd_echo, echo_params },
	{ "test-fail", cmd_fail, NULL },
	{ "test-errno", cmd_errno, NULL },
	{ "test-raise", cmd_raise, NULL },
	{ NULL },
};

/* ---- fixture: a server on a loop thread ---- */

static void start(const struct qmp_server_config *cfg)
{
	strcpy(dir, "/tmp/kvmm-test-qmp.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/qmp.sock", dir);
	loop_runner_init(&lr);
	cr_assert_eq(qmp_server_create(lr.lp, sock_path, cfg, &srv), 0);
	cr_assert_eq(qmp_server_register(srv, test_cmds, &echo_opaque), 0);
	loop_runner_go(&lr);
}

static void setup(void)
{
	start(NULL);
}

static void setup_small(void)
{
	struct qmp_server_config cfg = { .out_limit = 16 << 10, .max_clients = 3 };

	start(&cfg);
}

static void teardown(void)
{
	loop_runner_halt(&lr);
	qmp_server_destroy(srv);
	loop_runner_free(&lr);
	cr_expect_eq(access(sock_path, F_OK), -1, "destroy unlinks the socket");
	rmdir(dir);
}

/* ---- a raw test client: line-oriented, independent of the module's framer ---- */

struct tc {
	int fd;
	size_t len;
	char buf[1 << 16];
};

static struct tc *tc_open(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct tc *t = calloc(1, sizeof(*t));

	cr_assert_not_null(t);
	strcpy(addr.sun_path, sock_path);
	t->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(t->fd, 0);
	cr_assert_eq(connect(t->fd, (struct sockaddr *)&addr, sizeof(addr)), 0, "%s", strerror(errno));
	return t;
}

static void tc_close(struct tc *t)
{
	close(t->fd);
	free(t);
}

/* One raw line, without CRLF, or NULL on EOF/timeout; the caller frees. */
static char *tc_line(struct tc *t, int timeout_ms)
{
	for (;;) {
		char *nl = memchr(t->buf, '\n', t->len);
		struct pollfd pfd = { .fd = t->fd, .events = POLLIN };
		ssize_t n;

		if (nl) {
			size_t ll = (size_t)(nl - t->buf) + 1;
			char *line;

			cr_assert(ll >= 2 && nl[-1] == '\r', "messages end with CRLF");
			line = strndup(t->buf, ll - 2);
			memmove(t->buf, t->buf + ll, t->len - ll);
			t->len -= ll;
			return line;
		}
		cr_assert_lt(t->len, sizeof(t->buf), "line too long");
		if (poll(&pfd, 1, timeout_ms) <= 0)
			return NULL;
		n = recv(t->fd, t->buf + t->len, sizeof(t->buf) - t->len, 0);
		if (n <= 0)
			return NULL;
		t->len += (size_t)n;
	}
}

static json_t *tc_read(struct tc *t)
{
	char *line = tc_line(t, 5000);
	json_error_t je;
	json_t *j;

	cr_assert_not_null(line, "no message from the server");
	j = json_loads(line, 0, &je);
	cr_assert_not_null(j, "server sent bad JSON: %s (%s)", line, je.text);
	free(line);
	return j;
}

static void tc_send_raw(struct tc *t, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(t->fd, s, n, MSG_NOSIGNAL);

		cr_assert_gt(w, 0, "send: %s", strerror(errno));
		s += w;
		n -= (size_t)w;
	}
}

static void tc_send(struct tc *t, const char *s)
{
	tc_send_raw(t, s, strlen(s));
}

static json_t *tc_cmd(struct tc *t, const char *s)
{
	tc_send(t, s);
	return tc_read(t);
}

static void expect_json(json_t *r, const char *want);

/* Connects and reads the greeting; negotiates if asked. */
static struct tc *tc_new(bool negotiate)
{
	struct tc *t = tc_open();
	json_t *g = tc_read(t), *r;

	cr_assert_not_null(json_object_get(g, "QMP"));
	json_decref(g);
	if (negotiate) {
		r = tc_cmd(t, "{\"execute\": \"qmp_capabilities\"}");
		expect_json(r, "{\"return\": {}}");
	}
	return t;
}

static void expect_error(json_t *r, const char *cls, const char *desc)
{
	json_t *e = json_object_get(r, "error");
	char *s = json_dumps(r, 0);

	cr_assert_not_null(e, "not an error: %s", s);
	cr_expect_str_eq(json_string_value(json_object_get(e, "class")), cls, "%s", s);
	if (desc)
		cr_expect_str_eq(json_string_value(json_object_get(e, "desc")), desc, "%s", s);
	free(s);
	json_decref(r);
}

static void expect_json(json_t *r, const char *want)
{
	json_t *w = json_loads(want, 0, NULL);
	char *s = json_dumps(r, JSON_SORT_KEYS);

	cr_assert_not_null(w);
	cr_expect(json_equal(r, w), "got %s, want %s", s, want);
	free(s);
	json_decref(w);
	json_decref(r);
}

static void cmd_error(struct tc *t, const char *req, const char *cls, const char *desc)
{
	expect_error(tc_cmd(t, req), cls, desc);
}

TestSuite(qmp, .init = setup, .fini = teardown, .timeout = 10);

Test(qmp, greeting_exact_and_socket_mode, .timeout = 10)
{
	struct tc *t = tc_open();
	char *line = tc_line(t, 5000);
	struct stat st;

	cr_assert_str_eq(line, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
			       "\"major\": 8}, \"package\": \"kvmm " KVMM_VERSION "\"}, "
			       "\"capabilities\": []}}");
	free(line);
	cr_assert_eq(stat(sock_path, &st), 0);
	cr_expect(S_ISSOCK(st.st_mode));
	cr_expect_eq(st.st_mode & 0777, 0600);
	tc_close(t);
}

Test(qmp, negotiation_state, .timeout = 10)
{
	struct tc *t = tc_new(false);
	const char *expecting = "Expecting capabilities negotiation with 'qmp_capabilities'";

	cmd_error(t, "{\"execute\": \"query-version\"}", "CommandNotFound", expecting);
	cmd_error(t, "{\"execute\": \"no-such\"}", "CommandNotFound", expecting);
	/* Malformed requests are refused as such even before negotiation. */
	cmd_error(t, "{\"arguments\": {}}", "GenericError", "QMP input lacks member 'execute'");
	cmd_error(t, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
		  "GenericError", "Capability 'oob' not available");
	cmd_error(t, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"x\"]}}",
		  "GenericError", "Parameter 'enable[0]' does not accept value 'x'");
	cmd_error(t, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"foo\": 1}}",
		  "GenericError", "Parameter 'foo' is unexpected");
	expect_json(tc_cmd(t, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": []}}"),
		    "{\"return\": {}}");
	cmd_error(t, "{\"execute\": \"qmp_capabilities\"}", "CommandNotFound",
		  "Capabilities negotiation is already complete, command ignored");
	expect_json(tc_cmd(t, "{\"execute\": \"query-version\"}"),
		    "{\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 8},"
		    " \"package\": \"kvmm " KVMM_VERSION "\"}}");
	tc_close(t);
}

Test(qmp, request_shape_errors, .timeout = 10)
{
	struct tc *t = tc_new(true);
	const char *not_obj = "QMP input must be a JSON object";

	cmd_error(t, "[1, 2]", "GenericError", not_obj);
	cmd_error(t, "42 ", "GenericError", not_obj);
	cmd_error(t, "\"query-version\"", "GenericError", not_obj);
	cmd_error(t, "{}", "GenericError", "QMP input lacks member 'execute'");
	cmd_error(t, "{\"execute\": \"query-version\", \"foo\": 1}", "GenericError",
		  "QMP input member 'foo' is unexpected");
	cmd_error(t, "{\"execute\": \"query-version\", \"arguments\": [1]}", "GenericError",
		  "QMP input member 'arguments' must be an object");
	cmd_error(t, "{\"execute\": 7}", "GenericError", "QMP input member 'execute' must be a string");
	cmd_error(t, "{\"execute\": \"no-such\"}", "CommandNotFound",
		  "The command no-such has not been found");
	cmd_error(t, "{\"exec-oob\": \"query-version\"}", "GenericError",
		  "The command query-version does not support OOB");
	expect_error(tc_cmd(t, "{ \"execute\": }"), "GenericError", NULL);
	{
		json_t *r = tc_cmd(t, "{\"execute\" \"x\"}");
		const char *desc = json_string_value(
			json_object_get(json_object_get(r, "error"), "desc"));

		cr_assert_not_null(desc);
		cr_expect_eq(strncmp(desc, "JSON parse error, ", 18), 0, "%s", desc);
		expect_error(r, "GenericError", NULL);
	}
	/* Still in business. */
	expect_json(tc_cmd(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 1}}"),
		    "{\"return\": {\"value\": 1}}");
	tc_close(t);
}

Test(qmp, id_is_echoed, .timeout = 10)
{
	struct tc *t = tc_new(false);

	expect_json(tc_cmd(t, "{\"execute\": \"qmp_capabilities\", \"id\": 1}"),
		    "{\"return\": {}, \"id\": 1}");
	expect_json(tc_cmd(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 5}, "
			      "\"id\": \"abc\"}"),
		    "{\"return\": {\"value\": 5}, \"id\": \"abc\"}");
	expect_json(tc_cmd(t, "{\"id\": {\"a\": [1, null]}, \"execute\": \"no-such\"}"),
		    "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command no-such has"
		    " not been found\"}, \"id\": {\"a\": [1, null]}}");
	expect_json(tc_cmd(t, "{\"execute\": \"test-echo\", \"id\": null}"),
		    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'value' is "
		    "missing\"}, \"id\": null}");
	expect_json(tc_cmd(t, "{\"execute\": \"x\", \"bogus\": 1, \"id\": 2.5}"),
		    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member "
		    "'bogus' is unexpected\"}, \"id\": 2.5}");
	tc_close(t);
}

Test(qmp, argument_checks, .timeout = 10)
{
	struct tc *t = tc_new(true);

	cmd_error(t, "{\"execute\": \"test-echo\"}", "GenericError", "Parameter 'value' is missing");
	cmd_error(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": \"1\"}}", "GenericError",
		  "Invalid parameter type for 'value', expected: integer");
	cmd_error(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 1.5}}", "GenericError",
		  "Invalid parameter type for 'value', expected: integer");
	cmd_error(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 1, \"flag\": 1}}",
		  "GenericError", "Invalid parameter type for 'flag', expected: boolean");
	cmd_error(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 1, \"text\": 2}}",
		  "GenericError", "Invalid parameter type for 'text', expected: string");
	cmd_error(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 1, \"foo\": 2}}",
		  "GenericError", "Parameter 'foo' is unexpected");
	/* Declared members are checked before leftovers, as QEMU's visitor does. */
	cmd_error(t, "{\"execute\": \"test-echo\", \"arguments\": {\"foo\": 2}}", "GenericError",
		  "Parameter 'value' is missing");
	cmd_error(t, "{\"execute\": \"query-version\", \"arguments\": {\"x\": 1}}", "GenericError",
		  "Parameter 'x' is unexpected");
	expect_json(tc_cmd(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": -3, "
			      "\"text\": \"hi\", \"flag\": true}}"),
		    "{\"return\": {\"value\": -3, \"text\": \"hi\", \"flag\": true}}");
	expect_json(tc_cmd(t, "{\"execute\": \"query-version\", \"arguments\": {}}"),
		    "{\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 8},"
		    " \"package\": \"kvmm " KVMM_VERSION "\"}}");
	tc_close(t);
}

Test(qmp, handler_errors, .timeout = 10)
{
	struct tc *t = tc_new(true);
	char want[128];

	cmd_error(t, "{\"execute\": \"test-fail\"}", "DeviceNotActive",
		  "No balloon device has been activated");
	snprintf(want, sizeof(want), "%s", strerror(EIO));
	cmd_error(t, "{\"execute\": \"test-errno\"}", "GenericError", want);
	tc_close(t);
}

Test(qmp, query_commands_lists_every_command, .timeout = 10)
{
	struct tc *t = tc_new(true);

	expect_json(tc_cmd(t, "{\"execute\": \"query-commands\"}"),
		    "{\"return\": [{\"name\": \"qmp_capabilities\"}, {\"name\": \"query-commands\"},"
		    " {\"name\": \"query-version\"}, {\"name\": \"test-echo\"},"
		    " {\"name\": \"test-fail\"}, {\"name\": \"test-errno\"},"
		    " {\"name\": \"test-raise\"}]}");
	tc_close(t);
}

Test(qmp, register_refuses_duplicates, .timeout = 10)
{
	static const struct qmp_command dup[] = { { "query-version", cmd_errno, NULL }, { NULL } };
	static const struct qmp_command twice[] = {
		{ "x-a", cmd_errno, NULL }, { "x-a", cmd_errno, NULL }, { NULL }
	};

	/* Registration belongs to the loop thread; the loop is idle here and nothing else races. */
	cr_expect_eq(qmp_server_register(srv, dup, NULL), -EEXIST);
	cr_expect_eq(qmp_server_register(srv, twice, NULL), -EEXIST);
}

Test(qmp, framing_split_reads, .timeout = 10)
{
	struct tc *t = tc_new(true);
	const char *req = "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 7, "
			  "\"text\": \"a}b{c\\\"]\"}, \"id\": \"split\"}";

	for (const char *p = req; *p; p++) {
		tc_send_raw(t, p, 1);
		usleep(1000);
	}
	expect_json(tc_read(t), "{\"return\": {\"value\": 7, \"text\": \"a}b{c\\\"]\"}, "
				"\"id\": \"split\"}");
	tc_close(t);
}

Test(qmp, framing_several_in_one_write_and_whitespace, .timeout = 10)
{
	struct tc *t = tc_new(true);

	tc_send(t, "\r\n  {\"execute\": \"test-echo\", \"arguments\": {\"value\": 1}, \"id\": 1}"
		   "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 2}, \"id\": 2}\n\t"
		   "{ \"execute\" :\n \"test-echo\" ,\"arguments\":{\"value\":3},\"id\":3 }  \n");
	expect_json(tc_read(t), "{\"return\": {\"value\": 1}, \"id\": 1}");
	expect_json(tc_read(t), "{\"return\": {\"value\": 2}, \"id\": 2}");
	expect_json(tc_read(t), "{\"return\": {\"value\": 3}, \"id\": 3}");
	tc_close(t);
}

Test(qmp, framing_single_quotes, .timeout = 10)
{
	struct tc *t = tc_new(true);

	/* qmp-spec: 'single-quoted' strings and the \' escape are accepted on input. */
	expect_json(tc_cmd(t, "{'execute': 'test-echo', 'arguments': {'value': 4, "
			      "'text': 'it\\'s \"q\"'}}"),
		    "{\"return\": {\"value\": 4, \"text\": \"it's \\\"q\\\"\"}}");
	tc_close(t);
}

Test(qmp, lexical_error_resets_parser, .timeout = 10)
{
	struct tc *t = tc_new(true);

	tc_send(t, "{\"execute\": \"test-echo\", \"argu");
	usleep(20000);
	tc_send_raw(t, "\xff", 1);
	expect_error(tc_read(t), "GenericError", "JSON parse error, stray byte 0xff");
	expect_json(tc_cmd(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 8}}"),
		    "{\"return\": {\"value\": 8}}");
	tc_close(t);
}

Test(qmp, oversized_message_is_refused_then_input_resumes, .timeout = 10)
{
	struct tc *t = tc_new(true);
	size_t n = 100 << 10;
	char *big = malloc(n + 128);
	int len;

	cr_assert_not_null(big);
	len = sprintf(big, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 1, \"text\": \"");
	memset(big + len, 'x', n);
	strcpy(big + len + n, "{[\"}, \"id\": 99}");
	tc_send(t, big);
	expect_error(tc_read(t), "GenericError", "JSON token size limit exceeded");
	/* The rest of the refused object is dropped, braces in its string included. */
	expect_json(tc_cmd(t, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 2}}"),
		    "{\"return\": {\"value\": 2}}");
	/* Just under the limit is fine. */
	len = sprintf(big, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 1, \"text\": \"");
	memset(big + len, 'y', (60 << 10));
	strcpy(big + len + (60 << 10), "\"}}");
	tc_send(t, big);
	{
		json_t *r = tc_read(t);

		cr_expect_eq(strlen(json_string_value(
				     json_object_get(json_object_get(r, "return"), "text"))),
			     (size_t)(60 << 10));
		json_decref(r);
	}
	free(big);
	tc_close(t);
}

static void expect_event(json_t *ev, const char *name, const char *data)
{
	json_t *ts = json_object_get(ev, "timestamp");
	json_int_t sec = json_integer_value(json_object_get(ts, "seconds"));
	json_int_t usec = json_integer_value(json_object_get(ts, "microseconds"));
	json_t *want = data ? json_loads(data, 0, NULL) : NULL;

	cr_assert_str_eq(json_string_value(json_object_get(ev, "event")), name);
	cr_expect_leq(llabs((long long)sec - (long long)time(NULL)), 5);
	cr_expect(usec >= 0 && usec < 1000000);
	cr_expect_eq(json_object_size(ev), data ? 3u : 2u);
	if (data)
		cr_expect(json_equal(json_object_get(ev, "data"), want));
	json_decref(want);
	json_decref(ev);
}

static void *raise_events(void *arg)
{
	json_t *data = json_pack("{s:i}", "actual", 1 << 30);

	for (int i = 0; i < 50; i++)
		cr_assert_eq(qmp_server_event(srv, "BALLOON_CHANGE", data), 0);
	json_decref(data);
	return NULL;
}

Test(qmp, events_reach_only_negotiated_clients, .timeout = 10)
{
	struct tc *a = tc_new(true), *b = tc_new(false);
	pthread_t thr;

	cr_assert_eq(pthread_create(&thr, NULL, raise_events, NULL), 0);
	pthread_join(thr, NULL);
	for (int i = 0; i < 50; i++)
		expect_event(tc_read(a), "BALLOON_CHANGE", "{\"actual\": 1073741824}");
	/* b's next message is the reply to this, not an event. */
	cmd_error(b, "{\"execute\": \"query-version\"}", "CommandNotFound", NULL);
	/* Once negotiated, b gets events too. */
	expect_json(tc_cmd(b, "{\"execute\": \"qmp_capabilities\"}"), "{\"return\": {}}");
	cr_assert_eq(qmp_server_event(srv, "STOP", NULL), 0);
	expect_event(tc_read(a), "STOP", NULL);
	expect_event(tc_read(b), "STOP", NULL);
	{
		json_t *bad = json_integer(1);

		cr_expect_eq(qmp_server_event(srv, "BAD", bad), -EINVAL);
		json_decref(bad);
	}
	tc_close(a);
	tc_close(b);
}

Test(qmp, event_raised_by_a_handler_follows_its_reply, .timeout = 10)
{
	struct tc *t = tc_new(true);

	expect_json(tc_cmd(t, "{\"execute\": \"test-raise\", \"id\": 1}"), "{\"return\": {}, \"id\": 1}");
	expect_event(tc_read(t), "TEST_RAISED", NULL);
	tc_close(t);
}

Test(qmp, several_clients_interleaved, .timeout = 10)
{
	struct tc *t[5];
	char req[128], want[128];

	for (int i = 0; i < 5; i++)
		t[i] = tc_new(true);
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 5; i++) {
			snprintf(req, sizeof(req), "{\"execute\": \"test-echo\", \"arguments\": "
						   "{\"value\": %d}, \"id\": %d}", round * 10 + i, i);
			tc_send(t[i], req);
		}
		for (int i = 4; i >= 0; i--) {
			snprintf(want, sizeof(want), "{\"return\": {\"value\": %d}, \"id\": %d}",
				 round * 10 + i, i);
			expect_json(tc_read(t[i]), want);
		}
	}
	for (int i = 0; i < 5; i++)
		tc_close(t[i]);
}

Test(qmp, add_client_on_a_socketpair, .timeout = 10)
{
	int sv[2];
	struct tc *t = calloc(1, sizeof(*t));

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	/* Adding clients belongs to the loop thread: stop it around the call. */
	loop_runner_halt(&lr);
	cr_assert_eq(qmp_server_add_client(srv, sv[0]), 0);
	loop_runner_go(&lr);
	t->fd = sv[1];
	json_decref(tc_read(t));
	expect_json(tc_cmd(t, "{\"execute\": \"qmp_capabilities\", \"id\": \"sp\"}"),
		    "{\"return\": {}, \"id\": \"sp\"}");
	tc_close(t);
}

TestSuite(qmp_small, .init = setup_small, .fini = teardown, .timeout = 10);

/* A client that never reads is dropped at its output limit; the others see every event. */
Test(qmp_small, stuck_client_is_dropped_others_unaffected, .timeout = 10)
{
	struct tc *stuck = tc_new(true), *good = tc_new(true);
	json_t *data = json_pack("{s:s}", "pad", "0123456789abcdef0123456789abcdef0123456789abcdef"
						"0123456789abcdef0123456789abcdef0123456789abcdef"
						"0123456789abcdef0123456789abcdef0123456789abcdef");
	char *want = json_dumps(data, 0);
	int rcv = 4096, got_eof = 0;
	char buf[4096];

	/* Keep the stuck client's socket buffers small so the server's queue fills quickly. */
	setsockopt(stuck->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	for (int round = 0; round < 400; round++) {
		for (int i = 0; i < 10; i++)
			cr_assert_eq(qmp_server_event(srv, "TEST", data), 0);
		for (int i = 0; i < 10; i++)
			expect_event(tc_read(good), "TEST", want);
	}
	json_decref(data);
	free(want);
	/* Everything queued for the stuck client was dropped with it: its stream ends. */
	for (int i = 0; i < 2000 && !got_eof; i++) {
		struct pollfd pfd = { .fd = stuck->fd, .events = POLLIN };
		ssize_t n;

		cr_assert_gt(poll(&pfd, 1, 5000), 0, "stuck client never disconnected");
		n = recv(stuck->fd, buf, sizeof(buf), 0);
		got_eof = n == 0 || (n < 0 && errno == ECONNRESET);
	}
	cr_expect(got_eof);
	expect_json(tc_cmd(good, "{\"execute\": \"test-echo\", \"arguments\": {\"value\": 1}}"),
		    "{\"return\": {\"value\": 1}}");
	tc_close(stuck);
	tc_close(good);
}

/* With max_clients 3, hung-up clients must be freed for new ones to get in. */
Test(qmp_small, hangups_free_their_slots, .timeout = 10)
{
	for (int i = 0; i < 12; i++) {
		struct tc *t = NULL;
		char *line = NULL;

		/* The server sees the previous hang-up asynchronously: retry briefly. */
		for (int tries = 0; tries < 200 && !line; tries++) {
			if (t)
				tc_close(t);
			t = tc_open();
			line = tc_line(t, 2000);
			if (!line)
				usleep(5000);
		}
		cr_assert_not_null(line, "connection %d refused", i);
		free(line);
		if (i % 2)
			tc_send(t, "{\"execute\": \"qmp_capabilities\"}{\"exec");
		tc_close(t);
	}
}

Test(qmp_small, client_library, .timeout = 10)
{
	struct qmp_client *c;
	json_t *reply, *args = json_pack("{s:i}", "value", 42);

	cr_assert_eq(qmp_client_connect(sock_path, 3000, &c), 0);
	cr_expect_not_null(json_object_get(qmp_client_greeting(c), "QMP"));
	/* An event queued before the command is skipped. */
	cr_assert_eq(qmp_server_event(srv, "STOP", NULL), 0);
	cr_assert_eq(qmp_client_execute(c, "test-echo", args, 3000, &reply), 0);
	expect_json(reply, "{\"return\": {\"value\": 42}, \"id\": \"kvmm-2\"}");
	cr_assert_eq(qmp_client_execute(c, "test-fail", NULL, 3000, &reply), 0);
	expect_error(reply, "DeviceNotActive", NULL);
	cr_assert_eq(qmp_client_execute(c, "test-raise", NULL, 3000, &reply), 0);
	expect_json(reply, "{\"return\": {}, \"id\": \"kvmm-4\"}");
	cr_assert_eq(qmp_client_execute(c, "test-echo", args, 3000, &reply), 0);
	expect_json(reply, "{\"return\": {\"value\": 42}, \"id\": \"kvmm-5\"}");
	json_decref(args);
	qmp_client_close(c);
}

Test(qmp_small, client_library_timeouts_and_refusals, .timeout = 10)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char path[160];
	struct qmp_client *c;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* A listener that never greets. */
	snprintf(path, sizeof(path), "%s/silent.sock", dir);
	strcpy(addr.sun_path, path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	cr_assert_eq(listen(fd, 4), 0);
	cr_expect_eq(qmp_client_connect(path, 200, &c), -ETIMEDOUT);
	close(fd);
	/* Now nobody listens there. */
	cr_expect_eq(qmp_client_connect(path, 200, &c), -ECONNREFUSED);
	unlink(path);
	cr_expect_eq(qmp_client_connect(path, 200, &c), -ENOENT);
}

Test(qmp_small, create_replaces_stale_socket_only, .timeout = 10)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct qmp_server *s2;
	char path[160];
	int fd;

	/* A server already answers at sock_path. */
	cr_expect_eq(qmp_server_create(lr.lp, sock_path, NULL, &s2), -EADDRINUSE);
	/* A regular file is never replaced. */
	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_expect_eq(qmp_server_create(lr.lp, path, NULL, &s2), -EEXIST);
	unlink(path);
	/* A socket left behind by a dead process is. Only this thread touches lr.lp here: the other
	 * server's loop is idle, and this one is destroyed before anything runs on it. */
	snprintf(path, sizeof(path), "%s/stale.sock", dir);
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
	{
		struct loop *l2;

		cr_assert_eq(loop_create(&l2), 0);
		cr_assert_eq(qmp_server_create(l2, path, NULL, &s2), 0);
		qmp_server_destroy(s2);
		loop_destroy(l2);
	}
	cr_expect_eq(access(path, F_OK), -1);
}

/* ---- the framer alone ---- */

struct frames {
	int n;
	char msg[8][128];
};

static bool collect(void *opaque, const char *msg, size_t len, const char *error)
{
	struct frames *f = opaque;

	cr_assert_lt(f->n, 8);
	if (msg)
		snprintf(f->msg[f->n++], 128, "%.*s", (int)len, msg);
	else
		snprintf(f->msg[f->n++], 128, "ERR %s", error);
	return true;
}

Test(qmp_framer, literals_need_a_delimiter, .timeout = 10)
{
	struct qmp_framer fr;
	struct frames got = { 0 };

	qmp_framer_init(&fr, 64);
	qmp_framer_feed(&fr, "12", 2, collect, &got);
	cr_expect_eq(got.n, 0);
	qmp_framer_feed(&fr, "3{\"a\":[1]} true\n}", strlen("3{\"a\":[1]} true\n}"), collect, &got);
	cr_assert_eq(got.n, 4);
	cr_expect_str_eq(got.msg[0], "123");
	cr_expect_str_eq(got.msg[1], "{\"a\":[1]}");
	cr_expect_str_eq(got.msg[2], "true");
	cr_expect_str_eq(got.msg[3], "}");
	qmp_framer_destroy(&fr);
}

Test(qmp_framer, limits_and_resync, .timeout = 10)
{
	struct qmp_framer fr;
	struct frames got = { 0 };
	char deep[1100];

	qmp_framer_init(&fr, 16);
	const char *in = "{\"aaaaaaaaaaaaaaaaaaaa\": 1}{}";

	qmp_framer_feed(&fr, in, strlen(in), collect, &got);
	cr_assert_eq(got.n, 2);
	cr_expect_str_eq(got.msg[0], "ERR JSON token size limit exceeded");
	cr_expect_str_eq(got.msg[1], "{}");
	qmp_framer_destroy(&fr);

	got.n = 0;
	qmp_framer_init(&fr, 4096);
	memset(deep, '[', sizeof(deep));
	qmp_framer_feed(&fr, deep, sizeof(deep), collect, &got);
	cr_assert_eq(got.n, 1);
	cr_expect_str_eq(got.msg[0], "ERR JSON nesting depth limit exceeded");
	/* The refused text is dropped up to its end, then framing resumes. */
	memset(deep, ']', sizeof(deep));
	qmp_framer_feed(&fr, deep, sizeof(deep), collect, &got);
	qmp_framer_feed(&fr, "[]", 2, collect, &got);
	cr_assert_eq(got.n, 2);
	cr_expect_str_eq(got.msg[1], "[]");
	qmp_framer_feed(&fr, "[\x01[1]", 5, collect, &got);
	cr_assert_eq(got.n, 4);
	cr_expect_str_eq(got.msg[2], "ERR JSON parse error, stray byte 0x01");
	cr_expect_str_eq(got.msg[3], "[1]");
	qmp_framer_destroy(&fr);
}
