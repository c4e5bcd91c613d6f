/* `kvmm hostd`: the command line in front of the daemon (hostd.c): options, signals, the loop. */
#include <kvmm/hostd.h>
#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/size.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmm hostd --socket PATH [options]\n"
		"  --socket PATH        unix socket VMs (--hostd PATH) and kvmm top connect to (mode 0600)\n"
		"  --capacity SIZE      memory for guest RAM, all VMs together\n"
		"                       (default: MemTotal - minFree - hostd's own)\n"
		"  --minfree SIZE       ESXi's minFree (default: from MemTotal, as ESXi)\n"
		"  --thresholds H,C,S,HARD,L[,HYST]  state lines in %% of minFree (default 400,100,64,32,16)\n"
		"  --tax PCT            idle memory tax, 0-99 (default %d)\n"
		"  --period MS          report and target period (default %d)\n"
		"  --lag-periods N      periods over target + 5%% before a VM shows as lagging (default 10)\n"
		"  --meminfo FILE       read MemTotal/MemAvailable from FILE (tests)\n",
		POLICY_TAX_DEFAULT, HOSTD_PERIOD_MS);
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max || *s == '-')
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static int parse_thresholds(const char *s, struct policy_thresholds *t)
{
	unsigned v[6];
	int n = 0, k;
	char c;

	if (sscanf(s, "%u,%u,%u,%u,%u%n", &v[0], &v[1], &v[2], &v[3], &v[4], &n) != 5)
		return -EINVAL;
	t->high_pct = v[0];
	t->clear_pct = v[1];
	t->soft_pct = v[2];
	t->hard_pct = v[3];
	t->low_pct = v[4];
	if (s[n] == ',') {
		if (sscanf(s + n + 1, "%u%n%c", &v[5], &k, &c) != 1)
			return -EINVAL;
		t->hyst_pct = v[5];
	} else if (s[n]) {
		return -EINVAL;
	}
	return policy_thresholds_check(t);
}

static int parse_opts(int argc, char **argv, struct hostd_opts *o)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "minfree", required_argument, NULL, 'm' },
		{ "thresholds", required_argument, NULL, 'T' },
		{ "tax", required_argument, NULL, 't' },
		{ "period", required_argument, NULL, 'p' },
		{ "lag-periods", required_argument, NULL, 'l' },
		{ "meminfo", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		const char *bad = NULL;

		switch (ch) {
		case 's':
			o->socket = optarg;
			break;
		case 'c':
			if (size_parse(optarg, &o->capacity) < 0 || !o->capacity)
				bad = "--capacity: a size such as 2G";
			break;
		case 'm':
			if (size_parse(optarg, &o->minfree) < 0 || !o->minfree)
				bad = "--minfree: a size such as 512M";
			break;
		case 'T':
			if (parse_thresholds(optarg, &o->thresholds) < 0)
				bad = "--thresholds: five percentages, falling (H,C,S,HARD,L), and an optional "
				      "hysteresis";
			break;
		case 't':
			if (parse_uint(optarg, 99, &o->tax_pct) < 0)
				bad = "--tax: a percentage from 0 to 99";
			break;
		case 'p':
			if (parse_uint(optarg, 3600000, &o->period_ms) < 0 || o->period_ms < 10)
				bad = "--period: milliseconds, 10 to 3600000";
			break;
		case 'l':
			if (parse_uint(optarg, 1000000, &o->lag_periods) < 0)
				bad = "--lag-periods: a count";
			break;
		case 'i':
			o->meminfo = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -EINVAL;
		}
		if (bad) {
			fprintf(stderr, "kvmm hostd: '%s' is not valid for %s\n", optarg, bad);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kvmm hostd: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!o->socket) {
		fprintf(stderr, "kvmm hostd: --socket PATH is required\n");
		return -EINVAL;
	}
	return 0;
}

struct sig_ctx {
	struct loop *loop;
	int fd;
};

static void on_signal(void *opaque, uint32_t events)
{
	struct sig_ctx *s = opaque;
	struct signalfd_siginfo si;

	/* Read it: a signal left pending would kill hostd when the mask is restored. */
	if (read(s->fd, &si, sizeof(si)) != sizeof(si))
		return;
	log_info("hostd: stopping on %s", strsignal((int)si.ssi_signo));
	loop_stop(s->loop);
}

int hostd_main(int argc, char **argv)
{
	struct hostd_opts o;
	struct loop *loop = NULL;
	struct hostd *h = NULL;
	struct sig_ctx sig;
	sigset_t set, old;
	int sfd = -1, r, status = 1;

	hostd_opts_default(&o);
	r = parse_opts(argc, argv, &o);
	if (r)
		return r > 0 ? 0 : 2;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, &old);
	sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0 || loop_create(&loop) < 0)
		goto out;
	sig = (struct sig_ctx){ loop, sfd };
	if (loop_add(loop, sfd, EPOLLIN, on_signal, &sig) < 0)
		goto out;
	r = hostd_create(&h, loop, &o);
	if (r < 0) {
		status = r == -EINVAL || r == -EADDRINUSE || r == -EEXIST ? 2 : 1;
		goto out;
	}
	status = loop_run(loop) < 0 ? 1 : 0;
out:
	hostd_destroy(h);
	if (loop && sfd >= 0)
		loop_del(loop, sfd);
	loop_destroy(loop);
	if (sfd >= 0)
		close(sfd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return status;
}
