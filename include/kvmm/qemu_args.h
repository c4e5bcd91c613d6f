/* The QEMU-compatible front (src/libvirt/): kvmm invoked as `kvmm-qemu-system-x86_64` or
 * `qemu-system-x86_64` reads QEMU's command line, the subset libvirt 9.0's QEMU driver generates
 * (docs/libvirt.md, "QEMU-compatible command line"), into a struct vm_config and runs it. */
#ifndef KVMM_QEMU_ARGS_H
#define KVMM_QEMU_ARGS_H

#include <kvmm/config.h>

#include <stdbool.h>
#include <stdint.h>

#define QEMU_ARGS_MAX_FDS 32
#define QEMU_ARGS_MAX_CHARDEVS 8
#define QEMU_ARGS_MAX_BACKENDS 4

/* The parser's view, kept apart from cfg so options may come in any order (QEMU creates chardevs
 * and memory backends before the machine and devices that name them). */
struct qemu_fdset_entry {
	unsigned set;
	int fd;
};

enum qemu_chardev_kind { QEMU_CHR_SOCKET, QEMU_CHR_FILE, QEMU_CHR_STDIO };

struct qemu_chardev {
	char *id;
	enum qemu_chardev_kind kind;
	int fd;        /* socket fd=N, -1: by path */
	char *path;    /* socket path= or file path= (possibly /dev/fdset/N) */
	bool append;
};

struct qemu_backend {
	char *id;
	enum mem_backend backend;
	uint64_t size;
	bool merge;    /* merge=off turns sharing off, as -machine mem-merge=off */
};

struct qemu_args {
	struct vm_config cfg;   /* the result; config_free() releases it with the rest */
	bool probe;             /* -machine none: QMP only, no VM (libvirt's capability probe) */
	bool daemonize;
	bool version;           /* -version / --version: print and exit 0 */
	bool help;              /* -help / -h / --help */
	char err[512];          /* the first error, without the program name */

	/* Pending until every option is read. */
	bool tcg_only;          /* accel=tcg / -accel tcg: refused unless probing */
	bool m_given;
	char *machine_backend;  /* -machine memory-backend=ID */
	char *mon_chardev;      /* -mon chardev=ID */
	char *serial_chardev;   /* -device isa-serial,chardev=ID */
	struct qemu_fdset_entry fds[QEMU_ARGS_MAX_FDS];
	unsigned nfds;
	struct qemu_chardev chardevs[QEMU_ARGS_MAX_CHARDEVS];
	unsigned nchardevs;
	struct qemu_backend backends[QEMU_ARGS_MAX_BACKENDS];
	unsigned nbackends;
};

/*
 * Parses argv (argv[0] is the program) into qa->cfg: memory, vCPUs, kernel, balloon, the serial
 * (a file, or an inherited fd from -add-fd), the QMP monitor (a path, or an inherited socket fd),
 * -S, -no-shutdown, -no-reboot, -pidfile, and qa->probe / qa->daemonize. Fds named on the command
 * line must be open. 0, or -EINVAL with qa->err set (the caller prints "PROG: ERR"); -ENOMEM.
 * Checks that need files (the kernel exists) are config_validate()'s.
 */
int qemu_args_parse(struct qemu_args *qa, int argc, char **argv);
void qemu_args_free(struct qemu_args *qa);

/* Is this program name (any path; its basename counts) the QEMU front's? */
bool qemu_front_name(const char *argv0);
/* main() for the front: parse, -daemonize, then run the VM or the probe monitor. The exit status,
 * as QEMU's: 0 after a normal end, 1 for a bad command line or a failure to start. */
int qemu_front_main(int argc, char **argv);

#endif
