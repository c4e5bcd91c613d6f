/* The VM's side of hostd (src/sched/client.c) against a real hostd, without a VM: a memory manager
 * over 32 MiB of guest RAM (no vCPU touches it), the client on one loop thread and hostd on
 * another. Checked: registration, targets and hostd's limit reaching the memory manager, refusal,
 * an absent hostd, that the VM keeps its target while hostd is gone and registers again when
 * it is back, and that the low state's block on allocation ends with hostd's link. */
#include <kvmm/config.h>
#include <kvmm/gmem.h>
#include <kvmm/hostd.h>
#include <kvmm/loop.h>
#include <kvmm/mem.h>

#include "looprunner.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MIB (1ull << 20)

static struct loop_runner hloop, vloop;
static struct hostd *hd;
static struct hostd_client *cl;
static struct gmem gm;
static struct memmgr *m;
static struct vm_config cfg;
static char dir[64], sock_path[128], meminfo[128];

static void hostd_up(uint64_t capacity)
{
	struct hostd_opts o;

	hostd_opts_default(&o);
	o.socket = sock_path;
	o.meminfo = meminfo;
	o.capacity = capacity;
	o.minfree = 64ull << 30; /* far below minFree: every technique allowed */
	o.period_ms = 50;
	cr_assert_eq(hostd_create(&hd, hloop.lp, &o), 0);
	loop_runner_go(&hloop);
}

static void hostd_down(void)
{
	loop_runner_halt(&hloop);
	hostd_destroy(hd);
	hd = NULL;
}

static bool setup_mem(uint64_t reservation)
{
	FILE *f;

	strcpy(dir, "/tmp/kvmm-hostdc-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/hostd.sock", dir);
	snprintf(meminfo, sizeof(meminfo), "%s/meminfo", dir);
	f = fopen(meminfo, "w");
	cr_assert_not_null(f);
	fprintf(f, "MemTotal: 8388608 kB\nMemAvailable: 1048576 kB\n");
	fclose(f);
	config_init(&cfg);
	cfg.memory = 32 * MIB;
	cfg.mem_share = MEM_SHARE_OFF;
	cfg.mem_reservation = reservation;
	cfg.mem_shares = 10 * 32;
	cfg.mem_compress = false;
	free(cfg.name);
	cfg.name = strdup("vm1");
	cfg.hostd = strdup(sock_path);
	cr_assert_eq(gmem_init(&gm, cfg.memory, MEM_BACKEND_ANON), 0);
	if (mem_create(&m, &gm, &cfg) < 0) {
		mem_destroy(m);
		m = NULL;
		return false;
	}
	loop_runner_init(&hloop);
	loop_runner_init(&vloop);
	return true;
}

static void teardown(void)
{
	loop_runner_halt(&vloop);
	hostd_client_destroy(cl);
	cl = NULL;
	if (hd)
		hostd_down();
	if (m) {
		loop_runner_free(&vloop);
		loop_runner_free(&hloop);
	}
	mem_destroy(m);
	m = NULL;
	gmem_destroy(&gm);
	config_free(&cfg);
	unlink(meminfo);
	rmdir(dir);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static struct mem_stats stats(void)
{
	struct mem_stats st;

	cr_assert_eq(mem_get_stats(m, &st), 0);
	return st;
}

/* Waits up to ms for the memory manager's target to satisfy pred. */
#define WAIT_FOR(cond, ms)                                          \
	do {                                                        \
		for (int i_ = 0; i_ < (ms) / 20 && !(cond); i_++)   \
			sleep_ms(20);                               \
	} while (0)

/* A control request on hostd's socket; its one answer line. */
static void control(const char *req, char *ans, size_t cap)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t have = 0;

	strcpy(a.sun_path, sock_path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (have < cap - 1 && !memchr(ans, '\n', have)) {
		ssize_t n = read(fd, ans + have, cap - 1 - have);

		cr_assert_gt(n, 0);
		have += (size_t)n;
	}
	ans[have] = '\0';
	close(fd);
}

static size_t registered(void)
{
	char ans[8192];
	struct hostd_view v;
	char err[256];
	size_t n;

	control("{\"execute\":\"query-vms\"}\n", ans, sizeof(ans));
	cr_assert_eq(hostd_parse_view(ans, strcspn(ans, "\n"), &v, err, sizeof(err)), 0, "%s", err);
	n = v.n;
	hostd_view_free(&v);
	return n;
}

TestSuite(hostd_client, .fini = teardown, .timeout = 30);

Test(hostd_client, targets_reach_the_memory_manager)
{
	char ans[512];

	if (!setup_mem(0))
		cr_skip_test("no usable userfaultfd here");
	hostd_up(20 * MIB);
	cr_assert_eq(hostd_client_start(&cl, vloop.lp, m, &cfg), 0);
	loop_runner_go(&vloop);
	WAIT_FOR(stats().target <= 20 * MIB, 2000);
	cr_assert_leq(stats().target, 20 * MIB, "hostd's target (capacity 20 MiB) is followed: %llu MiB",
		      (unsigned long long)(stats().target >> 20));
	cr_assert_eq(stats().limit, 32 * MIB, "the VM's own limit is unchanged");

	/* hostd's set-vm limit becomes the VM's limit. */
	control("{\"execute\":\"set-vm\",\"arguments\":{\"name\":\"vm1\",\"limit\":8388608}}\n", ans,
		sizeof(ans));
	cr_assert(strstr(ans, "\"return\""), "%s", ans);
	WAIT_FOR(stats().limit == 8 * MIB, 2000);
	cr_assert_eq(stats().limit, 8 * MIB);
	cr_assert_leq(stats().target, 8 * MIB);

	/* hostd goes away: the target stays. */
	uint64_t before = stats().target;
	hostd_down();
	sleep_ms(300);
	cr_assert_eq(stats().target, before, "the VM keeps its last target without hostd");

	/* hostd comes back: the VM registers again (it retries every 3 s). */
	hostd_up(20 * MIB);
	size_t n = 0;
	for (int i = 0; i < 60 && (n = registered()) == 0; i++)
		sleep_ms(100);
	cr_assert_eq(n, 1, "the VM registered again with the new hostd");
}

Test(hostd_client, refused_and_absent)
{
	if (!setup_mem(30 * MIB))
		cr_skip_test("no usable userfaultfd here");
	cr_assert_lt(hostd_client_start(&cl, vloop.lp, m, &cfg), 0, "no hostd: an error");
	cr_assert_null(cl);
	hostd_up(20 * MIB);
	cr_assert_eq(hostd_client_start(&cl, vloop.lp, m, &cfg), -EPERM,
		     "a reservation of 30 MiB on a 20 MiB host is refused");
	cr_assert_null(cl);
	cr_assert_eq(registered(), 0);
}

static _Atomic bool touched;

static void *touch_one(void *arg)
{
	*(volatile uint8_t *)arg = 1;
	atomic_store(&touched, true);
	return NULL;
}

/* hostd's low state blocks a VM at its target; hostd gone, the block goes with it. */
Test(hostd_client, block_lifts_when_hostd_is_lost)
{
	pthread_t t;

	if (!setup_mem(0))
		cr_skip_test("no usable userfaultfd here");
	cr_assert_eq(mem_start(m), 0); /* the fault handler and the reclaimer */
	/* 22 MiB that nothing can take (no compression, no swap) before hostd's 20 MiB target. */
	for (size_t i = 0; i < 22 * MIB; i += 4096)
		gm.map[i] = 1;
	hostd_up(20 * MIB); /* MemAvailable far below minFree: the low state */
	cr_assert_eq(hostd_client_start(&cl, vloop.lp, m, &cfg), 0);
	loop_runner_go(&vloop);
	WAIT_FOR(stats().blocking, 3000);
	cr_assert(stats().blocking, "over its target in the low state");
	atomic_store(&touched, false);
	cr_assert_eq(pthread_create(&t, NULL, touch_one, gm.map + 30 * MIB), 0);
	WAIT_FOR(stats().blocked_now == 1, 2000);
	cr_assert_eq(stats().blocked_now, 1, "a new page waits");
	cr_assert(!atomic_load(&touched));
	hostd_down();
	WAIT_FOR(atomic_load(&touched), 3000);
	cr_assert(atomic_load(&touched), "hostd lost: the fault goes on");
	pthread_join(t, NULL);
	cr_assert(!stats().blocking);
}

/* vm1 as hostd sees it. */
static struct hostd_vm_view hostd_view_of_vm(void)
{
	char ans[8192], err[256];
	struct hostd_view v;
	struct hostd_vm_view x;

	control("{\"execute\":\"query-vms\"}\n", ans, sizeof(ans));
	cr_assert_eq(hostd_parse_view(ans, strcspn(ans, "\n"), &v, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(v.n, 1);
	x = v.vms[0];
	hostd_view_free(&v);
	return x;
}

/* x-kvmm-set-memory's way to hostd: accepted, refused by admission control (nothing changes), and
 * kept for the next registration while hostd is away. Called as QMP does, on the VM's loop thread:
 * here the test's, with that loop not running. */
Test(hostd_client, live_changes_go_through_hostd)
{
	char why[320];
	struct hostd_vm_view x;
	int r;

	if (!setup_mem(0))
		cr_skip_test("no usable userfaultfd here");
	hostd_up(20 * MIB);
	cr_assert_eq(hostd_client_start(&cl, vloop.lp, m, &cfg), 0);
	r = hostd_client_set(cl, HOSTD_SET_RESERVATION | HOSTD_SET_SHARES, 4 * MIB, 0, 999, why,
			     sizeof(why));
	cr_assert_eq(r, 0, "%s", why);
	x = hostd_view_of_vm();
	cr_assert_eq(x.info.reservation, 4 * MIB);
	cr_assert_eq(x.info.shares, 999);

	cr_assert_lt(x.info.overhead, 17 * MIB, "the test needs the overhead under 17 MiB");
	/* A reservation that with the VM's overhead (its PSS, at least 8 MiB) is 1 MiB over 20 MiB. */
	r = hostd_client_set(cl, HOSTD_SET_RESERVATION, 21 * MIB - x.info.overhead, 0, 0, why, sizeof(why));
	cr_assert_eq(r, -EPERM);
	cr_assert(strstr(why, "does not fit"), "%s", why);
	cr_assert_eq(hostd_view_of_vm().info.reservation, 4 * MIB, "unchanged");

	/* hostd gone: the change waits for the next registration. */
	hostd_down();
	r = hostd_client_set(cl, HOSTD_SET_LIMIT, 0, 16 * MIB, 0, why, sizeof(why));
	cr_assert_eq(r, 0, "%s", why);
	hostd_up(20 * MIB);
	loop_runner_go(&vloop);
	for (int i = 0; i < 60 && registered() == 0; i++)
		sleep_ms(100);
	x = hostd_view_of_vm();
	cr_assert_eq(x.info.limit, 16 * MIB, "registered again with the new limit");
	cr_assert_eq(x.info.reservation, 4 * MIB);
	cr_assert_eq(x.info.shares, 999);
}
