/* The QMP server (kvmm/qmp.h): a unix socket on the event loop, client connections with their
 * framing and output queues, replies, and events. Requests are checked and run in dispatch.c. */
#include "server.h"

#include <kvmm/log.h>
#include <kvmm/unixsock.h>
#include <kvmm/loop.h>
#include <kvmm/qmp.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QMP_OUT_LIMIT (1u << 20)
#define QMP_IN_LIMIT (64u << 10)
#define QMP_MAX_CLIENTS 64
/* Reads per wake-up, so one chatty client cannot starve the others on the loop. */
#define QMP_READ_BUDGET 16

static void conn_io(void *opaque, uint32_t events);

static void conn_close(struct qmp_conn *c, const char *why)
{
	if (c->dead)
		return;
	log_debug("qmp: client on fd %d closed: %s", c->fd, why);
	c->dead = true;
	loop_del(c->srv->loop, c->fd);
	close(c->fd);
	c->fd = -1;
}

/* Frees the clients closed since the last call; run last in every loop handler, so no caller
 * further up still holds one. */
static void srv_reap(struct qmp_server *s)
{
	struct qmp_conn **p = &s->conns;

	while (*p) {
		struct qmp_conn *c = *p;

		if (!c->dead) {
			p = &c->next;
			continue;
		}
		*p = c->next;
		qmp_framer_destroy(&c->in);
		free(c->out);
		free(c);
		s->nconns--;
	}
}

/* The loop has no "modify": re-adding the fd is how the event mask changes. */
static void conn_watch_out(struct qmp_conn *c, bool out)
{
	int err;

	if (c->dead || c->want_out == out)
		return;
	loop_del(c->srv->loop, c->fd);
	err = loop_add(c->srv->loop, c->fd, EPOLLIN | (out ? EPOLLOUT : 0), conn_io, c);
	if (err < 0) {
		log_error("qmp: cannot watch client fd %d: %s", c->fd, strerror(-err));
		c->want_out = false;
		conn_close(c, "loop_add failed");
		return;
	}
	c->want_out = out;
}

static void conn_flush(struct qmp_conn *c)
{
	while (!c->dead && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			conn_close(c, strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	conn_watch_out(c, c->out_len > 0);
}

/* Queues one whole message. A client that lets more than out_limit bytes pile up is dropped: it
 * must not make the VMM buffer without bound, nor hold up anyone else. */
static void conn_send(struct qmp_conn *c, const char *text, size_t len)
{
	size_t pending = c->out_len - c->out_off;

	if (c->dead)
		return;
	if (pending + len > c->srv->cfg.out_limit) {
		log_warn("qmp: dropping client on fd %d: %zu bytes of output unread (limit %zu)", c->fd,
			 pending + len, c->srv->cfg.out_limit);
		conn_close(c, "output limit");
		return;
	}
	if (c->out_off && c->out_len + len > c->out_cap) {
		memmove(c->out, c->out + c->out_off, pending);
		c->out_off = 0;
		c->out_len = pending;
	}
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *nb;

		while (cap < c->out_len + len)
			cap *= 2;
		nb = realloc(c->out, cap);
		if (!nb) {
			conn_close(c, "out of memory");
			return;
		}
		c->out = nb;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, text, len);
	c->out_len += len;
	conn_flush(c);
}

static void conn_send_json(struct qmp_conn *c, json_t *msg)
{
	size_t len;
	char *line = qmp_dump_line(msg, &len);

	if (!line) {
		conn_close(c, "out of memory");
		return;
	}
	conn_send(c, line, len);
	free(line);
}

/* {"return": ret, "id": id} or {"error": {...}, "id": id}; steals ret, borrows id. */
void qmp_conn_reply(struct qmp_conn *c, json_t *id, json_t *ret, const struct qmp_error *err)
{
	json_t *msg = json_object();

	if (err && err->set)
		json_object_set_new(msg, "error",
				    json_pack("{s:s, s:s}", "class", qmp_error_class_name(err->cls),
					      "desc", err->desc));
	else
		json_object_set_new(msg, "return", ret ? ret : json_object());
	if (id)
		json_object_set(msg, "id", id);
	conn_send_json(c, msg);
	json_decref(msg);
	if (err && err->set)
		json_decref(ret);
}

void qmp_conn_reply_error(struct qmp_conn *c, json_t *id, enum qmp_error_class cls,
			  const char *desc)
{
	struct qmp_error err = { 0 };

	qmp_error_set(&err, cls, "%s", desc);
	qmp_conn_reply(c, id, NULL, &err);
}


static bool conn_frame(void *opaque, const char *msg, size_t len, const char *error)
{
	struct qmp_conn *c = opaque;
	char perr[200];
	json_t *req;

	if (!msg) {
		qmp_conn_reply_error(c, NULL, QMP_ERR_GENERIC, error);
		return !c->dead;
	}
	req = qmp_parse(msg, len, perr, sizeof(perr));
	if (!req) {
		qmp_conn_reply_error(c, NULL, QMP_ERR_GENERIC, perr);
		return !c->dead;
	}
	qmp_dispatch(c, req);
	json_decref(req);
	return !c->dead;
}

/* Events are hints: read and write until EAGAIN whatever they say, and close only on EOF or an
 * error, so a spurious wake-up costs a syscall and nothing else. */
static void conn_io(void *opaque, uint32_t events)
{
	struct qmp_conn *c = opaque;
	struct qmp_server *s = c->srv;

	if (c->out_off < c->out_len)
		conn_flush(c);
	for (int i = 0; i < QMP_READ_BUDGET && !c->dead; i++) {
		char buf[4096];
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n > 0) {
			if (qmp_framer_feed(&c->in, buf, (size_t)n, conn_frame, c))
				break;
			if ((size_t)n < sizeof(buf))
				break;
		} else if (n == 0) {
			conn_close(c, "hung up");
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else if (errno != EINTR) {
			conn_close(c, strerror(errno));
		}
	}
	srv_reap(s);
}

static int conn_new(struct qmp_server *s, int fd)
{
	struct qmp_conn *c;
	json_t *greeting;
	int flags = fcntl(fd, F_GETFL);
	int err;

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		err = -errno;
		goto err_close;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		err = -ENOMEM;
		goto err_close;
	}
	c->srv = s;
	c->fd = fd;
	qmp_framer_init(&c->in, s->cfg.in_limit);
	err = loop_add(s->loop, fd, EPOLLIN, conn_io, c);
	if (err < 0)
		goto err_free;
	c->next = s->conns;
	s->conns = c;
	s->nconns++;
	greeting = json_pack("{s:{s:o, s:[]}}", "QMP", "version", qmp_version_json(), "capabilities");
	if (!greeting) {
		conn_close(c, "out of memory");
		return -ENOMEM;
	}
	conn_send_json(c, greeting);
	json_decref(greeting);
	return 0;

err_free:
	free(c);
err_close:
	close(fd);
	return err;
}

int qmp_server_add_client(struct qmp_server *s, int fd)
{
	int err = conn_new(s, fd);

	srv_reap(s);
	return err;
}

static void srv_accept(void *opaque, uint32_t events)
{
	struct qmp_server *s = opaque;

	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("qmp: accept on %s: %s", s->path, strerror(errno));
			break;
		}
		if (s->nconns >= s->cfg.max_clients) {
			log_warn("qmp: refusing a client on %s: %u clients already", s->path, s->nconns);
			close(fd);
			continue;
		}
		conn_new(s, fd);
	}
	srv_reap(s);
}

/* Runs on the loop: sends what other threads queued with qmp_server_event(). */
static void srv_events(void *opaque, uint32_t events)
{
	struct qmp_server *s = opaque;
	struct qmp_event *ev;
	uint64_t count;

	if (read(s->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_warn("qmp: event eventfd: %s", strerror(errno));
	pthread_mutex_lock(&s->lock);
	ev = s->ev_head;
	s->ev_head = NULL;
	s->ev_tail = &s->ev_head;
	pthread_mutex_unlock(&s->lock);
	while (ev) {
		struct qmp_event *next = ev->next;

		for (struct qmp_conn *c = s->conns; c; c = c->next)
			if (c->negotiated)
				conn_send(c, ev->text, ev->len);
		free(ev);
		ev = next;
	}
	srv_reap(s);
}

int qmp_server_event(struct qmp_server *s, const char *name, json_t *data)
{
	struct timespec now;
	struct qmp_event *ev;
	uint64_t one = 1;
	json_t *msg;
	char *line;
	size_t len;

	if (!name || (data && !json_is_object(data)))
		return -EINVAL;
	/* qmp-spec: both members are -1 when the host time cannot be read. */
	if (clock_gettime(CLOCK_REALTIME, &now) < 0)
		now = (struct timespec){ -1, -1000 };
	msg = json_pack("{s:s}", "event", name);
	if (!msg)
		return -ENOMEM;
	if (data)
		json_object_set(msg, "data", data);
	json_object_set_new(msg, "timestamp",
			    json_pack("{s:I, s:I}", "seconds", (json_int_t)now.tv_sec, "microseconds",
				      (json_int_t)(now.tv_nsec / 1000)));
	line = qmp_dump_line(msg, &len);
	json_decref(msg);
	if (!line)
		return -ENOMEM;
	ev = malloc(sizeof(*ev) + len);
	if (!ev) {
		free(line);
		return -ENOMEM;
	}
	ev->next = NULL;
	ev->len = len;
	memcpy(ev->text, line, len);
	free(line);
	pthread_mutex_lock(&s->lock);
	*s->ev_tail = ev;
	s->ev_tail = &ev->next;
	pthread_mutex_unlock(&s->lock);
	if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

/* What every server needs, whatever it listens on: settings, the built-in commands, the event
 * eventfd on the loop. path may be NULL (an inherited socket). */
static int srv_alloc(struct loop *l, const char *path, const struct qmp_server_config *cfg,
		     struct qmp_server **out)
{
	struct qmp_server *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->loop = l;
	s->lfd = s->efd = -1;
	s->ev_tail = &s->ev_head;
	s->cfg = cfg ? *cfg : (struct qmp_server_config){ 0 };
	if (!s->cfg.out_limit)
		s->cfg.out_limit = QMP_OUT_LIMIT;
	if (!s->cfg.in_limit)
		s->cfg.in_limit = QMP_IN_LIMIT;
	if (!s->cfg.max_clients)
		s->cfg.max_clients = QMP_MAX_CLIENTS;
	pthread_mutex_init(&s->lock, NULL);
	s->path = path ? strdup(path) : strdup("inherited socket");
	s->unlink_path = path != NULL;
	err = s->path ? qmp_server_register(s, qmp_builtin_commands, s) : -ENOMEM;
	if (err < 0)
		goto err_free;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		err = -errno;
		goto err_free;
	}
	err = loop_add(l, s->efd, EPOLLIN, srv_events, s);
	if (err < 0)
		goto err_close_efd;
	*out = s;
	return 0;

err_close_efd:
	close(s->efd);
err_free:
	pthread_mutex_destroy(&s->lock);
	free(s->tables);
	free(s->path);
	free(s);
	return err;
}

/* Undoes srv_alloc for a server that never served. */
static void srv_free(struct qmp_server *s)
{
	loop_del(s->loop, s->efd);
	close(s->efd);
	pthread_mutex_destroy(&s->lock);
	free(s->tables);
	free(s->path);
	free(s);
}

int qmp_server_create(struct loop *l, const char *path, const struct qmp_server_config *cfg,
		      struct qmp_server **out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct qmp_server *s;
	int err;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	err = unixsock_clear_stale(&addr);
	if (err < 0)
		return err;
	err = srv_alloc(l, path, cfg, &s);
	if (err < 0)
		return err;
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0) {
		err = -errno;
		goto err_free;
	}
	/* Linux creates the socket file with the socket inode's mode, so 0600 holds from the start;
	 * the chmod() below is for filesystems that ignore it. */
	if (fchmod(s->lfd, 0600) < 0 || bind(s->lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		err = -errno;
		goto err_close_socket;
	}
	if (chmod(path, 0600) < 0 || listen(s->lfd, 16) < 0) {
		err = -errno;
		goto err_unlink;
	}
	err = loop_add(l, s->lfd, EPOLLIN, srv_accept, s);
	if (err < 0)
		goto err_unlink;
	*out = s;
	return 0;

err_unlink:
	unlink(path);
err_close_socket:
	close(s->lfd);
err_free:
	srv_free(s);
	return err;
}

int qmp_server_create_fd(struct loop *l, int fd, const struct qmp_server_config *cfg,
			 struct qmp_server **out)
{
	struct qmp_server *s;
	int listening = 0;
	socklen_t len = sizeof(listening);
	int flags, err;

	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	err = srv_alloc(l, NULL, cfg, &s);
	if (err < 0) {
		close(fd);
		return err;
	}
	if (!listening) {
		/* One connected client (a socketpair end): served until it hangs up. */
		err = conn_new(s, fd);
		srv_reap(s);
		if (err < 0) {
			srv_free(s);
			return err;
		}
		*out = s;
		return 0;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		err = -errno;
		goto err_close;
	}
	s->lfd = fd;
	err = loop_add(l, fd, EPOLLIN, srv_accept, s);
	if (err < 0)
		goto err_close;
	*out = s;
	return 0;

err_close:
	close(fd);
	srv_free(s);
	return err;
}

void qmp_server_destroy(struct qmp_server *s)
{
	struct qmp_event *ev;

	if (!s)
		return;
	/* Events raised just before the end (SHUTDOWN) go out with the last replies. */
	srv_events(s, 0);
	for (struct qmp_conn *c = s->conns; c; c = c->next) {
		/* Last chance for a reply such as quit's to leave; never waits. */
		if (c->out_off < c->out_len)
			conn_flush(c);
		conn_close(c, "server shut down");
	}
	srv_reap(s);
	loop_del(s->loop, s->efd);
	close(s->efd);
	if (s->lfd >= 0) {
		loop_del(s->loop, s->lfd);
		close(s->lfd);
	}
	if (s->unlink_path)
		unlink(s->path);
	while ((ev = s->ev_head)) {
		s->ev_head = ev->next;
		free(ev);
	}
	pthread_mutex_destroy(&s->lock);
	free(s->tables);
	free(s->path);
	free(s);
}
