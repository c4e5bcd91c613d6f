/* The manager's figures, in ESXi's words where it has them (configured, touched, consumed, zero,
 * shared, shared-saved, ballooned), and the periodic log line of --mem-stats-interval. */
#include "mem_internal.h"

#include <kvmm/log.h>
#include <kvmm/loop.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define PAGEMAP_BATCH 4096u

/* Guest pages backed by their own host page: present, mapped once, anonymous (pagemap). The zero
 * page, pool pages and KSM pages are not exclusive, so they do not count. */
int64_t stats_count_private(struct memmgr *m)
{
	uint64_t *pm = malloc(PAGEMAP_BATCH * sizeof(*pm));
	int64_t n = 0;

	if (!pm)
		return -ENOMEM;
	for (size_t first = 0; first < m->pages; first += PAGEMAP_BATCH) {
		size_t k = m->pages - first < PAGEMAP_BATCH ? m->pages - first : PAGEMAP_BATCH;

		if (pagemap_read(m, first, k, pm) < 0) {
			free(pm);
			return -EIO;
		}
		for (size_t i = 0; i < k; i++)
			n += mem_pm_private(m, first + i, pm[i]) || (pm[i] & PM_SWAP);
	}
	free(pm);
	return n;
}

/* The manager's lock for a copy of the page counts, waited for at most STATS_WAIT_MS: a thread
 * holding it may sleep in the kernel (a cgroup over memory.high throttles every allocating thread
 * for up to 2 s at each return to user space), and QMP, hostd and kvmm top must not stall with it.
 * False: the counts of the last copy are used. */
#define STATS_WAIT_MS 100
static bool stats_lock(struct memmgr *m)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += STATS_WAIT_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	return pthread_mutex_timedlock(&m->lock, &until) == 0;
}

int mem_get_stats(struct memmgr *m, struct mem_stats *st)
{
	int64_t priv = stats_count_private(m);
	uint64_t counts[PS_NR], live;

	memset(st, 0, sizeof(*st));
	if (priv < 0)
		return (int)priv;
	if (stats_lock(m)) {
		memcpy(counts, m->ps.count, sizeof(counts));
		live = m->pool.live;
		pthread_mutex_unlock(&m->lock);
		for (unsigned k = 0; k < PS_NR; k++)
			atomic_store(&m->stats_counts[k], counts[k]);
		atomic_store(&m->stats_live, live);
	} else {
		for (unsigned k = 0; k < PS_NR; k++)
			counts[k] = atomic_load(&m->stats_counts[k]);
		live = atomic_load(&m->stats_live);
	}

	st->configured = m->gm->ram_size;
	st->private_ = (uint64_t)priv * MEM_PAGE;
	st->zero = counts[PS_ZERO] * MEM_PAGE;
	st->shared = counts[PS_SHARED] * MEM_PAGE;
	st->pool = live * MEM_PAGE;
	st->ballooned = counts[PS_BALLOONED] * MEM_PAGE;
	if (m->mode == MEM_SHARE_KSM) {
		ksm_read(st);
		st->shared = st->ksm_merging * MEM_PAGE;
		/* KSM's stable pages are counted for the whole host: exact with one VM only. */
		st->pool = st->ksm_pages_shared * MEM_PAGE;
	}
	st->shared_saved = st->shared > st->pool ? st->shared - st->pool : 0;
	st->zcache = reclaim_consumed_extra(m);
	st->consumed = st->private_ + st->pool + st->zcache;
	st->compressed = counts[PS_COMPRESSED] * MEM_PAGE;
	st->compress_saved = st->compressed > st->zcache ? st->compressed - st->zcache : 0;
	st->swapped = counts[PS_SWAPPED] * MEM_PAGE;
	st->limit = atomic_load(&m->limit);
	st->reservation = atomic_load(&m->reservation);
	st->target = mem_target(m);
	st->swap_out = atomic_load(&m->swap_out);
	st->swap_in = atomic_load(&m->swap_in);
	st->compress_out = atomic_load(&m->compress_out);
	st->compress_in = atomic_load(&m->compress_in);
	st->reclaim_refaults = atomic_load(&m->reclaim_refaults);
	st->active = atomic_load(&m->active_pages) * MEM_PAGE;
	st->balloon_asked = atomic_load(&m->balloon_asked);
	st->swap_errors = atomic_load(&m->swap_errors);
	st->swap_corrupt = atomic_load(&m->swap_corrupt);
	st->swap_usable = m->swap && swapfile_usable(m->swap);
	st->touched = st->private_ + st->shared;
	st->share_capped = atomic_load(&m->capped);
	st->refaults = atomic_load(&m->refaults);
	st->unshares = atomic_load(&m->unshares);
	st->faults = atomic_load(&m->faults);
	st->share_scans = atomic_load(&m->scans);
	st->share_cpu_ns = share_thread_cpu_ns(m);
	st->captures = atomic_load(&m->captures);
	st->captures_aborted = atomic_load(&m->captures_aborted);
	st->blocked_faults = atomic_load(&m->blocked_faults);
	st->blocked_ns = atomic_load(&m->blocked_ns);
	st->blocked_now = atomic_load(&m->blocked_now);
	st->blocking = mem_blocked(m);
	return 0;
}

void mem_log_stats(struct memmgr *m)
{
	struct mem_stats s;

	if (mem_get_stats(m, &s) < 0)
		return;
	log_info("memory: configured %llu MiB, touched %llu, consumed %llu (target %llu), zero %llu, "
		 "shared %llu (saved %llu, pool %llu), ballooned %llu, compressed %llu (cache %llu), "
		 "swapped %llu MiB; refaults %llu, unshares %llu, scans %llu, sharing CPU %.2f s",
		 (unsigned long long)(s.configured >> 20), (unsigned long long)(s.touched >> 20),
		 (unsigned long long)(s.consumed >> 20), (unsigned long long)(s.target >> 20),
		 (unsigned long long)(s.zero >> 20),
		 (unsigned long long)(s.shared >> 20), (unsigned long long)(s.shared_saved >> 20),
		 (unsigned long long)(s.pool >> 20), (unsigned long long)(s.ballooned >> 20),
		 (unsigned long long)(s.compressed >> 20), (unsigned long long)(s.zcache >> 20),
		 (unsigned long long)(s.swapped >> 20),
		 (unsigned long long)s.refaults, (unsigned long long)s.unshares,
		 (unsigned long long)s.share_scans, (double)s.share_cpu_ns / 1e9);
}

static void stats_tick(void *opaque, uint32_t events)
{
	struct memmgr *m = opaque;
	uint64_t expirations;

	(void)events;
	if (read(m->stats_fd, &expirations, sizeof(expirations)) == sizeof(expirations))
		mem_log_stats(m);
}

int mem_stats_timer(struct memmgr *m, struct loop *loop, unsigned seconds)
{
	struct itimerspec its = { .it_interval = { .tv_sec = seconds }, .it_value = { .tv_sec = seconds } };

	if (!seconds)
		return 0;
	m->stats_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (m->stats_fd < 0 || timerfd_settime(m->stats_fd, 0, &its, NULL) < 0)
		return -errno;
	m->stats_loop = loop;
	return loop_add(loop, m->stats_fd, EPOLLIN, stats_tick, m);
}
