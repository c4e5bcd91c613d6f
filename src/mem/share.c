/* The sharing scanner ("mem-share"), DESIGN.md section 4. One pass walks guest RAM in chunks of
 * MEM_CHUNK pages; in each chunk, with the lock held:
 * - shared pages the guest has written since (pagemap: no longer a file page) are counted as
 *   unshared and their pool slot loses a reference;
 * - private pages (pagemap: present, exclusive, anonymous) that read as zero, or whose XXH3 hash
 *   matches a pool slot or an earlier page (a hint), are captured; the captured copy is then
 *   checked again (all zero, or memcmp against the pool page, never the hash alone) and the page
 *   is dropped (ZERO), mapped to the pool page copy-on-write (SHARED), or given back unchanged.
 * A page that matched a hint becomes a new pool slot, and the hint page is then captured and
 * compared in turn. A page is taken only when it read the same in the previous pass. Pages with
 * unique content are skipped for 1, 3, 7, then 15 passes (the pages KSM's smart scan skips). The
 * pass is paced to the configured pages per second and CPU share of one core. */
#include "mem_internal.h"

#include <kvmm/log.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <xxhash.h>

#define SKIP_LEVEL_MAX 4
#define IDLE_PASS_MS 1000 /* between passes that found nothing new */

enum cand { C_NONE, C_ZERO, C_SLOT, C_HINT };

struct chunk {
	uint64_t pm[MEM_CHUNK];
	uint64_t hash[MEM_CHUNK];
	uint32_t val[MEM_CHUNK];  /* C_SLOT: the slot; C_HINT: the hint's page */
	uint8_t cand[MEM_CHUNK];
	struct chunkmap want;
};

struct pending { size_t page; uint32_t slot; };

static uint64_t page_hash(const struct memmgr *m, const uint8_t *p)
{
	return XXH3_64bits_withSeed(p, MEM_PAGE, m->salt);
}

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void slot_put(struct memmgr *m, uint32_t slot)
{
	if (pool_put(&m->pool, slot)) {
		struct htab_entry *e = htab_find(&m->ht, m->pool.hash[slot]);

		if (e && e->kind == HT_SLOT && e->val == slot)
			htab_del(&m->ht, m->pool.hash[slot]);
		pool_release(&m->pool, slot);
	}
}

/* Maps pool slot over guest page i (captured: the guest's side holds nothing we need). */
static int share_map(struct memmgr *m, size_t i, uint32_t slot)
{
	void *p = mmap(mem_hva(m, i), MEM_PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, m->pool.fd, (off_t)slot * MEM_PAGE);

	if (p == MAP_FAILED)
		return -errno;
	pool_get(&m->pool, slot);
	pstate_set(&m->ps, i, PS_SHARED, slot, true);
	return 0;
}

static bool room_to_share(struct memmgr *m)
{
	if (m->ps.count[PS_SHARED] + m->file_vma_pages < m->share_cap)
		return true;
	m->capped_pass++;
	return false;
}

/* Whether the pool page still holds what its hash says (it is re-verified before each reuse). */
static bool slot_ok(struct memmgr *m, uint32_t slot, uint64_t hash)
{
	return m->pool.ref[slot] && m->pool.hash[slot] == hash &&
	       page_hash(m, pool_page(&m->pool, slot)) == hash;
}

/* One captured page: decides, and ends the capture. Returns a new slot whose hint page should be
 * compared next, or POOL_NONE. */
static uint32_t settle(struct memmgr *m, struct chunk *c, size_t first, size_t i)
{
	const uint8_t *copy = m->stage + i * MEM_PAGE;
	size_t page = first + i;
	uint32_t slot;

	switch (c->cand[i]) {
	case C_ZERO:
		if (mem_page_is_zero(copy) && capture_drop(m, page) == 0) {
			pstate_set(&m->ps, page, PS_ZERO, 0, false);
			return POOL_NONE;
		}
		break;
	case C_SLOT:
		slot = c->val[i];
		if (room_to_share(m) && slot_ok(m, slot, c->hash[i]) &&
		    memcmp(copy, pool_page(&m->pool, slot), MEM_PAGE) == 0 && share_map(m, page, slot) == 0)
			return POOL_NONE;
		break;
	case C_HINT: {
		struct htab_entry *e = htab_find(&m->ht, c->hash[i]);

		/* An earlier page of this chunk may have made the slot already. */
		if (e && e->kind == HT_SLOT) {
			c->cand[i] = C_SLOT;
			c->val[i] = e->val;
			return settle(m, c, first, i);
		}
		if (!room_to_share(m) || page_hash(m, copy) != c->hash[i])
			break;
		slot = pool_alloc(&m->pool);
		if (slot == POOL_NONE)
			break;
		memcpy(pool_page(&m->pool, slot), copy, MEM_PAGE);
		m->pool.hash[slot] = c->hash[i];
		if (share_map(m, page, slot) < 0) {
			pool_release(&m->pool, slot);
			break;
		}
		if (htab_put(&m->ht, c->hash[i], HT_SLOT, slot) == -ENOSPC) {
			htab_drop_hints(&m->ht);
			htab_put(&m->ht, c->hash[i], HT_SLOT, slot);
		}
		return slot;
	}
	}
	capture_restore(m, page, i);
	return POOL_NONE;
}

/* Looks at page i of the chunk without capturing it: what it could become. */
static void classify(struct memmgr *m, struct chunk *c, size_t first, size_t i)
{
	size_t page = first + i;
	const uint8_t *p = mem_hva(m, page);
	struct htab_entry *e;
	uint32_t sig = 2; /* what the page read as: 1 zero, else its hash with bit 1 set */

	c->cand[i] = C_NONE;
	if (m->skip[page] & 0x0f) {
		m->skip[page]--;
		return;
	}
	if (mem_page_is_zero(p)) {
		c->cand[i] = C_ZERO;
		sig = 1;
	} else if (m->mode == MEM_SHARE_TPS) {
		c->hash[i] = page_hash(m, p);
		sig = (uint32_t)c->hash[i] | 2;
		e = htab_find(&m->ht, c->hash[i]);
		if (e && e->kind == HT_SLOT) {
			c->cand[i] = C_SLOT;
			c->val[i] = e->val;
		} else if (e && e->kind == HT_HINT && e->val != page) {
			c->cand[i] = C_HINT;
			c->val[i] = e->val;
		} else {
			unsigned level = m->skip[page] >> 4;

			if (level < SKIP_LEVEL_MAX)
				level++;
			m->skip[page] = (uint8_t)(level << 4 | ((1u << level) - 1));
			if (htab_put(&m->ht, c->hash[i], HT_HINT, (uint32_t)page) == -ENOSPC) {
				htab_drop_hints(&m->ht);
				htab_put(&m->ht, c->hash[i], HT_HINT, (uint32_t)page);
			}
		}
	}
	/* Only a page that read the same in the previous pass is taken: one being written now
	 * (a guest filling memory, a kernel zeroing pages it is about to use) would be taken at the
	 * cost of TLB flushes and given back at once, as KSM skips volatile pages. */
	if (m->seen[page] != sig) {
		m->seen[page] = sig;
		c->cand[i] = C_NONE;
	}
	if (c->cand[i] != C_NONE) {
		cm_set(&c->want, i);
		m->skip[page] = 0;
	}
}

/* Pages whose state and pagemap disagree: shared pages the guest wrote, dropped pages it wrote
 * after reading them as the zero page. */
static void reconcile(struct memmgr *m, size_t page, uint64_t pm)
{
	enum pstate s = pstate_get(&m->ps, page);

	if (s == PS_SHARED && (pm & PM_PRESENT) && !(pm & PM_FILE)) {
		slot_put(m, m->ps.slot[page]);
		pstate_set(&m->ps, page, PS_PRESENT, 0, true);
		m->file_vma_pages++;
		atomic_fetch_add(&m->unshares, 1);
	} else if ((s == PS_ZERO || s == PS_BALLOONED) && (pm & PM_PRESENT) && (pm & PM_EXCLUSIVE)) {
		/* Written since it was dropped: the kernel copied the zero page. */
		pstate_set(&m->ps, page, PS_PRESENT, 0, false);
		if (s == PS_ZERO)
			atomic_fetch_add(&m->refaults, 1);
	}
}

static size_t share_chunk(struct memmgr *m, size_t first, size_t n, struct pending *pend)
{
	struct chunk c;
	struct chunkmap got;
	size_t np = 0;

	mem_lock_background(m);
	if (pagemap_read(m, first, n, c.pm) < 0)
		goto out;
	memset(&c.want, 0, sizeof(c.want));
	for (size_t i = 0; i < n; i++) {
		size_t page = first + i;

		reconcile(m, page, c.pm[i]);
		if (pstate_get(&m->ps, page) == PS_PRESENT && !pstate_file_vma(&m->ps, page) &&
		    mem_pm_private(m, page, c.pm[i]))
			classify(m, &c, first, i);
	}
	if (cm_empty(&c.want) || capture_pages(m, first, n, &c.want, &got) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (!cm_test(&got, i))
			continue;
		uint32_t slot = settle(m, &c, first, i);
		if (slot != POOL_NONE)
			pend[np++] = (struct pending){ c.val[i], slot };
	}
	capture_end(m, n);
out:
	pthread_mutex_unlock(&m->lock);
	return np;
}

/* The first page seen with a content, compared with the pool slot its twin just created. */
static void share_pending(struct memmgr *m, const struct pending *p)
{
	struct chunkmap one = { { 1 } }, got;
	struct chunk c;
	uint64_t pm;

	mem_lock_background(m);
	if (p->page >= m->pages || pstate_get(&m->ps, p->page) != PS_PRESENT ||
	    pstate_file_vma(&m->ps, p->page) || pagemap_read(m, p->page, 1, &pm) < 0 ||
	    !mem_pm_private(m, p->page, pm) ||
	    !m->pool.ref[p->slot])
		goto out;
	c.cand[0] = C_SLOT;
	c.val[0] = p->slot;
	c.hash[0] = m->pool.hash[p->slot];
	if (capture_pages(m, p->page, 1, &one, &got) == 0 && cm_test(&got, 0)) {
		settle(m, &c, p->page, 0);
		capture_end(m, 1);
	}
out:
	pthread_mutex_unlock(&m->lock);
}

uint64_t share_thread_cpu_ns(struct memmgr *m)
{
	uint64_t ns = 0;
	clockid_t clk;

	if (m->share_started && pthread_getcpuclockid(m->share_thread, &clk) == 0)
		ns += now_ns(clk);
	if (m->fault_started && pthread_getcpuclockid(m->fault_thread, &clk) == 0)
		ns += now_ns(clk);
	return ns;
}

/* Sleeps ms unless told to stop (the scanner and the reclaimer); false when stopping. */
bool mem_nap(struct memmgr *m, int ms)
{
	struct pollfd p = { .fd = m->stop_fd, .events = POLLIN };

	if (ms > 0)
		poll(&p, 1, ms);
	return !atomic_load(&m->stopping);
}

/* Holds the pass to `rate` pages per second and `cpu_pct` of one core. */
static bool pace(struct memmgr *m, uint64_t scanned, uint64_t wall0, uint64_t cpu0)
{
	uint64_t wall = now_ns(CLOCK_MONOTONIC) - wall0, cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	uint64_t rate = atomic_load(&m->rate), pct = atomic_load(&m->cpu_pct);
	uint64_t due = scanned * 1000000000ull / (rate ? rate : 1), cpu_due = cpu * 100 / (pct ? pct : 1);
	uint64_t wait = due > cpu_due ? due : cpu_due;

	return wait > wall ? mem_nap(m, (int)((wait - wall) / 1000000) + 1) : !atomic_load(&m->stopping);
}

static void *share_main(void *opaque)
{
	struct memmgr *m = opaque;
	struct pending pend[MEM_CHUNK];

	while (!atomic_load(&m->stopping)) {
		uint64_t wall0 = now_ns(CLOCK_MONOTONIC), cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
		uint64_t before = atomic_load(&m->captures) - atomic_load(&m->captures_aborted);
		uint64_t scanned = 0;

		m->capped_pass = 0;
		for (size_t first = 0; first < m->pages && !atomic_load(&m->stopping); first += MEM_CHUNK) {
			size_t n = m->pages - first < MEM_CHUNK ? m->pages - first : MEM_CHUNK;
			size_t np = share_chunk(m, first, n, pend);

			for (size_t k = 0; k < np; k++)
				share_pending(m, &pend[k]);
			scanned += n;
			if (!pace(m, scanned, wall0, cpu0))
				break;
		}
		atomic_fetch_add(&m->scans, 1);
		atomic_store(&m->capped, m->capped_pass);
		if (atomic_load(&m->captures) - atomic_load(&m->captures_aborted) == before &&
		    !mem_nap(m, IDLE_PASS_MS))
			break;
	}
	return NULL;
}

int share_start(struct memmgr *m)
{
	int r;

	m->skip = calloc(m->pages, 1);
	m->seen = calloc(m->pages, sizeof(*m->seen));
	if (!m->skip || !m->seen)
		return -ENOMEM;
	r = pthread_create(&m->share_thread, NULL, share_main, m);
	if (r)
		return -r;
	pthread_setname_np(m->share_thread, "mem-share");
	m->share_started = true;
	return 0;
}

int share_unmap(struct memmgr *m, size_t first, size_t n)
{
	int r = gmem_remap(m->gm, first * MEM_PAGE, n * MEM_PAGE);

	if (r < 0)
		return r;
	/* memfd: the file under the range may still hold pages the guest gave up. */
	if (m->gm->backend == MEM_BACKEND_MEMFD && (r = (int)gmem_punch(m->gm, first * MEM_PAGE, n * MEM_PAGE)) < 0)
		return r;
	/* Each page is plain anonymous memory now: PRESENT, out of the pool. */
	for (size_t i = first; i < first + n; i++) {
		if (pstate_get(&m->ps, i) == PS_SHARED)
			slot_put(m, m->ps.slot[i]);
		if (pstate_file_vma(&m->ps, i))
			m->file_vma_pages--;
		if (pstate_get(&m->ps, i) == PS_SHARED || pstate_file_vma(&m->ps, i))
			pstate_set(&m->ps, i, PS_PRESENT, 0, false);
	}
	/* Until registered, a touch gets the kernel's zero page: the caller gives these pages up,
	 * so zero is what they must read. */
	return m->uffd >= 0 ? fault_register(m, mem_hva(m, first), n * MEM_PAGE) : 0;
}
