/* Private to src/mem/: the memory manager's state, shared by mem.c (lifecycle, release, reset),
 * features.c, fault.c (userfaultfd handler), capture.c, share.c (scanner), ksm.c and stats.c.
 *
 * Locking: `lock` guards the page states, the pool and the hash table. The scanner holds it for
 * one chunk of pages at a time, the fault handler for one fault, mem_release for one call. While
 * holding it, a thread touches only staging and pool pages, and guest pages that pagemap showed
 * present (so no userfault can need the lock back). */
#ifndef KVMM_MEM_INTERNAL_H
#define KVMM_MEM_INTERNAL_H

#include <kvmm/mem.h>

#include "pool.h"
#include "pstate.h"
#include "swapfile.h"
#include "zcache.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/types.h>

#define MEM_PAGE 4096u
#define MEM_CHUNK 512u /* pages the scanner handles per lock hold: 2 MiB */
#define CHUNK_WORDS (MEM_CHUNK / 64)

/* One bit per page of a chunk. */
struct chunkmap {
	uint64_t w[CHUNK_WORDS];
};

static inline bool cm_test(const struct chunkmap *c, size_t i)
{
	return c->w[i / 64] >> (i % 64) & 1;
}

static inline void cm_set(struct chunkmap *c, size_t i)
{
	c->w[i / 64] |= 1ull << (i % 64);
}

static inline bool cm_empty(const struct chunkmap *c)
{
	for (unsigned k = 0; k < CHUNK_WORDS; k++)
		if (c->w[k])
			return false;
	return true;
}

static inline unsigned cm_count(const struct chunkmap *c)
{
	unsigned n = 0;

	for (unsigned k = 0; k < CHUNK_WORDS; k++)
		n += (unsigned)__builtin_popcountll(c->w[k]);
	return n;
}

/* /proc/PID/pagemap bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PRESENT (1ull << 63)
#define PM_SWAP (1ull << 62)
#define PM_FILE (1ull << 61)
#define PM_UFFD_WP (1ull << 57)
#define PM_EXCLUSIVE (1ull << 56)

struct memmgr {
	struct gmem *gm;
	const struct vm_config *cfg;
	enum mem_share_mode mode;
	enum mem_capture_mode capture;
	struct mem_features feat;
	uint64_t salt;           /* XXH3 seed: pages are shared only between equal salts */
	size_t pages;            /* guest RAM pages (gm->map_size / 4 KiB) */

	pthread_mutex_t lock;
	struct pstate_table ps;
	struct pool pool;
	struct htab ht;
	uint64_t share_cap;      /* most SHARED pages the VMA budget allows */
	uint64_t file_vma_pages; /* pages with PS_FILE_VMA (each holds VMAs like a shared one) */
	uint64_t capped_pass;    /* candidates the cap turned away in this pass */
	uint8_t *skip;           /* scanner: low nibble passes still to skip, high nibble level */
	uint32_t *seen;          /* scanner: what each page read as in the last pass (0: not seen) */

	int uffd;                /* -1 without */
	int pagemap_fd;
	int stop_fd;             /* eventfd: tells the scanner and the reclaimer to end */
	int fault_stop_fd;       /* eventfd: tells the fault handler to end (last: it serves to the end) */
	_Atomic bool fault_stopping;
	_Atomic unsigned fault_waiting; /* the fault handler wants the lock: background work yields */
	int stats_fd;            /* --mem-stats-interval timer on the loop, -1 without */
	struct loop *stats_loop;
	uint8_t *stage;          /* MEM_CHUNK staging pages (registered with uffd in move mode) */
	pthread_t fault_thread, share_thread;
	bool fault_started, share_started;
	_Atomic bool stopping;

	_Atomic uint64_t rate;   /* scanner pages per second */
	_Atomic unsigned cpu_pct;

	/* Reclaim (reclaim.c): compression cache, swap, cold pages, the target. */
	bool reclaim;            /* pages can be taken out and faulted back (userfaultfd) */
	bool zc_on;              /* --mem-compress on */
	struct zcache zc;
	struct swapfile *swap;   /* NULL: --mem-swap off */
	bool swap_full;          /* the last write found no free slot (event raised once) */
	uint8_t *age;            /* aging periods since each page was last written or faulted in */
	uint8_t *bounce;         /* fault handler's page for UFFDIO_COPY (decompress, swap-in) */
	uint8_t *evict;          /* EVICT_BATCH pages: cache entries on their way to swap */
	size_t hand;             /* the reclaimer's clock hand */
	unsigned min_age;        /* the coldness the reclaimer takes now */
	int vm_fd;               /* KVM dirty log for aging, -1 without */
	bool dirty_manual;       /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: the reclaimer re-arms pages itself */
	struct mem_hooks hooks;
	pthread_t reclaim_thread;
	bool reclaim_started;
	_Atomic uint64_t limit, reservation, balloon_asked;
	_Atomic uint64_t host_target;   /* hostd's target, UINT64_MAX without hostd */
	_Atomic unsigned host_tech;     /* POLICY_TECH_* hostd allows */
	/* hostd's block (POLICY_TECH_BLOCK, its low state): fault.c holds allocating faults. */
	_Atomic bool over_target;       /* the reclaimer's last measure: consumed >= target */
	_Atomic bool hard;              /* mem_set_hard_limit(): the target blocks allocation */
	_Atomic uint64_t stats_counts[PS_NR], stats_live; /* mem_get_stats()' last copy */
	_Atomic bool stuck;             /* over the target and nothing reclaimed for STUCK_TICKS */
	int block_fd;                   /* eventfd: the block may have lifted (fault handler polls it) */
	pid_t loop_tid;                 /* mem_set_hooks' thread: its faults are never held */
	_Atomic uint64_t blocked_faults, blocked_ns, blocked_now;
	_Atomic uint64_t compress_out, compress_in, swap_out, swap_in, reclaim_refaults;
	_Atomic uint64_t swap_errors, swap_corrupt, active_pages;

	/* Counters (atomics: stats read them without the lock). */
	_Atomic uint64_t refaults, unshares, faults, scans, captures, captures_aborted, capped;
	_Atomic uint64_t share_cpu_ns_done; /* CPU of sharing threads that ended (reset keeps them) */
};

/* Guest page `page` is backed by its own host page, which may be taken: present and mapped once;
 * anonymous, or with --mem-backend memfd the VM's own memfd page (not a pool page). */
static inline bool mem_pm_private(const struct memmgr *m, size_t page, uint64_t pm)
{
	if ((pm & (PM_PRESENT | PM_EXCLUSIVE)) != (PM_PRESENT | PM_EXCLUSIVE))
		return false;
	return !(pm & PM_FILE) || (m->gm->backend == MEM_BACKEND_MEMFD &&
				   pstate_get(&m->ps, page) != PS_SHARED && !pstate_file_vma(&m->ps, page));
}

/* Background threads (scanner, reclaimer, page-out) take the lock through this: a guest fault
 * waiting for it goes first. A mutex is not fair, and a thread that unlocks and locks again in a
 * loop would starve the fault handler (and the vCPU waiting on it). */
static inline void mem_lock_background(struct memmgr *m)
{
	for (unsigned k = 0; atomic_load(&m->fault_waiting) && k < 1000; k++)
		sched_yield();
	pthread_mutex_lock(&m->lock);
}

static inline uint8_t *mem_hva(const struct memmgr *m, size_t page)
{
	return m->gm->map + (size_t)page * MEM_PAGE;
}

static inline bool mem_page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (unsigned i = 0; i < MEM_PAGE / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	return true;
}

/* features.c */
void features_detect(struct mem_features *f);
void features_log(const struct mem_features *f);
/* Opens a userfaultfd with `features` enabled (0: none, to probe); *got is every feature the
 * kernel has, *via how it was opened (or why it could not be). -errno. */
int features_uffd_open(uint64_t features, uint64_t *got, const char **via);
/* Lines of /proc/self/maps now: the VMAs this process has. */
uint64_t features_vmas_now(void);
/* VMAs needed for sharing `pages` pages, and whether vm.max_map_count was (or could be) raised;
 * returns the cap on SHARED pages. Pure apart from reading/writing the sysctl (root only). */
uint64_t features_share_cap(uint64_t max_map_count, uint64_t vmas_now, uint64_t pages);
int features_raise_map_count(struct mem_features *f, uint64_t pages);

/* fault.c */
int fault_register(struct memmgr *m, uint8_t *addr, size_t len);
int fault_start(struct memmgr *m);
/* Resolves a range the manager emptied (state ZERO/BALLOONED) if threads wait on it. */
void fault_wake(struct memmgr *m, uint8_t *addr, size_t len);

/* capture.c: takes the pages first + i (bit i of want; all present per pagemap, n <= MEM_CHUNK,
 * lock held) into m->stage[i]; sets bit i of *got for each page captured. A captured page is a
 * hole in guest RAM (a guest touch waits in the fault handler) with its content in staging. The
 * caller ends each one with capture_restore (the same content back), capture_drop (the zero
 * page) or a pool mapping (share.c), then calls capture_end. */
int capture_pages(struct memmgr *m, size_t first, size_t n, const struct chunkmap *want,
		  struct chunkmap *got);
int capture_restore(struct memmgr *m, size_t page, size_t stage_index);
int capture_drop(struct memmgr *m, size_t page);
/* After a chunk: frees the staging pages that were not restored. */
void capture_end(struct memmgr *m, size_t n);
int pagemap_read(struct memmgr *m, size_t first, size_t n, uint64_t *out);

/* share.c */
int share_start(struct memmgr *m);
/* Makes [first, first + n) plain anonymous, registered memory again (the pool mappings and
 * written copies go). Lock held; contents are lost (the caller gives the pages up). */
int share_unmap(struct memmgr *m, size_t first, size_t n);
bool mem_nap(struct memmgr *m, int ms);
uint64_t share_thread_cpu_ns(struct memmgr *m);

/* reclaim.c */
int reclaim_setup(struct memmgr *m);
int reclaim_start(struct memmgr *m);
void reclaim_free(struct memmgr *m);
/* Takes the pages of [first, first + n) (n <= MEM_CHUNK) chosen in *want out of guest RAM: zero
 * pages dropped, others compressed or swapped as `how` allows. Lock held. Pages taken. */
size_t reclaim_chunk(struct memmgr *m, size_t first, size_t n, const struct chunkmap *want,
		     enum mem_out how);
/* Fault-in of a COMPRESSED or SWAPPED page into its hole (fault handler, lock held). */
void reclaim_fault_in(struct memmgr *m, size_t page);
/* A page that leaves the reclaim states otherwise (balloon, reset): its cache entry or swap slot
 * goes. Lock held. */
void reclaim_forget(struct memmgr *m, size_t page);
void reclaim_reset(struct memmgr *m);
uint64_t reclaim_consumed_extra(struct memmgr *m);

/* reclaimer.c: what consumed is held to (bytes). */
uint64_t mem_target(struct memmgr *m);
/* Whether faults that allocate must wait now: hostd blocks allocation, the VM holds at least its
 * target, and neither the manager nor the VM is stopping. */
bool mem_blocked(struct memmgr *m);
/* Tells the fault handler to look again at what it holds. */
void mem_block_changed(struct memmgr *m);

/* stats.c: guest pages backed by their own host page (pagemap), or -errno. */
int64_t stats_count_private(struct memmgr *m);

/* ksm.c */
int ksm_setup(struct memmgr *m);
void ksm_read(struct mem_stats *st);

#endif
