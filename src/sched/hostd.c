/* `kvmm hostd`: one per host. VMs started with --hostd register on its unix socket, report their
 * memory every period and receive targets; control clients (kvmm top, scripts) query and change
 * it on the same socket (kvmm/hostd.h has the protocol). Everything runs on one epoll loop; no
 * client can block it: sockets are non-blocking, output is queued per connection and a connection
 * whose queue passes OUT_MAX is dropped. The arithmetic is policy.c's; the command line,
 * hostd_main.c's. */
#include <kvmm/hostd.h>
#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/unixsock.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#define OUT_MAX (4u << 20)      /* queued output a connection may have before it is dropped */
#define LAG_PCT 5               /* a VM over its target by more than this is not meeting it */

struct conn {
	struct hostd *h;
	int fd;
	struct hostd_lines in;
	char *out;
	size_t out_len, out_cap;
	bool want_out;              /* watched for EPOLLOUT */
	bool registered;
	bool dead;                  /* failed or too slow: closed by reap() */
	struct hostd_vm_view vm;
	unsigned over;              /* consecutive periods over target + LAG_PCT */
	struct conn *next;
};

struct hostd {
	struct loop *loop;
	struct hostd_opts o;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd, tfd;
	struct conn *conns;
	uint64_t total, avail, minfree, capacity;
	unsigned tax_pct;
	enum policy_state state;
};

void hostd_opts_default(struct hostd_opts *o)
{
	*o = (struct hostd_opts){
		.tax_pct = POLICY_TAX_DEFAULT,
		.period_ms = HOSTD_PERIOD_MS,
		.lag_periods = 10,
		.meminfo = "/proc/meminfo",
	};
	policy_thresholds_default(&o->thresholds);
}

/* MemTotal and MemAvailable, bytes. */
static int read_meminfo(const char *path, uint64_t *total, uint64_t *avail)
{
	FILE *f = fopen(path, "re");
	char line[128];
	int got = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kib;

		if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) {
			*total = kib << 10;
			got |= 1;
		} else if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
			*avail = kib << 10;
			got |= 2;
		}
	}
	fclose(f);
	return got == 3 ? 0 : -ENODATA;
}

/* hostd's own keep: its resident memory at start (/proc/self/statm), which it will need. */
static uint64_t own_rss(void)
{
	unsigned long long size, res;
	FILE *f = fopen("/proc/self/statm", "re");
	int n = f ? fscanf(f, "%llu %llu", &size, &res) : 0;

	if (f)
		fclose(f);
	return n == 2 ? res * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* ---- connections ------------------------------------------------------------------------ */

static void conn_events(void *opaque, uint32_t events);

static void conn_close(struct conn *c)
{
	struct hostd *h = c->h;

	for (struct conn **p = &h->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	if (c->registered)
		log_info("hostd: %s (pid %lld) left; its memory returns to the pool", c->vm.info.name,
			 (long long)c->vm.info.pid);
	loop_del(h->loop, c->fd);
	close(c->fd);
	hostd_lines_destroy(&c->in);
	free(c->out);
	free(c);
}

/* Closes the connections marked dead. Never called while a handler of one of them runs. */
static void reap(struct hostd *h)
{
	for (struct conn *c = h->conns, *next; c; c = next) {
		next = c->next;
		if (c->dead)
			conn_close(c);
	}
}

static int conn_watch(struct conn *c, bool out)
{
	if (c->want_out == out)
		return 0;
	loop_del(c->h->loop, c->fd);
	c->want_out = out;
	return loop_add(c->h->loop, c->fd, EPOLLIN | (out ? EPOLLOUT : 0), conn_events, c);
}

/* Writes what is queued; false when the connection failed (the caller closes it). */
static bool conn_flush(struct conn *c)
{
	size_t done = 0;

	while (done < c->out_len) {
		ssize_t n = send(c->fd, c->out + done, c->out_len - done, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	memmove(c->out, c->out + done, c->out_len - done);
	c->out_len -= done;
	return conn_watch(c, c->out_len > 0) == 0;
}

/* Queues one line (taking ownership of it) and tries to send it. False when the connection must
 * close: it failed, or it is too slow to read what it is sent. */
static bool conn_send(struct conn *c, char *line, size_t len)
{
	if (!line)
		return false;
	if (c->out_len + len > OUT_MAX) {
		log_error("hostd: %s does not read its socket: dropped",
			  c->registered ? c->vm.info.name : "a client");
		free(line);
		return false;
	}
	if (c->out_len + len > c->out_cap) {
		size_t cap = (c->out_len + len) * 2;
		char *p = realloc(c->out, cap);

		if (!p) {
			free(line);
			return false;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out_len += len;
	free(line);
	return conn_flush(c);
}

static bool send_error(struct conn *c, const char *cls, const char *desc)
{
	size_t len;
	char *line = hostd_fmt_error(cls, desc, &len);

	return conn_send(c, line, len);
}

/* ---- the policy ------------------------------------------------------------------------- */

static size_t nr_registered(const struct hostd *h)
{
	size_t n = 0;

	for (const struct conn *c = h->conns; c; c = c->next)
		n += c->registered;
	return n;
}

static void to_policy(const struct hostd_vm_view *v, struct policy_vm *p)
{
	*p = (struct policy_vm){
		.size = v->info.size, .reservation = v->info.reservation, .limit = v->info.limit,
		.shares = v->info.shares, .overhead = v->info.overhead,
		.consumed = v->report.consumed, .active = v->report.active,
	};
}

/* The registered VMs as the policy sees them, except `skip`; *n set. NULL when out of memory. */
static struct policy_vm *policy_vms(struct hostd *h, const struct conn *skip, size_t *n,
				    struct conn ***order)
{
	size_t cap = nr_registered(h) + 1, k = 0;
	struct policy_vm *v = calloc(cap, sizeof(*v));
	struct conn **o = order ? calloc(cap, sizeof(*o)) : NULL;

	if (!v || (order && !o)) {
		free(v);
		free(o);
		return NULL;
	}
	for (struct conn *c = h->conns; c; c = c->next) {
		if (!c->registered || c->dead || c == skip)
			continue;
		to_policy(&c->vm, &v[k]);
		if (o)
			o[k] = c;
		k++;
	}
	*n = k;
	if (order)
		*order = o;
	return v;
}

static void push_targets(struct hostd *h)
{
	unsigned tech = policy_techniques(h->state);

	for (struct conn *c = h->conns; c; c = c->next) {
		struct hostd_target t = {
			.target = c->vm.target, .reservation = c->vm.info.reservation,
			.limit = c->vm.info.limit, .techniques = tech, .state = h->state,
		};
		size_t len;
		char *line;

		/* Not before its first report: a VM that registers again after hostd restarted
		 * would otherwise be cut to what an empty VM needs for a period. */
		if (!c->registered || c->dead || !c->vm.reported)
			continue;
		line = hostd_fmt_target(&t, &len);
		if (!conn_send(c, line, len))
			c->dead = true;
	}
}

/* New targets for every registered VM, pushed to each. */
static void allocate(struct hostd *h)
{
	struct policy_host host = { .capacity = h->capacity, .tax_pct = h->tax_pct };
	struct conn **order = NULL;
	size_t n;
	struct policy_vm *v = policy_vms(h, NULL, &n, &order);
	int r;

	if (!v)
		return;
	r = n ? policy_allocate(&host, v, n) : 0;
	if (r == -ENOSPC)
		log_error("hostd: the reservations exceed the capacity (%llu MiB): targets are the "
			  "reservations", (unsigned long long)(h->capacity >> 20));
	else if (r < 0)
		log_error("hostd: allocation failed: %s", strerror(-r));
	if (r == 0 || r == -ENOSPC)
		for (size_t i = 0; i < n; i++)
			order[i]->vm.target = v[i].target;
	free(v);
	free(order);
	push_targets(h);
}

/* Lagging: consumed above target + LAG_PCT for more than lag_periods reports in a row. */
static void check_lag(struct hostd *h)
{
	for (struct conn *c = h->conns; c; c = c->next) {
		uint64_t t = c->vm.target;
		bool over;

		if (!c->registered || !c->vm.reported)
			continue;
		over = c->vm.report.consumed > t + t / 100 * LAG_PCT;
		c->over = over ? c->over + 1 : 0;
		if (c->over > h->o.lag_periods && !c->vm.lagging)
			log_info("hostd: %s is lagging: consumes %llu MiB, target %llu MiB", c->vm.info.name,
				 (unsigned long long)(c->vm.report.consumed >> 20),
				 (unsigned long long)(t >> 20));
		c->vm.lagging = c->over > h->o.lag_periods;
	}
}

void hostd_tick(struct hostd *h)
{
	uint64_t total = h->total, avail = h->avail;
	enum policy_state old = h->state;

	if (read_meminfo(h->o.meminfo, &total, &avail) == 0) {
		h->total = total;
		h->avail = avail;
	}
	h->state = policy_state_next(h->state, h->avail, h->minfree, &h->o.thresholds);
	if (h->state != old)
		log_info("hostd: host state %s (%llu MiB available, minFree %llu MiB)",
			 policy_state_name(h->state), (unsigned long long)(h->avail >> 20),
			 (unsigned long long)(h->minfree >> 20));
	check_lag(h);
	allocate(h);
}

/* ---- requests --------------------------------------------------------------------------- */

static struct conn *find_vm(struct hostd *h, const char *name)
{
	for (struct conn *c = h->conns; c; c = c->next)
		if (c->registered && !c->dead && strcmp(c->vm.info.name, name) == 0)
			return c;
	return NULL;
}

/* Whether cand (a VM's new or changed figures) fits beside every other VM; else *why is set. */
static bool admits(struct hostd *h, const struct conn *skip, const struct hostd_vm_info *cand,
		   char *why, size_t len)
{
	struct policy_host host = { .capacity = h->capacity, .tax_pct = h->tax_pct };
	struct policy_vm p, *v;
	uint64_t held = 0;
	size_t n;
	bool ok;

	v = policy_vms(h, skip, &n, NULL);
	if (!v) {
		snprintf(why, len, "hostd is out of memory");
		return false;
	}
	to_policy(&(struct hostd_vm_view){ .info = *cand }, &p);
	ok = policy_admits(&host, v, n, &p);
	for (size_t i = 0; i < n; i++)
		held += v[i].reservation + v[i].overhead;
	free(v);
	if (!ok)
		snprintf(why, len, "reservation %llu MiB + overhead %llu MiB does not fit: the host's "
			 "capacity is %llu MiB and %llu MiB are reserved for %zu running VM%s",
			 (unsigned long long)(cand->reservation >> 20),
			 (unsigned long long)(cand->overhead >> 20),
			 (unsigned long long)(h->capacity >> 20), (unsigned long long)(held >> 20), n,
			 n == 1 ? "" : "s");
	return ok;
}

static bool do_register(struct conn *c, const struct hostd_vm_info *info)
{
	struct hostd *h = c->h;
	char why[320], *line;
	size_t len;

	if (c->registered)
		return send_error(c, "GenericError", "this connection has registered already");
	if (find_vm(h, info->name)) {
		snprintf(why, sizeof(why), "a VM named '%s' is registered already: give each VM its own "
			 "--name", info->name);
		return send_error(c, "GenericError", why);
	}
	if (!admits(h, NULL, info, why, sizeof(why))) {
		log_info("hostd: refused %s (pid %lld): %s", info->name, (long long)info->pid, why);
		return send_error(c, "AdmissionRefused", why);
	}
	c->vm = (struct hostd_vm_view){ .info = *info, .target = info->limit };
	c->registered = true;
	c->over = 0;
	log_info("hostd: %s (pid %lld) registered: %llu MiB, reservation %llu MiB, limit %llu MiB, "
		 "%llu shares, overhead %llu MiB", info->name, (long long)info->pid,
		 (unsigned long long)(info->size >> 20), (unsigned long long)(info->reservation >> 20),
		 (unsigned long long)(info->limit >> 20), (unsigned long long)info->shares,
		 (unsigned long long)(info->overhead >> 20));
	line = hostd_fmt_return_register(h->o.period_ms, &len);
	if (!conn_send(c, line, len))
		return false;
	allocate(h);
	return true;
}

static bool do_set_vm(struct conn *c, const struct hostd_request *q)
{
	struct hostd *h = c->h;
	struct conn *vm = find_vm(h, q->u.set_vm.name);
	struct hostd_vm_info info;
	char why[320], *line;
	size_t len;

	if (!vm) {
		snprintf(why, sizeof(why), "no VM named '%s'", q->u.set_vm.name);
		return send_error(c, "GenericError", why);
	}
	info = vm->vm.info;
	if (q->u.set_vm.set & HOSTD_SET_RESERVATION)
		info.reservation = q->u.set_vm.reservation;
	if (q->u.set_vm.set & HOSTD_SET_LIMIT)
		info.limit = q->u.set_vm.limit;
	if (q->u.set_vm.set & HOSTD_SET_SHARES)
		info.shares = q->u.set_vm.shares;
	if (info.limit > info.size || info.reservation > info.limit || info.limit < 4096)
		return send_error(c, "GenericError", "need reservation <= limit <= the VM's memory");
	if (info.reservation > vm->vm.info.reservation && !admits(h, vm, &info, why, sizeof(why)))
		return send_error(c, "AdmissionRefused", why);
	vm->vm.info = info;
	log_info("hostd: %s: reservation %llu MiB, limit %llu MiB, %llu shares", info.name,
		 (unsigned long long)(info.reservation >> 20), (unsigned long long)(info.limit >> 20),
		 (unsigned long long)info.shares);
	line = hostd_fmt_return_empty(&len);
	if (!conn_send(c, line, len))
		return false;
	allocate(h);
	return true;
}

static bool do_query(struct conn *c)
{
	struct hostd *h = c->h;
	struct hostd_view v = {
		.host = { .capacity = h->capacity, .total = h->total, .free = h->avail,
			  .minfree = h->minfree, .tax_pct = h->tax_pct,
			  .techniques = policy_techniques(h->state), .state = h->state },
	};
	size_t len;
	char *line;

	v.vms = calloc(nr_registered(h) + 1, sizeof(*v.vms));
	if (!v.vms)
		return send_error(c, "GenericError", "hostd is out of memory");
	for (struct conn *x = h->conns; x; x = x->next)
		if (x->registered)
			v.vms[v.n++] = x->vm;
	line = hostd_fmt_view(&v, &len);
	free(v.vms);
	return conn_send(c, line, len);
}

/* false: close the connection. */
static bool handle(struct conn *c, const char *line, size_t len)
{
	struct hostd_request q;
	char err[256];

	if (!line) {
		snprintf(err, sizeof(err), "line longer than %u bytes refused", HOSTD_LINE_MAX);
		return send_error(c, "GenericError", err);
	}
	if (hostd_parse_request(line, len, &q, err, sizeof(err)) < 0)
		return send_error(c, "GenericError", err);
	switch (q.kind) {
	case HOSTD_REQ_REGISTER:
		return do_register(c, &q.u.reg);
	case HOSTD_REQ_REPORT:
		if (!c->registered)
			return send_error(c, "GenericError", "report before register");
		c->vm.report = q.u.report;
		if (!c->vm.reported) {
			c->vm.reported = true;
			allocate(c->h);
		}
		return true;
	case HOSTD_REQ_QUERY_VMS:
		return do_query(c);
	case HOSTD_REQ_SET_VM:
		return do_set_vm(c, &q);
	case HOSTD_REQ_SET_HOST: {
		size_t n;
		char *l;

		c->h->tax_pct = q.u.set_host.tax_pct;
		log_info("hostd: idle memory tax %u%%", c->h->tax_pct);
		l = hostd_fmt_return_empty(&n);
		if (!conn_send(c, l, n))
			return false;
		allocate(c->h);
		return true;
	}
	}
	return true;
}

struct feed_ctx {
	struct conn *c;
	bool ok;
};

static void on_line(void *opaque, const char *line, size_t len)
{
	struct feed_ctx *f = opaque;

	if (f->ok)
		f->ok = handle(f->c, line, len);
}

static void conn_events(void *opaque, uint32_t events)
{
	struct conn *c = opaque;
	struct hostd *h = c->h;
	char buf[4096];

	if (events & EPOLLOUT && !conn_flush(c))
		c->dead = true;
	while (!c->dead && events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		struct feed_ctx f = { c, true };
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			c->dead = true;
			break;
		}
		/* Handlers only mark connections dead (a failed push may hit any of them); they
		 * are closed below, when no handler runs. */
		hostd_lines_feed(&c->in, buf, (size_t)n, on_line, &f);
		if (!f.ok)
			c->dead = true;
	}
	if (c->dead) {
		bool was = c->registered;

		reap(h);
		if (was)
			allocate(h);
	}
	reap(h);
}

static void on_accept(void *opaque, uint32_t events)
{
	struct hostd *h = opaque;

	for (;;) {
		int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c || hostd_lines_init(&c->in, HOSTD_LINE_MAX) < 0 ||
		    loop_add(h->loop, fd, EPOLLIN, conn_events, c) < 0) {
			if (c)
				hostd_lines_destroy(&c->in);
			free(c);
			close(fd);
			continue;
		}
		c->h = h;
		c->fd = fd;
		c->next = h->conns;
		h->conns = c;
	}
}

static void on_timer(void *opaque, uint32_t events)
{
	struct hostd *h = opaque;
	uint64_t n;

	if (read(h->tfd, &n, sizeof(n)) != sizeof(n))
		return;
	hostd_tick(h);
	reap(h);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static int listen_on(struct hostd *h)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int r;

	if (strlen(h->o.socket) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, h->o.socket);
	if ((r = unixsock_clear_stale(&addr)) < 0)
		return r;
	h->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->lfd < 0)
		return -errno;
	if (fchmod(h->lfd, 0600) < 0 || bind(h->lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return -errno;
	strcpy(h->path, addr.sun_path);
	if (chmod(h->path, 0600) < 0 || listen(h->lfd, 64) < 0)
		return -errno;
	return 0;
}

int hostd_create(struct hostd **out, struct loop *loop, const struct hostd_opts *o)
{
	struct hostd *h = calloc(1, sizeof(*h));
	struct itimerspec its = { 0 };
	uint64_t keep = own_rss();
	int r;

	*out = NULL;
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->o = *o;
	h->lfd = h->tfd = -1;
	h->tax_pct = o->tax_pct;
	if (o->tax_pct > 99 || !o->period_ms || policy_thresholds_check(&o->thresholds) < 0) {
		r = -EINVAL;
		goto fail;
	}
	if ((r = read_meminfo(o->meminfo, &h->total, &h->avail)) < 0) {
		log_error("hostd: %s: %s", o->meminfo, strerror(-r));
		goto fail;
	}
	h->minfree = o->minfree ? o->minfree : policy_minfree(h->total);
	h->capacity = o->capacity;
	if (!h->capacity)
		h->capacity = h->total > h->minfree + keep ? h->total - h->minfree - keep : 0;
	h->state = policy_state_next(POLICY_NSTATES, h->avail, h->minfree, &o->thresholds);
	if ((r = listen_on(h)) < 0) {
		log_error("hostd: %s: %s", o->socket, r == -EADDRINUSE ? "another hostd listens there" :
			  r == -EEXIST ? "a file that is not a socket is there" : strerror(-r));
		goto fail;
	}
	h->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	its.it_value.tv_sec = its.it_interval.tv_sec = o->period_ms / 1000;
	its.it_value.tv_nsec = its.it_interval.tv_nsec = (long)(o->period_ms % 1000) * 1000000;
	if (h->tfd < 0 || timerfd_settime(h->tfd, 0, &its, NULL) < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = loop_add(loop, h->lfd, EPOLLIN, on_accept, h)) < 0)
		goto fail;
	if ((r = loop_add(loop, h->tfd, EPOLLIN, on_timer, h)) < 0) {
		loop_del(loop, h->lfd);
		goto fail;
	}
	log_info("hostd: listening on %s: host %llu MiB, %llu MiB available, minFree %llu MiB, "
		 "capacity %llu MiB%s, state %s, idle tax %u%%, period %u ms", h->path,
		 (unsigned long long)(h->total >> 20), (unsigned long long)(h->avail >> 20),
		 (unsigned long long)(h->minfree >> 20), (unsigned long long)(h->capacity >> 20),
		 o->capacity ? " (--capacity)" : "", policy_state_name(h->state), h->tax_pct,
		 o->period_ms);
	*out = h;
	return 0;
fail:
	if (h->tfd >= 0)
		close(h->tfd);
	if (h->lfd >= 0)
		close(h->lfd);
	if (h->path[0])
		unlink(h->path);
	free(h);
	return r;
}

void hostd_destroy(struct hostd *h)
{
	if (!h)
		return;
	while (h->conns)
		conn_close(h->conns);
	loop_del(h->loop, h->lfd);
	loop_del(h->loop, h->tfd);
	close(h->lfd);
	close(h->tfd);
	unlink(h->path);
	free(h);
}
