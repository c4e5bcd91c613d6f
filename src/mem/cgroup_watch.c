/* Following the process's cgroup memory limits (kvmm/cgroup.h). cgroup v2 notifies changes of its
 * events files only (memory.events, through inotify/poll), never a write to memory.max or
 * memory.high; so the three value files are read on a timer (1 s: a few small reads), and the
 * binding cgroup's memory.events is watched with inotify to learn at once that the kernel had to
 * throttle (high) or reclaim at the limit (max), which means kvmm's margin was too small. Runs on
 * the loop thread; applies through ops->apply, the path QMP's x-kvmm-set-memory takes. */
#include <kvmm/cgroup.h>
#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/size.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MIB (1ull << 20)
#define APPLY_STEP (4 * MIB)      /* an overhead-driven change smaller than this is not applied */
#define MARGIN_MIN (4 * MIB)
#define MARGIN_STEP (8 * MIB)     /* added per new high/max event */
#define WIDEN_EVERY_MS 2000        /* at most one margin widening per this long: a burst of events
                                    * is one lesson, not many */

struct cgroup_watch {
	struct loop *loop;
	int tfd, ifd, iwd;
	char dir[4096], top[4096];
	char ev_dir[4096];            /* whose memory.events inotify watches */
	struct cgroup_watch_cfg cfg;
	struct cgroup_watch_ops ops;
	struct cgroup_mem last;       /* what the last successful read found */
	bool have;
	struct cgroup_policy applied;
	bool applied_ok;
	uint64_t overhead, extra;     /* measured overhead; margin added after high/max events */
	struct cgroup_events ev;
	uint64_t widened_ms;          /* when the margin last widened */
	int last_err;
};

static const char *fmt(uint64_t v, char *buf, size_t len)
{
	if (v == CGROUP_NO_LIMIT)
		return "max";
	return size_format(v, buf, len);
}

static uint64_t bound_of(const struct cgroup_mem *cg)
{
	return cg->max < cg->high ? cg->max : cg->high;
}

/* What kvmm keeps free below the cgroup's value for its reclaim to act in time: the reclaimer
 * measures every 250 ms and the overhead is measured once a second, while a guest faults pages in
 * faster than that; 1/32 of the value, at least 4 MiB, plus what high/max events have taught, at
 * most a quarter of the value. */
static uint64_t margin_of(const struct cgroup_watch *w, uint64_t bound)
{
	uint64_t m = bound == CGROUP_NO_LIMIT ? MARGIN_MIN : bound / 32;

	if (m < MARGIN_MIN)
		m = MARGIN_MIN;
	m += w->extra;
	if (bound != CGROUP_NO_LIMIT && m > bound / 4)
		m = bound / 4 > MARGIN_MIN ? bound / 4 : MARGIN_MIN;
	return m;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void read_events(struct cgroup_watch *w, struct cgroup_events *ev)
{
	char path[4200], buf[512];
	int fd;
	ssize_t n;

	memset(ev, 0, sizeof(*ev));
	if (!w->ev_dir[0] || (size_t)snprintf(path, sizeof(path), "%s/memory.events", w->ev_dir) >= sizeof(path))
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if (cgroup_parse_events(buf, ev) < 0)
		log_warn("cgroup %s/memory.events: cannot parse it; ignored", w->ev_dir);
}

/* Watch memory.events of the cgroup that binds (it counts the events of the whole subtree). */
static void watch_events(struct cgroup_watch *w, const char *dir)
{
	char path[4200];

	if (strcmp(dir, w->ev_dir) == 0)
		return;
	if (w->ifd >= 0 && w->iwd >= 0)
		inotify_rm_watch(w->ifd, w->iwd);
	w->iwd = -1;
	snprintf(w->ev_dir, sizeof(w->ev_dir), "%s", dir);
	read_events(w, &w->ev);
	if (w->ifd < 0 || !dir[0] || (size_t)snprintf(path, sizeof(path), "%s/memory.events", dir) >= sizeof(path))
		return;
	w->iwd = inotify_add_watch(w->ifd, path, IN_MODIFY);
	if (w->iwd < 0)
		log_debug("cgroup: cannot watch %s: %s (polling only)", path, strerror(errno));
}

static bool same_values(const struct cgroup_mem *a, const struct cgroup_mem *b)
{
	return a->max == b->max && a->high == b->high && a->low == b->low;
}

static uint64_t diff(uint64_t a, uint64_t b)
{
	return a > b ? a - b : b - a;
}

static int poll_now(struct cgroup_watch *w, bool force)
{
	struct cgroup_mem cg;
	struct cgroup_policy p;
	char a[32], b[32], c[32], d[32], e[32], f[32], g[32], why[320] = "";
	uint64_t margin;
	bool changed;
	int r = cgroup_read_mem(w->dir, w->top, &cg);

	if (r < 0) {
		if (r != w->last_err)
			log_warn("cgroup %s: cannot read its memory limits (%s); kvmm's limit stays as it is",
				 w->dir, r == -EINVAL ? "unexpected contents" : strerror(-r));
		w->last_err = r;
		return r;
	}
	if (!cg.controller && w->have && w->last.controller)
		r = -ENOENT; /* the files went away: keep what was applied, as for a bad read */
	if (r < 0) {
		if (r != w->last_err)
			log_warn("cgroup %s: its memory.max/high files are gone; kvmm's limit stays as it is",
				 w->dir);
		w->last_err = r;
		return r;
	}
	if (w->last_err)
		log_info("cgroup %s: memory limits readable again", w->dir);
	w->last_err = 0;
	changed = !w->have || !same_values(&cg, &w->last);
	/* Every poll: the overhead moves with the guest (page tables, KVM's, the kernel's objects), and
	 * measured only now and then it lagged behind a guest filling its memory into the limit. */
	{
		int64_t consumed = w->ops.consumed ? w->ops.consumed(w->ops.opaque) : -1;
		uint64_t used = cg.current > cg.file ? cg.current - cg.file : 0;

		w->overhead = cgroup_overhead(&cg, w->cfg.memory, consumed < 0 ? used : (uint64_t)consumed);
	}
	margin = margin_of(w, bound_of(&cg));
	cgroup_map(&cg, w->cfg.memory, w->overhead, margin, w->cfg.base_limit, w->cfg.base_reservation, &p);
	if (cg.bind[0])
		watch_events(w, cg.bind);
	if (!changed && !force && w->applied_ok && diff(p.limit, w->applied.limit) < APPLY_STEP &&
	    p.reservation == w->applied.reservation)
		return 0;
	if (!changed && !force && !w->applied_ok)
		return 0; /* refused before with these values: said so once */
	w->last = cg;
	w->have = true;
	r = w->ops.apply ? w->ops.apply(w->ops.opaque, p.limit, p.reservation, why, sizeof(why)) : 0;
	if (r < 0) {
		w->applied_ok = false;
		log_warn("cgroup memory.max %s, memory.high %s: kvmm cannot follow it: %s",
			 fmt(cg.max, a, sizeof(a)), fmt(cg.high, b, sizeof(b)), why[0] ? why : strerror(-r));
		return r;
	}
	log_msg(changed ? LOG_INFO : LOG_DEBUG,
		"cgroup memory.max %s, memory.high %s, memory.low %s -> limit %s, reservation %s "
		"(overhead %s, margin %s)", fmt(cg.max, a, sizeof(a)), fmt(cg.high, b, sizeof(b)),
		fmt(cg.low, c, sizeof(c)), p.limited ? size_format(p.limit, d, sizeof(d)) : "none",
		size_format(p.reservation, e, sizeof(e)), size_format(w->overhead, f, sizeof(f)),
		size_format(margin, g, sizeof(g)));
	w->applied = p;
	w->applied_ok = true;
	return 1;
}

int cgroup_watch_poll(struct cgroup_watch *w)
{
	return poll_now(w, false);
}

void cgroup_watch_events(struct cgroup_watch *w)
{
	struct cgroup_events ev, old = w->ev;
	uint64_t bound = bound_of(&w->last);
	char a[32];

	read_events(w, &ev);
	w->ev = ev;
	if (ev.oom_kill > old.oom_kill)
		log_warn("cgroup %s: the kernel's OOM killer acted %llu time(s)", w->ev_dir,
			 (unsigned long long)(ev.oom_kill - old.oom_kill));
	if (ev.high <= old.high && ev.max <= old.max)
		return;
	if (bound == CGROUP_NO_LIMIT || margin_of(w, bound) >= bound / 4 ||
	    (w->widened_ms && now_ms() - w->widened_ms < WIDEN_EVERY_MS))
		return;
	/* Still over its own limit (a value just lowered below what the VM holds): the events say
	 * kvmm has not got there yet, not that its margin is short. */
	if (w->applied_ok && w->applied.limited && w->ops.consumed) {
		int64_t consumed = w->ops.consumed(w->ops.opaque);

		if (consumed >= 0 && (uint64_t)consumed > w->applied.limit)
			return;
	}
	w->widened_ms = now_ms();
	w->extra += MARGIN_STEP;
	log_warn("cgroup %s: memory.%s reached (the kernel %s kvmm): kvmm's margin is now %s",
		 w->ev_dir, ev.max > old.max ? "max" : "high",
		 ev.max > old.max ? "reclaimed from" : "throttled", size_format(margin_of(w, bound), a, sizeof(a)));
	poll_now(w, true);
}

static void on_timer(void *opaque, uint32_t events)
{
	struct cgroup_watch *w = opaque;
	uint64_t n;

	(void)events;
	if (read(w->tfd, &n, sizeof(n)) < 0)
		return;
	poll_now(w, false);
}

static void on_inotify(void *opaque, uint32_t events)
{
	struct cgroup_watch *w = opaque;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	(void)events;
	while (read(w->ifd, buf, sizeof(buf)) > 0)
		;
	cgroup_watch_events(w);
}

static int start_loop(struct cgroup_watch *w)
{
	unsigned ms = w->cfg.period_ms ? w->cfg.period_ms : 1000;
	struct itimerspec its = {
		.it_interval = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 },
		.it_value = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 },
	};
	int r;

	w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (w->tfd < 0 || timerfd_settime(w->tfd, 0, &its, NULL) < 0)
		return -errno;
	if ((r = loop_add(w->loop, w->tfd, EPOLLIN, on_timer, w)) < 0)
		return r;
	if (w->ifd >= 0 && (r = loop_add(w->loop, w->ifd, EPOLLIN, on_inotify, w)) < 0)
		return r;
	return 0;
}

int cgroup_watch_start(struct cgroup_watch **out, struct loop *loop,
		       const struct cgroup_watch_cfg *cfg, const struct cgroup_watch_ops *ops)
{
	struct cgroup_watch *w = calloc(1, sizeof(*w));
	int r;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	w->loop = loop;
	w->tfd = w->iwd = -1;
	w->cfg = *cfg;
	w->ops = *ops;
	if (strlen(cfg->dir) >= sizeof(w->dir) || strlen(cfg->top) >= sizeof(w->top)) {
		free(w);
		return -ENAMETOOLONG;
	}
	strcpy(w->dir, cfg->dir);
	strcpy(w->top, cfg->top);
	w->cfg.dir = w->dir;
	w->cfg.top = w->top;
	w->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (w->ifd < 0)
		log_debug("cgroup: no inotify (%s): polling only", strerror(errno));
	poll_now(w, true);
	if (loop && (r = start_loop(w)) < 0) {
		cgroup_watch_destroy(w);
		return r;
	}
	*out = w;
	return 0;
}

void cgroup_watch_current(const struct cgroup_watch *w, struct cgroup_policy *p, uint64_t *margin)
{
	*p = w->applied;
	if (margin)
		*margin = margin_of(w, bound_of(&w->last));
}

void cgroup_watch_destroy(struct cgroup_watch *w)
{
	if (!w)
		return;
	if (w->loop && w->tfd >= 0)
		loop_del(w->loop, w->tfd);
	if (w->loop && w->ifd >= 0)
		loop_del(w->loop, w->ifd);
	if (w->tfd >= 0)
		close(w->tfd);
	if (w->ifd >= 0)
		close(w->ifd);
	free(w);
}
