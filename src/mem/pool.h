/* The sharing pool (tps): one read-only page per distinct content, in a memfd that guest pages map
 * MAP_PRIVATE (copy-on-write), with a reference count per slot; and the hash table that finds a
 * slot, or a first-seen page (a hint), by the XXH3 hash of its content. The table and the counts
 * are pure; pool_create/pool_destroy/pool_release own the memfd. */
#ifndef KVMM_MEM_POOL_H
#define KVMM_MEM_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POOL_NONE UINT32_MAX

enum htab_kind { HT_EMPTY, HT_HINT, HT_SLOT };

struct htab_entry {
	uint64_t hash;
	uint32_t val;  /* HT_HINT: guest page index; HT_SLOT: pool slot */
	uint8_t kind;
};

struct htab {
	struct htab_entry *e;
	size_t mask;   /* capacity - 1; capacity is a power of two */
	size_t used;
};

int htab_init(struct htab *h, size_t min_entries);
void htab_free(struct htab *h);
/* The entry for hash, or NULL. */
struct htab_entry *htab_find(struct htab *h, uint64_t hash);
/* Sets the entry for hash (replacing what was there); -ENOSPC when the table is 3/4 full. */
int htab_put(struct htab *h, uint64_t hash, enum htab_kind kind, uint32_t val);
void htab_del(struct htab *h, uint64_t hash);
/* Drops every hint, keeping the pool slots (a new scanner pass starts with fresh hints). */
void htab_drop_hints(struct htab *h);

struct pool {
	int fd;            /* memfd, -1 when not created */
	uint8_t *map;      /* read-write shared mapping of all slots (the manager's view) */
	uint32_t capacity; /* slots the mapping holds */
	uint32_t next;     /* slots [0, next) have been used at least once */
	uint32_t *ref;     /* guest pages mapping each slot */
	uint64_t *hash;    /* content hash of each live slot */
	uint32_t *free;    /* stack of released slots */
	uint32_t nr_free;
	uint32_t live;     /* slots with ref > 0 */
};

int pool_create(struct pool *p, uint32_t capacity);
void pool_destroy(struct pool *p);
static inline uint8_t *pool_page(const struct pool *p, uint32_t slot)
{
	return p->map + (size_t)slot * 4096;
}
/* A slot for new content (ref 0, not yet live): POOL_NONE when full. The caller copies the page
 * in, then pool_get. */
uint32_t pool_alloc(struct pool *p);
void pool_get(struct pool *p, uint32_t slot);
/* Drops one reference; true when that was the last (the caller releases the slot). */
bool pool_put(struct pool *p, uint32_t slot);
/* Frees a slot's memory (hole punch) and makes it reusable. */
void pool_release(struct pool *p, uint32_t slot);
/* Every slot released (system reset). */
void pool_clear(struct pool *p);

#endif
