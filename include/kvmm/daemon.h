/* Process behaviour QEMU has and libvirt relies on (src/core/daemon.c): -daemonize and -pidfile. */
#ifndef KVMM_DAEMON_H
#define KVMM_DAEMON_H

/*
 * -daemonize, as QEMU does it: forks; the parent waits and exits 0 once the child calls
 * daemon_ready(), or 1 if the child ends first (its error went to the shared stderr). The child
 * starts a new session and gets 0. Call before any thread exists. -errno if the fork fails (the
 * caller is still the only process then).
 */
int daemon_fork(void);
/* In a daemon not yet ready: stdin, stdout and stderr to /dev/null, then the parent told to exit
 * 0. Otherwise (no -daemonize, or already done) nothing. */
void daemon_ready(void);

/* Writes this process's pid to path and holds a lock on it (a second kvmm with the same pidfile
 * fails with -EAGAIN, as QEMU's does). *fd keeps the lock. 0 or -errno. */
int pidfile_create(const char *path, int *fd);
/* Removes the pidfile if it is still ours and closes fd. fd < 0: nothing. */
void pidfile_remove(const char *path, int fd);

#endif
