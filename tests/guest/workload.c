/* The workload steps over one area of RAM (size= bytes above the image, possibly in several
 * chunks), with a 64-bit checksum per page kept in a table outside the area. */
#include "guest.h"

#define MISMATCHES_SHOWN 8
#define WSS_CHECK_EVERY 64 /* pages between clock reads */
#define CHURN_PARTIAL_EVERY 4 /* every 4th churn write is split in two (odd words, then even) */

static struct mem_chunk chunks[MEM_CHUNKS_MAX];
static int nr_chunks;
static uint64_t area_pages;
static uint64_t *sums;
static bool filled;
static volatile uint64_t sink;
static uint64_t rewrite_gen; /* rewrite steps so far */
static uint64_t churn_n;     /* churn writes so far, over all churn steps */
/* New page contents are made here, outside the area, and checksummed here before being copied
 * into the page: the recorded checksum is that of the intended contents, never of a read-back,
 * so a write the host loses shows up in a later verify. */
static uint64_t page_buf[PAGE_SIZE / 8] __attribute__((aligned(PAGE_SIZE)));

int workload_prepare(const struct config *cfg)
{
	area_pages = cfg->size >> PAGE_SHIFT;
	sums = (uint64_t *)mm_alloc_pages(ALIGN_UP(area_pages * 8, PAGE_SIZE) >> PAGE_SHIFT);
	nr_chunks = sums ? mm_alloc_area(area_pages, chunks, MEM_CHUNKS_MAX) : -1;
	if (nr_chunks < 0) {
		print("KVMM error=size-too-large size=%lu ram=%lu\n", cfg->size, mm_ram_bytes());
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

/* The address of page i of the area (i < area_pages). */
static uint64_t page_addr(uint64_t i)
{
	int c = 0;

	while (i >= chunks[c].pages)
		i -= chunks[c++].pages;
	return chunks[c].addr + (i << PAGE_SHIFT);
}

/* Records page i's checksum from page_buf, then writes page_buf into it. */
static void commit_page(uint64_t i, uint64_t addr)
{
	sums[i] = page_checksum(page_buf);
	memcpy((void *)addr, page_buf, PAGE_SIZE);
}

/* Walks pages [0, n) of the area in index order. */
struct page_iter {
	int chunk;
	uint64_t in_chunk, index; /* index: of the next page */
};

static bool page_next(struct page_iter *it, uint64_t n, uint64_t *addr)
{
	while (it->chunk < nr_chunks && it->in_chunk == chunks[it->chunk].pages) {
		it->chunk++;
		it->in_chunk = 0;
	}
	if (it->index >= n || it->chunk >= nr_chunks)
		return false;
	*addr = chunks[it->chunk].addr + (it->in_chunk++ << PAGE_SHIFT);
	it->index++;
	return true;
}

int workload_fill(const struct config *cfg)
{
	uint64_t count[KIND_COUNT] = { 0 };

	struct page_iter it = { 0 };
	uint64_t addr;
	while (page_next(&it, area_pages, &addr)) {
		uint64_t i = it.index - 1;
		enum page_kind k = pattern_kind(&cfg->pattern, cfg->seed, i);
		pattern_fill_page(page_buf, k, cfg->seed, i);
		commit_page(i, addr);
		count[k]++;
	}
	filled = true;
	print("KVMM test=fill pages=%lu zero=%lu dup=%lu random=%lu text=%lu\n", area_pages,
	      count[KIND_ZERO], count[KIND_DUP], count[KIND_RANDOM], count[KIND_TEXT]);
	return EXIT_OK;
}

/* verify, rewrite and churn need the checksums of every page. */
static int need_fill(const char *step)
{
	if (filled)
		return EXIT_OK;
	print("KVMM error=%s-without-fill\n", step);
	return EXIT_USAGE;
}

int workload_verify(const struct config *cfg)
{
	uint64_t bad = 0;
	int r = need_fill("verify");

	if (r)
		return r;
	struct page_iter it = { 0 };
	uint64_t addr;
	while (page_next(&it, area_pages, &addr)) {
		uint64_t i = it.index - 1, sum = page_checksum((void *)addr);
		if (sum != sums[i] && ++bad <= MISMATCHES_SHOWN)
			print("KVMM mismatch page=%lu addr=0x%lx expected=0x%016lx actual=0x%016lx\n", i, addr,
			      sums[i], sum);
	}
	print("KVMM test=verify pages=%lu mismatches=%lu\n", area_pages, bad);
	return bad ? EXIT_MISMATCH : EXIT_OK;
}

static int need_clock(void)
{
	if (clock_calibrate()) {
		print("KVMM error=rtc-not-ticking\n");
		return EXIT_INTERNAL;
	}
	return EXIT_OK;
}

int workload_idle(const struct config *cfg, uint64_t seconds)
{
	int r = need_clock();

	if (r)
		return r;
	uint64_t end = clock_now_us() + seconds * 1000000;
	while (clock_now_us() < end)
		cpu_relax();
	print("KVMM test=idle seconds=%lu\n", seconds);
	return EXIT_OK;
}

/* Reads the whole page and writes its first word back unchanged: the page is accessed and dirty,
 * its contents (and checksum) stay the same. */
static void touch(uint64_t addr)
{
	volatile uint64_t *w = (volatile uint64_t *)addr;
	uint64_t acc = 0;

	for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
		acc += w[i];
	w[0] = w[0];
	sink += acc;
}

int workload_wss(const struct config *cfg)
{
	int r = need_clock();

	if (r)
		return r;
	uint64_t hot = area_pages * cfg->hot_pct / 100, passes = 0, touched = 0;
	if (!hot)
		hot = 1;
	uint64_t start = clock_now_us(), limit = cfg->seconds * 1000000, elapsed = 0;
	bool over = false;
	while (!over) {
		struct page_iter it = { 0 };
		uint64_t addr;
		while (page_next(&it, hot, &addr)) {
			touch(addr);
			touched++;
			if (touched % WSS_CHECK_EVERY == 0 && (elapsed = clock_now_us() - start) >= limit) {
				over = true;
				break;
			}
		}
		if (!over) {
			passes++;
			over = (elapsed = clock_now_us() - start) >= limit;
		}
	}
	print("KVMM test=wss hot_pages=%lu passes=%lu pages_per_sec=%lu\n", hot, passes,
	      elapsed ? touched * 1000000 / elapsed : 0);
	return EXIT_OK;
}

/* Writes pct% of the pages (exact per aligned block of 100) with contents each never had before. */
int workload_rewrite(const struct config *cfg, unsigned pct)
{
	uint64_t done = 0;
	int r = need_fill("rewrite");

	if (r)
		return r;
	rewrite_gen++;
	struct page_iter it = { 0 };
	uint64_t addr;
	while (page_next(&it, area_pages, &addr)) {
		uint64_t i = it.index - 1;
		if (!pattern_rewrite_pick(cfg->seed, rewrite_gen, i, pct))
			continue;
		pattern_fill_unique(page_buf, cfg->seed, rewrite_gen, i);
		commit_page(i, addr);
		done++;
	}
	print("KVMM test=rewrite pages=%lu pct=%u gen=%lu\n", done, pct, rewrite_gen);
	return EXIT_OK;
}

/* Rewrites pseudo-random pages, whole, for `seconds`: zero, dup and unique contents in turn. Every
 * CHURN_PARTIAL_EVERY-th write stores the odd words first, then (after a clock read) the even ones. */
int workload_churn(const struct config *cfg, uint64_t seconds)
{
	uint64_t writes = 0;
	int r = need_fill("churn");

	if (!r)
		r = need_clock();
	if (r)
		return r;
	uint64_t end = clock_now_us() + seconds * 1000000;
	while (clock_now_us() < end) {
		uint64_t n = churn_n++, i = pattern_churn_page(cfg->seed, n, area_pages);
		uint64_t *w = (uint64_t *)page_addr(i);
		pattern_churn_fill(page_buf, cfg->seed, n, i);
		if (n % CHURN_PARTIAL_EVERY == CHURN_PARTIAL_EVERY - 1) {
			sums[i] = page_checksum(page_buf);
			for (unsigned k = 1; k < PAGE_SIZE / 8; k += 2)
				w[k] = page_buf[k];
			sink += clock_now_us();
			for (unsigned k = 0; k < PAGE_SIZE / 8; k += 2)
				w[k] = page_buf[k];
		} else {
			commit_page(i, (uint64_t)w);
		}
		writes++;
	}
	print("KVMM test=churn seconds=%lu writes=%lu\n", seconds, writes);
	return EXIT_OK;
}
