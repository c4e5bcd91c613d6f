/* Page-out micro-benchmark (bench/pageout.sh): the compression cache (src/mem/zcache.c) against
 * raw LZ4 on the same pages, natively on this machine, no VM.
 *
 * Two workloads of the test guest's page kinds (tests/guest/pattern.c, linked in so the pages are
 * the very ones the guest writes): "text" (pseudo-English, ~2.4x with LZ4) and "mix" (the dedup
 * benchmark's dup:50,zero:30,random:20: dup templates and unique pages are random bytes, so 70% of
 * the pages do not fit in 2 KiB). For each, on one core:
 *   store: zcache_store of every page into a cache big enough for all of them (its arena pages'
 *          cost included), and LZ4_compress_default of every page into one hot buffer (the codec
 *          alone);
 *   ratio: guest bytes / arena bytes of the stored pages (and with the cache's bookkeeping), and
 *          LZ4's own guest bytes / compressed bytes over the same pages (those that fit);
 *   load:  zcache_load of every stored page, and LZ4_decompress_safe of the same LZ4 blocks laid
 *          end to end in one buffer.
 * Rates are MiB of guest pages per CPU-second of this thread (CLOCK_THREAD_CPUTIME_ID), so another
 * process sharing the core does not count; each loop's fastest of REPS passes. Store rates are over
 * all pages offered (a rejected page is paged out elsewhere, but its cost is the cache's); load
 * rates over the pages stored. Prints one JSON line per workload, then one of what a new page of
 * memory costs this machine (page_costs), which the store pays and raw LZ4 does not.
 * Usage: pageout [PAGES [RUN]] (default 16384 pages = 64 MiB, run 0). */
#include "zcache.h"

#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "guest.h" /* tests/guest: enum page_kind, pattern_kind, pattern_fill_page */

#define PG ZCACHE_PAGE
#define SEED 0x6b766d6dull /* any seed: the figures do not depend on it */
#define REPS 3

struct result {
	double store_s, raw_s, load_s, raw_dec_s;
	uint64_t fit, fit_raw_bytes, all_raw_bytes;
	struct zcache_stats st;
};

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(uint8_t *pages, size_t n, bool text)
{
	const struct pattern mix = { 3, { KIND_DUP, KIND_ZERO, KIND_RANDOM }, { 50, 30, 20 } };

	for (size_t i = 0; i < n; i++)
		pattern_fill_page(pages + i * PG, text ? KIND_TEXT : pattern_kind(&mix, SEED, i),
				  SEED, i);
}

static double min_of(double a, double b)
{
	return a < b ? a : b;
}

/* Each timed loop runs REPS times and keeps its fastest pass: on a shared machine the slower
 * passes measure the neighbours. */
static int measure(const uint8_t *pages, size_t n, struct result *r)
{
	int bound = LZ4_compressBound(PG);
	char *raw = malloc(n * (size_t)bound), *scratch = malloc((size_t)bound);
	int *raw_len = calloc(n, sizeof(*raw_len));
	size_t *raw_off = calloc(n, sizeof(*raw_off));
	uint32_t *handle = calloc(n, sizeof(*handle));
	static uint8_t out[PG];
	struct zcache c = { NULL };
	size_t off = 0;
	uint64_t k = 0;
	double t;
	int ret = -ENOMEM;

	if (!raw || !scratch || !raw_len || !raw_off || !handle)
		goto out;
	*r = (struct result){ .store_s = 1e9, .raw_s = 1e9, .load_s = 1e9, .raw_dec_s = 1e9 };

	/* Raw LZ4 is the codec alone: each page into one hot buffer, as the cache compresses into
	 * its own before copying to the arena. */
	for (int rep = 0; rep < REPS; rep++) {
		t = cpu_now();
		for (size_t i = 0; i < n; i++)
			raw_len[i] = LZ4_compress_default((const char *)pages + i * PG, scratch, PG, bound);
		r->raw_s = min_of(r->raw_s, cpu_now() - t);
	}
	/* Untimed: the blocks end to end (as compact as the arena, for a fair decompression). */
	for (size_t i = 0; i < n; i++) {
		raw_off[i] = off;
		off += (size_t)LZ4_compress_default((const char *)pages + i * PG, raw + off, PG, bound);
		r->all_raw_bytes += (unsigned)raw_len[i];
		if (raw_len[i] <= (int)ZCACHE_MAX_LEN) {
			r->fit++;
			r->fit_raw_bytes += (unsigned)raw_len[i];
		}
	}

	/* A new cache each pass: its arena pages fault in as they fill, as in a running VM, where
	 * a span given back with MADV_DONTNEED faults in again when reused. */
	for (int rep = 0; rep < REPS; rep++) {
		zcache_destroy(&c);
		ret = zcache_init(&c, (uint64_t)n * PG);
		if (ret)
			goto out;
		t = cpu_now();
		for (size_t i = 0; i < n; i++) {
			ret = zcache_store(&c, pages + i * PG, (uint32_t)i, &handle[i]);
			if (ret == -E2BIG)
				handle[i] = UINT32_MAX;
			else if (ret)
				goto destroy;
		}
		r->store_s = min_of(r->store_s, cpu_now() - t);
	}
	zcache_get_stats(&c, &r->st);
	ret = 0;

	for (int rep = 0; rep < REPS; rep++) {
		t = cpu_now();
		for (size_t i = 0; i < n; i++)
			if (handle[i] != UINT32_MAX && zcache_load(&c, handle[i], out))
				ret = -EIO;
		r->load_s = min_of(r->load_s, cpu_now() - t);
		t = cpu_now();
		for (size_t i = 0; i < n; i++)
			if (raw_len[i] <= (int)ZCACHE_MAX_LEN &&
			    LZ4_decompress_safe(raw + raw_off[i], (char *)out, raw_len[i], PG) != (int)PG)
				ret = -EIO;
		r->raw_dec_s = min_of(r->raw_dec_s, cpu_now() - t);
	}

	/* Untimed: every page comes back whole, and the cache kept exactly what LZ4 says fits. */
	for (size_t i = 0; i < n && !ret; i++) {
		if (handle[i] == UINT32_MAX)
			continue;
		if (zcache_load(&c, handle[i], out) || memcmp(out, pages + i * PG, PG))
			ret = -EIO;
		k++;
	}
	if (!ret && (k != r->fit || r->st.stored_bytes != r->fit_raw_bytes)) {
		fprintf(stderr, "pageout: the cache kept %lu pages (%lu bytes), LZ4 says %lu (%lu)\n",
			(unsigned long)k, (unsigned long)r->st.stored_bytes, (unsigned long)r->fit,
			(unsigned long)r->fit_raw_bytes);
		ret = -EINVAL;
	}
destroy:
	zcache_destroy(&c);
out:
	free(handle);
	free(raw_off);
	free(raw_len);
	free(scratch);
	free(raw);
	return ret;
}

/* What a new page of memory costs this machine, per page: a write fault, MADV_POPULATE_WRITE in
 * calls of 3 pages (a 1664-byte class's span, as zcache does it) and the first write after that.
 * The arena's pages cost the store this much; raw LZ4 writes to one hot buffer. */
static void page_costs(void)
{
	enum { N = 4096, RUN = 3 };
	size_t len = (size_t)N * PG;
	char *a = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	double fault = 1e9, populate = 1e9, touch = 1e9, t;

	if (a == MAP_FAILED)
		return;
	for (int rep = 0; rep < REPS; rep++) {
		madvise(a, len, MADV_DONTNEED);
		t = cpu_now();
		for (size_t i = 0; i < N; i++)
			a[i * PG] = 1;
		fault = min_of(fault, cpu_now() - t);
		madvise(a, len, MADV_DONTNEED);
		t = cpu_now();
		for (size_t i = 0; i + RUN <= N; i += RUN)
			madvise(a + i * PG, RUN * PG, MADV_POPULATE_WRITE);
		populate = min_of(populate, cpu_now() - t);
		t = cpu_now();
		for (size_t i = 0; i < N; i++)
			a[i * PG + 64] = 1;
		touch = min_of(touch, cpu_now() - t);
	}
	munmap(a, len);
	printf("{\"page_costs\": {\"fault_us\": %.2f, \"populate_us\": %.2f, \"first_write_us\": %.2f}}\n",
	       fault / N * 1e6, populate / (N / RUN * RUN) * 1e6, touch / N * 1e6);
}

static double mibs(size_t pages, double s)
{
	return s > 0 ? (double)pages * PG / (1 << 20) / s : 0;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 16384;
	int run = argc > 2 ? atoi(argv[2]) : 0;
	uint8_t *pages = n ? malloc(n * PG) : NULL;

	if (!pages) {
		fprintf(stderr, "pageout: no memory for %zu pages\n", n);
		return 1;
	}
	for (int w = 0; w < 2; w++) {
		struct result r;
		int ret;

		fill(pages, n, w == 0);
		ret = measure(pages, n, &r);
		if (ret) {
			fprintf(stderr, "pageout: %s: %s\n", w ? "mix" : "text", strerror(-ret));
			free(pages);
			return 1;
		}
		printf("{\"workload\": \"%s\", \"run\": %d, \"pages\": %zu, "
		       "\"store_mibs\": %.1f, \"raw_mibs\": %.1f, \"load_mibs\": %.1f, \"raw_dec_mibs\": %.1f, "
		       "\"stored\": %lu, \"rejected\": %lu, \"stored_bytes\": %lu, \"arena_bytes\": %lu, "
		       "\"meta_bytes\": %lu, \"raw_fit_bytes\": %lu, \"raw_all_bytes\": %lu}\n",
		       w ? "mix" : "text", run, n, mibs(n, r.store_s), mibs(n, r.raw_s),
		       mibs(r.fit, r.load_s), mibs(r.fit, r.raw_dec_s), (unsigned long)r.st.entries,
		       (unsigned long)r.st.rejected, (unsigned long)r.st.stored_bytes,
		       (unsigned long)r.st.arena_bytes, (unsigned long)r.st.meta_bytes,
		       (unsigned long)r.fit_raw_bytes, (unsigned long)r.all_raw_bytes);
		fflush(stdout);
	}
	free(pages);
	page_costs();
	return 0;
}
