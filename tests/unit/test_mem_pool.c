/* The memory manager (src/mem/), the parts that need the host but not KVM: the sharing pool's
 * memfd, the VMA cap and feature detection, and mem_release/mem_reset (with and without a
 * manager). test_mem.c covers pstate, test_mem_htab.c the hash table. */
#include "mem/mem_internal.h"

#include <kvmm/config.h>
#include <kvmm/gmem.h>
#include <kvmm/mem.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096u

static bool page_is_zero(const uint8_t *p)
{
	for (unsigned i = 0; i < PG; i++)
		if (p[i])
			return false;
	return true;
}

static void fill(uint8_t *p, uint8_t seed)
{
	for (unsigned i = 0; i < PG; i++)
		p[i] = (uint8_t)(seed + i * 7 + 1) | 1; /* never zero */
}

static bool filled(const uint8_t *p, uint8_t seed)
{
	for (unsigned i = 0; i < PG; i++)
		if (p[i] != ((uint8_t)(seed + i * 7 + 1) | 1))
			return false;
	return true;
}

/* 512-byte blocks the memfd holds (the hole punch gives them back). */
static long long fd_blocks(int fd)
{
	struct stat st;

	cr_assert_eq(fstat(fd, &st), 0);
	return (long long)st.st_blocks;
}

/* ---- pool ---- */

Test(pool, create_and_alloc_until_full, .timeout = 10)
{
	struct pool p;
	bool seen[64] = { false };

	cr_assert_eq(pool_create(&p, 64), 0);
	cr_expect_geq(p.fd, 0);
	cr_expect_not_null(p.map);
	cr_expect_eq(p.capacity, 64);
	cr_expect_eq(p.live, 0);
	cr_expect_eq(p.nr_free, 0);
	for (unsigned k = 0; k < 64; k++) {
		uint32_t s = pool_alloc(&p);

		cr_assert_lt(s, 64, "alloc %u got %u", k, s);
		cr_expect_not(seen[s], "slot %u handed out twice", s);
		seen[s] = true;
		cr_expect(page_is_zero(pool_page(&p, s)), "a new slot reads zero");
	}
	cr_expect_eq(pool_alloc(&p), POOL_NONE, "full");
	cr_expect_eq(pool_alloc(&p), POOL_NONE, "still full");
	cr_expect_eq(p.live, 0, "alloc alone does not make a slot live");
	pool_destroy(&p);
	cr_expect_eq(p.fd, -1);
	cr_expect_null(p.map);
	pool_destroy(&p); /* twice is harmless */
}

Test(pool, refcounts_and_live, .timeout = 10)
{
	struct pool p;
	uint32_t a, b;

	cr_assert_eq(pool_create(&p, 64), 0);
	a = pool_alloc(&p);
	b = pool_alloc(&p);
	cr_assert_neq(a, b);
	pool_get(&p, a);
	cr_expect_eq(p.live, 1);
	pool_get(&p, a);
	pool_get(&p, a);
	cr_expect_eq(p.ref[a], 3);
	cr_expect_eq(p.live, 1, "one live slot, however many references");
	pool_get(&p, b);
	cr_expect_eq(p.live, 2);

	cr_expect_not(pool_put(&p, a));
	cr_expect_not(pool_put(&p, a));
	cr_expect_eq(p.live, 2);
	cr_expect(pool_put(&p, a), "the last reference");
	cr_expect_eq(p.ref[a], 0);
	cr_expect_eq(p.live, 1);
	cr_expect_not(pool_put(&p, a), "no reference left: not the last again");
	cr_expect_eq(p.ref[a], 0, "no underflow");
	cr_expect_eq(p.live, 1);
	cr_expect(pool_put(&p, b));
	cr_expect_eq(p.live, 0);
	pool_destroy(&p);
}

Test(pool, release_punches_and_reuses, .timeout = 10)
{
	struct pool p;
	uint32_t s[4], again;
	long long before, after;

	cr_assert_eq(pool_create(&p, 64), 0);
	for (int k = 0; k < 4; k++) {
		s[k] = pool_alloc(&p);
		fill(pool_page(&p, s[k]), (uint8_t)k);
		p.hash[s[k]] = 0x1111ull * (uint64_t)(k + 1);
		pool_get(&p, s[k]);
	}
	before = fd_blocks(p.fd);
	cr_expect_geq(before, 4 * PG / 512, "the pages are in the memfd");

	cr_assert(pool_put(&p, s[1]));
	pool_release(&p, s[1]);
	after = fd_blocks(p.fd);
	cr_expect_eq(before - after, PG / 512, "one page punched out: %lld -> %lld blocks", before, after);
	cr_expect(page_is_zero(pool_page(&p, s[1])), "a released slot reads zero");
	cr_expect_eq(p.hash[s[1]], 0);
	cr_expect_eq(p.ref[s[1]], 0);
	cr_expect_eq(p.live, 3);
	for (int k = 0; k < 4; k++)
		if (k != 1)
			cr_expect(filled(pool_page(&p, s[k]), (uint8_t)k), "slot %u untouched", s[k]);

	again = pool_alloc(&p);
	cr_expect_eq(again, s[1], "the released slot comes back first");
	fill(pool_page(&p, again), 9);
	pool_get(&p, again);
	cr_expect(filled(pool_page(&p, again), 9));
	cr_expect_eq(p.live, 4);

	/* Once every never-used slot and the free stack are gone, it is full. */
	for (unsigned k = 0; k < 60; k++)
		cr_assert_neq(pool_alloc(&p), POOL_NONE, "alloc %u", k);
	cr_expect_eq(pool_alloc(&p), POOL_NONE);
	cr_assert(pool_put(&p, s[2]));
	pool_release(&p, s[2]);
	cr_expect_eq(pool_alloc(&p), s[2]);
	cr_expect_eq(pool_alloc(&p), POOL_NONE);
	pool_destroy(&p);
}

Test(pool, clear_empties_everything, .timeout = 10)
{
	struct pool p;
	unsigned n = 0;

	cr_assert_eq(pool_create(&p, 64), 0);
	for (int k = 0; k < 10; k++) {
		uint32_t s = pool_alloc(&p);

		fill(pool_page(&p, s), (uint8_t)k);
		p.hash[s] = (uint64_t)k + 1;
		pool_get(&p, s);
		if (k % 2)
			pool_get(&p, s);
	}
	pool_release(&p, pool_alloc(&p)); /* something on the free stack too */
	cr_expect_eq(p.nr_free, 1);
	cr_expect_gt(fd_blocks(p.fd), 0);

	pool_clear(&p);
	cr_expect_eq(p.live, 0);
	cr_expect_eq(p.nr_free, 0);
	cr_expect_eq(fd_blocks(p.fd), 0, "every page punched out");
	for (uint32_t s = 0; s < p.capacity; s++) {
		cr_expect_eq(p.ref[s], 0);
		cr_expect_eq(p.hash[s], 0);
		cr_assert(page_is_zero(pool_page(&p, s)), "slot %u reads zero", s);
	}
	/* The whole capacity is available again, each slot once. */
	while (pool_alloc(&p) != POOL_NONE)
		n++;
	cr_expect_eq(n, p.capacity);
	pool_destroy(&p);
}

/* tps maps pool pages into guest RAM MAP_PRIVATE: the guest reads the pool's content, and a guest
 * write gets a private copy, leaving the pool page (and other guests of it) as they were. */
Test(pool, private_mapping_is_copy_on_write, .timeout = 10)
{
	struct pool p;
	uint32_t s;
	uint8_t *g1, *g2;

	cr_assert_eq(pool_create(&p, 64), 0);
	for (int k = 0; k < 6; k++)
		s = pool_alloc(&p);
	fill(pool_page(&p, s), 0x42);
	g1 = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, p.fd, (off_t)s * PG);
	g2 = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, p.fd, (off_t)s * PG);
	cr_assert_neq(g1, MAP_FAILED);
	cr_assert_neq(g2, MAP_FAILED);
	cr_expect(filled(g1, 0x42), "the mapping reads the pool page");
	cr_expect(filled(g2, 0x42));

	g1[0] ^= 0xff;
	g1[PG - 1] = 0;
	cr_expect(filled(pool_page(&p, s), 0x42), "the pool page is unchanged by the write");
	cr_expect(filled(g2, 0x42), "so is the other mapping");
	cr_expect_neq(g1[0], pool_page(&p, s)[0]);
	cr_expect_eq(g1[PG - 1], 0);
	cr_expect_eq(memcmp(g1 + 1, pool_page(&p, s) + 1, PG - 2), 0, "the copy kept the rest");

	munmap(g1, PG);
	munmap(g2, PG);
	pool_destroy(&p);
}

/* ---- features ---- */

/* The reserve features_share_cap keeps (VMA_RESERVE, private to features.c), found from its
 * behaviour: the smallest vm.max_map_count with room for one shared page is reserve + 2. */
static uint64_t observed_reserve(void)
{
	uint64_t lo = 0, hi = 1ull << 40;

	cr_assert_gt(features_share_cap(hi, 0, UINT64_MAX), 0);
	while (lo + 1 < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (features_share_cap(mid, 0, UINT64_MAX) > 0)
			hi = mid;
		else
			lo = mid;
	}
	return hi - 2;
}

Test(features, share_cap_maths, .timeout = 10)
{
	uint64_t r = observed_reserve();
	static const uint64_t vmas[] = { 0, 1, 37, 500, 65530 };
	static const uint64_t pages[] = { 0, 1, 100, 4096, 262144, 1ull << 40 };

	cr_expect_eq(r, 4096, "features.c documents a reserve of 4096 VMAs, observed %llu",
		     (unsigned long long)r);
	for (size_t v = 0; v < sizeof(vmas) / sizeof(vmas[0]); v++) {
		/* No room at or below the reserve. */
		cr_expect_eq(features_share_cap(vmas[v] + r, vmas[v], 1000), 0);
		cr_expect_eq(features_share_cap(vmas[v] + r + 1, vmas[v], 1000), 0, "half a page of room");
		cr_expect_eq(features_share_cap(vmas[v], vmas[v], 1000), 0);
		if (vmas[v])
			cr_expect_eq(features_share_cap(vmas[v] - 1, vmas[v], 1000), 0, "fewer than now");
		for (size_t k = 0; k < sizeof(pages) / sizeof(pages[0]); k++) {
			for (uint64_t max = vmas[v] + r; max < vmas[v] + r + 3000000; max = max * 3 / 2 + 7) {
				uint64_t room = (max - vmas[v] - r) / 2;
				uint64_t want = room < pages[k] ? room : pages[k];

				cr_assert_eq(features_share_cap(max, vmas[v], pages[k]), want,
					     "max %llu vmas %llu pages %llu", (unsigned long long)max,
					     (unsigned long long)vmas[v], (unsigned long long)pages[k]);
			}
		}
	}
	/* The default vm.max_map_count with a 1 GiB guest: capped well below the guest's pages. */
	cr_expect_lt(features_share_cap(65530, 100, 262144), 262144);
	cr_expect_eq(features_share_cap(UINT64_MAX, 100, 262144), 262144, "room for every page");
}

static uint64_t read_sysctl(const char *path, uint64_t dflt)
{
	FILE *f = fopen(path, "re");
	unsigned long long v;

	if (!f)
		return dflt;
	if (fscanf(f, "%llu", &v) != 1)
		v = dflt;
	fclose(f);
	return v;
}

static void expect_sane(const struct mem_features *f)
{
	cr_expect_gt(f->max_map_count, 0);
	cr_expect(strcmp(f->thp, "always") == 0 || strcmp(f->thp, "madvise") == 0 ||
		  strcmp(f->thp, "never") == 0 || f->thp[0] == '\0', "thp \"%s\"", f->thp);
	cr_expect_not_null(f->uffd_via);
	if (f->uffd)
		cr_expect(strcmp(f->uffd_via, "syscall") == 0 || strcmp(f->uffd_via, "/dev/userfaultfd") == 0,
			  "via \"%s\"", f->uffd_via);
	else
		cr_expect(f->uffd_via && f->uffd_via[0], "says why not");
	if (!f->uffd)
		cr_expect(!f->uffd_move && !f->uffd_wp && !f->uffd_wp_unpopulated);
	if (f->ksm_writable || f->ksm_advisor)
		cr_expect(f->ksm);
}

Test(features, detect_is_sane, .timeout = 10)
{
	struct mem_features f;

	memset(&f, 0xa5, sizeof(f));
	features_detect(&f);
	expect_sane(&f);
	cr_expect_eq(f.root, geteuid() == 0);
	cr_expect_eq(f.max_map_count, read_sysctl("/proc/sys/vm/max_map_count", 65530));
	features_log(&f); /* formats whatever was found */
}

/* Without permission for userfaultfd (an unprivileged user, vm.unprivileged_userfaultfd=0, no
 * access to /dev/userfaultfd), detection still succeeds and says why. Needs root to drop to an
 * unprivileged user in a child. */
Test(features, detect_without_userfaultfd_permission, .timeout = 10)
{
	int fds[2];
	pid_t pid;
	int status;
	char buf[256] = "";
	ssize_t n;

	if (geteuid() != 0)
		cr_skip_test("needs root to become an unprivileged user");
	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct mem_features f;
		int len;

		close(fds[0]);
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(2);
		if (read_sysctl("/proc/sys/vm/unprivileged_userfaultfd", 1) != 0 ||
		    access("/dev/userfaultfd", R_OK | W_OK) == 0)
			_exit(3); /* userfaultfd is permitted to everyone here: nothing to test */
		features_detect(&f);
		len = snprintf(buf, sizeof(buf), "%d %d %d %llu %s|%s", f.uffd, f.uffd_move, f.root,
			       (unsigned long long)f.max_map_count, f.thp, f.uffd_via);
		if (write(fds[1], buf, (size_t)len) != len)
			_exit(4);
		_exit(0);
	}
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	if (WEXITSTATUS(status) == 3)
		cr_skip_test("userfaultfd is permitted to unprivileged users on this host");
	cr_assert_eq(WEXITSTATUS(status), 0, "child exit %d", WEXITSTATUS(status));
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	{
		int uffd = -1, move = -1, root = -1;
		unsigned long long max_map = 0;

		cr_assert_eq(sscanf(buf, "%d %d %d %llu", &uffd, &move, &root, &max_map), 4, "\"%s\"", buf);
		cr_expect_eq(uffd, 0, "no userfaultfd: \"%s\"", buf);
		cr_expect_eq(move, 0);
		cr_expect_eq(root, 0);
		cr_expect_gt(max_map, 0, "the rest is still detected");
		cr_expect_not_null(strstr(buf, "|not permitted"), "says why: \"%s\"", buf);
	}
}

/* ---- mem_release / mem_reset ---- */

Test(mem, release_without_manager_discards, .timeout = 10)
{
	struct gmem gm;
	uint8_t *ram;

	cr_assert_eq(gmem_init(&gm, GMEM_MIN_SIZE, MEM_BACKEND_ANON), 0);
	ram = gm.map;
	for (int k = 0; k < 6; k++)
		fill(ram + (size_t)k * PG, (uint8_t)k);

	/* Pages 1 and 2 exactly. */
	cr_expect_eq(mem_release(NULL, &gm, 1 * PG, 2 * PG), 2 * PG);
	cr_expect(filled(ram, 0));
	cr_expect(page_is_zero(ram + 1 * PG));
	cr_expect(page_is_zero(ram + 2 * PG));
	cr_expect(filled(ram + 3 * PG, 3));

	/* Partial pages stay: [3.5 pages, 5.5 pages) holds only page 4 whole. */
	cr_expect_eq(mem_release(NULL, &gm, 3 * PG + PG / 2, 2 * PG), PG);
	cr_expect(filled(ram + 3 * PG, 3));
	cr_expect(page_is_zero(ram + 4 * PG));
	cr_expect(filled(ram + 5 * PG, 5));

	/* Outside RAM, or overflowing: nothing, no error. */
	cr_expect_eq(mem_release(NULL, &gm, GMEM_MIN_SIZE, PG), 0);
	cr_expect_eq(mem_release(NULL, &gm, UINT64_MAX - PG, UINT64_MAX), 0);
	cr_expect_eq(mem_release(NULL, &gm, 5 * PG, 0), 0);
	cr_expect(filled(ram + 5 * PG, 5));

	/* A released page is usable again. */
	fill(ram + PG, 77);
	cr_expect(filled(ram + PG, 77));
	gmem_destroy(&gm);
}

Test(mem, reset_without_manager_zeroes_ram, .timeout = 10)
{
	struct gmem gm;

	cr_assert_eq(gmem_init(&gm, GMEM_MIN_SIZE, MEM_BACKEND_ANON), 0);
	for (size_t off = 0; off < gm.map_size; off += 64 * PG)
		fill(gm.map + off, (uint8_t)(off >> 12));
	fill(gm.map + gm.map_size - PG, 1);
	cr_expect_eq(mem_reset(NULL, &gm), 0);
	for (size_t off = 0; off < gm.map_size; off += PG)
		cr_assert(page_is_zero(gm.map + off), "page %zu", off / PG);
	gmem_destroy(&gm);
}

/* With a manager that does no sharing (no userfaultfd involved): released pages become BALLOONED
 * and read zero, across the PCI hole too; reset makes every page PRESENT again. */
Test(mem, release_and_reset_with_manager_off, .timeout = 20)
{
	const uint64_t hole = GMEM_PCI_HOLE_START;
	struct vm_config cfg;
	struct memmgr *m;
	struct gmem gm;
	uint8_t *before_hole, *after_hole;
	int64_t r;

	config_init(&cfg);
	cfg.mem_share = MEM_SHARE_OFF;
	cr_assert_eq(gmem_init(&gm, hole + (64ull << 20), MEM_BACKEND_ANON), 0);
	cr_assert_eq(gm.nr_regions, 2);
	cr_assert_eq(mem_create(&m, &gm, &cfg), 0);
	cr_expect_eq(m->ps.pages, gm.map_size / PG);
	cr_expect_eq(m->ps.count[PS_PRESENT], m->ps.pages);

	before_hole = gmem_ptr(&gm, hole - 2 * PG, 2 * PG);
	after_hole = gmem_ptr(&gm, GMEM_HIGH_START, 2 * PG);
	cr_assert_not_null(before_hole);
	cr_assert_not_null(after_hole);
	for (int k = 0; k < 2; k++) {
		fill(before_hole + (size_t)k * PG, (uint8_t)k);
		fill(after_hole + (size_t)k * PG, (uint8_t)(k + 10));
	}

	/* The last page below the hole, the hole itself, the first page above it. */
	r = mem_release(m, &gm, hole - PG, GMEM_HIGH_START + PG - (hole - PG));
	cr_expect_eq(r, 2 * PG);
	cr_expect_eq(m->ps.count[PS_BALLOONED] * PG, (uint64_t)r);
	cr_expect(filled(before_hole, 0));
	cr_expect(page_is_zero(before_hole + PG));
	cr_expect(page_is_zero(after_hole));
	cr_expect(filled(after_hole + PG, 11));
	cr_expect_eq(pstate_get(&m->ps, (size_t)(before_hole + PG - gm.map) / PG), PS_BALLOONED);
	cr_expect_eq(pstate_get(&m->ps, (size_t)(after_hole - gm.map) / PG), PS_BALLOONED);
	cr_expect_eq(pstate_get(&m->ps, (size_t)(after_hole + PG - gm.map) / PG), PS_PRESENT);

	/* Again: the same pages, counted once. */
	cr_expect_eq(mem_release(m, &gm, hole - PG, GMEM_HIGH_START + PG - (hole - PG)), 2 * PG);
	cr_expect_eq(m->ps.count[PS_BALLOONED], 2);
	cr_expect_eq(mem_release(m, &gm, UINT64_MAX - PG, 2 * PG), 0, "overflow-safe");

	cr_expect_eq(mem_reset(m, &gm), 0);
	cr_expect_eq(m->ps.count[PS_PRESENT], m->ps.pages);
	cr_expect_eq(m->ps.count[PS_BALLOONED], 0);
	cr_expect(page_is_zero(before_hole));
	cr_expect(page_is_zero(after_hole + PG));

	mem_destroy(m);
	gmem_destroy(&gm);
	config_free(&cfg);
}
