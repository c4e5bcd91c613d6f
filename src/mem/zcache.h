/* The compression cache (DESIGN.md section 4, ESX's memory compression): cold pages kept
 * LZ4-compressed in memory. A page is kept only if it compresses to ZCACHE_MAX_LEN bytes or less
 * (ESX's rule: half a page); the cache holds at most cap_bytes of host memory, in an arena carved
 * into size classes (no malloc per page). Entries leave in the order they came (the oldest is the
 * coldest: pages come in coldest first and leave early when the guest faults them back), so the
 * caller evicts zcache_oldest to swap when the cache is full.
 *
 * Pure apart from mmap/madvise of its own arena; not thread-safe (the memory manager's lock).
 *
 * Handles: small integers naming an entry while it is stored (an index into zcache.c's entry
 * table, below cap_bytes / 64); a dropped entry's handle is reused by a later store. Every object
 * takes a 64-byte multiple in size-class spans of 1 to 4 arena pages (zcache.c), so a store may
 * find no room for its class while other classes have some: on -ENOSPC evict the oldest entries
 * one by one and retry; an empty cache always has room. */
#ifndef KVMM_MEM_ZCACHE_H
#define KVMM_MEM_ZCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZCACHE_PAGE 4096u
#define ZCACHE_MAX_LEN 2048u /* a page is kept compressed only if it fits in this */
/* Largest cap (256 GiB less a page): handles are 32 bits, one per 64 bytes of arena. */
#define ZCACHE_MAX_CAP ((((uint64_t)1 << 26) - 1) * ZCACHE_PAGE)

struct zcache_impl;

struct zcache {
	struct zcache_impl *z;
};

struct zcache_stats {
	uint64_t entries;       /* pages stored */
	uint64_t stored_bytes;  /* sum of their compressed lengths */
	uint64_t arena_bytes;   /* host memory the cache holds now (whole arena pages in use) */
	uint64_t cap_bytes;     /* most it may hold */
	uint64_t rejected;      /* pages that did not fit in ZCACHE_MAX_LEN (since init: clear keeps it) */
	uint64_t meta_bytes;    /* host memory of the bookkeeping beside the arena (entry, span and
				 * free-page tables up to their high-water marks, the LZ4 state) */
};

/* A cache holding at most cap_bytes (rounded down to whole 4 KiB pages, at least one; more than
 * ZCACHE_MAX_CAP is taken as ZCACHE_MAX_CAP). -EINVAL for cap_bytes < 4 KiB, -ENOMEM. The arena
 * and tables are reserved with MAP_NORESERVE: memory is used only as entries come in. */
int zcache_init(struct zcache *c, uint64_t cap_bytes);
void zcache_destroy(struct zcache *c); /* c->z becomes NULL: twice is harmless */
/* Drops every entry and gives the arena's memory back (system reset). */
void zcache_clear(struct zcache *c);

/* Compresses the 4 KiB page at src, which is guest page `page`. 0 and *handle when stored;
 * -E2BIG when it compresses to more than ZCACHE_MAX_LEN (nothing stored); -ENOSPC when the cache
 * is full (evict the oldest entries and retry). */
int zcache_store(struct zcache *c, const void *src, uint32_t page, uint32_t *handle);
/* Decompresses entry `handle` into the 4 KiB at dst; the entry stays. -EIO when it does not
 * decompress to exactly one page (never hand such a page to the guest; dst then holds anything).
 * The cache keeps no checksum: damage that leaves a well-formed LZ4 block of one page (a changed
 * literal byte) decompresses to a wrong page. -ENOENT when handle names no stored entry. */
int zcache_load(const struct zcache *c, uint32_t handle, void *dst);
void zcache_drop(struct zcache *c, uint32_t handle); /* a handle naming no entry is ignored */
/* The oldest entry still stored and its guest page; false when the cache is empty. */
bool zcache_oldest(struct zcache *c, uint32_t *handle, uint32_t *page);
void zcache_get_stats(const struct zcache *c, struct zcache_stats *st);

/* Unit tests only: overwrites byte `off` of entry handle's compressed data, as a stray write into
 * the arena would. -ENOENT for no such entry, -EINVAL when off is past its length. */
int zcache_test_poke(struct zcache *c, uint32_t handle, unsigned off, uint8_t byte);

#endif
