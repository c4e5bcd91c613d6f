#include <kvmm/gmem.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

Test(gmem, small_layout_is_one_region, .timeout = 10)
{
	struct gmem gm;

	cr_assert_eq(gmem_init(&gm, 64ull << 20, MEM_BACKEND_ANON), 0);
	cr_expect_eq(gm.nr_regions, 1);
	cr_expect_eq(gm.regions[0].gpa, 0);
	cr_expect_eq(gm.regions[0].size, 64ull << 20);
	cr_expect_eq(gmem_low_top(&gm), 64ull << 20);
	gmem_destroy(&gm);
}

Test(gmem, large_layout_splits_around_pci_hole, .timeout = 10)
{
	struct gmem gm;

	cr_assert_eq(gmem_init(&gm, 5ull << 30, MEM_BACKEND_ANON), 0);
	cr_expect_eq(gm.nr_regions, 2);
	cr_expect_eq(gm.regions[0].size, GMEM_PCI_HOLE_START);
	cr_expect_eq(gm.regions[1].gpa, GMEM_HIGH_START);
	cr_expect_eq(gm.regions[1].size, (5ull << 30) - GMEM_PCI_HOLE_START);
	cr_expect_null(gmem_ptr(&gm, GMEM_PCI_HOLE_START, 1), "the PCI hole is not RAM");
	cr_expect_null(gmem_ptr(&gm, GMEM_PCI_HOLE_START - 1, 2), "a range may not span regions");
	cr_expect_not_null(gmem_ptr(&gm, GMEM_HIGH_START, 4096));
	cr_expect_eq((uint8_t *)gmem_ptr(&gm, GMEM_HIGH_START, 1), gm.map + GMEM_PCI_HOLE_START);
	gmem_destroy(&gm);
}

Test(gmem, rejects_bad_sizes, .timeout = 10)
{
	struct gmem gm;

	cr_expect_eq(gmem_init(&gm, 0, MEM_BACKEND_ANON), -EINVAL);
	cr_expect_eq(gmem_init(&gm, 1ull << 20, MEM_BACKEND_ANON), -EINVAL);
	cr_expect_eq(gmem_init(&gm, (64ull << 20) + 1, MEM_BACKEND_ANON), -EINVAL);
	cr_expect_eq(gmem_init(&gm, UINT64_MAX & ~4095ull, MEM_BACKEND_ANON), -EINVAL);
}

Test(gmem, checked_access, .timeout = 10)
{
	struct gmem gm;
	const uint64_t size = 16ull << 20;
	uint32_t v = 0xdeadbeef, back = 0;

	cr_assert_eq(gmem_init(&gm, size, MEM_BACKEND_ANON), 0);
	cr_expect_eq(gmem_write(&gm, 0x1000, &v, sizeof(v)), 0);
	cr_expect_eq(gmem_read(&gm, 0x1000, &back, sizeof(back)), 0);
	cr_expect_eq(back, v);
	cr_expect_eq(gmem_write(&gm, size - 2, &v, sizeof(v)), -EFAULT, "crosses the end");
	cr_expect_eq(gmem_read(&gm, size, &back, 1), -EFAULT);
	cr_expect_not_null(gmem_ptr(&gm, size - 1, 1));
	cr_expect_null(gmem_ptr(&gm, 0, 0), "empty ranges are never valid");
	cr_expect_null(gmem_ptr(&gm, UINT64_MAX, 2), "gpa + len overflows");
	cr_expect_null(gmem_ptr(&gm, 4096, UINT64_MAX), "len overflows");
	cr_expect_null(gmem_ptr(&gm, UINT64_MAX - 4095, 4096));
	gmem_destroy(&gm);
}

Test(gmem, discard_all_reads_back_zero, .timeout = 10)
{
	struct gmem gm;
	uint64_t v = 0x1122334455667788ull, back = 1;

	cr_assert_eq(gmem_init(&gm, 64ull << 20, MEM_BACKEND_ANON), 0);
	cr_assert_eq(gmem_write(&gm, 0x100000, &v, sizeof(v)), 0);
	cr_assert_eq(gmem_write(&gm, (64ull << 20) - 8, &v, sizeof(v)), 0);
	cr_assert_eq(gmem_discard_all(&gm), 0);
	cr_assert_eq(gmem_read(&gm, 0x100000, &back, sizeof(back)), 0);
	cr_expect_eq(back, 0, "a discarded page reads as zero");
	back = 1;
	cr_assert_eq(gmem_read(&gm, (64ull << 20) - 8, &back, sizeof(back)), 0);
	cr_expect_eq(back, 0, "so does the last page");
	cr_assert_eq(gmem_write(&gm, 0x100000, &v, sizeof(v)), 0, "and the memory is usable again");
	gmem_destroy(&gm);
	cr_expect_eq(gmem_discard_all(&gm), -EINVAL, "nothing to discard after destroy");
}

/* Backends (--mem-backend): each maps, reads zero, frees what gmem_punch is given and maps itself
 * back with gmem_remap. Residency is checked with mincore right after a punch, before anything
 * reads the range (a read of a released anonymous page may map a page again). */

#define MIB (1ull << 20)
#define PG GMEM_PAGE_SIZE

static size_t resident_pages(const struct gmem *gm, size_t off, size_t len)
{
	size_t n = len / PG, count = 0;
	unsigned char *vec = calloc(n, 1);

	cr_assert_not_null(vec);
	cr_assert_eq(mincore(gm->map + off, len, vec), 0, "mincore: %s", strerror(errno));
	for (size_t i = 0; i < n; i++)
		count += vec[i] & 1;
	free(vec);
	return count;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static void fill(struct gmem *gm, size_t off, size_t len, uint8_t v)
{
	memset(gm->map + off, v, len);
}

static bool filled(const struct gmem *gm, size_t off, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (gm->map[off + i] != v)
			return false;
	return true;
}

/* Bytes the memfd holds, or -1 for the anonymous backends. */
static int64_t file_bytes(const struct gmem *gm)
{
	struct stat st;

	if (gm->fd < 0)
		return -1;
	cr_assert_eq(fstat(gm->fd, &st), 0);
	return (int64_t)st.st_blocks * 512;
}

static uint64_t hugetlb_available(void)
{
	unsigned long long free = 0, resv = 0;
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");

	if (f) {
		if (fscanf(f, "%llu", &free) != 1)
			free = 0;
		fclose(f);
	}
	f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/resv_hugepages", "re");
	if (f) {
		if (fscanf(f, "%llu", &resv) != 1)
			resv = 0;
		fclose(f);
	}
	return free > resv ? free - resv : 0;
}

/* Map, zero, write, punch, zero again, memory freed, neighbours kept; for any small-page backend. */
static void punch_roundtrip(enum mem_backend b)
{
	struct gmem gm;
	const size_t size = 32 * MIB, off = 4 * MIB + 16 * PG, len = 64 * PG;
	int64_t before, after, fbefore;

	cr_assert_eq(gmem_init(&gm, size, b), 0, "%s maps", gmem_backend_name(b));
	cr_expect_eq(gm.backend, b);
	cr_expect_eq(gm.page_size, PG);
	cr_expect(gmem_small_pages(&gm));
	cr_expect_eq(gm.fd >= 0, b == MEM_BACKEND_MEMFD, "only memfd keeps an fd");
	cr_expect(all_zero(gm.map + off - PG, len + 2 * PG), "fresh RAM reads zero");

	fill(&gm, off - PG, len + 2 * PG, 0xa5);
	cr_expect_eq(resident_pages(&gm, off, len), len / PG, "written pages are resident");
	before = gmem_resident(&gm);
	fbefore = file_bytes(&gm);
	cr_assert_eq(gmem_punch(&gm, off, len), (int64_t)len);
	cr_expect_eq(resident_pages(&gm, off, len), 0, "punched pages are gone");
	after = gmem_resident(&gm);
	cr_expect(before - after >= (int64_t)len, "gmem_resident fell by %lld, not %zu",
		  (long long)(before - after), len);
	if (b == MEM_BACKEND_MEMFD)
		cr_expect_eq(fbefore - file_bytes(&gm), (int64_t)len, "the memfd holds %zu bytes less", len);
	cr_expect(all_zero(gm.map + off, len), "punched pages read zero");
	cr_expect(filled(&gm, off - PG, PG, 0xa5) && filled(&gm, off + len, PG, 0xa5), "neighbours kept");
	fill(&gm, off, len, 0x5a);
	cr_expect(filled(&gm, off, len, 0x5a), "and the range is usable again");
	gmem_destroy(&gm);
}

Test(gmem_backend, anon_punch, .timeout = 20)
{
	punch_roundtrip(MEM_BACKEND_ANON);
}

Test(gmem_backend, memfd_punch, .timeout = 20)
{
	punch_roundtrip(MEM_BACKEND_MEMFD);
}

Test(gmem_backend, thp_punch, .timeout = 20)
{
	punch_roundtrip(MEM_BACKEND_THP);
}

/* What was mapped over a page (as page sharing maps a pool page) goes, and the backend's own
 * memory is back: the memfd's contents, or fresh zeros for the anonymous backends. */
static void remap_roundtrip(enum mem_backend b)
{
	struct gmem gm;
	const size_t size = 16 * MIB, off = 2 * MIB + 3 * PG;
	void *p;

	cr_assert_eq(gmem_init(&gm, size, b), 0);
	fill(&gm, off - PG, 3 * PG, 0x3c);
	p = mmap(gm.map + off, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	fill(&gm, off, PG, 0x77);
	cr_assert_eq(gmem_remap(&gm, off, PG), 0);
	if (b == MEM_BACKEND_MEMFD)
		cr_expect(filled(&gm, off, PG, 0x3c), "the memfd's contents show again");
	else
		cr_expect(all_zero(gm.map + off, PG), "fresh anonymous memory reads zero");
	cr_expect(filled(&gm, off - PG, PG, 0x3c) && filled(&gm, off + PG, PG, 0x3c), "neighbours kept");
	fill(&gm, off, PG, 0x11);
	if (b == MEM_BACKEND_MEMFD) {
		uint8_t back = 0;

		cr_expect_eq(pread(gm.fd, &back, 1, (off_t)off), 1);
		cr_expect_eq(back, 0x11, "writes after remap reach the memfd");
	}
	cr_expect_eq(gmem_punch(&gm, off, PG), (int64_t)PG, "a remapped page can be punched");
	cr_expect(all_zero(gm.map + off, PG));
	gmem_destroy(&gm);
}

Test(gmem_backend, anon_remap, .timeout = 20)
{
	remap_roundtrip(MEM_BACKEND_ANON);
}

Test(gmem_backend, memfd_remap, .timeout = 20)
{
	remap_roundtrip(MEM_BACKEND_MEMFD);
}

Test(gmem_backend, thp_remap, .timeout = 20)
{
	remap_roundtrip(MEM_BACKEND_THP);
}

static uint64_t anon_huge_kib(const struct gmem *gm)
{
	unsigned long lo = (uintptr_t)gm->map, hi = lo + gm->map_size, start, end;
	unsigned long long v, kib = 0;
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool inside = false;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = start >= lo && end <= hi;
		else if (inside && sscanf(line, "AnonHugePages: %llu kB", &v) == 1)
			kib += v;
	}
	fclose(f);
	return kib;
}

static bool thp_enabled(void)
{
	char line[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

	if (!f)
		return false;
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	return !strstr(line, "[never]");
}

Test(gmem_backend, thp_aligned_huge_and_split_by_punch, .timeout = 30)
{
	struct gmem gm;
	const size_t size = 16 * MIB, huge = GMEM_HUGE_PAGE_SIZE;

	cr_assert_eq(gmem_init(&gm, size, MEM_BACKEND_THP), 0);
	cr_expect_eq((uintptr_t)gm.map % huge, 0, "the mapping starts on a 2 MiB boundary");
	if (!thp_enabled()) {
		gmem_destroy(&gm);
		cr_skip_test("transparent huge pages are disabled on this host");
	}
	fill(&gm, 2 * huge, 2 * huge, 0xee);
	cr_expect_geq(anon_huge_kib(&gm), 2048, "a written 2 MiB range is a huge page (%llu KiB)",
		      (unsigned long long)anon_huge_kib(&gm));
	/* Punching one 4 KiB page splits that huge page only; the rest of it stays resident. */
	cr_assert_eq(gmem_punch(&gm, 2 * huge + 5 * PG, PG), (int64_t)PG);
	cr_expect_eq(resident_pages(&gm, 2 * huge, huge), huge / PG - 1);
	cr_expect(all_zero(gm.map + 2 * huge + 5 * PG, PG));
	cr_expect(filled(&gm, 2 * huge, 5 * PG, 0xee) && filled(&gm, 2 * huge + 6 * PG, huge - 6 * PG, 0xee));
	cr_expect(filled(&gm, 3 * huge, huge, 0xee), "the next huge page is untouched");
	/* A whole huge page punched goes at once. */
	cr_assert_eq(gmem_punch(&gm, 3 * huge, huge), (int64_t)huge);
	cr_expect_eq(resident_pages(&gm, 3 * huge, huge), 0);
	gmem_destroy(&gm);
}

Test(gmem_backend, punch_and_remap_check_ranges, .timeout = 20)
{
	struct gmem gm;
	const size_t size = 16 * MIB;

	cr_assert_eq(gmem_init(&gm, size, MEM_BACKEND_MEMFD), 0);
	cr_expect_eq(gmem_punch(&gm, 1, PG), -EINVAL, "unaligned offset");
	cr_expect_eq(gmem_punch(&gm, 0, PG + 1), -EINVAL, "unaligned length");
	cr_expect_eq(gmem_punch(&gm, size - PG, 2 * PG), -EINVAL, "past the end");
	cr_expect_eq(gmem_punch(&gm, SIZE_MAX & ~(size_t)(PG - 1), 2 * PG), -EINVAL, "off + len overflows");
	cr_expect_eq(gmem_punch(&gm, size, 0), 0, "an empty range at the end frees nothing");
	cr_expect_eq(gmem_remap(&gm, 0, 0), -EINVAL, "remap needs a range");
	cr_expect_eq(gmem_remap(&gm, size, PG), -EINVAL);
	cr_expect_eq(gmem_remap(&gm, PG / 2, PG), -EINVAL);
	gmem_destroy(&gm);
	cr_expect_eq(gmem_punch(&gm, 0, PG), -EINVAL, "nothing to punch after destroy");
	cr_expect_eq(gm.fd, -1);
}

Test(gmem_backend, memfd_discard_and_reset_free_the_file, .timeout = 20)
{
	struct gmem gm;
	const size_t size = 16 * MIB;

	cr_assert_eq(gmem_init(&gm, size, MEM_BACKEND_MEMFD), 0);
	fill(&gm, 0, size, 0x42);
	cr_expect_eq(file_bytes(&gm), (int64_t)size);
	/* The balloon's path without a memory manager: half a page on each end is not released. */
	cr_expect_eq(gmem_discard(&gm, 8 * PG - PG / 2, 16 * PG + PG), (int64_t)(16 * PG));
	cr_expect_eq(file_bytes(&gm), (int64_t)(size - 16 * PG));
	cr_expect(all_zero(gm.map + 8 * PG, 16 * PG) && filled(&gm, 7 * PG, PG, 0x42) &&
		  filled(&gm, 24 * PG, PG, 0x42));
	cr_expect_geq(gmem_resident(&gm), (int64_t)(size - 16 * PG));
	cr_assert_eq(gmem_discard_all(&gm), 0);
	cr_expect_eq(file_bytes(&gm), 0, "a reset leaves the memfd empty");
	cr_expect_lt(gmem_resident(&gm), (int64_t)MIB);
	cr_expect(all_zero(gm.map, size));
	gmem_destroy(&gm);
}

Test(gmem_backend, destroy_of_a_zeroed_gmem_closes_nothing, .timeout = 10)
{
	struct gmem gm;
	int fd = dup(0);

	cr_assert_geq(fd, 0);
	memset(&gm, 0, sizeof(gm));
	gm.fd = fd;
	gmem_destroy(&gm);
	cr_expect_geq(fcntl(fd, F_GETFD), 0, "an fd the struct never mapped stays open");
	close(fd);
}

Test(gmem_backend, hugetlb_needs_2m_multiples, .timeout = 10)
{
	struct gmem gm;

	cr_expect_eq(gmem_init(&gm, 16 * MIB + PG, MEM_BACKEND_HUGETLB), -EINVAL);
	cr_expect_eq(gmem_init(&gm, 16 * MIB, (enum mem_backend)42), -EINVAL);
}

/* One page more than the whole pool: never available, whatever tests running alongside hold. */
Test(gmem_backend, hugetlb_short_pool_is_enomem, .timeout = 10)
{
	struct gmem gm;
	unsigned long long total = 0;
	uint64_t want;
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "re");

	if (f) {
		if (fscanf(f, "%llu", &total) != 1)
			total = 0;
		fclose(f);
	}
	want = (total + 1) * GMEM_HUGE_PAGE_SIZE;
	if (want < GMEM_MIN_SIZE)
		want = GMEM_MIN_SIZE;
	cr_expect_eq(gmem_init(&gm, want, MEM_BACKEND_HUGETLB), -ENOMEM,
		     "%llu MiB with a pool of %llu huge pages", (unsigned long long)(want >> 20), total);
	cr_expect_null(gm.map);
	cr_expect_eq(gm.fd, -1);
}

Test(gmem_backend, hugetlb, .timeout = 30)
{
	struct gmem gm;
	const size_t size = 16 * MIB, huge = GMEM_HUGE_PAGE_SIZE;
	int64_t before;

	if (hugetlb_available() < size / huge)
		cr_skip_test("hugetlb: fewer than %zu free 2 MiB huge pages (vm.nr_hugepages)", size / huge);
	cr_assert_eq(gmem_init(&gm, size, MEM_BACKEND_HUGETLB), 0);
	cr_expect_eq(gm.page_size, huge);
	cr_expect_not(gmem_small_pages(&gm));
	cr_expect_eq((uintptr_t)gm.map % huge, 0);
	cr_expect(all_zero(gm.map + huge - PG, 2 * PG), "fresh RAM reads zero");
	fill(&gm, 0, size, 0x6b);
	cr_expect_eq(file_bytes(&gm), (int64_t)size, "hugetlbfs counts its pages in st_blocks");
	before = gmem_resident(&gm);
	cr_expect_eq(before, (int64_t)size, "resident: all of it (%lld)", (long long)before);

	/* Rounded in: of [2 MiB + 4 KiB, 6 MiB + 4 KiB) only the page at 4 MiB is whole. */
	cr_expect_eq(gmem_punch(&gm, huge + PG, 2 * huge), (int64_t)huge);
	cr_expect_eq(gmem_punch(&gm, PG, PG), 0, "less than a huge page frees nothing");
	cr_expect_eq(file_bytes(&gm), (int64_t)(size - huge));
	cr_expect_eq(before - gmem_resident(&gm), (int64_t)huge);
	cr_expect(filled(&gm, 0, 2 * huge, 0x6b), "the partial pages keep their data");
	cr_expect(all_zero(gm.map + 2 * huge, huge));
	cr_expect(filled(&gm, 3 * huge, huge, 0x6b));

	cr_expect_eq(gmem_remap(&gm, PG, huge), -EINVAL, "remap takes whole huge pages");
	cr_assert_eq(gmem_remap(&gm, 0, huge), 0);
	cr_expect(filled(&gm, 0, huge, 0x6b), "the memfd's contents show again");
	cr_assert_eq(gmem_discard_all(&gm), 0);
	cr_expect_eq(file_bytes(&gm), 0);
	cr_expect(all_zero(gm.map + size - huge, huge));
	gmem_destroy(&gm);
}

/* Why gmem_punch exists: on the memfd's shared mapping MADV_DONTNEED unmaps but frees nothing, the
 * pages stay in the file (and show again); gmem_resident still counts them. */
Test(gmem_backend, memfd_dontneed_frees_nothing, .timeout = 20)
{
	struct gmem gm;
	const size_t size = 16 * MIB, len = 4 * MIB;
	int64_t before;

	cr_assert_eq(gmem_init(&gm, size, MEM_BACKEND_MEMFD), 0);
	fill(&gm, 0, len, 0x99);
	before = gmem_resident(&gm);
	cr_expect_geq(before, (int64_t)len);
	cr_assert_eq(madvise(gm.map, len, MADV_DONTNEED), 0);
	cr_expect_eq(file_bytes(&gm), (int64_t)len, "the memfd keeps its pages");
	cr_expect_eq(gmem_resident(&gm), before, "and gmem_resident counts them");
	cr_expect(filled(&gm, 0, len, 0x99), "they read back as they were");
	gmem_destroy(&gm);
}
