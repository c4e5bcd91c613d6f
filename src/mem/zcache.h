/* The compression cache (DESIGN.md section 4, ESX's memory compression): cold pages kept
 * LZ4-compressed in memory. A page is kept only if it compresses to ZCACHE_MAX_LEN bytes or less
 * (ESX's rule: half a page); the cache holds at most cap_bytes of host memory, in an arena carved
 * into size classes (no malloc per page). Entries leave in the order they came (the oldest is the
 * coldest: pages come in coldest first and leave early when the guest faults them back), so the
 * caller evicts zcache_oldest to swap when the cache is full.
 *
 * Pure apart from mmap/madvise of its own arena; not thread-safe (the memory manager's lock). */
#ifndef KVMM_MEM_ZCACHE_H
#define KVMM_MEM_ZCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZCACHE_PAGE 4096u
#define ZCACHE_MAX_LEN 2048u /* a page is kept compressed only if it fits in this */

struct zcache_impl;

struct zcache {
	struct zcache_impl *z;
};

struct zcache_stats {
	uint64_t entries;       /* pages stored */
	uint64_t stored_bytes;  /* sum of their compressed lengths */
	uint64_t arena_bytes;   /* host memory the cache holds now (whole arena pages in use) */
	uint64_t cap_bytes;     /* most it may hold */
	uint64_t rejected;      /* pages that did not fit in ZCACHE_MAX_LEN */
};

/* A cache holding at most cap_bytes (rounded down to whole 4 KiB pages, at least one). -EINVAL for
 * cap_bytes < 4 KiB, -ENOMEM. */
int zcache_init(struct zcache *c, uint64_t cap_bytes);
void zcache_destroy(struct zcache *c);
/* Drops every entry and gives the arena's memory back (system reset). */
void zcache_clear(struct zcache *c);

/* Compresses the 4 KiB page at src, which is guest page `page`. 0 and *handle when stored;
 * -E2BIG when it compresses to more than ZCACHE_MAX_LEN (nothing stored); -ENOSPC when the cache
 * is full (evict the oldest entries and retry). */
int zcache_store(struct zcache *c, const void *src, uint32_t page, uint32_t *handle);
/* Decompresses entry `handle` into the 4 KiB at dst; the entry stays. -EIO when it does not
 * decompress to exactly one page (never hand such a page to the guest). */
int zcache_load(const struct zcache *c, uint32_t handle, void *dst);
void zcache_drop(struct zcache *c, uint32_t handle);
/* The oldest entry still stored and its guest page; false when the cache is empty. */
bool zcache_oldest(struct zcache *c, uint32_t *handle, uint32_t *page);
void zcache_get_stats(const struct zcache *c, struct zcache_stats *st);

#endif
