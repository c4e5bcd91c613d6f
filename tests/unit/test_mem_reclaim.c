/* Taking pages out and faulting them back (src/mem/reclaim.c) with a real userfaultfd and no VM:
 * the test thread plays the guest. Pages are dropped (zero), compressed (they fit in 2 KiB) or
 * swapped (they do not), and read back byte for byte; a full swap file keeps pages resident; a
 * corrupted slot is never handed over as data (the fatal hook fires, zeros are served only once
 * the VM "stops"); hostd's block holds a guest thread's allocating fault, and only that, until
 * it lifts or the VM stops. Skipped where this host gives no userfaultfd. */
#include "mem/mem_internal.h"

#include <kvmm/config.h>
#include <kvmm/gmem.h>
#include <kvmm/mem.h>
#include <kvmm/policy.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PG 4096u
#define PAGES 4096u /* 16 MiB, gmem's least */

static char dir[] = "/tmp/kvmm-reclaim-XXXXXX";
static struct vm_config cfg;
static struct gmem gm;
static struct memmgr *m;
static int fatals;
static char swap_path[256];

static void on_fatal(void *opaque, const char *detail)
{
	(void)opaque;
	(void)detail;
	fatals++;
}

static _Atomic bool vm_stops;

static bool always_stopping(void *opaque)
{
	(void)opaque;
	return fatals > 0 || atomic_load(&vm_stops);
}

/* Page i's content: zero, text-like (compresses), or random (does not). */
static void content(uint8_t *p, size_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull + 1;

	switch (i % 3) {
	case 0:
		memset(p, 0, PG);
		break;
	case 1:
		for (unsigned k = 0; k < PG; k++)
			p[k] = "the quick brown fox jumps over the lazy dog "[(k + i) % 44];
		break;
	default:
		for (unsigned k = 0; k < PG; k += 8) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			memcpy(p + k, &x, 8);
		}
	}
}

static bool start_on(enum mem_backend backend, const char *swap_opt, uint64_t swap_size, bool compress)
{
	struct mem_hooks h = { .fatal = on_fatal, .stopping = always_stopping };
	struct mem_features f;

	features_detect(&f);
	if (!f.uffd || (!f.uffd_wp && !f.uffd_move))
		return false;
	cr_assert_not_null(mkdtemp(dir));
	config_init(&cfg);
	cfg.memory = (uint64_t)PAGES * PG;
	cfg.mem_share = MEM_SHARE_OFF;
	cfg.mem_limit = cfg.memory / 2;
	cfg.mem_compress = compress;
	if (swap_opt) {
		snprintf(swap_path, sizeof(swap_path), "%s/%s", dir, swap_opt);
		cfg.mem_swap = strdup(swap_path);
		cfg.mem_swap_size = swap_size;
	}
	cr_assert_eq(gmem_init(&gm, cfg.memory, backend), 0);
	cr_assert_eq(mem_create(&m, &gm, &cfg), 0);
	mem_set_hooks(m, &h);
	/* The limit set up the userfaultfd; lifting it keeps the reclaimer idle, so that only the
	 * test's explicit page-outs move pages. */
	cr_assert_eq(mem_set_limits(m, cfg.memory, UINT64_MAX), 0);
	cr_assert_eq(mem_start(m), 0);
	return true;
}

static bool start(const char *swap_opt, uint64_t swap_size, bool compress)
{
	return start_on(MEM_BACKEND_ANON, swap_opt, swap_size, compress);
}

static void stop(void)
{
	mem_destroy(m);
	gmem_destroy(&gm);
	config_free(&cfg);
	rmdir(dir);
}

static void fill_all(void)
{
	for (size_t i = 0; i < PAGES; i++)
		content(gm.map + i * PG, i);
}

static size_t mismatches(void)
{
	static uint8_t want[PG];
	size_t bad = 0;

	for (size_t i = 0; i < PAGES; i++) {
		content(want, i);
		bad += memcmp(gm.map + i * PG, want, PG) != 0;
	}
	return bad;
}

Test(reclaim, compress_swap_and_back, .timeout = 60)
{
	struct mem_stats st;
	int64_t n;

	if (!start("a.swap", 0, true))
		cr_skip_test("no usable userfaultfd here");
	fill_all();
	n = mem_page_out(m, 0, UINT64_MAX, MEM_OUT_AUTO);
	cr_expect_eq(n, PAGES, "every page taken (%lld)", (long long)n);
	cr_assert_eq(mem_get_stats(m, &st), 0);
	cr_expect_eq(st.zero, (uint64_t)(PAGES + 2) / 3 * PG, "zero pages dropped");
	cr_expect_eq(st.compressed, (uint64_t)(PAGES + 1) / 3 * PG, "text pages in the cache");
	cr_expect_eq(st.swapped, (uint64_t)PAGES / 3 * PG, "random pages in swap");
	cr_expect_lt(st.zcache, st.compressed / 2, "the cache holds them in under half the space");
	cr_expect_eq(mismatches(), 0, "every page reads back as written");
	cr_assert_eq(mem_get_stats(m, &st), 0);
	cr_expect_eq(st.compress_in, (PAGES + 1) / 3);
	cr_expect_eq(st.swap_in, PAGES / 3);
	cr_expect_eq(st.compressed + st.swapped, 0);
	cr_expect_eq(fatals, 0);
	/* Round two, forced (zero pages stay dropped: reading them mapped the zero page): compress
	 * takes the text pages and leaves the random ones; swap takes those. */
	cr_expect_eq(mem_page_out(m, 0, UINT64_MAX, MEM_OUT_COMPRESS), (PAGES + 1) / 3);
	cr_expect_eq(mem_page_out(m, 0, UINT64_MAX, MEM_OUT_SWAP), PAGES / 3);
	cr_expect_eq(mismatches(), 0);
	cr_expect_eq(access(swap_path, F_OK), 0, "the swap file exists while in use");
	stop();
	cr_expect_neq(access(swap_path, F_OK), 0, "and is deleted after");
}

/* The same on a memfd: pages taken are punched out of the file (its blocks fall), and come back. */
Test(reclaim, memfd_backend, .timeout = 60)
{
	struct stat sb0, sb1;
	struct mem_stats st;

	if (!start_on(MEM_BACKEND_MEMFD, "m.swap", 0, true))
		cr_skip_test("no usable userfaultfd here");
	fill_all();
	cr_assert_eq(fstat(gm.fd, &sb0), 0);
	cr_assert_eq(mem_get_stats(m, &st), 0);
	cr_expect_geq(st.private_, (uint64_t)PAGES * PG * 9 / 10, "memfd pages count as private");
	cr_expect_eq(mem_page_out(m, 0, UINT64_MAX, MEM_OUT_AUTO), PAGES);
	cr_assert_eq(fstat(gm.fd, &sb1), 0);
	cr_expect_lt(sb1.st_blocks, sb0.st_blocks / 10, "the memfd gave its pages back (%lld -> %lld blocks)",
		     (long long)sb0.st_blocks, (long long)sb1.st_blocks);
	cr_expect_eq(mismatches(), 0, "every page reads back as written");
	stop();
}

Test(reclaim, full_swap_keeps_pages, .timeout = 60)
{
	struct mem_stats st;

	if (!start("small.swap", 64 * PG, false))
		cr_skip_test("no usable userfaultfd here");
	fill_all();
	mem_page_out(m, 0, UINT64_MAX, MEM_OUT_AUTO);
	cr_assert_eq(mem_get_stats(m, &st), 0);
	cr_expect_eq(st.swapped, 64 * PG, "the swap file is full");
	cr_expect(st.swap_usable, "a full file is not a failed one");
	cr_expect_eq(mismatches(), 0, "pages that found no slot stayed resident");
	stop();
}

Test(reclaim, corrupted_slot_is_not_data, .timeout = 60)
{
	static uint8_t junk[PG];
	struct mem_stats st;
	int fd;

	if (!start("bad.swap", 0, false))
		cr_skip_test("no usable userfaultfd here");
	fill_all();
	cr_expect_eq(mem_page_out(m, 2 * PG, PG, MEM_OUT_SWAP), 1, "page 2 (random) to swap");
	fd = open(swap_path, O_RDWR);
	cr_assert_geq(fd, 0);
	memset(junk, 0xa5, sizeof(junk));
	for (off_t off = 0; off < 16 * PG; off += PG)
		cr_assert_eq(pwrite(fd, junk, 64, off + 8), 64);
	fsync(fd);
	close(fd);
	/* The write went through the page cache or to the disk: either way the slot reads damaged. */
	for (unsigned k = 0; k < PG; k++)
		cr_assert_eq(gm.map[2 * PG + k], 0, "byte %u: zeros once stopping, never the damaged data", k);
	cr_assert_eq(mem_get_stats(m, &st), 0);
	cr_expect_eq(st.swap_corrupt, 1);
	cr_expect_eq(fatals, 1, "the VM is told to stop, once");
	stop();
}

Test(reclaim, limits_and_no_userfaultfd, .timeout = 20)
{
	struct vm_config c;
	struct memmgr *mm;
	struct gmem g;

	config_init(&c);
	c.memory = 16u << 20;
	c.mem_share = MEM_SHARE_OFF; /* no limit: no userfaultfd, no reclaim */
	cr_assert_eq(gmem_init(&g, c.memory, MEM_BACKEND_ANON), 0);
	cr_assert_eq(mem_create(&mm, &g, &c), 0);
	cr_expect_eq(mem_page_out(mm, 0, 4096, MEM_OUT_AUTO), -ENOTSUP);
	cr_expect_eq(mem_set_limits(mm, 8u << 20, 0), -EINVAL, "no reclaim without userfaultfd");
	mem_destroy(mm);
	gmem_destroy(&g);
	config_free(&c);
}

Test(reclaim, set_limits_checks, .timeout = 20)
{
	struct mem_stats st;

	if (!start(NULL, 0, true))
		cr_skip_test("no usable userfaultfd here");
	cr_expect_eq(mem_set_limits(m, cfg.memory + PG, UINT64_MAX), -EINVAL, "above the memory");
	cr_expect_eq(mem_set_limits(m, 4u << 20, 5u << 20), -EINVAL, "reservation above the limit");
	cr_expect_eq(mem_set_limits(m, 0, UINT64_MAX), -EINVAL, "zero");
	cr_expect_eq(mem_set_limits(m, 4u << 20, 2u << 20), 0);
	cr_assert_eq(mem_get_stats(m, &st), 0);
	cr_expect_eq(st.limit, 4u << 20);
	cr_expect_eq(st.reservation, 2u << 20);
	cr_expect_eq(st.target, 4u << 20, "the target is the limit, never under the reservation");
	cr_expect_eq(mem_set_limits(m, UINT64_MAX, 4u << 20), 0, "keeps the limit");
	cr_assert_eq(mem_get_stats(m, &st), 0);
	cr_expect_eq(st.target, 4u << 20);
	stop();
}

/* A guest thread: touches one page (writes, or reads) and says when the touch is over. */
struct toucher {
	pthread_t t;
	size_t page;
	bool write;
	_Atomic bool done;
};

static void *touch_main(void *opaque)
{
	struct toucher *g = opaque;
	volatile uint8_t *p = gm.map + g->page * PG;

	if (g->write)
		*p = 1;
	else
		(void)*p;
	atomic_store(&g->done, true);
	return NULL;
}

static void touch(struct toucher *g, size_t page, bool write)
{
	*g = (struct toucher){ .page = page, .write = write };
	cr_assert_eq(pthread_create(&g->t, NULL, touch_main, g), 0);
}

/* Waits up to ms for *flag; its value. */
static bool wait_for(_Atomic bool *flag, int ms)
{
	for (int k = 0; k < ms / 10 && !atomic_load(flag); k++)
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	return atomic_load(flag);
}

static bool blocking(void)
{
	struct mem_stats st;

	for (int k = 0; k < 200; k++) {
		cr_assert_eq(mem_get_stats(m, &st), 0);
		if (st.blocking)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	return false;
}

Test(reclaim, hostd_block_holds_allocating_faults, .timeout = 30)
{
	struct toucher w, r;
	struct mem_stats st;

	if (!start(NULL, 0, false))
		cr_skip_test("no usable userfaultfd here");
	/* Target 0 and only the block allowed: over target at once, and nothing is reclaimed. */
	cr_assert_eq(mem_set_host_target(m, 0, POLICY_TECH_BLOCK), 0);
	cr_assert(blocking(), "the reclaimer saw the VM over its target");
	gm.map[0] = 1; /* the thread that set the hooks (the loop) is never held */
	touch(&w, 100, true);
	touch(&r, 200, false);
	cr_expect(wait_for(&r.done, 2000), "a read maps the zero page: not held");
	cr_expect(!wait_for(&w.done, 300), "a first write waits");
	cr_assert_eq(mem_get_stats(m, &st), 0);
	cr_expect_eq(st.blocked_now, 1);
	cr_expect_eq(st.blocked_faults, 1);
	cr_assert_eq(mem_set_host_target(m, 0, POLICY_TECH_ALL), 0);
	cr_expect(wait_for(&w.done, 2000), "and goes on once the block lifts");
	pthread_join(w.t, NULL);
	pthread_join(r.t, NULL);
	cr_assert_eq(mem_get_stats(m, &st), 0);
	cr_expect_eq(st.blocked_now, 0);
	cr_expect_geq(st.blocked_ns, 300000000ull, "its wait counted (%llu ns)",
		      (unsigned long long)st.blocked_ns);
	cr_expect_eq(gm.map[100 * PG], 1);
	stop();
}

Test(reclaim, hostd_block_ends_when_the_vm_stops, .timeout = 30)
{
	struct toucher w;

	if (!start(NULL, 0, false))
		cr_skip_test("no usable userfaultfd here");
	cr_assert_eq(mem_set_host_target(m, 0, POLICY_TECH_BLOCK), 0);
	cr_assert(blocking());
	touch(&w, 300, true);
	cr_expect(!wait_for(&w.done, 200), "held");
	atomic_store(&vm_stops, true);
	cr_expect(wait_for(&w.done, 2000), "a stopping VM's faults go on");
	pthread_join(w.t, NULL);
	atomic_store(&vm_stops, false);
	stop();
}
