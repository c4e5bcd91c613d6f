/* hostd's wire protocol (src/sched/proto.c): every message round-trips through its formatter and
 * parser, malformed lines give a clear error and never a crash, and the line framer refuses
 * over-long lines. */
#include <kvmm/hostd.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[256];

static const struct hostd_vm_info vm1 = {
	.name = "web", .salt = "vm", .pid = 4242, .size = 512ull << 20, .reservation = 128ull << 20,
	.limit = 384ull << 20, .shares = 5120, .overhead = 21ull << 20,
};

static int req(const char *line, struct hostd_request *q)
{
	err[0] = '\0';
	return hostd_parse_request(line, strlen(line), q, err, sizeof(err));
}

static void refused(const char *line, const char *why)
{
	struct hostd_request q;

	cr_assert_eq(req(line, &q), -EINVAL, "accepted: %s", line);
	cr_assert(strstr(err, why), "'%s': error '%s' does not mention '%s'", line, err, why);
}

Test(hostd_proto, register_round_trip, .timeout = 10)
{
	struct hostd_request q;
	size_t len;
	char *line = hostd_fmt_register(&vm1, &len);

	cr_assert_not_null(line);
	cr_assert_eq(line[len - 1], '\n');
	cr_assert_eq(strlen(line), len);
	cr_assert_eq(hostd_parse_request(line, len - 1, &q, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(q.kind, HOSTD_REQ_REGISTER);
	cr_assert_eq(memcmp(&q.u.reg, &vm1, sizeof(vm1)), 0);
	free(line);
}

Test(hostd_proto, report_and_control_round_trip, .timeout = 10)
{
	struct hostd_report r = { 1, 2, 3, 4, 5, (uint64_t)INT64_MAX };
	struct hostd_request q;
	size_t len;
	char *line = hostd_fmt_report(&r, &len);

	cr_assert_eq(hostd_parse_request(line, len, &q, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(q.kind, HOSTD_REQ_REPORT);
	cr_assert_eq(memcmp(&q.u.report, &r, sizeof(r)), 0);
	free(line);

	line = hostd_fmt_set_vm("web", HOSTD_SET_LIMIT | HOSTD_SET_SHARES, 0, 1 << 30, 77, &len);
	cr_assert_eq(hostd_parse_request(line, len, &q, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(q.kind, HOSTD_REQ_SET_VM);
	cr_assert_str_eq(q.u.set_vm.name, "web");
	cr_assert_eq(q.u.set_vm.set, HOSTD_SET_LIMIT | HOSTD_SET_SHARES);
	cr_assert_eq(q.u.set_vm.limit, 1 << 30);
	cr_assert_eq(q.u.set_vm.shares, 77);
	free(line);

	/* What a VM's QMP sends: a reservation alone (a raised one is admission-checked). */
	line = hostd_fmt_set_vm("web", HOSTD_SET_RESERVATION, 1 << 28, 0, 0, &len);
	cr_assert_eq(hostd_parse_request(line, len, &q, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(q.u.set_vm.set, HOSTD_SET_RESERVATION);
	cr_assert_eq(q.u.set_vm.reservation, 1 << 28);
	cr_assert_null(strstr(line, "limit"), "only what is set is sent: %s", line);
	free(line);

	line = hostd_fmt_set_host(60, &len);
	cr_assert_eq(hostd_parse_request(line, len, &q, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(q.kind, HOSTD_REQ_SET_HOST);
	cr_assert_eq(q.u.set_host.tax_pct, 60);
	free(line);

	line = hostd_fmt_query_vms(&len);
	cr_assert_eq(hostd_parse_request(line, len, &q, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(q.kind, HOSTD_REQ_QUERY_VMS);
	free(line);
	cr_assert_eq(req("{\"execute\":\"query-vms\"}", &q), 0, "arguments may be left out: %s", err);
}

Test(hostd_proto, replies_round_trip, .timeout = 10)
{
	struct hostd_target t = { .target = 300ull << 20, .reservation = 1 << 20, .limit = 400ull << 20,
				  .techniques = POLICY_TECH_SHARE | POLICY_TECH_SWAP, .state = POLICY_HARD };
	struct hostd_reply r;
	size_t len;
	char *line = hostd_fmt_target(&t, &len);

	cr_assert_eq(hostd_parse_reply(line, len, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.kind, HOSTD_REPLY_TARGET);
	cr_assert_eq(memcmp(&r.target, &t, sizeof(t)), 0);
	free(line);

	line = hostd_fmt_return_register(250, &len);
	cr_assert_eq(hostd_parse_reply(line, len, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.kind, HOSTD_REPLY_RETURN);
	cr_assert_eq(r.period_ms, 250);
	free(line);

	line = hostd_fmt_error("AdmissionRefused", "does not fit", &len);
	cr_assert_eq(hostd_parse_reply(line, len, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR);
	cr_assert_str_eq(r.err_class, "AdmissionRefused");
	cr_assert_str_eq(r.err_desc, "does not fit");
	free(line);
}

Test(hostd_proto, view_round_trip, .timeout = 10)
{
	struct hostd_vm_view vms[2] = {
		{ .info = vm1, .report = { 10, 20, 30, 40, 50, 60 }, .target = 99, .lagging = true,
		  .reported = true },
		{ .info = vm1, .target = 7 },
	};
	struct hostd_view v = {
		.host = { .capacity = 1 << 30, .total = 2ull << 30, .free = 3 << 20, .minfree = 4 << 20,
			  .tax_pct = 75, .techniques = POLICY_TECH_SHARE | POLICY_TECH_BALLOON,
			  .state = POLICY_SOFT },
		.vms = vms, .n = 2,
	}, back;
	size_t len;
	char *line, *frame;

	strcpy(vms[1].info.name, "db");
	line = hostd_fmt_view(&v, &len);
	cr_assert_not_null(line);
	cr_assert_eq(hostd_parse_view(line, len, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert(back.host.capacity == v.host.capacity && back.host.total == v.host.total &&
		  back.host.free == v.host.free && back.host.minfree == v.host.minfree &&
		  back.host.tax_pct == 75 && back.host.techniques == v.host.techniques &&
		  back.host.state == POLICY_SOFT);
	cr_assert_eq(back.n, 2);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(memcmp(&back.vms[i].info, &vms[i].info, sizeof(vms[i].info)), 0);
		cr_assert_eq(memcmp(&back.vms[i].report, &vms[i].report, sizeof(vms[i].report)), 0);
		cr_assert(back.vms[i].target == vms[i].target && back.vms[i].lagging == vms[i].lagging &&
			  back.vms[i].reported == vms[i].reported);
	}
	frame = top_format(&back);
	cr_assert(strstr(frame, "state soft"), "%s", frame);
	cr_assert(strstr(frame, "lagging"), "%s", frame);
	cr_assert(strstr(frame, "db "), "%s", frame);
	free(frame);
	hostd_view_free(&back);
	free(line);

	const char *e = "{\"error\":{\"class\":\"X\",\"desc\":\"nope\"}}";
	cr_assert_eq(hostd_parse_view(e, strlen(e), &back, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "nope"), "%s", err);
	cr_assert_eq(hostd_parse_view("{\"return\":{}}", 13, &back, err, sizeof(err)), -EINVAL);
}

Test(hostd_proto, malformed_requests, .timeout = 10)
{
	refused("", "JSON parse error");
	refused("{", "JSON parse error");
	refused("[1,2]", "JSON object");
	refused("{\"execute\":1}", "'execute'");
	refused("{\"arguments\":{}}", "'execute'");
	refused("{\"execute\":\"reboot-host\"}", "unknown command");
	refused("{\"execute\":\"query-vms\",\"arguments\":[]}", "'arguments' must be an object");
	refused("{\"execute\":\"query-vms\",\"id\":1}", "unknown member 'id'");
	refused("{\"execute\":\"query-vms\",\"arguments\":{\"x\":1}}", "unknown member 'x'");
	refused("{\"execute\":\"query-vms\",\"execute\":\"query-vms\"}", "JSON parse error");
	refused("{\"execute\":\"register\",\"arguments\":{}}", "'name' is missing");
	refused("{\"execute\":\"register\",\"arguments\":{\"name\":\"\",\"pid\":1}}", "must not be empty");
	refused("{\"execute\":\"register\",\"arguments\":{\"name\":\"a\\u0000b\",\"pid\":1}}", "JSON parse error");
	refused("{\"execute\":\"register\",\"arguments\":{\"name\":\"a\",\"pid\":-1}}", "'pid'");
	refused("{\"execute\":\"register\",\"arguments\":{\"name\":\"a\",\"pid\":1,\"size\":\"1G\"}}",
		"'size' must be an integer");
	refused("{\"execute\":\"register\",\"arguments\":{\"name\":\"a\",\"pid\":1,\"size\":1.5}}",
		"'size' must be an integer");
	refused("{\"execute\":\"register\",\"arguments\":{\"name\":\"a\",\"pid\":1,\"size\":4096,"
		"\"reservation\":4096,\"limit\":8192,\"shares\":1,\"overhead\":0}}", "reservation <= limit <= size");
	refused("{\"execute\":\"register\",\"arguments\":{\"name\":\"a\",\"pid\":1,\"size\":8192,"
		"\"reservation\":4096,\"limit\":8192,\"shares\":1,\"overhead\":0,\"salt\":7}}", "'salt'");
	refused("{\"execute\":\"report\",\"arguments\":{\"consumed\":1}}", "'active' is missing");
	refused("{\"execute\":\"set-vm\",\"arguments\":{\"name\":\"a\"}}", "give reservation");
	refused("{\"execute\":\"set-vm\",\"arguments\":{\"name\":\"a\",\"shares\":-5}}", "'shares'");
	refused("{\"execute\":\"set-host\",\"arguments\":{\"tax\":100}}", "'tax' must be an integer from 0 to 99");
	refused("{\"execute\":\"set-host\",\"arguments\":{}}", "'tax' is missing");

	char name[HOSTD_NAME_MAX + 80];
	memset(name, 'x', sizeof(name));
	snprintf(name, sizeof(name), "{\"execute\":\"register\",\"arguments\":{\"name\":\"%0*d\"}}",
		 HOSTD_NAME_MAX, 0);
	refused(name, "at most 63 bytes");

	char *big = malloc(HOSTD_LINE_MAX + 2);
	memset(big, ' ', HOSTD_LINE_MAX + 1);
	big[0] = '{';
	big[HOSTD_LINE_MAX] = '}';
	big[HOSTD_LINE_MAX + 1] = '\0';
	refused(big, "longer than");
	free(big);
}

Test(hostd_proto, malformed_replies, .timeout = 10)
{
	static const char *const bad[] = {
		"{}", "{\"return\":1}", "{\"error\":{\"class\":\"X\"}}", "{\"error\":\"x\"}",
		"{\"event\":\"REBOOT\"}", "{\"event\":\"TARGET\"}", "{\"event\":\"TARGET\",\"data\":{}}",
		"{\"event\":\"TARGET\",\"data\":{\"target\":1,\"reservation\":0,\"limit\":1,"
		"\"techniques\":[\"teleport\"],\"state\":\"high\"}}",
		"{\"event\":\"TARGET\",\"data\":{\"target\":1,\"reservation\":0,\"limit\":1,"
		"\"techniques\":[],\"state\":\"tepid\"}}",
		"{\"event\":\"TARGET\",\"data\":{\"target\":1,\"reservation\":2,\"limit\":1,"
		"\"techniques\":[],\"state\":\"low\"}}",
		"{\"return\":{\"period-ms\":-1}}",
	};
	struct hostd_reply r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(hostd_parse_reply(bad[i], strlen(bad[i]), &r, err, sizeof(err)), -EINVAL,
			     "accepted %s", bad[i]);
		cr_assert(err[0], "no reason for %s", bad[i]);
	}
}

/* Every prefix, and every one-byte corruption, of valid lines: parsed or refused, never a crash
 * (ASan and UBSan watch). */
Test(hostd_proto, truncations_and_corruptions, .timeout = 30)
{
	struct hostd_target t = { 1, 0, 1, POLICY_TECH_SWAP, POLICY_LOW };
	size_t len[2];
	char *lines[2] = { hostd_fmt_register(&vm1, &len[0]), hostd_fmt_target(&t, &len[1]) };
	static const char subst[] = "\"{}[],:0-x\\\x01\xff";

	for (int k = 0; k < 2; k++) {
		char *copy = malloc(len[k]);

		for (size_t n = 0; n < len[k]; n++) {
			struct hostd_request q;
			struct hostd_reply r;
			struct hostd_view v;

			hostd_parse_request(lines[k], n, &q, err, sizeof(err));
			hostd_parse_reply(lines[k], n, &r, err, sizeof(err));
			for (size_t s = 0; s < sizeof(subst) - 1; s++) {
				memcpy(copy, lines[k], len[k]);
				copy[n] = subst[s];
				hostd_parse_request(copy, len[k] - 1, &q, err, sizeof(err));
				hostd_parse_reply(copy, len[k] - 1, &r, err, sizeof(err));
				if (hostd_parse_view(copy, len[k] - 1, &v, err, sizeof(err)) == 0)
					hostd_view_free(&v);
			}
		}
		free(copy);
		free(lines[k]);
	}
}

struct collected {
	int lines, refused;
	char last[64];
};

static void collect(void *opaque, const char *line, size_t len)
{
	struct collected *c = opaque;

	if (!line) {
		c->refused++;
		return;
	}
	c->lines++;
	cr_assert_eq(strlen(line), len);
	snprintf(c->last, sizeof(c->last), "%s", line);
}

Test(hostd_proto, line_framer, .timeout = 10)
{
	struct hostd_lines l;
	struct collected c = { 0 };
	char big[100];

	cr_assert_eq(hostd_lines_init(&l, 16), 0);
	hostd_lines_feed(&l, "{\"a\"", 4, collect, &c);
	cr_assert_eq(c.lines, 0);
	hostd_lines_feed(&l, ":1}\r\n\n{}\n", 10, collect, &c);
	cr_assert_eq(c.lines, 2, "empty lines are skipped, CR is dropped");
	cr_assert_str_eq(c.last, "{}");
	memset(big, 'z', sizeof(big));
	hostd_lines_feed(&l, big, sizeof(big), collect, &c);
	hostd_lines_feed(&l, big, sizeof(big), collect, &c);
	cr_assert_eq(c.refused, 1, "an over-long line is refused once");
	hostd_lines_feed(&l, "\nok\n", 4, collect, &c);
	cr_assert_eq(c.lines, 3);
	cr_assert_str_eq(c.last, "ok", "the line after it is read normally");
	hostd_lines_destroy(&l);
}
