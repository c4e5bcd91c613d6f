/* The reclaimer thread ("mem-reclaim", DESIGN.md section 5): holds the VM's consumed host memory
 * (its private pages, the sharing pool and the compression cache) at its target, which is the
 * limit, or hostd's target when that is lower, but never below the reservation. hostd also says
 * which techniques the host's state allows (mem_set_host_target).
 *
 * Every tick it measures consumed (pagemap) and, when over the target, reclaims the cheapest way
 * first: sharing runs on its own (share.c); then the balloon, when the guest has a driver: it is
 * asked for the excess and given BALLOON_GRACE_MS while what it holds keeps growing; then the
 * coldest pages are compressed, or swapped (reclaim.c). The rate is capped and halves while the
 * guest faults back what was taken (refaults), so a reclaimer that takes hot pages slows down,
 * except when consumed is more than 5% over the target: then it runs at full rate.
 *
 * Coldness: every AGE_PERIOD_MS each page's age grows by one unless KVM's dirty log says the guest
 * wrote it; a fault-in sets it to zero. A page is "armed" while KVM write-protects it and it has not
 * been written since: only armed pages can be proven cold, and only they are taken. With KVM's
 * manual dirty-log protection (the normal case) the reclaimer chooses which written pages to arm
 * again, since every armed page the guest writes costs an exit: each period it re-arms one slice
 * of SLICES (a fixed hash of 64-page groups), so a hot page costs one exit every SLICES periods,
 * and on demand, when the sweep lacks cold pages, the written pages it has seen written longest
 * ago (second chance). Without it, KVM re-arms every page at every period.
 * Coldest first: each tick the sweep takes armed pages at least min_age old, min_age being the
 * oldest age that still offers enough pages (a histogram of ages kept by the aging pass), never
 * below 1. A threshold alone would take a hot page a slow guest has not come back to for a few
 * periods as readily as one untouched for minutes. The active-memory estimate (fast and slow
 * moving averages, the larger wins, as in ESX) is the share of the slice armed ACTIVE_PERIODS ago
 * that the guest has written since, times the guest's size; without manual protection, the pages
 * written within the last ACTIVE_PERIODS periods. A window, not one period: a guest cycling
 * through its working set slowly (as under nested TCG) touches only part of it every 2 s. Reads
 * are seen only through refaults: see docs/architecture.md.
 *
 * Resting: KVM maps a memslot with dirty logging on only with 4 KiB pages, and a guest on 4 KiB
 * pages runs its memory-bound code far slower (3x here under nested TCG, docs/benchmarks.md). So
 * after CALM_PERIODS aging periods at or under the target with no fault and nothing asked of the
 * balloon, the reclaimer turns the dirty log off and freezes ages and the active estimate;
 * KVM then maps huge pages again where the host has them, and the reclaimer gives fully present
 * 2 MiB windows their huge page back (MADV_COLLAPSE: userfaultfd keeps the kernel's own faults
 * from ever making one). Over the target it turns the log back on: nothing is armed then, so
 * slices and second chances arm pages again (two periods) before any can be taken. Only with manual protection:
 * without it, turning the log on write-protects everything at once. */
#include "mem_internal.h"
#include "uffd_compat.h"

#include <kvmm/log.h>
#include <kvmm/policy.h>

#include <errno.h>
#include <linux/kvm.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 250
#define AGE_PERIOD_MS 2000
#define ACTIVE_PERIODS 10 /* 20 s; ESX samples over 60 s */
#define RATE_MIN 256u              /* pages per second */
#define RATE_MAX 65536u            /* 256 MiB/s */
#define BALLOON_GRACE_MS 8000      /* how long the balloon gets while it makes progress */
#define BALLOON_STALL_MS 2000      /* no growth for this long: it has given what it can */
#define BALLOON_RETRY_MS 30000
#define BALLOON_MAX_PCT 65         /* ESX Mem.CtlMaxPercent */
#define HOLD_PAGES 64u             /* pages per lock hold: a guest fault waits for at most these */
#define SLICES 64u                 /* manual protection: one slice re-armed per period */
#define CALM_PERIODS 5u            /* aging periods with nothing to do before the reclaimer rests */
#define COLLAPSE_PER_TICK 4u       /* 2 MiB windows given back their huge page per tick, resting */
#define COLLAPSE_LOOK 128u         /* windows looked at per tick, resting */
#define COLLAPSE_AGAIN_MS 30000    /* resting: a new collapse pass this long after the last */
#define WINDOW_PAGES 512u          /* 2 MiB */
#define STUCK_TICKS 8u             /* over the target, nothing taken: a hard limit stops holding */

struct reclaimer {
	uint64_t now_ms, next_age_ms;
	uint64_t consumed, consumed_ms, consumed_faults; /* the last pagemap walk */
	unsigned rate;                  /* pages per second now */
	uint64_t taken_tick, refaults_rate;
	uint64_t balloon_until, balloon_retry, balloon_progress_ms;
	int64_t balloon_last;
	uint8_t *bitmap;                /* dirty log of one memslot */
	uint8_t *arm;                   /* pages of one memslot to arm (KVM_CLEAR_DIRTY_LOG) */
	uint64_t *armed;                /* per guest page, with manual protection */
	uint64_t period;                /* aging passes so far */
	uint64_t arm_need;              /* written pages to arm at the next pass (the sweep lacked) */
	double active_fast, active_slow;
	uint64_t hist[256];             /* armed present pages per age, at the last aging pass */
	uint64_t hist_written[256];     /* present pages not armed, per age */
	unsigned calm;                  /* aging passes in a row with room, no fault, nothing to do */
	uint64_t calm_faults;
	bool resting;                   /* dirty log off; ages and the active estimate frozen */
	size_t collapse_hand;           /* next window to collapse while resting */
	uint64_t collapse_again_ms;
	unsigned stuck_ticks;           /* ticks in a row over the target with nothing taken */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t mem_target(struct memmgr *m)
{
	uint64_t limit = atomic_load(&m->limit), res = atomic_load(&m->reservation);
	uint64_t host = atomic_load(&m->host_target);

	if (host < limit)
		limit = host;
	return limit > res ? limit : res;
}

bool mem_blocked(struct memmgr *m)
{
	bool hard = atomic_load(&m->hard) && !atomic_load(&m->stuck);

	return ((atomic_load(&m->host_tech) & POLICY_TECH_BLOCK) || hard) && atomic_load(&m->over_target) &&
	       !atomic_load(&m->stopping) && !(m->hooks.stopping && m->hooks.stopping(m->hooks.opaque));
}

void mem_block_changed(struct memmgr *m)
{
	if (m->block_fd >= 0)
		eventfd_write(m->block_fd, 1);
}

/* ESXi's low state blocks the VMs above their target; a VM back under it runs again at once. */
static void set_over_target(struct memmgr *m, bool over)
{
	if (atomic_exchange(&m->over_target, over) && !over)
		mem_block_changed(m);
}

static int dirty_log(struct memmgr *m, bool on)
{
	for (unsigned k = 0; k < m->gm->nr_regions; k++) {
		const struct gmem_region *r = &m->gm->regions[k];
		struct kvm_userspace_memory_region slot = {
			.slot = k, .flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = r->gpa, .memory_size = r->size,
			.userspace_addr = (uintptr_t)r->host,
		};

		if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
			return -errno;
	}
	return 0;
}

int mem_attach_vm(struct memmgr *m, int vm_fd)
{
	const uint64_t want = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = { want } };
	int r;

	if (!m->reclaim)
		return 0;
	m->vm_fd = vm_fd;
	/* Before logging starts: with INITIALLY_SET nothing is write-protected until armed. */
	r = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	m->dirty_manual = r > 0 && ((uint64_t)r & want) == want && ioctl(vm_fd, KVM_ENABLE_CAP, &cap) == 0;
	if (!m->dirty_manual)
		log_info("memory: no manual dirty-log protection: every written page is re-armed each period");
	if ((r = dirty_log(m, true)) < 0) {
		log_info("memory: KVM dirty log unavailable (%s): pages age without write tracking",
			 strerror(-r));
		m->vm_fd = -1;
	}
	return 0;
}

static bool bit(const uint8_t *map, size_t i)
{
	return map[i / 8] >> (i % 8) & 1;
}

/* Without manual protection KVM re-arms every page at every period: every page counts as armed. */
static bool is_armed(const struct memmgr *m, const struct reclaimer *rc, size_t page)
{
	return !(m->dirty_manual && rc->armed) || (rc->armed[page / 64] >> (page % 64) & 1);
}

static void set_armed(struct reclaimer *rc, size_t page, bool on)
{
	if (on)
		rc->armed[page / 64] |= 1ull << (page % 64);
	else
		rc->armed[page / 64] &= ~(1ull << (page % 64));
}

/* The slice of a page's 64-page group: a fixed hash, so strided guest access does not alias. */
static unsigned slice_of(size_t page)
{
	return (uint32_t)((page / 64) * 2654435761u) % SLICES;
}

/* The oldest age with at least n pages that old or older in hist; never below lo. */
static unsigned oldest(const uint64_t *hist, uint64_t n, unsigned lo)
{
	uint64_t have = 0;

	for (unsigned a = 255; a > lo; a--)
		if ((have += hist[a]) >= n)
			return a;
	return lo;
}

/* One aging period: written pages (dirty log) become young and stop being armed, the rest one
 * period older. With manual protection, then arms this period's slice and, oldest seen first,
 * the written pages the sweep asked for (arm_need). */
static void age(struct memmgr *m, struct reclaimer *rc)
{
	bool manual = m->dirty_manual && rc->armed;
	unsigned now = rc->period % SLICES, old = (rc->period + SLICES - ACTIVE_PERIODS % SLICES) % SLICES;
	unsigned arm_min = rc->arm_need ? oldest(rc->hist_written, rc->arm_need, 0) : 256;
	uint64_t recent = 0, sample = 0, arm_left = rc->arm_need;
	double f;

	memset(rc->hist, 0, sizeof(rc->hist));
	memset(rc->hist_written, 0, sizeof(rc->hist_written));
	rc->arm_need = 0;
	for (unsigned k = 0; k < m->gm->nr_regions; k++) {
		const struct gmem_region *r = &m->gm->regions[k];
		size_t first = (size_t)(r->host - m->gm->map) / MEM_PAGE, n = r->size / MEM_PAGE;
		struct kvm_dirty_log log = { .slot = k, .dirty_bitmap = rc->bitmap };
		struct kvm_clear_dirty_log clear = { .slot = k, .num_pages = (uint32_t)n,
						     .dirty_bitmap = rc->arm };
		bool have = m->vm_fd >= 0 && rc->bitmap &&
			    (memset(rc->bitmap, 0, (n + 63) / 64 * 8), ioctl(m->vm_fd, KVM_GET_DIRTY_LOG, &log) == 0);
		size_t arming = 0;

		if (manual)
			memset(rc->arm, 0, (n + 63) / 64 * 8);
		for (size_t i = 0; i < n; i++) {
			size_t p = first + i;
			uint8_t *a = &m->age[p];
			bool armed = is_armed(m, rc, p);
			bool present = pstate_get(&m->ps, p) == PS_PRESENT;
			unsigned sl = manual ? slice_of(p) : 0;

			if (have && bit(rc->bitmap, i) && armed) {
				*a = 0;
				if (manual)
					set_armed(rc, p, false);
				armed = !manual;
			} else if (*a < 255) {
				(*a)++;
			}
			/* A page faulted back in is age 0 too (reclaim.c install()). */
			if (!manual) {
				recent += *a < ACTIVE_PERIODS;
			} else if (sl == old) {
				sample++;
				recent += *a < ACTIVE_PERIODS;
			}
			if (manual && !armed && have &&
			    (sl == now || (present && arm_left && *a >= arm_min))) {
				if (sl != now)
					arm_left--;
				rc->arm[i / 8] |= (uint8_t)(1u << (i % 8));
				set_armed(rc, p, true);
				*a = 0;
				armed = true;
				arming++;
			}
			if (present)
				(armed ? rc->hist : rc->hist_written)[*a]++;
		}
		if (arming && ioctl(m->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0)
			log_error("memory: KVM_CLEAR_DIRTY_LOG: %s", strerror(errno));
	}
	rc->period++;
	if (m->vm_fd < 0 || (manual && (rc->period <= ACTIVE_PERIODS || !sample)))
		return;
	f = manual ? (double)recent * (double)m->pages / (double)sample : (double)recent;
	rc->active_fast = rc->active_fast * 0.5 + f * 0.5;
	rc->active_slow = rc->active_slow * 0.8 + f * 0.2;
	atomic_store(&m->active_pages, (uint64_t)(rc->active_fast > rc->active_slow ? rc->active_fast :
						  rc->active_slow));
}

/* Host memory the VM holds now, in pages. */
static uint64_t consumed_pages(struct memmgr *m)
{
	int64_t priv = stats_count_private(m);
	uint64_t pool;

	pthread_mutex_lock(&m->lock);
	pool = m->pool.live;
	pthread_mutex_unlock(&m->lock);
	return (priv > 0 ? (uint64_t)priv : 0) + pool + reclaim_consumed_extra(m) / MEM_PAGE;
}

/* What reclaim may use: everything to meet the VM's own limit; what the host's state allows when
 * hostd's target is the one that binds. */
static unsigned techniques(struct memmgr *m)
{
	return atomic_load(&m->host_target) < atomic_load(&m->limit) ? atomic_load(&m->host_tech) :
									 POLICY_TECH_ALL;
}

/* Takes up to `want` armed pages at least m->min_age old, from the clock hand on; with `unproven`,
 * written pages too (their age: periods since last seen written). */
static size_t sweep(struct memmgr *m, const struct reclaimer *rc, size_t want, bool unproven)
{
	unsigned tech = techniques(m);
	bool zc = tech & POLICY_TECH_COMPRESS, sw = tech & POLICY_TECH_SWAP;
	enum mem_out how = zc && sw ? MEM_OUT_AUTO : zc ? MEM_OUT_COMPRESS : MEM_OUT_SWAP;
	uint64_t pm[HOLD_PAGES];
	size_t taken = 0, scanned = 0;

	/* Sharing's own scanner drops zero pages; capturing pages only to give them back is waste. */
	if (!zc && !sw)
		return 0;
	while (taken < want && scanned < m->pages && !atomic_load(&m->stopping)) {
		size_t first = m->hand, n = m->pages - first < HOLD_PAGES ? m->pages - first : HOLD_PAGES;
		struct chunkmap sel = { 0 };
		size_t count = 0;

		mem_lock_background(m);
		if (pagemap_read(m, first, n, pm) == 0) {
			for (size_t i = 0; i < n && taken + count < want; i++) {
				if (pstate_get(&m->ps, first + i) != PS_PRESENT || pstate_file_vma(&m->ps, first + i) ||
				    m->age[first + i] < m->min_age || (!unproven && !is_armed(m, rc, first + i)) ||
				    !mem_pm_private(m, first + i, pm[i]))
					continue;
				cm_set(&sel, i);
				count++;
			}
			if (count)
				taken += reclaim_chunk(m, first, n, &sel, how);
		}
		pthread_mutex_unlock(&m->lock);
		scanned += n;
		m->hand = first + n >= m->pages ? 0 : first + n;
	}
	return taken;
}

/* The balloon's turn: true while it is being given time. */
static bool balloon_step(struct memmgr *m, struct reclaimer *rc, uint64_t excess)
{
	int64_t held = m->hooks.balloon_held ? m->hooks.balloon_held(m->hooks.opaque) : -1;
	uint64_t cap = m->gm->ram_size / 100 * BALLOON_MAX_PCT, ask;

	if (held < 0 || !m->hooks.balloon_ask || !(techniques(m) & POLICY_TECH_BALLOON))
		return false;
	if (rc->now_ms < rc->balloon_until) {
		if (held > rc->balloon_last) {
			rc->balloon_last = held;
			rc->balloon_progress_ms = rc->now_ms;
		} else if (rc->now_ms - rc->balloon_progress_ms > BALLOON_STALL_MS) {
			rc->balloon_until = rc->now_ms; /* it has given what it can */
			return false;
		}
		return true;
	}
	if (rc->now_ms < rc->balloon_retry)
		return false;
	ask = (uint64_t)held + excess;
	ask = ask > cap ? cap : ask & ~(uint64_t)(MEM_PAGE - 1);
	rc->balloon_retry = rc->now_ms + BALLOON_RETRY_MS;
	if (ask <= (uint64_t)held + (1u << 20))
		return false;
	if (m->hooks.balloon_ask(m->hooks.opaque, ask) < 0)
		return false;
	atomic_store(&m->balloon_asked, ask);
	log_info("memory: over target by %llu MiB: asking the balloon for %llu MiB",
		 (unsigned long long)(excess >> 20), (unsigned long long)(ask >> 20));
	rc->balloon_last = held;
	rc->balloon_progress_ms = rc->now_ms;
	rc->balloon_until = rc->now_ms + BALLOON_GRACE_MS;
	return true;
}

/* Under the target with room to spare: what the reclaimer asked of the balloon goes back first. */
static void balloon_return(struct memmgr *m, uint64_t room)
{
	uint64_t asked = atomic_load(&m->balloon_asked), give = room < asked ? room : asked;

	if (!asked || !m->hooks.balloon_ask || give < (4u << 20))
		return;
	if (m->hooks.balloon_ask(m->hooks.opaque, asked - give) == 0)
		atomic_store(&m->balloon_asked, asked - give);
}

/* Resting: a few windows whose pages are all present and private become huge pages again. */
static void collapse_some(struct memmgr *m, struct reclaimer *rc)
{
	uint64_t pm[WINDOW_PAGES];
	unsigned done = 0;

	if (rc->collapse_hand >= m->pages) {
		if (rc->now_ms < rc->collapse_again_ms)
			return;
		rc->collapse_hand = 0;
	}
	for (unsigned looked = 0; looked < COLLAPSE_LOOK && done < COLLAPSE_PER_TICK; looked++) {
		size_t lo = rc->collapse_hand;
		uint8_t *hva = mem_hva(m, lo);
		bool whole;

		if (lo + WINDOW_PAGES > m->pages) {
			rc->collapse_hand = m->pages;
			rc->collapse_again_ms = rc->now_ms + COLLAPSE_AGAIN_MS;
			return;
		}
		rc->collapse_hand = lo + WINDOW_PAGES;
		if ((uintptr_t)hva & (WINDOW_PAGES * MEM_PAGE - 1))
			continue;
		mem_lock_background(m);
		whole = pagemap_read(m, lo, WINDOW_PAGES, pm) == 0;
		for (size_t k = 0; whole && k < WINDOW_PAGES; k++)
			whole = pstate_get(&m->ps, lo + k) == PS_PRESENT && !pstate_file_vma(&m->ps, lo + k) &&
				mem_pm_private(m, lo + k, pm[k]);
		pthread_mutex_unlock(&m->lock);
		/* Unlocked: a page taken meanwhile leaves a hole, and the kernel then refuses. */
		if (whole && madvise(hva, WINDOW_PAGES * MEM_PAGE, MADV_COLLAPSE) == 0)
			done++;
	}
}

/* Called once per tick that ends with consumed at or under the target. */
static void rest(struct memmgr *m, struct reclaimer *rc, bool aged)
{
	uint64_t faults = atomic_load(&m->faults);

	if (!m->dirty_manual || !rc->armed || m->vm_fd < 0)
		return;
	if (rc->resting) {
		collapse_some(m, rc);
		return;
	}
	if (!aged)
		return;
	if (faults == rc->calm_faults && !rc->arm_need && rc->now_ms >= rc->balloon_until &&
	    !atomic_load(&m->balloon_asked))
		rc->calm++;
	else
		rc->calm = 0;
	rc->calm_faults = faults;
	if (rc->calm < CALM_PERIODS)
		return;
	if (dirty_log(m, false) < 0) {
		rc->calm = 0;
		return;
	}
	rc->resting = true;
	rc->collapse_hand = 0;
	rc->collapse_again_ms = 0;
	log_debug("memory: nothing to reclaim for %u s: write tracking off, huge pages back",
		  CALM_PERIODS * AGE_PERIOD_MS / 1000);
}

/* Over the target: write tracking on again; every page must be armed anew. */
static void wake(struct memmgr *m, struct reclaimer *rc)
{
	int r;

	rc->calm = 0;
	if (!rc->resting)
		return;
	rc->resting = false;
	memset(rc->armed, 0, (m->pages + 63) / 64 * 8);
	rc->next_age_ms = rc->now_ms + AGE_PERIOD_MS;
	if ((r = dirty_log(m, true)) < 0) {
		log_error("memory: turning the KVM dirty log back on: %s; pages age without write tracking",
			  strerror(-r));
		m->vm_fd = -1;
		return;
	}
	log_debug("memory: over the target: write tracking on");
}

/* A hard limit holds guest faults only while reclaim makes progress: held with nothing left to
 * take, the guest would wait forever. */
static void stuck(struct memmgr *m, struct reclaimer *rc, size_t taken)
{
	bool was = atomic_load(&m->stuck);

	rc->stuck_ticks = taken ? 0 : rc->stuck_ticks + 1;
	if (!was && rc->stuck_ticks >= STUCK_TICKS && atomic_load(&m->hard)) {
		log_warn("memory: over the target and nothing left to reclaim: guest faults are served, "
			 "the hard limit is not held (add --mem-swap, or raise the limit)");
		atomic_store(&m->stuck, true);
		mem_block_changed(m);
	} else if (was && !rc->stuck_ticks) {
		atomic_store(&m->stuck, false);
	}
}

static void tick(struct memmgr *m, struct reclaimer *rc)
{
	uint64_t target = mem_target(m) / MEM_PAGE, consumed, refaults, slack;
	size_t want, taken;
	bool aged = false, need;

	rc->now_ms = now_ms();
	if (!rc->resting && rc->now_ms >= rc->next_age_ms) {
		age(m, rc);
		rc->next_age_ms = rc->now_ms + AGE_PERIOD_MS;
		aged = true;
	}
	/* No limit binds: nothing to rest for (a VM with sharing alone keeps its active estimate). */
	if (target >= m->pages && !atomic_load(&m->balloon_asked)) {
		set_over_target(m, false);
		return;
	}
	/* Walking the whole pagemap (a 2 GiB guest has 524288 entries) is the dearest part of a tick.
	 * Under the target with no fault and nothing taken since, consumed has not grown (the guest's
	 * first touches are faults too), so it is walked again only once per aging period. */
	if (rc->consumed_ms && rc->consumed < target && !rc->taken_tick &&
	    atomic_load(&m->faults) == rc->consumed_faults && rc->now_ms - rc->consumed_ms < AGE_PERIOD_MS) {
		consumed = rc->consumed;
	} else {
		rc->consumed_faults = atomic_load(&m->faults);
		consumed = rc->consumed = consumed_pages(m);
		rc->consumed_ms = rc->now_ms;
	}
	set_over_target(m, consumed >= target);
	slack = target / 100 > 256 ? target / 100 : 256; /* 1%, at least 1 MiB */
	/* At the target exactly, a blocked VM waits for room: reclaim makes it. */
	need = consumed > target || (consumed == target && mem_blocked(m));
	if (need)
		wake(m, rc);
	if (!need) {
		rc->taken_tick = 0;
		rc->stuck_ticks = 0;
		atomic_store(&m->stuck, false);
		if (consumed + 8 * slack < target)
			balloon_return(m, (target - consumed - 4 * slack) * MEM_PAGE);
		rest(m, rc, aged);
		return;
	}
	if (balloon_step(m, rc, (consumed - target + slack) * MEM_PAGE))
		return;
	/* Refaults since the last tick against what it took: taking hot pages halves the rate;
	 * but the limit is a limit: more than 5% over it, full speed whatever it costs. */
	refaults = atomic_load(&m->reclaim_refaults);
	if (consumed > target + target / 20)
		rc->rate = RATE_MAX;
	else if (refaults - rc->refaults_rate > rc->taken_tick / 4 && rc->rate > RATE_MIN)
		rc->rate /= 2;
	else if (rc->rate < RATE_MAX)
		rc->rate *= 2;
	rc->refaults_rate = refaults;
	want = consumed - target + slack;
	if (want > (size_t)rc->rate * TICK_MS / 1000)
		want = (size_t)rc->rate * TICK_MS / 1000;
	/* Never below 1: a page faulted in or read ahead this period is left alone. */
	m->min_age = oldest(rc->hist, 2 * want, 1);
	taken = sweep(m, rc, want, false);
	/* The histogram is a period old and counts pages the sweep skips (pool, not private). */
	if (taken < want && m->min_age > 1) {
		m->min_age = 1;
		taken += sweep(m, rc, want - taken, false);
	}
	/* A hard target (a cgroup's memory.max above: past it the kernel kills the VM), over by more
	 * than the slack and short of proven-cold pages (a guest filling its memory outruns arming,
	 * which takes two periods): written pages go too, those seen written longest ago first.
	 * Only then: an unarmed page's age grows whether or not the guest writes it, so the hottest
	 * pages look oldest; under a plain --mem-limit this thrashed (overcommit: 0.01). */
	if (taken < want && consumed > target + slack && atomic_load(&m->hard)) {
		m->min_age = oldest(rc->hist_written, want - taken, 1);
		taken += sweep(m, rc, want - taken, true);
	}
	rc->taken_tick = taken;
	stuck(m, rc, taken);
	/* Short of cold pages: the next pass arms written ones for the whole excess, twice over. */
	if (taken < want) {
		uint64_t arm = 2 * (consumed - target + slack);

		rc->arm_need = arm > rc->arm_need ? arm : rc->arm_need;
	}
}

static void *reclaim_main(void *opaque)
{
	struct memmgr *m = opaque;
	struct reclaimer rc = { .rate = RATE_MAX / 16 };
	size_t most = 0;

	for (unsigned k = 0; k < m->gm->nr_regions; k++)
		if (m->gm->regions[k].size / MEM_PAGE > most)
			most = m->gm->regions[k].size / MEM_PAGE;
	rc.bitmap = calloc((most + 63) / 64, 8);
	rc.arm = calloc((most + 63) / 64, 8);
	rc.armed = calloc((m->pages + 63) / 64, 8);
	if (!rc.arm || !rc.armed) {
		free(rc.armed);
		rc.armed = NULL; /* every page counts as armed: KVM's log re-arms nothing, so writes go unseen */
		log_error("memory: no memory for the reclaimer's dirty-log maps: pages age without write tracking");
		m->vm_fd = -1;
	}
	m->min_age = 1;
	while (mem_nap(m, TICK_MS))
		tick(m, &rc);
	free(rc.bitmap);
	free(rc.arm);
	free(rc.armed);
	return NULL;
}

int reclaim_start(struct memmgr *m)
{
	int r = pthread_create(&m->reclaim_thread, NULL, reclaim_main, m);

	if (r)
		return -r;
	pthread_setname_np(m->reclaim_thread, "mem-reclaim");
	m->reclaim_started = true;
	return 0;
}

int mem_check_limits(struct memmgr *m, uint64_t *limit, uint64_t *reservation)
{
	if (*limit == UINT64_MAX)
		*limit = atomic_load(&m->limit);
	if (*reservation == UINT64_MAX)
		*reservation = atomic_load(&m->reservation);
	if (!m->reclaim || *reservation > *limit || *limit > m->gm->ram_size || *limit < MEM_PAGE)
		return -EINVAL;
	return 0;
}

int mem_set_limits(struct memmgr *m, uint64_t limit, uint64_t reservation)
{
	uint64_t l = limit, res = reservation;

	if (mem_check_limits(m, &l, &res) < 0)
		return -EINVAL;
	atomic_store(&m->limit, l);
	atomic_store(&m->reservation, res);
	log_info("memory: limit %llu MiB, reservation %llu MiB", (unsigned long long)(l >> 20),
		 (unsigned long long)(res >> 20));
	return 0;
}

void mem_set_hard_limit(struct memmgr *m, bool on)
{
	if (atomic_exchange(&m->hard, on) != on)
		mem_block_changed(m);
}

int mem_set_host_target(struct memmgr *m, uint64_t target, unsigned techniques)
{
	unsigned old_tech;
	uint64_t old;

	if (!m->reclaim)
		return -EINVAL;
	old = atomic_exchange(&m->host_target, target);
	old_tech = atomic_exchange(&m->host_tech, techniques);
	if (old != target)
		log_debug("memory: hostd target %llu MiB", (unsigned long long)(target >> 20));
	if ((old_tech ^ techniques) & POLICY_TECH_BLOCK) {
		log_info("memory: hostd %s allocation", techniques & POLICY_TECH_BLOCK ? "blocks" : "allows");
		mem_block_changed(m);
	}
	return 0;
}

void mem_set_hooks(struct memmgr *m, const struct mem_hooks *h)
{
	m->hooks = *h;
	m->loop_tid = gettid();
}
