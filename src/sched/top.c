/* `kvmm top --hostd SOCKET [--once]`: hostd's view as a table, redrawn every second (esxtop's
 * memory screen, much reduced). --once prints one frame and exits (tests, pipes). */
#include <kvmm/hostd.h>

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QUERY_WAIT_MS 3000

struct text {
	char *buf;
	size_t len, cap;
	bool failed;
};

static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if (t->buf && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = (t->cap + (size_t)n + 1) * 2;
		char *p = realloc(t->buf, cap);

		if (!p) {
			t->failed = true;
			return;
		}
		t->buf = p;
		t->cap = cap;
	}
}

static unsigned long long mib(uint64_t b)
{
	return (unsigned long long)(b >> 20);
}

char *top_format(const struct hostd_view *v)
{
	struct text t = { 0 };
	uint64_t granted = 0, consumed = 0;

	put(&t, "host: state %s, free %llu MiB (minFree %llu MiB), total %llu MiB, capacity %llu MiB, "
		"idle tax %u%%, techniques",
	    policy_state_name(v->host.state), mib(v->host.free), mib(v->host.minfree), mib(v->host.total),
	    mib(v->host.capacity), v->host.tax_pct);
	for (unsigned b = 1; b <= POLICY_TECH_BLOCK; b <<= 1)
		if (v->host.techniques & b)
			put(&t, " %s", hostd_tech_name(b));
	put(&t, "\n\n%-16s %7s %7s %7s %7s %7s %7s %7s %7s %7s %7s %6s  %s\n", "NAME", "PID", "SIZE",
	    "RESV", "LIMIT", "GRANTED", "CONSUME", "ACTIVE", "SHARED", "BALLOON", "COMPR", "SWAP", "STATE");
	for (size_t i = 0; i < v->n; i++) {
		const struct hostd_vm_view *x = &v->vms[i];

		put(&t, "%-16.16s %7lld %7llu %7llu %7llu %7llu %7llu %7llu %7llu %7llu %7llu %6llu  %s\n",
		    x->info.name, (long long)x->info.pid, mib(x->info.size), mib(x->info.reservation),
		    mib(x->info.limit), mib(x->target), mib(x->report.consumed), mib(x->report.active),
		    mib(x->report.shared), mib(x->report.ballooned), mib(x->report.compressed),
		    mib(x->report.swapped),
		    !x->reported ? "new" : x->lagging ? "lagging" :
		    x->report.consumed > x->target ? "reclaiming" : "ok");
		granted += x->target;
		consumed += x->report.consumed;
	}
	put(&t, "%zu VM%s, granted %llu MiB, consumed %llu MiB (MiB throughout)\n", v->n,
	    v->n == 1 ? "" : "s", mib(granted), mib(consumed));
	if (t.failed) {
		free(t.buf);
		return NULL;
	}
	return t.buf;
}

/* One query-vms round trip on a fresh connection. */
static int query(const char *path, struct hostd_view *v, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len, have = 0;
	char *req = hostd_fmt_query_vms(&len), *buf = malloc(HOSTD_VIEW_MAX + 1), *nl = NULL;
	int fd = -1, r = -EIO;

	if (!req || !buf) {
		r = -ENOMEM;
		goto out;
	}
	if (strlen(path) >= sizeof(addr.sun_path)) {
		r = -ENAMETOOLONG;
		goto out;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
		r = -errno;
		goto out;
	}
	while (!nl) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (have >= HOSTD_VIEW_MAX) {
			snprintf(err, errlen, "hostd's answer is longer than %u bytes", HOSTD_VIEW_MAX);
			r = -EMSGSIZE;
			goto out;
		}
		if (poll(&p, 1, QUERY_WAIT_MS) <= 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		n = recv(fd, buf + have, HOSTD_VIEW_MAX - have, 0);
		if (n <= 0) {
			r = n < 0 ? -errno : -ECONNRESET;
			goto out;
		}
		have += (size_t)n;
		nl = memchr(buf, '\n', have);
	}
	r = hostd_parse_view(buf, (size_t)(nl - buf), v, err, errlen);
out:
	if (r < 0 && r != -EINVAL && r != -EMSGSIZE)
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
	if (fd >= 0)
		close(fd);
	free(req);
	free(buf);
	return r;
}

int top_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "hostd", required_argument, NULL, 's' },
		{ "once", no_argument, NULL, '1' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	bool once = false;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			path = optarg;
			break;
		case '1':
			once = true;
			break;
		case 'h':
			printf("usage: kvmm top --hostd SOCKET [--once]\n");
			return 0;
		default:
			fprintf(stderr, "usage: kvmm top --hostd SOCKET [--once]\n");
			return 2;
		}
	}
	if (!path || optind < argc) {
		fprintf(stderr, "kvmm top: --hostd SOCKET is required (per-VM QMP sockets are not "
				"supported yet)\n");
		return 2;
	}
	for (;;) {
		struct hostd_view v;
		char err[256];
		char *frame;

		if (query(path, &v, err, sizeof(err)) < 0) {
			fprintf(stderr, "kvmm top: %s\n", err);
			return 1;
		}
		frame = top_format(&v);
		hostd_view_free(&v);
		if (!frame)
			return 1;
		if (!once)
			fputs("\033[H\033[2J", stdout);
		fputs(frame, stdout);
		fflush(stdout);
		free(frame);
		if (once)
			return 0;
		sleep(1);
	}
}
