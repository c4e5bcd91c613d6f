/* -daemonize and -pidfile (kvmm/daemon.h), the way QEMU behaves so libvirt can wait on them: the
 * daemon's parent exits only once the child is ready (its QMP socket listens, its pidfile is
 * written) or has failed. */
#include <kvmm/daemon.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The child's end of the pipe its parent waits on; -1 when there is no parent waiting. */
static int daemon_pipe = -1;

int daemon_fork(void)
{
	int p[2];
	pid_t pid;
	uint8_t status;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int err = -errno;

		close(p[0]);
		close(p[1]);
		return err;
	}
	if (pid == 0) {
		close(p[0]);
		setsid();
		daemon_pipe = p[1];
		return 0;
	}
	close(p[1]);
	do
		n = read(p[0], &status, 1);
	while (n < 0 && errno == EINTR);
	/* EOF: the child ended before it was ready, after printing why. Reap it if it is gone. */
	if (n != 1) {
		waitpid(pid, NULL, WNOHANG);
		_exit(1);
	}
	_exit(status);
}

void daemon_ready(void)
{
	uint8_t status = 0;
	int null;

	if (daemon_pipe < 0)
		return;
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	while (write(daemon_pipe, &status, 1) < 0 && errno == EINTR)
		;
	close(daemon_pipe);
	daemon_pipe = -1;
}

int pidfile_create(const char *path, int *fd)
{
	struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char buf[32];
	int len, f;

	*fd = -1;
	f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (f < 0)
		return -errno;
	if (fcntl(f, F_SETLK, &lk) < 0) {
		int err = errno == EACCES ? -EAGAIN : -errno;

		close(f);
		return err;
	}
	len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(f, 0) < 0 || write(f, buf, (size_t)len) != len) {
		int err = -errno;

		close(f);
		unlink(path);
		return err ? err : -EIO;
	}
	*fd = f;
	return 0;
}

void pidfile_remove(const char *path, int fd)
{
	struct stat a, b;

	if (fd < 0)
		return;
	/* Only the file this process wrote: another kvmm may have replaced it since. */
	if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlink(path);
	close(fd);
}
