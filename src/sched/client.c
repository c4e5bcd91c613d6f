/* The VM's link to hostd (`kvmm run --hostd SOCKET`), on the VM's loop thread. Registration at
 * start waits for hostd's answer (admission control decides whether the VM runs at all); from then
 * on nothing waits: every period a report is sent if the socket takes it now (otherwise that
 * report is skipped), and TARGET events are handed to the memory manager as they arrive. When
 * hostd goes away the VM keeps its last target and its own limit (but not a block on allocation:
 * only hostd could lift it), and tries to connect and register again every RETRY_MS. */
#include <kvmm/config.h>
#include <kvmm/hostd.h>
#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/mem.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RETRY_MS 3000
#define REGISTER_WAIT_MS 5000
#define SET_WAIT_MS 2000 /* a live change waits this long for hostd (on the VM's loop thread) */

enum link_state { LINK_DOWN, LINK_REGISTERING, LINK_UP };

struct hostd_client {
	struct loop *loop;
	struct memmgr *m;
	const char *path;
	int fd, tfd;
	enum link_state st;
	struct hostd_lines in;
	char *pending;              /* the unsent rest of a line */
	size_t pending_len;
	unsigned period_ms;
	uint64_t next_retry_ms;
	uint64_t registering_since_ms;
	struct hostd_vm_info info;
	struct hostd_target last;   /* the last TARGET applied (techniques 0: none yet) */
	struct hostd_vm_info asked; /* a set-vm awaiting hostd's answer (hostd_client_set) */
	enum { SET_NONE, SET_WAITING, SET_ACCEPTED, SET_REFUSED } set;
	char set_error[256];
	bool refused;
	char refusal[256];
	bool logged_down;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Overhead charged at admission when the measurement is smaller: the memory manager's per-page
 * tables (page state, age, scanner skip and seen arrays, hash table: under 16 bytes a guest page,
 * so size / 256) and a base for threads, staging and bounce pages and the libraries. An estimate
 * from the tables' sizes, not a measurement under load (docs/architecture.md). */
#define OVERHEAD_BASE (8ull << 20)
#define OVERHEAD_PER_PAGE_SHIFT 8

/* What the VMM process holds besides guest RAM: its PSS (smaps_rollup) minus the guest RAM the
 * memory manager counts as consumed, measured at registration, but at least the estimate above:
 * at registration the per-page tables are mostly untouched. */
static uint64_t measure_overhead(struct memmgr *m)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "re");
	unsigned long long pss_kib = 0;
	struct mem_stats st;
	char line[128];
	uint64_t pss, est;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss: %llu kB", &pss_kib) == 1)
			break;
	fclose(f);
	pss = (uint64_t)pss_kib << 10;
	if (mem_get_stats(m, &st) < 0)
		return pss;
	est = OVERHEAD_BASE + (st.configured >> OVERHEAD_PER_PAGE_SHIFT);
	pss = pss > st.consumed ? pss - st.consumed : 0;
	log_debug("hostd: overhead: PSS %llu KiB besides %llu KiB of guest RAM, estimate %llu KiB",
		  (unsigned long long)(pss >> 10), (unsigned long long)(st.consumed >> 10),
		  (unsigned long long)(est >> 10));
	return pss > est ? pss : est;
}

static void link_down(struct hostd_client *c, const char *why)
{
	struct mem_stats st;

	/* Only a hostd that is there can lift its block: without it the VM runs on its last target. */
	if (c->last.techniques & POLICY_TECH_BLOCK) {
		c->last.techniques &= ~(unsigned)POLICY_TECH_BLOCK;
		mem_set_host_target(c->m, c->last.target, c->last.techniques);
	}

	if (c->fd >= 0) {
		loop_del(c->loop, c->fd);
		close(c->fd);
		c->fd = -1;
	}
	if (c->st != LINK_DOWN && mem_get_stats(c->m, &st) == 0)
		log_info("hostd %s: %s; keeping target %llu MiB (limit %llu MiB), reconnecting every %d s",
			 c->path, why, (unsigned long long)(st.target >> 20),
			 (unsigned long long)(st.limit >> 20), RETRY_MS / 1000);
	c->st = LINK_DOWN;
	c->pending_len = 0;
	c->in.len = 0;
	c->in.skipping = false;
	c->next_retry_ms = now_ms() + RETRY_MS;
}

/* Sends what is left of an earlier line; false when the link failed. */
static bool flush_pending(struct hostd_client *c)
{
	ssize_t n;

	if (!c->pending_len)
		return true;
	n = send(c->fd, c->pending, c->pending_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return false;
	if (n > 0) {
		memmove(c->pending, c->pending + n, c->pending_len - (size_t)n);
		c->pending_len -= (size_t)n;
	}
	return true;
}

/* Sends a whole line now or keeps its rest for later; false when the link failed. A line that
 * finds an earlier one still pending is dropped (a report; the next one follows). */
static bool send_line(struct hostd_client *c, char *line, size_t len)
{
	size_t done = 0;

	if (!line)
		return true;
	if (!flush_pending(c) || c->pending_len) {
		bool ok = c->pending_len > 0;

		free(line);
		return ok;
	}
	while (done < len) {
		ssize_t n = send(c->fd, line + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			free(line);
			return false;
		}
		done += (size_t)n;
	}
	if (done < len) {
		free(c->pending);
		memmove(line, line + done, len - done);
		c->pending = line;
		c->pending_len = len - done;
		return true;
	}
	free(line);
	return true;
}

/* A changed limit or reservation (set-vm on hostd) becomes the VM's own. */
static void apply_target(struct hostd_client *c, const struct hostd_target *t)
{
	if (t->limit != c->info.limit || t->reservation != c->info.reservation) {
		if (mem_set_limits(c->m, t->limit, t->reservation) < 0)
			log_error("hostd: cannot apply limit %llu MiB, reservation %llu MiB",
				  (unsigned long long)(t->limit >> 20),
				  (unsigned long long)(t->reservation >> 20));
		c->info.limit = t->limit;
		c->info.reservation = t->reservation;
	}
	mem_set_host_target(c->m, t->target, t->techniques);
	c->last = *t;
}

static bool send_report(struct hostd_client *c);

static void on_line(void *opaque, const char *line, size_t len)
{
	struct hostd_client *c = opaque;
	struct hostd_reply r;
	char err[256];

	if (!line || hostd_parse_reply(line, len, &r, err, sizeof(err)) < 0) {
		log_error("hostd: ignoring a bad line: %s", line ? err : "too long");
		return;
	}
	/* On a registered link, hostd answers only the set-vm hostd_client_set awaits. Its limit and
	 * reservation are the VM's from the RETURN on: the TARGETs after it carry them. */
	if (c->st == LINK_UP && c->set == SET_WAITING && r.kind != HOSTD_REPLY_TARGET) {
		if (r.kind == HOSTD_REPLY_RETURN)
			c->info = c->asked;
		else
			snprintf(c->set_error, sizeof(c->set_error), "%s", r.err_desc);
		c->set = r.kind == HOSTD_REPLY_RETURN ? SET_ACCEPTED : SET_REFUSED;
		return;
	}
	switch (r.kind) {
	case HOSTD_REPLY_RETURN:
		if (c->st == LINK_REGISTERING) {
			c->st = LINK_UP;
			c->period_ms = r.period_ms ? r.period_ms : HOSTD_PERIOD_MS;
			log_info("hostd %s: registered as %s", c->path, c->info.name);
			/* hostd sends targets once it has the VM's figures. */
			if (c->fd >= 0 && !send_report(c))
				log_error("hostd %s: cannot send the first report", c->path);
		}
		break;
	case HOSTD_REPLY_ERROR:
		if (c->st == LINK_REGISTERING) {
			c->refused = true;
			snprintf(c->refusal, sizeof(c->refusal), "%s", r.err_desc);
		} else {
			log_error("hostd: %s", r.err_desc);
		}
		break;
	case HOSTD_REPLY_TARGET:
		if (c->st == LINK_UP)
			apply_target(c, &r.target);
		break;
	}
}

/* Reads what is there; false when the link ended. */
static bool read_some(struct hostd_client *c)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n <= 0)
			return false;
		hostd_lines_feed(&c->in, buf, (size_t)n, on_line, c);
		if (c->refused)
			return false;
	}
}

static void on_readable(void *opaque, uint32_t events)
{
	struct hostd_client *c = opaque;

	if (!read_some(c)) {
		if (c->refused) {
			log_error("hostd %s refused this VM again: %s", c->path, c->refusal);
			c->refused = false;
		}
		link_down(c, "connection closed");
	}
}

static int connect_to(struct hostd_client *c)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(c->path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, c->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* Connects and sends register; the answer comes on the loop (or to hostd_client_start). */
static int link_up(struct hostd_client *c)
{
	size_t len;
	char *line;
	int fd = connect_to(c);

	if (fd < 0)
		return fd;
	c->fd = fd;
	c->st = LINK_REGISTERING;
	c->registering_since_ms = now_ms();
	c->info.overhead = measure_overhead(c->m);
	line = hostd_fmt_register(&c->info, &len);
	if (!line || !send_line(c, line, len)) {
		close(fd);
		c->fd = -1;
		c->st = LINK_DOWN;
		return -EIO;
	}
	return 0;
}

/* False when the link failed. */
static bool send_report(struct hostd_client *c)
{
	struct mem_stats st;
	struct hostd_report r;
	size_t len;
	char *line;

	if (mem_get_stats(c->m, &st) < 0)
		return true;
	r = (struct hostd_report){
		.consumed = st.consumed, .active = st.active, .shared = st.shared,
		.ballooned = st.ballooned, .compressed = st.compressed, .swapped = st.swapped,
	};
	line = hostd_fmt_report(&r, &len);
	return send_line(c, line, len);
}

static void on_timer(void *opaque, uint32_t events)
{
	struct hostd_client *c = opaque;
	uint64_t n;

	if (read(c->tfd, &n, sizeof(n)) != sizeof(n))
		return;
	if (c->st == LINK_DOWN) {
		if (now_ms() < c->next_retry_ms)
			return;
		c->next_retry_ms = now_ms() + RETRY_MS;
		if (link_up(c) < 0)
			return;
		if (loop_add(c->loop, c->fd, EPOLLIN, on_readable, c) < 0)
			link_down(c, "cannot watch the socket");
		return;
	}
	if (c->st == LINK_REGISTERING && now_ms() - c->registering_since_ms > REGISTER_WAIT_MS)
		link_down(c, "no answer to register");
	else if (c->st == LINK_UP && !send_report(c))
		link_down(c, "connection failed");
}

static int start_timer(struct hostd_client *c)
{
	struct itimerspec its = { 0 };

	its.it_value.tv_sec = its.it_interval.tv_sec = c->period_ms / 1000;
	its.it_value.tv_nsec = its.it_interval.tv_nsec = (long)(c->period_ms % 1000) * 1000000;
	c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (c->tfd < 0 || timerfd_settime(c->tfd, 0, &its, NULL) < 0)
		return -errno;
	return loop_add(c->loop, c->tfd, EPOLLIN, on_timer, c);
}

/* Reads (and sends what is pending) until done(c) or wait_ms pass. 0, -ETIMEDOUT, or -errno
 * when the link failed. */
static int await(struct hostd_client *c, bool (*done)(struct hostd_client *c), unsigned wait_ms)
{
	uint64_t end = now_ms() + wait_ms;

	while (!done(c)) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN | (c->pending_len ? POLLOUT : 0) };
		uint64_t now = now_ms();

		if (now >= end)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)(end - now)) < 0 && errno != EINTR)
			return -errno;
		if (!flush_pending(c) || (!read_some(c) && !done(c)))
			return -ECONNRESET;
	}
	return 0;
}

static bool registered_or_refused(struct hostd_client *c)
{
	return c->st != LINK_REGISTERING || c->refused;
}

/* Registration at start: the answer is awaited here, before the vCPUs run. */
static int register_now(struct hostd_client *c)
{
	int r = link_up(c);

	if (r < 0 || (r = await(c, registered_or_refused, REGISTER_WAIT_MS)) < 0)
		return r;
	if (c->refused) {
		log_error("hostd %s refused this VM: %s", c->path, c->refusal);
		return -EPERM;
	}
	return 0;
}

int hostd_client_start(struct hostd_client **out, struct loop *loop, struct memmgr *m,
		       const struct vm_config *cfg)
{
	struct hostd_client *c = calloc(1, sizeof(*c));
	struct mem_stats st;
	int r;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->m = m;
	c->path = cfg->hostd;
	c->fd = c->tfd = -1;
	c->period_ms = HOSTD_PERIOD_MS;
	if ((r = hostd_lines_init(&c->in, HOSTD_LINE_MAX)) < 0 || (r = mem_get_stats(m, &st)) < 0)
		goto fail;
	snprintf(c->info.name, sizeof(c->info.name), "%s", cfg->name ? cfg->name : "kvmm");
	snprintf(c->info.salt, sizeof(c->info.salt), "%s", cfg->mem_salt ? cfg->mem_salt : "vm");
	c->info.pid = getpid();
	c->info.size = st.configured;
	c->info.limit = st.limit;
	c->info.reservation = st.reservation;
	c->info.shares = cfg->mem_shares;
	if ((r = register_now(c)) < 0) {
		if (r != -EPERM)
			log_error("--hostd %s: %s", c->path, r == -ETIMEDOUT ? "no answer from hostd within 5 s" :
				  r == -ENOENT || r == -ECONNREFUSED ? "no hostd listens there" : strerror(-r));
		goto fail;
	}
	if ((r = loop_add(loop, c->fd, EPOLLIN, on_readable, c)) < 0 || (r = start_timer(c)) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	hostd_client_destroy(c);
	return r;
}

static bool set_answered(struct hostd_client *c)
{
	return c->set != SET_WAITING;
}

int hostd_client_set(struct hostd_client *c, unsigned set, uint64_t reservation, uint64_t limit,
		     uint64_t shares, char *why, size_t len)
{
	struct hostd_vm_info want = c->info;
	size_t n;
	char *line;
	int r;

	if (set & HOSTD_SET_RESERVATION)
		want.reservation = reservation;
	if (set & HOSTD_SET_LIMIT)
		want.limit = limit;
	if (set & HOSTD_SET_SHARES)
		want.shares = shares;
	if (c->st == LINK_REGISTERING) {
		snprintf(why, len, "the VM is registering with hostd %s: try again", c->path);
		return -EAGAIN;
	}
	if (c->st == LINK_DOWN) {
		c->info = want; /* registration will carry it, admission-checked */
		return 0;
	}
	line = hostd_fmt_set_vm(c->info.name, set, reservation, limit, shares, &n);
	if (!line) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	c->asked = want;
	c->set = SET_WAITING;
	r = send_line(c, line, n) ? await(c, set_answered, SET_WAIT_MS) : -ECONNRESET;
	if (r == -ECONNRESET) {
		/* hostd is gone: the change is the VM's, and goes with the next registration. */
		link_down(c, "connection closed");
		c->info = want;
		r = 0;
	} else if (r == -ETIMEDOUT) {
		snprintf(why, len, "hostd %s did not answer within %d s", c->path, SET_WAIT_MS / 1000);
	} else if (r < 0) {
		snprintf(why, len, "hostd %s: %s", c->path, strerror(-r));
	} else if (c->set == SET_REFUSED) {
		snprintf(why, len, "hostd refuses: %s", c->set_error);
		r = -EPERM;
	}
	c->set = SET_NONE;
	return r;
}

void hostd_client_destroy(struct hostd_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0) {
		loop_del(c->loop, c->fd);
		close(c->fd);
	}
	if (c->tfd >= 0) {
		loop_del(c->loop, c->tfd);
		close(c->tfd);
	}
	hostd_lines_destroy(&c->in);
	free(c->pending);
	free(c);
}
