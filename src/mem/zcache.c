/* The compression cache (zcache.h): zsmalloc's layout in small, with an insertion-order list.
 *
 * - The arena: cap_bytes of private anonymous memory (MAP_NORESERVE: a page costs nothing until
 *   written), carved into 4 KiB arena pages.
 * - Size classes of 64-byte steps up to ZCACHE_MAX_LEN. A class keeps its objects in spans of 1 to
 *   4 arena pages (any pages, not necessarily adjacent), laid end to end across them, so an object
 *   may straddle two arena pages. Each class's span length is the one that wastes least: with one
 *   page per span every object of 1366 to 2048 bytes would cost 2 KiB, and the text pages LZ4
 *   squeezes to ~1.6 KiB would save half a page instead of ~60% (1664-byte objects: 7 in 3 pages).
 * - Per class, a list of spans with a free object. A span whose last object goes gives its pages
 *   back (MADV_DONTNEED) to a stack of free arena pages, so arena_bytes and RSS really drop.
 * - Entries: a handle is an index into a table of 20-byte entries (where the object is, its guest
 *   page and compressed length, the insertion-order links). Lengths and pages live here and not
 *   beside the objects: a header in the arena would make 2048-byte objects take a page each, and
 *   ESX's half-page rule only pays if two of them fit in one.
 * - Insertion order: the entries form a doubly linked list, oldest first. A drop unlinks its
 *   entry, so a reused handle can never be met at a stale position (no ring to skip through).
 *
 * The entry, span and free-page tables are MAP_NORESERVE mappings sized for the worst case (every
 * object in the smallest class) and touched only up to their high-water marks; free entries and
 * spans are reused last-in first-out to keep those marks low. */
#include "zcache.h"

#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define ZC_STEP 64u
#define ZC_NR_CLASSES (ZCACHE_MAX_LEN / ZC_STEP)
#define ZC_SPAN_PAGES 4u   /* zsmalloc's ZS_MAX_PAGES_PER_ZSPAGE: more gains little */
#define ZC_SLOT_BITS 6
#define ZC_SPAN_OBJS (1u << ZC_SLOT_BITS) /* one 64-bit free mask per span */
#define ZC_NONE UINT32_MAX
#define ZC_TABLE_ALIGN 4096u

struct zentry {
	uint32_t loc;   /* span << ZC_SLOT_BITS | object, while stored */
	uint32_t page;  /* guest page */
	uint32_t older; /* insertion-order neighbours, ZC_NONE at the ends; `older` links free entries */
	uint32_t newer;
	uint16_t len;   /* compressed bytes, 1 to ZCACHE_MAX_LEN; 0: a free entry */
};

struct zspan {
	uint64_t free;                 /* bit i: object i is free */
	uint32_t pages[ZC_SPAN_PAGES]; /* its arena pages, in object order */
	uint32_t prev, next;           /* the class's list of spans with room; `next` links free spans */
	uint8_t cls;
	uint8_t used;                  /* objects stored */
};

struct zclass {
	uint16_t size;    /* bytes per object */
	uint8_t pages;    /* arena pages per span */
	uint8_t objs;     /* objects per span */
	uint32_t partial; /* first span with a free object, ZC_NONE if none */
};

struct zcache_impl {
	uint8_t *arena;
	uint32_t nr_pages;      /* arena pages: cap_bytes / 4 KiB */
	uint32_t fresh_pages;   /* pages at and above this were never used */
	uint32_t pages_used;
	uint32_t nr_free_pages; /* on the free_pages stack: used once, given back since */
	uint32_t *free_pages;

	struct zspan *spans;    /* at most nr_pages: each span in use holds a page */
	uint32_t fresh_spans, free_span;
	struct zentry *ent;     /* at most nr_pages * ZC_SPAN_OBJS: each object takes 64 bytes or more */
	uint32_t fresh_ents, free_ent;
	uint32_t oldest, newest;

	size_t arena_len, spans_len, ent_len, stack_len; /* the mappings' lengths */
	struct zclass cls[ZC_NR_CLASSES];
	uint64_t entries, stored_bytes, rejected;

	LZ4_stream_t lz4;          /* LZ4_compress_fast_extState's 16 KiB, off the callers' stacks */
	char buf[ZCACHE_MAX_LEN];  /* a page compressed before its class is known */
};

static void *table_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Grown and given back a page at a time: a huge page would charge 2 MiB to the VM's cgroup
	 * at one touch (the kernel's memory.high throttling is per charge) and split at the first
	 * MADV_DONTNEED. */
	(void)madvise(p, len, MADV_NOHUGEPAGE);
	return p;
}

static size_t round_table(size_t len)
{
	return (len + ZC_TABLE_ALIGN - 1) / ZC_TABLE_ALIGN * ZC_TABLE_ALIGN;
}

/* Gives back the first `used` bytes of a mapping. MADV_DONTNEED on our own private anonymous
 * mapping cannot fail for valid arguments; if it did, the memory would merely stay resident. */
static void table_discard(void *p, size_t used)
{
	if (used)
		(void)madvise(p, round_table(used), MADV_DONTNEED);
}

/* For each class the span length (1 to ZC_SPAN_PAGES arena pages, at most the whole arena, so
 * that a store into an empty cache always finds room) that stores the most bytes per page. */
static void classes_init(struct zcache_impl *z)
{
	unsigned max_pages = z->nr_pages < ZC_SPAN_PAGES ? z->nr_pages : ZC_SPAN_PAGES;

	for (unsigned c = 0; c < ZC_NR_CLASSES; c++) {
		unsigned size = (c + 1) * ZC_STEP, best_k = 1, best_n = 0;

		for (unsigned k = 1; k <= max_pages; k++) {
			unsigned n = k * ZCACHE_PAGE / size;

			if (n > ZC_SPAN_OBJS)
				n = ZC_SPAN_OBJS;
			if (n * best_k > best_n * k) { /* n/k objects per page beats best_n/best_k */
				best_k = k;
				best_n = n;
			}
		}
		z->cls[c] = (struct zclass){ .size = (uint16_t)size, .pages = (uint8_t)best_k,
					     .objs = (uint8_t)best_n, .partial = ZC_NONE };
	}
}

/* Empty, every table unused (init, clear). */
static void reset(struct zcache_impl *z)
{
	z->fresh_pages = z->pages_used = z->nr_free_pages = 0;
	z->fresh_spans = z->fresh_ents = 0;
	z->free_span = z->free_ent = z->oldest = z->newest = ZC_NONE;
	for (unsigned c = 0; c < ZC_NR_CLASSES; c++)
		z->cls[c].partial = ZC_NONE;
	z->entries = z->stored_bytes = 0;
}

int zcache_init(struct zcache *c, uint64_t cap_bytes)
{
	struct zcache_impl *z;

	c->z = NULL;
	if (cap_bytes < ZCACHE_PAGE)
		return -EINVAL;
	if (cap_bytes > ZCACHE_MAX_CAP)
		cap_bytes = ZCACHE_MAX_CAP;
	z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	z->nr_pages = (uint32_t)(cap_bytes / ZCACHE_PAGE);
	z->arena_len = (size_t)z->nr_pages * ZCACHE_PAGE;
	z->spans_len = round_table((size_t)z->nr_pages * sizeof(struct zspan));
	z->ent_len = round_table((size_t)z->nr_pages * ZC_SPAN_OBJS * sizeof(struct zentry));
	z->stack_len = round_table((size_t)z->nr_pages * sizeof(uint32_t));

	z->arena = table_map(z->arena_len);
	if (!z->arena)
		goto free_impl;
	z->spans = table_map(z->spans_len);
	if (!z->spans)
		goto unmap_arena;
	z->ent = table_map(z->ent_len);
	if (!z->ent)
		goto unmap_spans;
	z->free_pages = table_map(z->stack_len);
	if (!z->free_pages)
		goto unmap_ent;
	classes_init(z);
	reset(z);
	c->z = z;
	return 0;

unmap_ent:
	munmap(z->ent, z->ent_len);
unmap_spans:
	munmap(z->spans, z->spans_len);
unmap_arena:
	munmap(z->arena, z->arena_len);
free_impl:
	free(z);
	return -ENOMEM;
}

void zcache_destroy(struct zcache *c)
{
	struct zcache_impl *z = c->z;

	if (!z)
		return;
	munmap(z->free_pages, z->stack_len);
	munmap(z->ent, z->ent_len);
	munmap(z->spans, z->spans_len);
	munmap(z->arena, z->arena_len);
	free(z);
	c->z = NULL;
}

void zcache_clear(struct zcache *c)
{
	struct zcache_impl *z = c->z;

	table_discard(z->arena, (size_t)z->fresh_pages * ZCACHE_PAGE);
	table_discard(z->spans, (size_t)z->fresh_spans * sizeof(struct zspan));
	table_discard(z->ent, (size_t)z->fresh_ents * sizeof(struct zentry));
	table_discard(z->free_pages, (size_t)z->fresh_pages * sizeof(uint32_t));
	reset(z);
}

/* ---- spans ---- */

static uint8_t *arena_page(const struct zcache_impl *z, uint32_t p)
{
	return z->arena + (size_t)p * ZCACHE_PAGE;
}

static void partial_add(struct zcache_impl *z, uint32_t s)
{
	struct zspan *sp = &z->spans[s];
	struct zclass *k = &z->cls[sp->cls];

	sp->prev = ZC_NONE;
	sp->next = k->partial;
	if (sp->next != ZC_NONE)
		z->spans[sp->next].prev = s;
	k->partial = s;
}

static void partial_del(struct zcache_impl *z, uint32_t s)
{
	struct zspan *sp = &z->spans[s];

	if (sp->prev != ZC_NONE)
		z->spans[sp->prev].next = sp->next;
	else
		z->cls[sp->cls].partial = sp->next;
	if (sp->next != ZC_NONE)
		z->spans[sp->next].prev = sp->prev;
}

/* madvise of the span's pages, one call per run of adjacent ones (spans carved from never-used
 * pages are one run). Neither advice can fail on our own private anonymous mapping but for want of
 * memory or an old kernel (POPULATE_WRITE is 5.14): then the pages fault in when written (and an
 * undropped page merely stays resident). */
static void span_advise(struct zcache_impl *z, const struct zspan *sp, int advice)
{
	unsigned n = z->cls[sp->cls].pages, run;

	for (unsigned i = 0; i < n; i += run) {
		for (run = 1; i + run < n && sp->pages[i + run] == sp->pages[i] + run; run++)
			;
		(void)madvise(arena_page(z, sp->pages[i]), (size_t)run * ZCACHE_PAGE, advice);
	}
}

/* A new span of class c on the class's list, or ZC_NONE when the arena lacks the pages. */
static uint32_t span_new(struct zcache_impl *z, unsigned c)
{
	const struct zclass *k = &z->cls[c];
	struct zspan *sp;
	uint32_t s;

	if (z->nr_free_pages + (z->nr_pages - z->fresh_pages) < k->pages)
		return ZC_NONE;
	/* Below nr_pages: without a free span, every span so far is in use and holds a page. */
	if (z->free_span != ZC_NONE) {
		s = z->free_span;
		z->free_span = z->spans[s].next;
	} else {
		s = z->fresh_spans++;
	}
	sp = &z->spans[s];
	for (unsigned i = 0; i < k->pages; i++)
		sp->pages[i] = z->nr_free_pages ? z->free_pages[--z->nr_free_pages] : z->fresh_pages++;
	sp->free = k->objs == ZC_SPAN_OBJS ? UINT64_MAX : (UINT64_C(1) << k->objs) - 1;
	sp->cls = (uint8_t)c;
	sp->used = 0;
	z->pages_used += k->pages;
	/* The span's pages are about to be written. Populated in one call they cost a page
	 * allocation each; left to fault, a trap each too, which in a VM may cost ten times more
	 * (docs/benchmarks.md, "Compression"). */
	span_advise(z, sp, MADV_POPULATE_WRITE);
	partial_add(z, s);
	return s;
}

/* The span's last object went: its pages go back to the host and onto the free stack. */
static void span_release(struct zcache_impl *z, uint32_t s)
{
	struct zspan *sp = &z->spans[s];
	unsigned n = z->cls[sp->cls].pages;

	partial_del(z, s);
	span_advise(z, sp, MADV_DONTNEED);
	/* Last page first, so that a span taking them again gets them in order: one run. */
	for (unsigned i = n; i-- > 0;)
		z->free_pages[z->nr_free_pages++] = sp->pages[i];
	z->pages_used -= n;
	sp->next = z->free_span;
	z->free_span = s;
}

/* Where entry e's bytes are: *a (and *b for the rest when the object straddles two arena pages).
 * Returns the bytes at *a. */
static size_t obj_locate(const struct zcache_impl *z, const struct zentry *e, uint8_t **a,
			 uint8_t **b)
{
	const struct zspan *sp = &z->spans[e->loc >> ZC_SLOT_BITS];
	size_t off = (size_t)(e->loc & (ZC_SPAN_OBJS - 1)) * z->cls[sp->cls].size;
	size_t in_page = off % ZCACHE_PAGE, first = ZCACHE_PAGE - in_page;
	unsigned p = (unsigned)(off / ZCACHE_PAGE);

	*a = arena_page(z, sp->pages[p]) + in_page;
	if (first >= e->len) {
		*b = NULL;
		return e->len;
	}
	*b = arena_page(z, sp->pages[p + 1]);
	return first;
}

/* ---- entries and their insertion order ---- */

static bool entry_live(const struct zcache_impl *z, uint32_t h)
{
	return h < z->fresh_ents && z->ent[h].len;
}

static uint32_t entry_new(struct zcache_impl *z)
{
	uint32_t h = z->free_ent;

	if (h == ZC_NONE)
		return z->fresh_ents++; /* never past the table: objects take >= 64 bytes of the arena */
	z->free_ent = z->ent[h].older;
	return h;
}

static void order_append(struct zcache_impl *z, uint32_t h)
{
	struct zentry *e = &z->ent[h];

	e->newer = ZC_NONE;
	e->older = z->newest;
	if (z->newest != ZC_NONE)
		z->ent[z->newest].newer = h;
	else
		z->oldest = h;
	z->newest = h;
}

static void order_unlink(struct zcache_impl *z, uint32_t h)
{
	struct zentry *e = &z->ent[h];

	if (e->older != ZC_NONE)
		z->ent[e->older].newer = e->newer;
	else
		z->oldest = e->newer;
	if (e->newer != ZC_NONE)
		z->ent[e->newer].older = e->older;
	else
		z->newest = e->older;
}

/* ---- the interface ---- */

int zcache_store(struct zcache *c, const void *src, uint32_t page, uint32_t *handle)
{
	struct zcache_impl *z = c->z;
	struct zspan *sp;
	struct zentry *e;
	uint8_t *a, *b;
	unsigned cl, obj;
	uint32_t s, h;
	size_t first;
	int n;

	/* With a destination of ZCACHE_MAX_LEN, LZ4 gives up (0) as soon as a sequence it emits would
	 * pass it: a page that compresses to 3 KiB stops about two-thirds of the way. Random bytes stop
	 * no earlier (LZ4 emits nothing until the end when it finds no match), but its search skips
	 * ahead faster the longer it finds none, so they cost a fraction of a text page anyway. */
	n = LZ4_compress_fast_extState(&z->lz4, src, z->buf, ZCACHE_PAGE, ZCACHE_MAX_LEN, 1);
	if (n <= 0) {
		z->rejected++;
		return -E2BIG;
	}
	cl = ((unsigned)n - 1) / ZC_STEP;
	s = z->cls[cl].partial;
	if (s == ZC_NONE) {
		s = span_new(z, cl);
		if (s == ZC_NONE)
			return -ENOSPC;
	}
	sp = &z->spans[s];
	obj = (unsigned)__builtin_ctzll(sp->free);
	sp->free &= ~(UINT64_C(1) << obj);
	sp->used++;
	if (!sp->free)
		partial_del(z, s);

	h = entry_new(z);
	e = &z->ent[h];
	*e = (struct zentry){ .loc = s << ZC_SLOT_BITS | obj, .page = page, .len = (uint16_t)n };
	first = obj_locate(z, e, &a, &b);
	memcpy(a, z->buf, first);
	if (b)
		memcpy(b, z->buf + first, (size_t)n - first);
	order_append(z, h);
	z->entries++;
	z->stored_bytes += (unsigned)n;
	*handle = h;
	return 0;
}

int zcache_load(const struct zcache *c, uint32_t handle, void *dst)
{
	const struct zcache_impl *z = c->z;
	char bounce[ZCACHE_MAX_LEN];
	const struct zentry *e;
	const char *src;
	uint8_t *a, *b;
	size_t first;

	if (!entry_live(z, handle))
		return -ENOENT;
	e = &z->ent[handle];
	first = obj_locate(z, e, &a, &b);
	src = (const char *)a;
	if (b) {
		memcpy(bounce, a, first);
		memcpy(bounce + first, b, e->len - first);
		src = bounce;
	}
	/* The exact length bounds the read; dstCapacity bounds the write: a damaged object fails or
	 * comes out short or long, and never reaches past either buffer. */
	if (LZ4_decompress_safe(src, dst, e->len, ZCACHE_PAGE) != (int)ZCACHE_PAGE)
		return -EIO;
	return 0;
}

void zcache_drop(struct zcache *c, uint32_t handle)
{
	struct zcache_impl *z = c->z;
	struct zentry *e;
	struct zspan *sp;
	uint32_t s;

	if (!entry_live(z, handle))
		return;
	e = &z->ent[handle];
	s = e->loc >> ZC_SLOT_BITS;
	sp = &z->spans[s];
	if (!sp->free)
		partial_add(z, s); /* it was full: it has room again */
	sp->free |= UINT64_C(1) << (e->loc & (ZC_SPAN_OBJS - 1));
	if (!--sp->used)
		span_release(z, s);

	order_unlink(z, handle);
	z->entries--;
	z->stored_bytes -= e->len;
	e->len = 0;
	e->older = z->free_ent;
	z->free_ent = handle;
}

bool zcache_oldest(struct zcache *c, uint32_t *handle, uint32_t *page)
{
	const struct zcache_impl *z = c->z;

	if (z->oldest == ZC_NONE)
		return false;
	*handle = z->oldest;
	*page = z->ent[z->oldest].page;
	return true;
}

void zcache_get_stats(const struct zcache *c, struct zcache_stats *st)
{
	const struct zcache_impl *z = c->z;

	*st = (struct zcache_stats){
		.entries = z->entries,
		.stored_bytes = z->stored_bytes,
		.arena_bytes = (uint64_t)z->pages_used * ZCACHE_PAGE,
		.cap_bytes = (uint64_t)z->nr_pages * ZCACHE_PAGE,
		.rejected = z->rejected,
		.meta_bytes = sizeof(*z) +
			      round_table((size_t)z->fresh_spans * sizeof(struct zspan)) +
			      round_table((size_t)z->fresh_ents * sizeof(struct zentry)) +
			      round_table((size_t)z->fresh_pages * sizeof(uint32_t)),
	};
}

int zcache_test_poke(struct zcache *c, uint32_t handle, unsigned off, uint8_t byte)
{
	struct zcache_impl *z = c->z;
	uint8_t *a, *b;
	size_t first;

	if (!entry_live(z, handle))
		return -ENOENT;
	if (off >= z->ent[handle].len)
		return -EINVAL;
	first = obj_locate(z, &z->ent[handle], &a, &b);
	if (off < first)
		a[off] = byte;
	else
		b[off - first] = byte;
	return 0;
}
