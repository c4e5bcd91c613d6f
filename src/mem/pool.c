#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int htab_init(struct htab *h, size_t min_entries)
{
	size_t cap = 1024;

	memset(h, 0, sizeof(*h));
	while (cap < min_entries * 2 && cap < ((size_t)1 << 40))
		cap <<= 1;
	h->e = calloc(cap, sizeof(*h->e));
	if (!h->e)
		return -ENOMEM;
	h->mask = cap - 1;
	return 0;
}

void htab_free(struct htab *h)
{
	free(h->e);
	memset(h, 0, sizeof(*h));
}

static size_t htab_slot(const struct htab *h, uint64_t hash)
{
	return (size_t)(hash ^ (hash >> 29)) & h->mask;
}

struct htab_entry *htab_find(struct htab *h, uint64_t hash)
{
	for (size_t i = htab_slot(h, hash);; i = (i + 1) & h->mask) {
		if (h->e[i].kind == HT_EMPTY)
			return NULL;
		if (h->e[i].hash == hash)
			return &h->e[i];
	}
}

int htab_put(struct htab *h, uint64_t hash, enum htab_kind kind, uint32_t val)
{
	struct htab_entry *e = htab_find(h, hash);

	if (!e) {
		if (h->used + 1 > (h->mask + 1) / 4 * 3)
			return -ENOSPC;
		size_t i = htab_slot(h, hash);
		while (h->e[i].kind != HT_EMPTY)
			i = (i + 1) & h->mask;
		e = &h->e[i];
		h->used++;
	}
	*e = (struct htab_entry){ .hash = hash, .val = val, .kind = (uint8_t)kind };
	return 0;
}

/* Linear probing without tombstones: after emptying a bucket, later entries of the same probe run
 * that could sit in it move back, so every lookup still finds its entry before an empty bucket. */
static void htab_remove_at(struct htab *h, size_t i)
{
	size_t j = i;

	h->e[i].kind = HT_EMPTY;
	h->used--;
	for (;;) {
		j = (j + 1) & h->mask;
		if (h->e[j].kind == HT_EMPTY)
			return;
		size_t home = htab_slot(h, h->e[j].hash);
		/* Entry j may move to i when its home is not in the cyclic interval (i, j]. */
		if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
			h->e[i] = h->e[j];
			h->e[j].kind = HT_EMPTY;
			i = j;
		}
	}
}

void htab_del(struct htab *h, uint64_t hash)
{
	struct htab_entry *e = htab_find(h, hash);

	if (e)
		htab_remove_at(h, (size_t)(e - h->e));
}

void htab_drop_hints(struct htab *h)
{
	struct htab_entry *old = h->e;
	size_t cap = h->mask + 1;

	h->e = calloc(cap, sizeof(*h->e));
	if (!h->e) {
		/* Keep the old table: stale hints only cost a failed compare. */
		h->e = old;
		return;
	}
	h->used = 0;
	for (size_t i = 0; i < cap; i++)
		if (old[i].kind == HT_SLOT)
			htab_put(h, old[i].hash, HT_SLOT, old[i].val);
	free(old);
}

int pool_create(struct pool *p, uint32_t capacity)
{
	size_t bytes = (size_t)capacity * 4096;

	memset(p, 0, sizeof(*p));
	p->fd = -1;
	p->ref = calloc(capacity ? capacity : 1, sizeof(*p->ref));
	p->hash = calloc(capacity ? capacity : 1, sizeof(*p->hash));
	p->free = calloc(capacity ? capacity : 1, sizeof(*p->free));
	if (!p->ref || !p->hash || !p->free)
		goto fail;
	p->fd = memfd_create("kvmm-share-pool", MFD_CLOEXEC);
	if (p->fd < 0 || ftruncate(p->fd, (off_t)bytes) < 0)
		goto fail;
	p->map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, p->fd, 0);
	if (p->map == MAP_FAILED) {
		p->map = NULL;
		goto fail;
	}
	p->capacity = capacity;
	return 0;
fail:
	{
		int err = errno ? -errno : -ENOMEM;
		pool_destroy(p);
		return err;
	}
}

void pool_destroy(struct pool *p)
{
	if (p->map)
		munmap(p->map, (size_t)p->capacity * 4096);
	if (p->fd >= 0)
		close(p->fd);
	free(p->ref);
	free(p->hash);
	free(p->free);
	memset(p, 0, sizeof(*p));
	p->fd = -1;
}

uint32_t pool_alloc(struct pool *p)
{
	if (p->nr_free)
		return p->free[--p->nr_free];
	if (p->next < p->capacity)
		return p->next++;
	return POOL_NONE;
}

void pool_get(struct pool *p, uint32_t slot)
{
	if (p->ref[slot]++ == 0)
		p->live++;
}

bool pool_put(struct pool *p, uint32_t slot)
{
	if (p->ref[slot] == 0)
		return false;
	if (--p->ref[slot] == 0) {
		p->live--;
		return true;
	}
	return false;
}

void pool_release(struct pool *p, uint32_t slot)
{
	if (p->fd >= 0)
		fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)slot * 4096, 4096);
	p->hash[slot] = 0;
	p->ref[slot] = 0;
	p->free[p->nr_free++] = slot;
}

void pool_clear(struct pool *p)
{
	if (p->fd >= 0)
		fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			  (off_t)p->capacity * 4096);
	memset(p->ref, 0, (size_t)p->capacity * sizeof(*p->ref));
	memset(p->hash, 0, (size_t)p->capacity * sizeof(*p->hash));
	p->next = p->nr_free = p->live = 0;
}
