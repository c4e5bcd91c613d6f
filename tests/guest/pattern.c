/* Page contents: pure functions of (seed, page index), so any reader can predict them (README.md
 * "Page kinds"). No hardware access here: this file also builds on the host for checks. */
#include "guest.h"

#define GOLDEN 0x9e3779b97f4a7c15ull
/* Domain separators, so the streams of different kinds never coincide. */
#define DOM_KIND 0x6b696e64ull
#define DOM_DUP 0x64757073ull
#define DOM_RANDOM 0x72616e64ull
#define DOM_TEXT 0x74657874ull
#define DOM_PICK 0x7069636bull   /* rewrite: which pages */
#define DOM_UNIQUE 0x756e6971ull /* rewrite and churn: unique contents */
#define DOM_CPAGE 0x63706167ull  /* churn: which page */
#define DOM_CDUP 0x63647570ull   /* churn: which dup template */
#define BLOCK 100   /* kinds are exact per aligned block of 100 pages */
#define STRIDE 37   /* coprime to BLOCK: pos * STRIDE visits every residue once per block */

const char *const kind_names[KIND_COUNT] = { "zero", "dup", "random", "text" };

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t next(uint64_t *s)
{
	return mix64(*s += GOLDEN);
}

enum page_kind pattern_kind(const struct pattern *p, uint64_t seed, uint64_t page)
{
	uint64_t block = page / BLOCK, pos = page % BLOCK;
	unsigned r = (pos * STRIDE + mix64(seed ^ DOM_KIND ^ block * GOLDEN) % BLOCK) % BLOCK, acc = 0;

	for (unsigned i = 0; i < p->nr; i++) {
		acc += p->pct[i];
		if (r < acc)
			return p->kind[i];
	}
	return p->kind[p->nr - 1];
}

static void fill_random(uint64_t *w, uint64_t s)
{
	for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
		w[i] = next(&s);
}

/* Pseudo-English: words from a small vocabulary (skewed towards the first ones) and a few stock
 * phrases, tuned to compress about 2-3x with LZ4 one 4 KiB page at a time (zram, zswap). */
static const char *const words[64] = {
	"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be",
	"by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
	"an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
	"been", "if", "more", "when", "will", "would", "who", "so", "no", "memory", "page", "guest",
	"host", "balloon", "kernel", "machine", "virtual", "between", "through", "another", "without",
	"because", "something", "important",
};
static const char *const phrases[16] = {
	"the guest gives memory back to the host", "in the middle of the night",
	"as far as anyone can tell", "and that was the end of it", "for a long time",
	"on the other hand", "at the same time", "one page after another",
	"the kernel will not notice", "when the balloon is inflated", "there is no such thing",
	"it has been a while", "more or less", "without a second thought",
	"between the lines", "all of a sudden",
};
#define PHRASE_IN_32 12 /* of 32 units are stock phrases: about 2.5x with LZ4 */

static void fill_text(char *c, uint64_t s)
{
	unsigned pos = 0;
	bool cap = true;

	while (pos < PAGE_SIZE) {
		uint64_t r = next(&s);
		unsigned a = r & 63, b = (r >> 6) & 63;
		const char *w = ((r >> 24) & 31) < PHRASE_IN_32 ? phrases[(r >> 29) & 15] : words[a < b ? a : b];
		for (unsigned i = 0; w[i] && pos < PAGE_SIZE; i++)
			c[pos++] = (cap && i == 0) ? w[i] - 'a' + 'A' : w[i];
		cap = false;
		unsigned sep = (r >> 12) & 31;
		if (sep < 2 && pos < PAGE_SIZE) {
			c[pos++] = '.';
			cap = true;
		} else if (sep == 2 && pos < PAGE_SIZE) {
			c[pos++] = ',';
		}
		if (pos < PAGE_SIZE)
			c[pos++] = (cap && ((r >> 17) & 7) == 0) ? '\n' : ' ';
	}
}

static void fill_template(void *page, uint64_t seed, uint64_t t)
{
	fill_random(page, mix64(seed ^ DOM_DUP) + t);
}

void pattern_fill_page(void *page, enum page_kind kind, uint64_t seed, uint64_t index)
{
	switch (kind) {
	case KIND_ZERO:
		memset(page, 0, PAGE_SIZE);
		break;
	case KIND_DUP:
		fill_template(page, seed, mix64(seed ^ DOM_DUP ^ index * GOLDEN) % DUP_TEMPLATES);
		break;
	case KIND_RANDOM:
		fill_random(page, mix64(seed ^ DOM_RANDOM) ^ index * GOLDEN);
		break;
	case KIND_TEXT:
		fill_text(page, mix64(seed ^ DOM_TEXT) ^ index * GOLDEN);
		break;
	default:
		break;
	}
}

/* rewrite:PCT of generation gen picks pct% of every aligned block of 100 pages, as pattern_kind
 * spreads the kinds, with a phase per block and generation. */
bool pattern_rewrite_pick(uint64_t seed, uint64_t gen, uint64_t page, unsigned pct)
{
	uint64_t block = page / BLOCK, pos = page % BLOCK;
	uint64_t phase = mix64(mix64(seed ^ DOM_PICK ^ gen * GOLDEN) ^ block * GOLDEN) % BLOCK;

	return (pos * STRIDE + phase) % BLOCK < pct;
}

/* Unique content number `stream` of page `index`: a splitmix64 stream seeded
 * mix64(seed ^ DOM_UNIQUE ^ mix64(stream)) ^ index * GOLDEN. For one page the seeds of two streams
 * differ (mix64 is a bijection), so do the pages' first words: no two streams give the same page. */
void pattern_fill_unique(void *page, uint64_t seed, uint64_t stream, uint64_t index)
{
	fill_random(page, mix64(seed ^ DOM_UNIQUE ^ mix64(stream)) ^ index * GOLDEN);
}

/* The page churn write number n goes to. */
uint64_t pattern_churn_page(uint64_t seed, uint64_t n, uint64_t pages)
{
	return mix64(seed ^ DOM_CPAGE ^ n * GOLDEN) % pages;
}

/* Churn write n's contents for page `index`: zero, a dup template (the same 16 as fill's), unique
 * (stream CHURN_STREAM + n), in turn. Returns the kind written. */
enum page_kind pattern_churn_fill(void *page, uint64_t seed, uint64_t n, uint64_t index)
{
	switch (n % 3) {
	case 0:
		memset(page, 0, PAGE_SIZE);
		return KIND_ZERO;
	case 1:
		fill_template(page, seed, mix64(seed ^ DOM_CDUP ^ n * GOLDEN) % DUP_TEMPLATES);
		return KIND_DUP;
	default:
		pattern_fill_unique(page, seed, CHURN_STREAM + n, index);
		return KIND_RANDOM;
	}
}

/* 64-bit checksum of a page; order-sensitive, every bit of every word reaches the result. */
uint64_t page_checksum(const void *page)
{
	const uint64_t *w = page;
	uint64_t h = 0x243f6a8885a308d3ull;

	for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
		h = (((h << 23) | (h >> 41)) ^ w[i]) * GOLDEN;
	return mix64(h);
}
