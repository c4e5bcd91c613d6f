/* Taking pages out of guest RAM and bringing them back (DESIGN.md section 4): the compression
 * cache (zcache.c) and host swap (swapfile.c) behind the page states COMPRESSED and SWAPPED.
 *
 * Out: a chunk's chosen pages are captured (capture.c: the page becomes a hole, its content in
 * staging); a zero page is dropped; a page that LZ4-compresses into 2 KiB goes to the cache; the
 * rest, and the cache's oldest entries when it is full, go to swap in one batched write. A page
 * that can go nowhere (no swap, swap full or failed) is given back unchanged: a page is never
 * lost to an I/O error.
 * In: the fault handler decompresses, or reads and checks the slot, into its bounce page and hands
 * that to UFFDIO_COPY. A slot that fails its checksum is never given to the guest: the VM stops
 * with a MEMORY_FAILURE event (the guest cannot take a machine check from kvmm). */
#include "mem_internal.h"
#include "uffd_compat.h"

#include <kvmm/log.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define EVICT_BATCH 64u /* cache entries written to swap per write */
#define READAHEAD 15u   /* pages faulted in after the one the guest touched */

static void event(struct memmgr *m, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void event(struct memmgr *m, const char *name, const char *fmt, ...)
{
	char data[256];
	va_list ap;

	if (!m->hooks.event)
		return;
	va_start(ap, fmt);
	vsnprintf(data, sizeof(data), fmt, ap);
	va_end(ap);
	m->hooks.event(m->hooks.opaque, name, data);
}

/* A failed swap write: slots ran out (swap resumes when some are freed), or the file failed (it
 * takes no more writes). Either way the pages stay resident; say so once per episode. */
static void swap_write_failed(struct memmgr *m, int err)
{
	if (err == -ENOSPC && swapfile_usable(m->swap)) {
		if (!m->swap_full) {
			m->swap_full = true;
			log_error("memory: swap file %s is full: pages stay resident",
				  swapfile_path(m->swap));
			event(m, "KVMM_SWAP_FULL", "{\"path\": \"%s\"}", swapfile_path(m->swap));
		}
		return;
	}
	atomic_fetch_add(&m->swap_errors, 1);
	log_error("memory: writing swap file %s: %s; swapping stops, pages stay resident",
		  swapfile_path(m->swap), strerror(-err));
	event(m, "KVMM_SWAP_ERROR", "{\"path\": \"%s\", \"error\": \"%s\"}", swapfile_path(m->swap),
	      strerror(-err));
}

static bool swap_ok(const struct memmgr *m)
{
	return m->swap && swapfile_usable(m->swap);
}

/* UFFDIO_COPY of src into the hole at page; 0, or -errno (EEXIST: something is there). */
static int fill_hole(struct memmgr *m, size_t page, const void *src)
{
	struct uffdio_copy c = { .dst = (uintptr_t)mem_hva(m, page), .src = (uintptr_t)src, .len = MEM_PAGE };

	while (ioctl(m->uffd, UFFDIO_COPY, &c) < 0) {
		if (errno != EAGAIN)
			return -errno;
		c.copy = 0;
	}
	return 0;
}

/* Writes up to EVICT_BATCH of the cache's oldest entries to swap, so the cache has room again.
 * An entry whose write fails goes back into guest RAM (resident, never lost). Pages evicted. */
static unsigned evict(struct memmgr *m)
{
	const void *pages[EVICT_BATCH];
	uint32_t page[EVICT_BATCH], slots[EVICT_BATCH], h;
	unsigned n = 0;
	int r;

	if (!swap_ok(m))
		return 0;
	if (swapfile_free_slots(m->swap) == 0) {
		swap_write_failed(m, -ENOSPC);
		return 0;
	}
	while (n < EVICT_BATCH && n < swapfile_free_slots(m->swap) && zcache_oldest(&m->zc, &h, &page[n])) {
		uint8_t *buf = m->evict + (size_t)n * MEM_PAGE;

		if (pstate_get(&m->ps, page[n]) != PS_COMPRESSED || m->ps.slot[page[n]] != h ||
		    zcache_load(&m->zc, h, buf) < 0) {
			/* Cannot happen while the table and the cache agree; never loop on it. */
			log_error("memory: compression cache entry %u of page %u is bad", h, page[n]);
			zcache_drop(&m->zc, h);
			continue;
		}
		zcache_drop(&m->zc, h);
		pages[n] = buf;
		n++;
	}
	if (!n)
		return 0;
	r = swapfile_write(m->swap, pages, n, slots);
	for (unsigned k = 0; k < n; k++) {
		if (r >= 0) {
			pstate_set(&m->ps, page[k], PS_SWAPPED, slots[k], false);
			continue;
		}
		/* The content is out of the cache and not in swap: back into the guest page. */
		if (fill_hole(m, page[k], pages[k]) < 0)
			log_error("memory: page %u could not be put back: %s", page[k], strerror(errno));
		pstate_set(&m->ps, page[k], PS_PRESENT, 0, false);
	}
	if (r < 0) {
		swap_write_failed(m, r);
		return 0;
	}
	m->swap_full = false;
	atomic_fetch_add(&m->swap_out, n);
	return n;
}

/* Into the cache, evicting its oldest entries to swap when it is full. */
static int compress_page(struct memmgr *m, size_t page, const uint8_t *src)
{
	uint32_t h;
	int r;

	for (;;) {
		r = zcache_store(&m->zc, src, (uint32_t)page, &h);
		if (r != -ENOSPC || !evict(m))
			break;
	}
	if (r < 0)
		return r;
	pstate_set(&m->ps, page, PS_COMPRESSED, h, false);
	atomic_fetch_add(&m->compress_out, 1);
	return 0;
}

size_t reclaim_chunk(struct memmgr *m, size_t first, size_t n, const struct chunkmap *want,
		     enum mem_out how)
{
	const void *batch[MEM_CHUNK];
	uint32_t slots[MEM_CHUNK];
	uint16_t bidx[MEM_CHUNK];
	struct chunkmap got;
	unsigned nb = 0;
	size_t taken = 0;
	int r;

	capture_pages(m, first, n, want, &got);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *src = m->stage + i * MEM_PAGE;
		size_t page = first + i;

		if (!cm_test(&got, i))
			continue;
		if (mem_page_is_zero(src)) {
			capture_drop(m, page);
			pstate_set(&m->ps, page, PS_ZERO, 0, false);
			taken++;
			continue;
		}
		if (how != MEM_OUT_SWAP && m->zc_on && compress_page(m, page, src) == 0) {
			taken++;
			continue;
		}
		if (how != MEM_OUT_COMPRESS && swap_ok(m)) {
			bidx[nb] = (uint16_t)i;
			batch[nb++] = src;
			continue;
		}
		capture_restore(m, page, i);
	}
	if (nb) {
		/* As many as there are free slots; the rest stay. */
		uint64_t room = swapfile_free_slots(m->swap);
		unsigned nw = nb < room ? nb : (unsigned)room;

		r = nw ? swapfile_write(m->swap, batch, nw, slots) : -ENOSPC;
		if (r < 0 || nw < nb)
			swap_write_failed(m, r < 0 ? r : -ENOSPC);
		else
			m->swap_full = false;
		for (unsigned k = 0; k < nb; k++) {
			size_t page = first + bidx[k];

			if (r < 0 || k >= nw) {
				capture_restore(m, page, bidx[k]);
				continue;
			}
			pstate_set(&m->ps, page, PS_SWAPPED, slots[k], false);
			taken++;
		}
		if (r >= 0)
			atomic_fetch_add(&m->swap_out, nw);
	}
	capture_end(m, n);
	return taken;
}

/* A slot that fails its checksum, or a cache entry that does not decompress: the page's data is
 * gone. It is never handed to the guest: the VM stops. The faulting thread is released only once
 * the VM is stopping (a vCPU then leaves KVM_RUN before entering the guest again, as its kick is
 * pending), with the zero page, so that it can be joined. */
static void memory_failure(struct memmgr *m, size_t page, const char *what, int err)
{
	char detail[160];

	snprintf(detail, sizeof(detail), "guest page %#llx lost: %s (%s)",
		 (unsigned long long)page * MEM_PAGE, what, strerror(-err));
	log_error("memory: %s; stopping the VM", detail);
	atomic_fetch_add(&m->swap_corrupt, 1);
	event(m, "MEMORY_FAILURE", "{\"recipient\": \"guest\", \"action\": \"fatal\", "
	      "\"flags\": {\"action-required\": true, \"recursive\": false}}");
	if (m->hooks.fatal)
		m->hooks.fatal(m->hooks.opaque, detail);
	for (int k = 0; k < 500 && m->hooks.stopping && !m->hooks.stopping(m->hooks.opaque); k++)
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
}

/* The page's content is at src (r == 0), or could not be had (r < 0): put it in its hole. */
static void install(struct memmgr *m, size_t page, const void *src, int r, bool readahead)
{
	enum pstate s = pstate_get(&m->ps, page);

	if (r < 0 && readahead)
		return; /* only the guest's own touch of it stops the VM */
	if (r < 0) {
		memory_failure(m, page, s == PS_COMPRESSED ? "compression cache entry does not decompress" :
			       r == -EBADMSG ? "swap slot fails its checksum" : "swap slot cannot be read", r);
		/* The VM is stopping (or would not stop): the faulting thread gets zeros, never the
		 * damaged data, so that it can leave; the page's old content is gone. */
		memset(m->bounce, 0, MEM_PAGE);
		if (fill_hole(m, page, m->bounce) < 0)
			fault_wake(m, mem_hva(m, page), MEM_PAGE);
		reclaim_forget(m, page);
		pstate_set(&m->ps, page, PS_PRESENT, 0, false);
		return;
	}
	r = fill_hole(m, page, src);
	if (r < 0 && r != -EEXIST) {
		/* The content stays where it is; the guest retries the fault. */
		log_error("memory: UFFDIO_COPY of page %zu: %s", page, strerror(-r));
		fault_wake(m, mem_hva(m, page), MEM_PAGE);
		return;
	}
	reclaim_forget(m, page);
	pstate_set(&m->ps, page, PS_PRESENT, 0, false);
	atomic_fetch_add(s == PS_COMPRESSED ? &m->compress_in : &m->swap_in, 1);
	/* Young for one aging period, so the reclaimer does not take it straight back before the
	 * guest gets to it; a readahead page is not a refault. */
	if (m->age)
		m->age[page] = 0;
	if (!readahead)
		atomic_fetch_add(&m->reclaim_refaults, 1);
}

/* Pages from `page` on that are swapped in consecutive slots (a batch written together): up to
 * `most`, read with one read. */
static size_t swap_run(struct memmgr *m, size_t page, size_t most)
{
	uint32_t slot = m->ps.slot[page];
	size_t n = 1;

	while (n < most && page + n < m->pages && pstate_get(&m->ps, page + n) == PS_SWAPPED &&
	       m->ps.slot[page + n] == slot + n)
		n++;
	return n;
}

/* Faults page in, then the pages after it that are out too, up to READAHEAD more (as the
 * kernel's own swap readahead, vm.page-cluster): a guest reading through memory takes one fault
 * per cluster, and a run of consecutive swap slots is one read. The faulting thread is woken by
 * the first copy and runs while the rest come in. */
void reclaim_fault_in(struct memmgr *m, size_t page)
{
	size_t end = page + 1 + READAHEAD < m->pages ? page + 1 + READAHEAD : m->pages;

	for (size_t p = page; p < end && !atomic_load(&m->fault_stopping);) {
		enum pstate s = pstate_get(&m->ps, p);
		uint64_t bad = 0;
		size_t n = 1;
		int r;

		if (s != PS_COMPRESSED && s != PS_SWAPPED)
			break;
		if (s == PS_COMPRESSED) {
			r = zcache_load(&m->zc, m->ps.slot[p], m->evict);
		} else {
			n = swap_run(m, p, end - p);
			r = swapfile_read_run(m->swap, m->ps.slot[p], (unsigned)n, m->evict, &bad);
		}
		for (size_t k = 0; k < n; k++)
			install(m, p + k, m->evict + k * MEM_PAGE, r < 0 ? r : bad >> k & 1 ? -EBADMSG : 0,
				p + k != page);
		p += n;
	}
}

void reclaim_forget(struct memmgr *m, size_t page)
{
	enum pstate s = pstate_get(&m->ps, page);

	if (s == PS_COMPRESSED)
		zcache_drop(&m->zc, m->ps.slot[page]);
	else if (s == PS_SWAPPED && m->swap)
		swapfile_free(m->swap, m->ps.slot[page]);
}

void reclaim_reset(struct memmgr *m)
{
	if (m->zc_on)
		zcache_clear(&m->zc);
	if (m->swap)
		swapfile_clear(m->swap);
	if (m->age)
		memset(m->age, 0, m->pages);
	m->swap_full = false;
}

uint64_t reclaim_consumed_extra(struct memmgr *m)
{
	struct zcache_stats zs;

	if (!m->zc_on)
		return 0;
	zcache_get_stats(&m->zc, &zs);
	return zs.arena_bytes + zs.meta_bytes;
}

int64_t mem_page_out(struct memmgr *m, uint64_t gpa, uint64_t len, enum mem_out how)
{
	uint64_t end = len > UINT64_MAX - gpa ? UINT64_MAX : gpa + len;
	uint64_t pm[MEM_CHUNK];
	int64_t taken = 0;

	if (!m->reclaim)
		return -ENOTSUP;
	for (unsigned k = 0; k < m->gm->nr_regions; k++) {
		const struct gmem_region *r = &m->gm->regions[k];
		uint64_t lo = gpa > r->gpa ? gpa : r->gpa, hi = end < r->gpa + r->size ? end : r->gpa + r->size;

		lo = (lo + MEM_PAGE - 1) & ~(uint64_t)(MEM_PAGE - 1);
		hi &= ~(uint64_t)(MEM_PAGE - 1);
		for (size_t a = (size_t)((r->host - m->gm->map) + (lo - r->gpa)) / MEM_PAGE,
			    b = a + (lo < hi ? (size_t)((hi - lo) / MEM_PAGE) : 0); a < b;) {
			size_t n = b - a < MEM_CHUNK ? b - a : MEM_CHUNK;
			struct chunkmap want = { 0 };

			mem_lock_background(m);
			if (pagemap_read(m, a, n, pm) == 0) {
				for (size_t i = 0; i < n; i++)
					if (pstate_get(&m->ps, a + i) == PS_PRESENT &&
					    !pstate_file_vma(&m->ps, a + i) && mem_pm_private(m, a + i, pm[i]))
						cm_set(&want, i);
				if (!cm_empty(&want))
					taken += (int64_t)reclaim_chunk(m, a, n, &want, how);
			}
			pthread_mutex_unlock(&m->lock);
			a += n;
		}
	}
	return taken;
}

int reclaim_setup(struct memmgr *m)
{
	const struct vm_config *cfg = m->cfg;
	int r;

	m->bounce = mmap(NULL, (1 + EVICT_BATCH) * MEM_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	m->age = calloc(m->pages, 1);
	if (m->bounce == MAP_FAILED || !m->age) {
		m->bounce = NULL;
		return -ENOMEM;
	}
	m->evict = m->bounce + MEM_PAGE;
	if (cfg->mem_compress) {
		uint64_t cap = m->gm->ram_size / 100 * cfg->mem_compress_max_pct;

		if ((r = zcache_init(&m->zc, cap < MEM_PAGE ? MEM_PAGE : cap)) < 0) {
			log_error("memory: compression cache: %s", strerror(-r));
			return r;
		}
		m->zc_on = true;
	}
	if (cfg->mem_swap) {
		uint64_t slots = (cfg->mem_swap_size ? cfg->mem_swap_size : m->gm->ram_size) / MEM_PAGE;

		r = swapfile_create(&m->swap, cfg->mem_swap, slots, SWAPFILE_IO_AUTO);
		if (r < 0) {
			log_error("--mem-swap %s: %s", cfg->mem_swap,
				  r == -EEXIST ? "a file is there already (kvmm never overwrites one)" :
				  r == -ENOSPC ? "the file system has no room for it" : strerror(-r));
			return r;
		}
	}
	m->reclaim = true;
	return 0;
}

void reclaim_free(struct memmgr *m)
{
	if (m->zc_on)
		zcache_destroy(&m->zc);
	swapfile_destroy(m->swap);
	m->swap = NULL;
	if (m->bounce)
		munmap(m->bounce, (1 + EVICT_BATCH) * MEM_PAGE);
	free(m->age);
}
