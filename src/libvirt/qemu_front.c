/*
 * kvmm as `kvmm-qemu-system-x86_64`: QEMU's command line (qemu_args.c), QEMU's process behaviour
 * (-daemonize, -pidfile, exit status 1 with "PROG: reason" on stderr for a bad command line), then
 * either a VM (vm_run) or, for -machine none, the capability probe: no VM, no vCPUs, no guest
 * memory, only the event loop and the QMP monitor, until a signal or QMP quit.
 */
#include <kvmm/daemon.h>
#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/qemu_args.h>
#include <kvmm/qmp.h>
#include <kvmm/version.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

struct probe {
	struct loop *loop;
	int sig_fd;
};

static void probe_signal(void *opaque, uint32_t events)
{
	struct probe *p = opaque;
	struct signalfd_siginfo si;

	(void)events;
	if (read(p->sig_fd, &si, sizeof(si)) != sizeof(si))
		return;
	log_info("probe: terminating on signal %u from pid %u", si.ssi_signo, si.ssi_pid);
	loop_stop(p->loop);
}

static int probe_quit(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct probe *p = opaque;

	(void)args;
	(void)ret;
	(void)err;
	loop_stop(p->loop);
	return 0;
}

static const struct qmp_command probe_commands[] = {
	{ "quit", probe_quit, NULL },
	{ NULL, NULL, NULL },
};

static int probe_qmp(struct probe *p, const struct vm_config *cfg, struct qmp_server **s)
{
	int r;

	if (cfg->qmp_fd > 2)
		r = qmp_server_create_fd(p->loop, cfg->qmp_fd, NULL, s);
	else if (cfg->qmp)
		r = qmp_server_create(p->loop, cfg->qmp, NULL, s);
	else
		return 0; /* nothing to answer: runs until a signal, as QEMU would */
	if (r < 0) {
		log_error("QMP monitor %s: %s", cfg->qmp ? cfg->qmp : "on an inherited fd", strerror(-r));
		return r;
	}
	r = qmp_compat_register(*s, NULL);
	/* quit may come with the compatibility table; ours is only the fallback. */
	if (r == 0 && qmp_server_register(*s, probe_commands, p) == -EEXIST)
		r = 0;
	return r;
}

/* -machine none: what libvirt's capability probe talks to. */
static int probe_run(const struct vm_config *cfg)
{
	struct probe p = { .sig_fd = -1 };
	struct qmp_server *s = NULL;
	sigset_t set, old;
	int pid_fd = -1, status = 1, r;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	signal(SIGPIPE, SIG_IGN);
	if (loop_create(&p.loop) < 0)
		goto out;
	p.sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (p.sig_fd < 0 || loop_add(p.loop, p.sig_fd, EPOLLIN, probe_signal, &p) < 0)
		goto out;
	if (probe_qmp(&p, cfg, &s) < 0)
		goto out;
	if (cfg->pidfile) {
		r = pidfile_create(cfg->pidfile, &pid_fd);
		if (r < 0) {
			log_error("-pidfile %s: %s", cfg->pidfile,
				  r == -EAGAIN ? "another process holds it" : strerror(-r));
			goto out;
		}
	}
	daemon_ready();
	status = loop_run(p.loop) < 0 ? 1 : 0;
out:
	qmp_server_destroy(s);
	if (p.sig_fd >= 0)
		close(p.sig_fd);
	loop_destroy(p.loop);
	pidfile_remove(cfg->pidfile, pid_fd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return status;
}

static void front_usage(const char *prog)
{
	printf("usage: %s [options]\n\n"
	       "kvmm's QEMU-compatible front for libvirt's QEMU driver: the options libvirt 9.0\n"
	       "generates for a direct-kernel-boot domain (see kvmm's docs/libvirt.md).\n"
	       "For kvmm's own options: kvmm run --help\n", prog);
}

int qemu_front_main(int argc, char **argv)
{
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	struct qemu_args qa;
	int status, r;

	r = qemu_args_parse(&qa, argc, argv);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", prog, qa.err[0] ? qa.err : strerror(-r));
		qemu_args_free(&qa);
		return 1;
	}
	if (qa.version || qa.help) {
		if (qa.version)
			printf("kvmm %s, QEMU-compatible front (QMP query-version names the QEMU "
			       "interface it follows)\n", KVMM_VERSION);
		else
			front_usage(prog);
		qemu_args_free(&qa);
		return 0;
	}
	if (!qa.probe && config_validate(&qa.cfg) < 0) {
		qemu_args_free(&qa);
		return 1;
	}
	if (qa.daemonize) {
		r = daemon_fork();
		if (r < 0) {
			fprintf(stderr, "%s: -daemonize: %s\n", prog, strerror(-r));
			qemu_args_free(&qa);
			return 1;
		}
	}
	status = qa.probe ? probe_run(&qa.cfg) : vm_run(&qa.cfg);
	qemu_args_free(&qa);
	/* QEMU ends with 1 for every failure to start; kvmm run's 2 (bad usage) included. */
	return status == 2 ? 1 : status;
}
