/* COM1: the 16550A model (uart.c) on port 0x3f8, ISA IRQ 4, with one backend from --serial.
 *
 * Threads: guest accesses arrive on vCPU threads, input on the loop thread; s->lock covers the
 * UART, the input ring and the output fd. Output is written on the vCPU thread as each byte
 * leaves THR. Output fds are non-blocking; when the reader stalls, the vCPU waits at most
 * SERIAL_STALL_MS once, then output is dropped (and counted) without waiting until a write
 * succeeds again, so a stuck terminal or socket peer slows the guest down by one bounded wait,
 * never stops it.
 *
 * Input: bytes read on the loop thread go to a ring of SERIAL_INBUF bytes, from which the UART's
 * receiver is refilled whenever it has room (after every guest access). When the ring is full the
 * input fd leaves the loop (backpressure: the peer's writes block, nothing is lost); the vCPU that
 * drains it below half wakes the loop through an eventfd to watch the fd again. */
#include "uart.h"

#include <kvmm/bus.h>
#include <kvmm/config.h>
#include <kvmm/devices.h>
#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/unixsock.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define SERIAL_PORT 0x3f8
#define SERIAL_IRQ 4
#define SERIAL_INBUF 4096
#define SERIAL_STALL_MS 50

struct serial {
	struct vm *vm;
	enum serial_kind kind;
	pthread_mutex_t lock;
	struct uart uart;
	bool registered;

	uint8_t in[SERIAL_INBUF];
	unsigned in_head, in_count;
	int in_fd;                /* stdin or the unix client; -1: no input */
	bool in_paused;           /* ring full: in_fd is out of the loop */
	bool wake_posted;
	int wake_fd;              /* eventfd: a vCPU drained the ring while paused */

	int out_fd;               /* stdout copy or the file; -1: none (unix uses client_fd) */
	bool out_stalled;
	bool out_failed;          /* a hard write error was reported once */
	uint64_t dropped;

	int listen_fd, client_fd;
	char *sock_path;          /* unlinked at exit when we created it */
};

/* The terminal state to restore. Process-wide because the terminal is: also restored at exit(),
 * in case a path leaves kvmm without running serial_exit. */
static struct termios serial_tty_saved;
static bool serial_tty_raw;

static void serial_tty_restore(void)
{
	if (!serial_tty_raw)
		return;
	tcsetattr(STDIN_FILENO, TCSANOW, &serial_tty_saved);
	serial_tty_raw = false;
}

/* Raw-ish: no echo, no line editing, CR and ^S/^Q reach the guest. ISIG stays so ^C is SIGINT for
 * kvmm (a clean stop through the signalfd); ^\ and ^Z go to the guest instead of killing or
 * stopping kvmm with the terminal left raw. */
static void serial_tty_setup(void)
{
	static bool atexit_done;
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &serial_tty_saved) < 0)
		return;
	/* Only the foreground job may change the terminal (else SIGTTOU stops us). */
	if (tcgetpgrp(STDIN_FILENO) != getpgrp())
		return;
	t = serial_tty_saved;
	t.c_iflag &= ~(tcflag_t)(ICRNL | INLCR | IGNCR | IXON);
	t.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ECHONL | IEXTEN);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	t.c_cc[VQUIT] = _POSIX_VDISABLE;
	t.c_cc[VSUSP] = _POSIX_VDISABLE;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0) {
		log_warn("serial: cannot set the terminal to raw mode: %s", strerror(errno));
		return;
	}
	serial_tty_raw = true;
	if (!atexit_done)
		atexit_done = atexit(serial_tty_restore) == 0;
}

/* Under s->lock (the UART's tx callback). */
static void serial_tx(void *opaque, uint8_t byte)
{
	struct serial *s = opaque;
	int fd = s->kind == SERIAL_UNIX ? s->client_fd : s->out_fd;
	bool waited = s->out_stalled;
	ssize_t n;

	if (fd < 0)
		return;
	for (;;) {
		if (s->kind == SERIAL_UNIX)
			n = send(fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		else
			n = write(fd, &byte, 1);
		if (n == 1) {
			if (s->out_stalled)
				log_info("serial: output resumed (%llu bytes dropped)",
					 (unsigned long long)s->dropped);
			s->out_stalled = false;
			return;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !waited) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			waited = true;
			if (poll(&p, 1, SERIAL_STALL_MS) > 0)
				continue;
			s->out_stalled = true;
			log_warn("serial: output blocked for %d ms, dropping until it drains",
				 SERIAL_STALL_MS);
		} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && !s->out_failed &&
			   s->kind != SERIAL_UNIX) {
			/* A unix client that went away is noticed and closed by the loop. */
			s->out_failed = true;
			log_warn("serial: output: %s; dropping output", strerror(errno));
		}
		s->dropped++;
		return;
	}
}

static void serial_irq(void *opaque, bool level)
{
	struct serial *s = opaque;

	if (s->vm)
		vm_irq_line(s->vm, SERIAL_IRQ, level);
}

/* Moves input into the UART receiver while it has room; under s->lock. */
static void serial_refill(struct serial *s)
{
	while (s->in_count && uart_rx_room(&s->uart)) {
		uart_rx_push(&s->uart, s->in[s->in_head]);
		s->in_head = (s->in_head + 1) % SERIAL_INBUF;
		s->in_count--;
	}
	if (s->in_paused && !s->wake_posted && s->in_count <= SERIAL_INBUF / 2) {
		uint64_t one = 1;

		s->wake_posted = write(s->wake_fd, &one, sizeof(one)) == sizeof(one);
	}
}

static void serial_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct serial *s = opaque;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < len && offset + i < 8; i++) {
		if (is_write)
			uart_write(&s->uart, (unsigned)(offset + i), data[i]);
		else
			data[i] = uart_read(&s->uart, (unsigned)(offset + i));
	}
	serial_refill(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_accept(void *opaque, uint32_t events);

static int serial_listen_again(struct serial *s)
{
	int r = loop_add(s->vm->loop, s->listen_fd, EPOLLIN, serial_accept, s);

	if (r < 0)
		log_error("serial: cannot watch %s for clients: %s", s->sock_path, strerror(-r));
	return r;
}

/* Loop thread. */
static void serial_input_closed(struct serial *s)
{
	int fd;

	loop_del(s->vm->loop, s->in_fd);
	pthread_mutex_lock(&s->lock);
	fd = s->in_fd;
	s->in_fd = -1;
	s->in_paused = false;
	if (s->kind == SERIAL_UNIX)
		s->client_fd = -1;
	pthread_mutex_unlock(&s->lock);
	if (s->kind != SERIAL_UNIX)
		return;
	close(fd);
	log_info("serial: client disconnected from %s", s->sock_path);
	serial_listen_again(s);
}

static void serial_input(void *opaque, uint32_t events)
{
	struct serial *s = opaque;
	uint8_t buf[512];
	size_t room;
	ssize_t n;

	(void)events;
	pthread_mutex_lock(&s->lock);
	room = SERIAL_INBUF - s->in_count;
	pthread_mutex_unlock(&s->lock);
	if (room > sizeof(buf))
		room = sizeof(buf);
	/* One read per event: the fd may be blocking (stdin is shared with the shell, so kvmm does not
	 * change its flags), and epoll said it is readable. */
	n = read(s->in_fd, buf, room);
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		if (n < 0)
			log_warn("serial: input: %s", strerror(errno));
		serial_input_closed(s);
		return;
	}
	pthread_mutex_lock(&s->lock);
	for (ssize_t i = 0; i < n; i++)
		s->in[(s->in_head + s->in_count++) % SERIAL_INBUF] = buf[i];
	serial_refill(s);
	if (s->in_count == SERIAL_INBUF) {
		loop_del(s->vm->loop, s->in_fd);
		s->in_paused = true;
		s->wake_posted = false;
	}
	pthread_mutex_unlock(&s->lock);
}

static void serial_wake(void *opaque, uint32_t events)
{
	struct serial *s = opaque;
	uint64_t v;

	(void)events;
	if (read(s->wake_fd, &v, sizeof(v)) < 0)
		return;
	pthread_mutex_lock(&s->lock);
	s->wake_posted = false;
	if (s->in_paused && s->in_fd >= 0 && s->in_count < SERIAL_INBUF &&
	    loop_add(s->vm->loop, s->in_fd, EPOLLIN, serial_input, s) == 0)
		s->in_paused = false;
	pthread_mutex_unlock(&s->lock);
}

static void serial_accept(void *opaque, uint32_t events)
{
	struct serial *s = opaque;
	int c;

	(void)events;
	c = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return;
	/* One client at a time: stop accepting until it leaves (later ones wait in the backlog). */
	loop_del(s->vm->loop, s->listen_fd);
	pthread_mutex_lock(&s->lock);
	s->client_fd = c;
	s->in_fd = c;
	s->in_paused = false;
	s->out_stalled = false;
	pthread_mutex_unlock(&s->lock);
	if (loop_add(s->vm->loop, c, EPOLLIN, serial_input, s) < 0) {
		serial_input_closed(s);
		return;
	}
	log_info("serial: client connected to %s", s->sock_path);
}

static int serial_open_stdio(struct serial *s)
{
	struct stat st;
	int r = 0;

	if (fstat(STDOUT_FILENO, &st) < 0) {
		r = -errno;
		goto out;
	}
	/* A fresh open file description for a terminal or pipe, so O_NONBLOCK stays kvmm's own: stdout
	 * and stderr usually share one with the shell, and log lines must not fail with EAGAIN. */
	if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))
		s->out_fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (s->out_fd < 0)
		s->out_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	if (s->out_fd < 0) {
		r = -errno;
		goto out;
	}

	if (isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) != getpgrp()) {
		/* Reading would stop kvmm with SIGTTIN, changing the mode with SIGTTOU. */
		log_info("serial: not the terminal's foreground job; no serial input");
		return 0;
	}
	serial_tty_setup();
	r = loop_add(s->vm->loop, STDIN_FILENO, EPOLLIN, serial_input, s);
	if (r == 0) {
		s->in_fd = STDIN_FILENO;
	} else if (r == -EPERM) {
		/* A regular file or /dev/null: epoll cannot watch it; the guest gets no input. */
		log_debug("serial: stdin cannot be polled; no serial input");
		r = 0;
	}
out:
	if (r < 0)
		log_error("--serial stdio: %s", strerror(-r));
	return r;
}

/* An fd kvmm inherited (the QEMU front's -add-fd, /dev/fdset/N): written like a file. */
static int serial_open_fd(struct serial *s, int fd, bool append)
{
	int fl;

	s->out_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	fl = s->out_fd < 0 ? -1 : fcntl(s->out_fd, F_GETFL);
	if (fl < 0 || fcntl(s->out_fd, F_SETFL, fl | O_NONBLOCK | (append ? O_APPEND : 0)) < 0) {
		int err = errno;

		log_error("serial: inherited fd %d: %s", fd, strerror(err));
		return -err;
	}
	return 0;
}

/* Appends, or truncates as QEMU's -chardev file without append=on (qmp_chardev_open_file). */
static int serial_open_file(struct serial *s, const char *path, bool append)
{
	/* O_NONBLOCK: a FIFO without a reader fails here (ENXIO) instead of hanging start-up. */
	s->out_fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | O_NONBLOCK |
				       O_NOCTTY | O_CLOEXEC,
			 0644);
	if (s->out_fd < 0) {
		int err = errno;

		log_error("--serial file:%s: %s", path, strerror(err));
		return -err;
	}
	return 0;
}

static int serial_open_unix(struct serial *s, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old_mask;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("--serial unix:%s: path longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	r = unixsock_clear_stale(&sa);
	if (r < 0) {
		log_error("--serial unix:%s: %s", path,
			  r == -EADDRINUSE ? "another process is listening there"
			  : r == -EEXIST	 ? "exists and is not a socket"
					 : strerror(-r));
		return r;
	}
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0) {
		r = -errno;
		goto out;
	}
	/* Mode 0600 from the start: no window in which another user could connect. The main thread
	 * runs this before any other kvmm thread creates files. */
	old_mask = umask(0177);
	r = bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_mask);
	if (r < 0) {
		r = -errno;
		goto out;
	}
	s->sock_path = strdup(path);
	if (!s->sock_path) {
		unlink(path);
		r = -ENOMEM;
		goto out;
	}
	r = listen(s->listen_fd, 1) < 0 ? -errno : serial_listen_again(s);
	if (r == 0)
		log_info("serial: waiting for a client on %s", path);
out:
	if (r < 0)
		log_error("--serial unix:%s: %s", path, strerror(-r));
	return r;
}

int serial_init(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;
	struct serial *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	s->vm = vm;
	s->kind = cfg->serial;
	s->in_fd = s->out_fd = s->listen_fd = s->client_fd = s->wake_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	uart_init(&s->uart, serial_tx, serial_irq, s);
	vm->serial = s;

	s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r = s->wake_fd < 0 ? -errno : loop_add(vm->loop, s->wake_fd, EPOLLIN, serial_wake, s);
	if (r < 0) {
		log_error("serial: cannot set up input wake-ups: %s", strerror(-r));
		goto fail;
	}

	switch (s->kind) {
	case SERIAL_STDIO:
		r = serial_open_stdio(s);
		break;
	case SERIAL_FILE:
		r = cfg->serial_fd > 2 ? serial_open_fd(s, cfg->serial_fd, cfg->serial_append)
					: serial_open_file(s, cfg->serial_path, cfg->serial_append);
		break;
	case SERIAL_UNIX:
		r = serial_open_unix(s, cfg->serial_path);
		break;
	default:
		r = -EINVAL;
		log_error("serial: unknown backend %d", (int)s->kind);
		break;
	}
	if (r < 0)
		goto fail;

	r = bus_register(&vm->pio, SERIAL_PORT, 8, serial_io, s, "serial");
	if (r < 0)
		goto fail;
	s->registered = true;
	return 0;
fail:
	serial_exit(vm);
	return r;
}

void serial_reset(struct vm *vm)
{
	struct serial *s = vm->serial;

	/* Host input still in the ring is kept: it was typed for the guest, and the new boot reads
	 * it once its driver enables the receiver. */
	pthread_mutex_lock(&s->lock);
	uart_init(&s->uart, serial_tx, serial_irq, s);
	vm_irq_line(vm, SERIAL_IRQ, false);
	pthread_mutex_unlock(&s->lock);
}

void serial_exit(struct vm *vm)
{
	struct serial *s = vm->serial;

	if (!s)
		return;
	if (s->registered)
		bus_unregister(&vm->pio, SERIAL_PORT);
	if (s->in_fd >= 0)
		loop_del(vm->loop, s->in_fd);
	if (s->client_fd >= 0)
		close(s->client_fd);
	if (s->listen_fd >= 0) {
		loop_del(vm->loop, s->listen_fd);
		close(s->listen_fd);
	}
	if (s->sock_path) {
		unlink(s->sock_path);
		free(s->sock_path);
	}
	if (s->wake_fd >= 0) {
		loop_del(vm->loop, s->wake_fd);
		close(s->wake_fd);
	}
	if (s->out_fd >= 0)
		close(s->out_fd);
	if (s->dropped)
		log_info("serial: %llu output bytes dropped while the reader was stalled",
			 (unsigned long long)s->dropped);
	serial_tty_restore();
	pthread_mutex_destroy(&s->lock);
	free(s);
	vm->serial = NULL;
}
