/* The compression cache (src/mem/zcache.c): the 2 KiB rule, the cap, insertion order and handle
 * reuse, memory given back, a randomized run against a reference, damaged entries. */
#include "mem/zcache.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG ZCACHE_PAGE

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, uint64_t seed, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		p[i] = (uint8_t)mix64(seed * 4096 + i);
}

/* Words in a random order, the first ones more often, like tests/guest/pattern.c's text pages:
 * LZ4 makes ~1.7 KiB of them (classes of 1728 and 1792 bytes, 7 per 3 arena pages, so objects
 * straddle arena pages). */
static void fill_text(uint8_t *p, uint64_t seed)
{
	static const char *const words[16] = {
		"the ", "memory ", "of ", "a ", "guest ", "page ", "is ", "compressed ",
		"when ", "cold, ", "and ", "host ", "balloon ", "kernel. ", "it ", "virtual ",
	};
	unsigned pos = 0;

	for (uint64_t k = 0; pos < PG; k++) {
		uint64_t r = mix64(seed ^ k * 0x9e3779b97f4a7c15ull);
		unsigned a = r & 7, b = (r >> 3) & 15;
		const char *w = words[a < b ? a : b];

		for (unsigned i = 0; w[i] && pos < PG; i++)
			p[pos++] = (uint8_t)w[i];
	}
}

/* Kinds the randomized test mixes: 0 text, 1 one repeated byte, 2 random, 3 half random (~2 KiB,
 * on either side of the rule). */
static void fill_kind(uint8_t *p, unsigned kind, uint64_t seed)
{
	switch (kind) {
	case 0:
		fill_text(p, seed);
		break;
	case 1:
		memset(p, (int)(seed % 255) + 1, PG);
		break;
	case 2:
		fill_random(p, seed, PG);
		break;
	default:
		memset(p, 0, PG);
		fill_random(p, seed, 1990 + (unsigned)(seed % 80));
		break;
	}
}

/* What LZ4 makes of the page without the cache: its compressed length. */
static int raw_len(const uint8_t *p)
{
	static char out[8192];

	return LZ4_compress_default((const char *)p, out, PG, (int)sizeof(out));
}

static struct zcache_stats stats(const struct zcache *c)
{
	struct zcache_stats st;

	zcache_get_stats(c, &st);
	return st;
}

static bool loads_as(const struct zcache *c, uint32_t h, const uint8_t *want)
{
	uint8_t got[PG];

	return zcache_load(c, h, got) == 0 && memcmp(got, want, PG) == 0;
}

static long rss_kib(void)
{
	long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");

	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
	fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

Test(zcache, init_caps, .timeout = 10)
{
	struct zcache c;

	cr_expect_eq(zcache_init(&c, 0), -EINVAL);
	cr_expect_eq(zcache_init(&c, PG - 1), -EINVAL);
	cr_assert_eq(zcache_init(&c, PG), 0);
	cr_expect_eq(stats(&c).cap_bytes, PG);
	cr_expect_eq(stats(&c).arena_bytes, 0);
	zcache_destroy(&c);
	cr_expect_null(c.z);
	zcache_destroy(&c); /* twice is harmless */

	cr_assert_eq(zcache_init(&c, 10000), 0);
	cr_expect_eq(stats(&c).cap_bytes, 2 * PG, "rounded down to whole pages");
	zcache_destroy(&c);
	cr_assert_eq(zcache_init(&c, UINT64_MAX), 0);
	cr_expect_eq(stats(&c).cap_bytes, ZCACHE_MAX_CAP);
	zcache_destroy(&c);
}

Test(zcache, two_kib_rule, .timeout = 10)
{
	static uint8_t rnd[PG], text[PG], same[PG];
	struct zcache c;
	uint32_t h, ht, hs;
	uint32_t page;

	fill_random(rnd, 1, PG);
	fill_text(text, 2);
	memset(same, 0xa5, PG);
	cr_assert_eq(zcache_init(&c, 1 << 20), 0);

	cr_expect_eq(zcache_store(&c, rnd, 7, &h), -E2BIG);
	cr_expect_eq(stats(&c).rejected, 1);
	cr_expect_eq(stats(&c).entries, 0);
	cr_expect_eq(stats(&c).arena_bytes, 0, "nothing stored for a rejected page");
	cr_expect_not(zcache_oldest(&c, &h, &page));

	cr_assert_eq(zcache_store(&c, text, 8, &ht), 0);
	cr_assert_eq(zcache_store(&c, same, 9, &hs), 0);
	cr_expect_neq(ht, hs);
	cr_expect_eq(stats(&c).entries, 2);
	cr_expect_eq(stats(&c).rejected, 1);
	cr_expect_eq(stats(&c).stored_bytes, (uint64_t)(raw_len(text) + raw_len(same)),
		     "stored lengths are LZ4's own");
	cr_expect_leq(raw_len(text), (int)ZCACHE_MAX_LEN);
	cr_expect_lt(raw_len(same), 64, "a repeated byte compresses to a few bytes");
	cr_expect(loads_as(&c, ht, text), "text page back byte-identical");
	cr_expect(loads_as(&c, hs, same), "repeated-byte page back byte-identical");
	cr_expect(loads_as(&c, ht, text), "a load leaves the entry");
	cr_expect_gt(stats(&c).meta_bytes, 0);
	zcache_destroy(&c);
}

/* Pages whose LZ4 output is just under, at and just over 2 KiB: stored exactly when LZ4's length
 * is ZCACHE_MAX_LEN or less. */
Test(zcache, two_kib_boundary, .timeout = 10)
{
	static uint8_t p[PG];
	unsigned stored = 0, rejected = 0, exact = 0;
	struct zcache c;

	cr_assert_eq(zcache_init(&c, 1 << 20), 0);
	for (unsigned r = 1980; r < 2080; r++) {
		uint64_t before = stats(&c).stored_bytes;
		uint32_t h;
		int len, ret;

		memset(p, 0, PG);
		fill_random(p, r, r);
		len = raw_len(p);
		ret = zcache_store(&c, p, r, &h);
		if (len <= (int)ZCACHE_MAX_LEN) {
			cr_assert_eq(ret, 0, "%u random bytes: LZ4 makes %d, must be kept", r, len);
			cr_expect_eq(stats(&c).stored_bytes - before, (uint64_t)len);
			cr_expect(loads_as(&c, h, p));
			stored++;
			exact += len == (int)ZCACHE_MAX_LEN;
		} else {
			cr_assert_eq(ret, -E2BIG, "%u random bytes: LZ4 makes %d, must be refused", r, len);
			rejected++;
		}
	}
	cr_expect_gt(stored, 0);
	cr_expect_gt(rejected, 0);
	cr_expect_eq(stats(&c).rejected, rejected);
	cr_log_info("boundary: %u stored (%u of exactly 2048 bytes), %u rejected", stored, exact, rejected);
	zcache_destroy(&c);
}

/* One text page stored under many guest pages: every object is the same size, so one class. */
static unsigned fill_to_cap(struct zcache *c, const uint8_t *page, uint32_t *h, unsigned max)
{
	unsigned n = 0;
	int ret;

	while ((ret = zcache_store(c, page, n, &h[n])) == 0) {
		n++;
		cr_assert_lt(n, max, "the cache never fills");
	}
	cr_assert_eq(ret, -ENOSPC);
	return n;
}

Test(zcache, fills_to_cap_then_enospc, .timeout = 10)
{
	static uint8_t text[PG], other[PG];
	static uint32_t h[4096];
	struct zcache c;
	struct zcache_stats st;
	unsigned n;
	uint32_t x;

	fill_text(text, 3);
	cr_assert_eq(zcache_init(&c, 64 * 1024), 0);
	n = fill_to_cap(&c, text, h, 4096);
	st = stats(&c);
	cr_expect_leq(st.arena_bytes, st.cap_bytes);
	cr_expect_geq(st.arena_bytes, st.cap_bytes - 4 * PG, "full within one span");
	cr_expect_gt(n, 16 * 2, "text at ~2.5x holds more than 2 pages per arena page: %u", n);
	cr_expect_eq(st.entries, n);
	cr_expect_eq(zcache_store(&c, text, 9999, &x), -ENOSPC, "still full");
	cr_expect_eq(stats(&c).entries, n, "a refused store leaves no entry");
	/* Text spans take 3 pages: a page or two may be left for a one-page class. */
	memset(other, 0x11, PG);
	n += fill_to_cap(&c, other, h + n, 4096 - n);
	cr_expect_eq(stats(&c).arena_bytes, stats(&c).cap_bytes, "every arena page in use");
	for (unsigned i = 0; i < n; i++)
		cr_assert(loads_as(&c, h[i], i < st.entries ? text : other), "entry %u", i);
	zcache_destroy(&c);
}

Test(zcache, eviction_is_fifo, .timeout = 10)
{
	static uint8_t text[PG];
	static uint32_t h[4096];
	struct zcache c;
	uint32_t oh, op, nh;
	unsigned n;

	fill_text(text, 4);
	cr_assert_eq(zcache_init(&c, 64 * 1024), 0);
	n = fill_to_cap(&c, text, h, 4096);
	cr_assert(zcache_oldest(&c, &oh, &op));
	cr_expect_eq(op, 0);
	cr_expect_eq(oh, h[0]);
	zcache_drop(&c, oh);
	cr_assert_eq(zcache_store(&c, text, n, &nh), 0, "room again after evicting the oldest");
	cr_expect_eq(nh, oh, "the freed handle is reused");
	h[n] = nh;
	for (unsigned i = 1; i <= n; i++) {
		cr_assert(zcache_oldest(&c, &oh, &op));
		cr_assert_eq(op, i, "oldest is guest page %u, got %u", i, op);
		cr_assert_eq(oh, h[i]);
		cr_assert(loads_as(&c, oh, text));
		zcache_drop(&c, oh);
	}
	cr_expect_not(zcache_oldest(&c, &oh, &op));
	cr_expect_eq(stats(&c).entries, 0);
	cr_expect_eq(stats(&c).arena_bytes, 0);
	zcache_destroy(&c);
}

/* Pages of many sizes: the caller's loop (evict the oldest until the store fits) ends, and what
 * it evicts comes out oldest first. */
Test(zcache, evict_until_it_fits, .timeout = 10)
{
	static uint8_t p[PG];
	uint32_t next_evict = 0, stored = 0, evicted = 0;
	struct zcache c;

	cr_assert_eq(zcache_init(&c, 32 * 1024), 0);
	for (uint32_t g = 0; g < 2000; g++) {
		uint32_t h, oh, op;
		int ret;

		fill_kind(p, g % 3 == 2 ? 1 : 0, g);
		while ((ret = zcache_store(&c, p, g, &h)) == -ENOSPC) {
			cr_assert(zcache_oldest(&c, &oh, &op), "ENOSPC with an empty cache");
			cr_assert_eq(op, next_evict, "evicted %u, expected %u", op, next_evict);
			zcache_drop(&c, oh);
			next_evict++;
			evicted++;
		}
		cr_assert_eq(ret, 0);
		stored++;
		cr_assert_leq(stats(&c).arena_bytes, stats(&c).cap_bytes);
	}
	cr_expect_eq(stats(&c).entries, stored - evicted);
	cr_expect_gt(evicted, 0);
	zcache_destroy(&c);
}

Test(zcache, dropping_everything_gives_memory_back, .timeout = 30)
{
	static uint8_t p[PG];
	static uint32_t h[40000];
	unsigned n = 0;
	long before, full, after;
	struct zcache c;
	int ret;

	cr_assert_eq(zcache_init(&c, 32u << 20), 0);
	before = rss_kib();
	for (;;) {
		fill_kind(p, n % 4 == 3 ? 1 : 0, n);
		ret = zcache_store(&c, p, n, &h[n]);
		if (ret)
			break;
		n++;
		cr_assert_lt(n, 40000);
	}
	cr_assert_eq(ret, -ENOSPC);
	full = rss_kib();
	cr_expect_gt(stats(&c).arena_bytes, (30u << 20), "nearly the whole cap in use");
	cr_expect_gt(full - before, 24 * 1024, "RSS grew by the arena: %ld -> %ld KiB", before, full);

	/* Every other entry first, then the rest: spans empty only at the end. */
	for (unsigned i = 0; i < n; i += 2)
		zcache_drop(&c, h[i]);
	cr_expect_gt(stats(&c).arena_bytes, 0);
	for (unsigned i = 1; i < n; i += 2)
		zcache_drop(&c, h[i]);
	cr_expect_eq(stats(&c).entries, 0);
	cr_expect_eq(stats(&c).stored_bytes, 0);
	cr_expect_eq(stats(&c).arena_bytes, 0);
	after = rss_kib();
	/* Not all of it: the entry table stays at its high-water mark (~20 bytes per entry), and
	 * ASan keeps the shadow of the arena it checked. */
	cr_expect_lt(after - before, (full - before) / 4, "RSS back near where it was: %ld -> %ld -> %ld KiB",
		     before, full, after);
	zcache_destroy(&c);
}

/* Handles come back after drops; the order of what is left must not be fooled by a handle that
 * names a different page now. */
Test(zcache, reused_handles_keep_order, .timeout = 10)
{
	static uint8_t p[5][PG];
	uint32_t h[5], oh, op;
	struct zcache c;
	const uint32_t want[] = { 2, 3, 4 };

	for (int i = 0; i < 5; i++)
		fill_text(p[i], 100 + (uint64_t)i);
	cr_assert_eq(zcache_init(&c, 1 << 20), 0);
	cr_assert_eq(zcache_store(&c, p[0], 0, &h[0]), 0);
	cr_assert_eq(zcache_store(&c, p[1], 1, &h[1]), 0);
	cr_assert_eq(zcache_store(&c, p[2], 2, &h[2]), 0);
	zcache_drop(&c, h[1]);
	cr_assert_eq(zcache_store(&c, p[3], 3, &h[3]), 0);
	cr_expect_eq(h[3], h[1], "page 3 got page 1's old handle");
	zcache_drop(&c, h[1]); /* a stale copy of page 1's handle: drops page 3 */
	cr_assert_eq(zcache_store(&c, p[3], 3, &h[3]), 0);

	cr_assert(zcache_oldest(&c, &oh, &op));
	cr_expect_eq(op, 0);
	zcache_drop(&c, oh);
	cr_assert_eq(zcache_store(&c, p[4], 4, &h[4]), 0);
	cr_expect(h[4] == h[0] || h[4] == h[1], "a freed handle is reused");
	for (int i = 0; i < 3; i++) {
		cr_assert(zcache_oldest(&c, &oh, &op));
		cr_expect_eq(op, want[i], "oldest %d: page %u, expected %u", i, op, want[i]);
		cr_expect(loads_as(&c, oh, p[op]));
		zcache_drop(&c, oh);
		zcache_drop(&c, oh); /* a second drop of the same handle is ignored */
	}
	cr_expect_not(zcache_oldest(&c, &oh, &op));
	cr_expect_eq(stats(&c).arena_bytes, 0);
	zcache_destroy(&c);
}

Test(zcache, unknown_handles, .timeout = 10)
{
	static uint8_t p[PG], got[PG];
	struct zcache c;
	uint32_t h;

	fill_text(p, 5);
	cr_assert_eq(zcache_init(&c, 1 << 20), 0);
	cr_expect_eq(zcache_load(&c, 0, got), -ENOENT, "nothing stored yet");
	zcache_drop(&c, 12345);
	cr_assert_eq(zcache_store(&c, p, 1, &h), 0);
	cr_expect_eq(zcache_load(&c, h + 1, got), -ENOENT);
	cr_expect_eq(zcache_load(&c, UINT32_MAX, got), -ENOENT);
	zcache_drop(&c, UINT32_MAX);
	zcache_drop(&c, h);
	cr_expect_eq(zcache_load(&c, h, got), -ENOENT, "dropped");
	cr_expect_eq(zcache_test_poke(&c, h, 0, 0), -ENOENT);
	zcache_destroy(&c);
}

Test(zcache, clear_gives_everything_back, .timeout = 10)
{
	static uint8_t p[PG], rnd[PG];
	struct zcache c;
	uint32_t h, oh, op;

	fill_random(rnd, 9, PG);
	cr_assert_eq(zcache_init(&c, 1 << 20), 0);
	cr_expect_eq(zcache_store(&c, rnd, 0, &h), -E2BIG);
	for (uint32_t g = 0; g < 300; g++) {
		fill_kind(p, g % 2, g);
		cr_assert_eq(zcache_store(&c, p, g, &h), 0);
	}
	cr_expect_gt(stats(&c).arena_bytes, 0);
	zcache_clear(&c);
	cr_expect_eq(stats(&c).entries, 0);
	cr_expect_eq(stats(&c).stored_bytes, 0);
	cr_expect_eq(stats(&c).arena_bytes, 0);
	cr_expect_eq(stats(&c).rejected, 1, "rejected counts since init");
	cr_expect_not(zcache_oldest(&c, &oh, &op));
	cr_expect_eq(zcache_load(&c, h, p), -ENOENT);
	fill_text(p, 77);
	cr_assert_eq(zcache_store(&c, p, 77, &h), 0, "usable again");
	cr_expect(loads_as(&c, h, p));
	cr_assert(zcache_oldest(&c, &oh, &op));
	cr_expect_eq(op, 77);
	zcache_destroy(&c);
}

/* A one-page cache: every class must fit in it (spans are at most the arena). */
Test(zcache, one_page_cache, .timeout = 10)
{
	static uint8_t p[PG];
	struct zcache c;
	uint32_t h;

	cr_assert_eq(zcache_init(&c, PG), 0);
	for (uint64_t s = 0; s < 50; s++) {
		fill_kind(p, s % 2 ? 0 : 3, s);
		if (raw_len(p) > (int)ZCACHE_MAX_LEN)
			continue;
		cr_assert_eq(zcache_store(&c, p, (uint32_t)s, &h), 0, "empty one-page cache, seed %lu",
			     (unsigned long)s);
		cr_expect(loads_as(&c, h, p));
		cr_expect_eq(stats(&c).arena_bytes, PG);
		zcache_drop(&c, h);
	}
	zcache_destroy(&c);
}

/* Damage the format can see fails the load: bytes that send LZ4 past its input (0xff: literal
 * runs longer than the object), match offsets of 0 (zeros), a damaged trailing literal run. */
Test(zcache, damaged_entry_is_eio, .timeout = 10)
{
	static uint8_t text[PG], other[PG], got[PG];
	uint8_t fills[] = { 0xff, 0x00 };
	struct zcache c;
	uint32_t h, ho;
	unsigned len;

	fill_text(text, 6);
	fill_text(other, 7);
	cr_assert_eq(zcache_init(&c, 1 << 20), 0);
	for (unsigned f = 0; f < 2; f++) {
		cr_assert_eq(zcache_store(&c, text, 1, &h), 0);
		cr_assert_eq(zcache_store(&c, other, 2, &ho), 0);
		len = (unsigned)raw_len(text);
		cr_expect_eq(zcache_test_poke(&c, h, len, 0), -EINVAL, "past the end");
		for (unsigned i = 0; i < len; i++)
			cr_assert_eq(zcache_test_poke(&c, h, i, fills[f]), 0);
		memset(got, 0x5a, PG);
		cr_expect_eq(zcache_load(&c, h, got), -EIO, "all 0x%02x", fills[f]);
		cr_expect(loads_as(&c, ho, other), "the neighbour is intact");
		zcache_drop(&c, h);
		zcache_drop(&c, ho);
	}

	/* Every value of the first token (its literal run and match lengths): the right one loads
	 * the page, the others come out short or long, or overrun the block, except those that happen
	 * to make a well-formed block of exactly one page, which no check without a checksum sees. */
	{
		static char lz[8192];
		unsigned undetected = 0;

		cr_assert_gt(LZ4_compress_default((const char *)text, lz, PG, sizeof(lz)), 0);
		cr_assert_eq(zcache_store(&c, text, 1, &h), 0);
		for (unsigned v = 0; v < 256; v++) {
			int ret;

			cr_assert_eq(zcache_test_poke(&c, h, 0, (uint8_t)v), 0);
			ret = zcache_load(&c, h, got);
			if (v == (uint8_t)lz[0])
				cr_expect(ret == 0 && !memcmp(got, text, PG), "the original token");
			else if (ret == 0)
				undetected++;
			else
				cr_expect_eq(ret, -EIO, "token 0x%02x: %d", v, ret);
		}
		cr_log_info("first token: %u of 255 wrong values give a well-formed page", undetected);
		cr_expect_lt(undetected, 26, "at most a tenth slips through: %u", undetected);
	}
	zcache_destroy(&c);
}

/* Many stores, drops, loads and evictions against a reference of what each guest page holds. */
Test(zcache, randomized_against_reference, .timeout = 60)
{
	enum { PAGES = 1024, OPS = 40000 };
	static uint8_t buf[PG];
	static uint64_t seed_of[PAGES];
	static uint32_t handle_of[PAGES], seq_of[PAGES];
	static bool in[PAGES];
	static uint16_t len_of[PAGES];
	uint64_t r = 12345, stored_bytes = 0, entries = 0, rejected = 0, seq = 0, full = 0, evicted = 0;
	struct zcache c;

	cr_assert_eq(zcache_init(&c, 256 * 1024), 0);
	for (unsigned op = 0; op < OPS; op++) {
		uint32_t g = (uint32_t)((r = mix64(r + op)) % PAGES);
		unsigned what = (unsigned)(r >> 32) % 10;
		uint32_t h, oh, op_page;
		int ret, len;

		if (what < 4) { /* store */
			if (in[g])
				continue;
			seed_of[g] = r;
			fill_kind(buf, (unsigned)(r >> 40) % 4, r);
			len = raw_len(buf);
			ret = zcache_store(&c, buf, g, &h);
			if (len > (int)ZCACHE_MAX_LEN) {
				cr_assert_eq(ret, -E2BIG);
				rejected++;
			} else if (ret == -ENOSPC) {
				cr_assert(zcache_oldest(&c, &oh, &op_page), "ENOSPC when empty");
				full++;
			} else {
				cr_assert_eq(ret, 0, "store: %d", ret);
				in[g] = true;
				handle_of[g] = h;
				seq_of[g] = (uint32_t)seq++;
				len_of[g] = (uint16_t)len;
				stored_bytes += (unsigned)len;
				entries++;
			}
		} else if (what < 6) { /* drop, as a guest fault does */
			if (!in[g])
				continue;
			zcache_drop(&c, handle_of[g]);
			in[g] = false;
			stored_bytes -= len_of[g];
			entries--;
		} else if (what < 9) { /* load */
			uint8_t want[PG];

			if (!in[g])
				continue;
			cr_assert_eq(zcache_load(&c, handle_of[g], buf), 0);
			fill_kind(want, (unsigned)(seed_of[g] >> 40) % 4, seed_of[g]);
			cr_assert(memcmp(buf, want, PG) == 0, "page %u content", g);
		} else if (zcache_oldest(&c, &oh, &op_page)) { /* evict the oldest */
			uint32_t min_seq = UINT32_MAX, min_g = 0;

			for (uint32_t k = 0; k < PAGES; k++)
				if (in[k] && seq_of[k] < min_seq) {
					min_seq = seq_of[k];
					min_g = k;
				}
			cr_assert_eq(op_page, min_g, "oldest page %u, reference %u", op_page, min_g);
			cr_assert_eq(oh, handle_of[min_g]);
			zcache_drop(&c, oh);
			evicted++;
			in[min_g] = false;
			stored_bytes -= len_of[min_g];
			entries--;
		}
		if (op % 512 == 0) {
			struct zcache_stats st = stats(&c);

			cr_assert_eq(st.entries, entries);
			cr_assert_eq(st.stored_bytes, stored_bytes);
			cr_assert_eq(st.rejected, rejected);
			cr_assert_leq(st.arena_bytes, st.cap_bytes);
			cr_assert_geq(st.arena_bytes, st.stored_bytes);
		}
	}
	cr_log_info("randomized: %lu stored, %lu rejected, %lu ENOSPC, %lu evicted", (unsigned long)seq,
		    (unsigned long)rejected, (unsigned long)full, (unsigned long)evicted);
	cr_expect_gt(full, 0, "the run reaches the cap");
	for (uint32_t g = 0; g < PAGES; g++) {
		if (!in[g])
			continue;
		fill_kind(buf, (unsigned)(seed_of[g] >> 40) % 4, seed_of[g]);
		cr_assert(loads_as(&c, handle_of[g], buf), "page %u at the end", g);
		zcache_drop(&c, handle_of[g]);
	}
	cr_expect_eq(stats(&c).entries, 0);
	cr_expect_eq(stats(&c).arena_bytes, 0);
	zcache_destroy(&c);
}
