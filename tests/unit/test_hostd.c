/* hostd's state machine without any VM: a real hostd on a unix socket in a temp dir, its loop in a
 * thread, fake VMs that speak the protocol (kvmm/hostd.h), and a meminfo file the test writes. */
#include <kvmm/hostd.h>
#include <kvmm/loop.h>

#include "looprunner.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MIB (1ull << 20)

static struct loop_runner lr;
static struct hostd *hd;
static char dir[64], sock_path[128], meminfo[128];

static void write_meminfo(uint64_t total_mib, uint64_t avail_mib)
{
	char tmp[160];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", meminfo);
	f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fprintf(f, "MemTotal:       %llu kB\nMemFree:        1 kB\nMemAvailable:   %llu kB\n",
		(unsigned long long)total_mib * 1024, (unsigned long long)avail_mib * 1024);
	fclose(f);
	cr_assert_eq(rename(tmp, meminfo), 0);
}

static void start(uint64_t capacity_mib, unsigned lag_periods)
{
	struct hostd_opts o;

	hostd_opts_default(&o);
	o.socket = sock_path;
	o.meminfo = meminfo;
	o.capacity = capacity_mib * MIB;
	o.minfree = 100 * MIB;
	o.period_ms = 50;
	o.lag_periods = lag_periods;
	cr_assert_eq(hostd_create(&hd, lr.lp, &o), 0);
}

static void setup(void)
{
	strcpy(dir, "/tmp/kvmm-hostd-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/hostd.sock", dir);
	snprintf(meminfo, sizeof(meminfo), "%s/meminfo", dir);
	write_meminfo(8192, 6000); /* far above 400% of minFree: high */
	loop_runner_init(&lr);
}

static void teardown(void)
{
	loop_runner_halt(&lr);
	hostd_destroy(hd);
	loop_runner_free(&lr);
	unlink(meminfo);
	rmdir(dir);
}

/* ---- a fake VM or control client ---- */

struct peer {
	int fd;
	char buf[1 << 16];
	size_t len;
};

static void peer_open(struct peer *p)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	strcpy(a.sun_path, sock_path);
	p->len = 0;
	p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(p->fd, 0);
	cr_assert_eq(connect(p->fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
}

static void peer_close(struct peer *p)
{
	close(p->fd);
	p->fd = -1;
}

/* Sends a malloc'ed NUL-terminated line and frees it. */
static void peer_send(struct peer *p, char *line)
{
	size_t len;

	cr_assert_not_null(line);
	len = strlen(line);
	cr_assert_eq(send(p->fd, line, len, MSG_NOSIGNAL), (ssize_t)len);
	free(line);
}

static void peer_send_str(struct peer *p, const char *s)
{
	peer_send(p, strdup(s));
}

/* The next line (without LF) into out; false on timeout or EOF. */
static bool peer_line(struct peer *p, char *out, size_t cap, int ms)
{
	for (;;) {
		char *nl = memchr(p->buf, '\n', p->len);
		struct pollfd pf = { .fd = p->fd, .events = POLLIN };
		ssize_t n;

		if (nl) {
			size_t l = (size_t)(nl - p->buf);

			cr_assert_lt(l, cap);
			memcpy(out, p->buf, l);
			out[l] = '\0';
			memmove(p->buf, nl + 1, p->len - l - 1);
			p->len -= l + 1;
			return true;
		}
		if (poll(&pf, 1, ms) <= 0)
			return false;
		n = recv(p->fd, p->buf + p->len, sizeof(p->buf) - p->len, 0);
		if (n <= 0)
			return false;
		p->len += (size_t)n;
	}
}

static struct hostd_reply next_reply(struct peer *p)
{
	static char line[1 << 16];
	struct hostd_reply r;
	char err[256];

	cr_assert(peer_line(p, line, sizeof(line), 3000), "no line from hostd");
	cr_assert_eq(hostd_parse_reply(line, strlen(line), &r, err, sizeof(err)), 0, "%s: %s", line, err);
	return r;
}

/* Skips TARGET events up to the next answer. */
static struct hostd_reply next_answer(struct peer *p)
{
	for (;;) {
		struct hostd_reply r = next_reply(p);

		if (r.kind != HOSTD_REPLY_TARGET)
			return r;
	}
}

static struct hostd_target next_target(struct peer *p)
{
	for (;;) {
		struct hostd_reply r = next_reply(p);

		if (r.kind == HOSTD_REPLY_TARGET)
			return r.target;
	}
}

/* The newest TARGET: everything queued is read (hostd pushes one every 50 ms, so this drains the
 * socket's backlog and stops at the first wait). */
static struct hostd_target latest_target(struct peer *p)
{
	static char line[1 << 16];
	struct hostd_target t = next_target(p);
	struct hostd_reply r;
	char err[256];

	while (peer_line(p, line, sizeof(line), 10)) {
		cr_assert_eq(hostd_parse_reply(line, strlen(line), &r, err, sizeof(err)), 0, "%s", err);
		if (r.kind == HOSTD_REPLY_TARGET)
			t = r.target;
	}
	return t;
}

static struct hostd_vm_info vm_info(const char *name, uint64_t size_mib, uint64_t res_mib,
				    uint64_t shares_per_mib)
{
	struct hostd_vm_info v = { .pid = 1000, .size = size_mib * MIB, .reservation = res_mib * MIB,
				   .limit = size_mib * MIB, .shares = shares_per_mib * size_mib,
				   .overhead = 10 * MIB };

	snprintf(v.name, sizeof(v.name), "%s", name);
	strcpy(v.salt, "vm");
	return v;
}

static struct hostd_reply do_register(struct peer *p, const struct hostd_vm_info *v)
{

	peer_open(p);
	peer_send(p, hostd_fmt_register(v, NULL));
	return next_answer(p);
}

static void report(struct peer *p, uint64_t consumed_mib, uint64_t active_mib)
{
	struct hostd_report r = { .consumed = consumed_mib * MIB, .active = active_mib * MIB };

	peer_send(p, hostd_fmt_report(&r, NULL));
}

static struct hostd_view query(void)
{
	static char line[1 << 16];
	struct hostd_view v;
	struct peer q;
	char err[256];

	peer_open(&q);
	peer_send(&q, hostd_fmt_query_vms(NULL));
	cr_assert(peer_line(&q, line, sizeof(line), 3000));
	cr_assert_eq(hostd_parse_view(line, strlen(line), &v, err, sizeof(err)), 0, "%s", err);
	peer_close(&q);
	return v;
}

static struct hostd_reply control(const char *line)
{
	struct hostd_reply r;
	struct peer q;

	peer_open(&q);
	peer_send_str(&q, line);
	peer_send_str(&q, "\n");
	r = next_reply(&q);
	peer_close(&q);
	return r;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

TestSuite(hostd, .init = setup, .fini = teardown, .timeout = 20);

Test(hostd, socket_is_private)
{
	struct stat st;

	start(1024, 10);
	loop_runner_go(&lr);
	cr_assert_eq(stat(sock_path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
}

Test(hostd, two_vms_targets_within_capacity)
{
	struct peer a, b;
	struct hostd_reply r;
	struct hostd_view v;

	start(1024, 10);
	loop_runner_go(&lr);
	struct hostd_vm_info ai = vm_info("a", 768, 64, 5);
	r = do_register(&a, &ai);
	cr_assert_eq(r.kind, HOSTD_REPLY_RETURN);
	cr_assert_eq(r.period_ms, 50);
	struct hostd_vm_info bi = vm_info("b", 768, 64, 20);
	r = do_register(&b, &bi);
	cr_assert_eq(r.kind, HOSTD_REPLY_RETURN);
	/* Both want all their memory and both are busy: the high-shares VM gets more. */
	for (int i = 0; i < 6; i++) {
		report(&a, 700, 700);
		report(&b, 700, 700);
		sleep_ms(60);
	}
	struct hostd_target ta = latest_target(&a), tb = latest_target(&b);
	cr_assert_leq(ta.target + tb.target, 1024 * MIB);
	cr_assert_geq(ta.target, 64 * MIB);
	cr_assert_gt(tb.target, ta.target, "shares 20/MiB (%llu MiB) beat 5/MiB (%llu MiB)",
		     (unsigned long long)(tb.target >> 20), (unsigned long long)(ta.target >> 20));
	cr_assert_eq(ta.state, POLICY_HIGH);
	cr_assert_eq(ta.techniques, POLICY_TECH_SHARE);

	v = query();
	cr_assert_eq(v.n, 2);
	cr_assert_eq(v.host.capacity, 1024 * MIB);
	cr_assert_eq(v.host.tax_pct, POLICY_TAX_DEFAULT);
	uint64_t sum = v.vms[0].target + v.vms[1].target;
	cr_assert_leq(sum, 1024 * MIB);
	cr_assert(v.vms[0].reported && v.vms[1].reported);
	hostd_view_free(&v);

	/* Low free memory: the state falls and more techniques are allowed. */
	write_meminfo(8192, 10); /* 10% of minFree: below the low line (16%) */
	sleep_ms(200);
	ta = next_target(&a);
	while (ta.state != POLICY_LOW)
		ta = next_target(&a);
	cr_assert(ta.techniques & POLICY_TECH_SWAP);
	peer_close(&a);
	peer_close(&b);
}

Test(hostd, admission_refused_with_reason)
{
	struct peer a, b, c;
	struct hostd_vm_info ai = vm_info("a", 1024, 600, 10), bi = vm_info("b", 1024, 600, 10);
	struct hostd_reply r;

	start(1024, 10);
	loop_runner_go(&lr);
	cr_assert_eq(do_register(&a, &ai).kind, HOSTD_REPLY_RETURN);
	r = do_register(&b, &bi);
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR);
	cr_assert_str_eq(r.err_class, "AdmissionRefused");
	cr_assert(strstr(r.err_desc, "reservation 600 MiB"), "%s", r.err_desc);
	cr_assert(strstr(r.err_desc, "capacity is 1024 MiB"), "%s", r.err_desc);
	peer_close(&b);
	/* A duplicate name is refused too. */
	r = do_register(&c, &ai);
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR);
	cr_assert(strstr(r.err_desc, "registered already"), "%s", r.err_desc);
	peer_close(&c);

	/* Raising a reservation is admission-checked; lowering is not. */
	struct hostd_vm_info small = vm_info("s", 512, 100, 10);
	cr_assert_eq(do_register(&c, &small).kind, HOSTD_REPLY_RETURN);
	report(&c, 50, 50); /* targets come after the first report */
	r = control("{\"execute\":\"set-vm\",\"arguments\":{\"name\":\"s\",\"reservation\":500000000}}");
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR);
	cr_assert_str_eq(r.err_class, "AdmissionRefused");
	r = control("{\"execute\":\"set-vm\",\"arguments\":{\"name\":\"s\",\"reservation\":1048576,"
		    "\"shares\":99}}");
	cr_assert_eq(r.kind, HOSTD_REPLY_RETURN);
	struct hostd_target t = next_target(&c);
	while (t.reservation != MIB)
		t = next_target(&c);
	r = control("{\"execute\":\"set-vm\",\"arguments\":{\"name\":\"nobody\",\"shares\":1}}");
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR);
	r = control("{\"execute\":\"set-vm\",\"arguments\":{\"name\":\"s\",\"limit\":1073741824}}");
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR, "a limit above the VM's memory is refused");
	r = control("{\"execute\":\"set-host\",\"arguments\":{\"tax\":50}}");
	cr_assert_eq(r.kind, HOSTD_REPLY_RETURN);
	struct hostd_view v = query();
	cr_assert_eq(v.host.tax_pct, 50);
	cr_assert_eq(v.n, 2);
	hostd_view_free(&v);
	peer_close(&a);
	peer_close(&c);
}

Test(hostd, drop_on_close_and_reregister)
{
	struct peer a, b;
	struct hostd_vm_info ai = vm_info("a", 1024, 600, 10), bi = vm_info("b", 1024, 300, 10);
	struct hostd_view v;

	start(1024, 10);
	loop_runner_go(&lr);
	cr_assert_eq(do_register(&a, &ai).kind, HOSTD_REPLY_RETURN);
	cr_assert_eq(do_register(&b, &bi).kind, HOSTD_REPLY_RETURN);
	report(&a, 900, 900);
	report(&b, 900, 900);
	sleep_ms(150);
	v = query();
	cr_assert_eq(v.n, 2);
	uint64_t before = strcmp(v.vms[0].info.name, "b") == 0 ? v.vms[0].target : v.vms[1].target;
	hostd_view_free(&v);

	peer_close(&a);
	sleep_ms(150);
	v = query();
	cr_assert_eq(v.n, 1, "a closed connection drops its VM");
	cr_assert_str_eq(v.vms[0].info.name, "b");
	cr_assert_gt(v.vms[0].target, before, "its memory returns to the pool");
	hostd_view_free(&v);

	/* The same VM comes back (as after its hostd restarted). */
	cr_assert_eq(do_register(&a, &ai).kind, HOSTD_REPLY_RETURN);
	v = query();
	cr_assert_eq(v.n, 2);
	hostd_view_free(&v);
	peer_close(&a);
	peer_close(&b);
}

Test(hostd, restart_keeps_socket_path)
{
	struct peer a;
	struct hostd_vm_info ai = vm_info("a", 512, 0, 10);

	start(1024, 10);
	loop_runner_go(&lr);
	cr_assert_eq(do_register(&a, &ai).kind, HOSTD_REPLY_RETURN);
	loop_runner_halt(&lr);
	hostd_destroy(hd);
	/* The VM sees the end of its connection. */
	char line[256];
	while (peer_line(&a, line, sizeof(line), 500))
		;
	peer_close(&a);
	start(1024, 10);
	loop_runner_go(&lr);
	cr_assert_eq(do_register(&a, &ai).kind, HOSTD_REPLY_RETURN, "re-registers with the new hostd");
	peer_close(&a);
}

Test(hostd, lagging_vm_is_reported)
{
	struct peer a;
	struct hostd_vm_info ai = vm_info("a", 2048, 0, 10);
	struct hostd_view v;
	bool lagging = false;

	start(512, 2);
	loop_runner_go(&lr);
	cr_assert_eq(do_register(&a, &ai).kind, HOSTD_REPLY_RETURN);
	for (int i = 0; i < 40 && !lagging; i++) {
		report(&a, 2000, 2000);
		sleep_ms(60);
		v = query();
		cr_assert_eq(v.n, 1);
		cr_assert_leq(v.vms[0].target, 512 * MIB);
		lagging = v.vms[0].lagging;
		hostd_view_free(&v);
	}
	cr_assert(lagging, "consuming 2000 MiB against a target of at most 512 MiB is lagging");
	for (int i = 0; i < 40 && lagging; i++) {
		report(&a, 100, 100);
		sleep_ms(60);
		v = query();
		lagging = v.vms[0].lagging;
		hostd_view_free(&v);
	}
	cr_assert(!lagging, "meeting the target again clears it");
	peer_close(&a);
}

Test(hostd, bad_lines_answered_connection_kept)
{
	struct peer p;
	struct hostd_reply r;
	char *big = malloc(HOSTD_LINE_MAX * 2 + 2);

	start(1024, 10);
	loop_runner_go(&lr);
	peer_open(&p);
	peer_send_str(&p, "not json\n");
	r = next_reply(&p);
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR);
	cr_assert(strstr(r.err_desc, "JSON parse error"), "%s", r.err_desc);
	peer_send_str(&p, "{\"execute\":\"report\",\"arguments\":{\"consumed\":1,\"active\":1,"
			  "\"shared\":0,\"ballooned\":0,\"compressed\":0,\"swapped\":0}}\n");
	r = next_reply(&p);
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR);
	cr_assert(strstr(r.err_desc, "before register"), "%s", r.err_desc);
	memset(big, 'x', HOSTD_LINE_MAX * 2);
	big[HOSTD_LINE_MAX * 2] = '\n';
	big[HOSTD_LINE_MAX * 2 + 1] = '\0';
	peer_send(&p, big);
	r = next_reply(&p);
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR);
	cr_assert(strstr(r.err_desc, "longer than"), "%s", r.err_desc);
	peer_send_str(&p, "{\"execute\":\"query-vms\"}\n");
	r = next_reply(&p);
	cr_assert_eq(r.kind, HOSTD_REPLY_RETURN, "the connection still works");
	peer_close(&p);
}

/* The idle tax changed live moves the targets; a VM's own connection may change its figures
 * (x-kvmm-set-memory's way), answered in order among its TARGETs, admission-checked. */
Test(hostd, live_tax_and_set_vm_on_a_vms_link)
{
	struct peer a, b;
	struct hostd_vm_info ai = vm_info("a", 768, 0, 10), bi = vm_info("b", 768, 0, 10);
	struct hostd_target ta, tb;
	struct hostd_reply r;

	start(1024, 10);
	loop_runner_go(&lr);
	cr_assert_eq(do_register(&a, &ai).kind, HOSTD_REPLY_RETURN);
	cr_assert_eq(do_register(&b, &bi).kind, HOSTD_REPLY_RETURN);
	for (int i = 0; i < 6; i++) {
		report(&a, 700, 700);
		report(&b, 700, 0); /* idle */
		sleep_ms(60);
	}
	ta = latest_target(&a);
	tb = latest_target(&b);
	cr_assert_gt(ta.target, tb.target + 64 * MIB, "tax 75%%: the idle VM has less (%llu vs %llu MiB)",
		     (unsigned long long)(tb.target >> 20), (unsigned long long)(ta.target >> 20));
	cr_assert_eq(control("{\"execute\":\"set-host\",\"arguments\":{\"tax\":0}}").kind,
		     HOSTD_REPLY_RETURN);
	for (int i = 0; i < 3; i++) {
		report(&a, 700, 700);
		report(&b, 700, 0);
		sleep_ms(60);
	}
	ta = latest_target(&a);
	tb = latest_target(&b);
	cr_assert_leq(ta.target - tb.target, MIB, "no tax: equal shares, equal targets (%llu vs %llu MiB)",
		      (unsigned long long)(tb.target >> 20), (unsigned long long)(ta.target >> 20));

	peer_send(&a, hostd_fmt_set_vm("a", HOSTD_SET_RESERVATION, 600 * MIB, 0, 0, NULL));
	r = next_answer(&a);
	cr_assert_eq(r.kind, HOSTD_REPLY_RETURN);
	peer_send(&b, hostd_fmt_set_vm("b", HOSTD_SET_RESERVATION, 600 * MIB, 0, 0, NULL));
	r = next_answer(&b);
	cr_assert_eq(r.kind, HOSTD_REPLY_ERROR, "600 + 600 MiB reserved do not fit in 1024");
	cr_assert_str_eq(r.err_class, "AdmissionRefused");
	ta = latest_target(&a);
	cr_assert_eq(ta.reservation, 600 * MIB);
	cr_assert_geq(ta.target, 600 * MIB);
	cr_assert_eq(latest_target(&b).reservation, 0, "unchanged");
	peer_close(&a);
	peer_close(&b);
}
