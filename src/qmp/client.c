/* The QMP client (kvmm/qmp.h) for `kvmm qmp` and tests: blocking, one command at a time, each with
 * a deadline. Events that arrive meanwhile are skipped. */
#include "json.h"

#include <kvmm/qmp.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The server's greeting and replies are small; this only bounds a confused peer. */
#define QMP_CLIENT_IN_LIMIT (16u << 20)

struct qmp_client {
	int fd;
	struct qmp_framer in;
	json_t *greeting;
	json_t *queue; /* parsed messages not yet consumed, oldest first */
	bool garbled;  /* the server sent something that is not JSON */
	unsigned long next_id;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ms_left(long long deadline)
{
	long long left = deadline - now_ms();

	return left < 0 ? 0 : left > 1000000000 ? 1000000000 : (int)left;
}

static bool client_frame(void *opaque, const char *msg, size_t len, const char *error)
{
	struct qmp_client *c = opaque;
	char err[200];
	json_t *j = msg ? qmp_parse(msg, len, err, sizeof(err)) : NULL;

	if (!j || !json_is_object(j)) {
		c->garbled = true;
		json_decref(j);
		return false;
	}
	json_array_append_new(c->queue, j);
	return true;
}

/* The next message from the server, a new reference. */
static int client_next(struct qmp_client *c, long long deadline, json_t **msg)
{
	while (json_array_size(c->queue) == 0) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		char buf[4096];
		ssize_t n;
		int rc;

		if (c->garbled)
			return -EPROTO;
		rc = poll(&pfd, 1, ms_left(deadline));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -errno;
		}
		qmp_framer_feed(&c->in, buf, (size_t)n, client_frame, c);
	}
	*msg = json_incref(json_array_get(c->queue, 0));
	json_array_remove(c->queue, 0);
	return 0;
}

static int client_send(struct qmp_client *c, const char *buf, size_t len, long long deadline)
{
	while (len) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n >= 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		n = poll(&pfd, 1, ms_left(deadline));
		if (n == 0)
			return -ETIMEDOUT;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

int qmp_client_execute(struct qmp_client *c, const char *cmd, json_t *args, int timeout_ms,
		       json_t **reply)
{
	long long deadline = now_ms() + timeout_ms;
	char id[32];
	json_t *req, *msg;
	char *line;
	size_t len;
	int err;

	if (args && !json_is_object(args))
		return -EINVAL;
	snprintf(id, sizeof(id), "kvmm-%lu", ++c->next_id);
	req = json_pack("{s:s, s:s}", "execute", cmd, "id", id);
	if (!req)
		return -ENOMEM;
	if (args)
		json_object_set(req, "arguments", args);
	line = qmp_dump_line(req, &len);
	json_decref(req);
	if (!line)
		return -ENOMEM;
	err = client_send(c, line, len, deadline);
	free(line);
	while (err == 0) {
		json_t *rid;

		err = client_next(c, deadline, &msg);
		if (err < 0)
			break;
		rid = json_object_get(msg, "id");
		/* A reply without id answers a request the server could not read far enough. */
		if ((json_object_get(msg, "return") || json_object_get(msg, "error")) &&
		    (!rid || (json_is_string(rid) && !strcmp(json_string_value(rid), id)))) {
			*reply = msg;
			return 0;
		}
		json_decref(msg);
	}
	return err;
}

json_t *qmp_client_greeting(struct qmp_client *c)
{
	return c->greeting;
}

int qmp_client_connect(const char *path, int timeout_ms, struct qmp_client **out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	long long deadline = now_ms() + timeout_ms;
	struct qmp_client *c;
	json_t *reply = NULL;
	int err;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	qmp_framer_init(&c->in, QMP_CLIENT_IN_LIMIT);
	c->queue = json_array();
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || !c->queue) {
		err = c->queue ? -errno : -ENOMEM;
		goto err_close;
	}
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		err = -errno;
		goto err_close;
	}
	err = client_next(c, deadline, &c->greeting);
	if (err < 0)
		goto err_close;
	if (!json_is_object(json_object_get(c->greeting, "QMP"))) {
		err = -EPROTO;
		goto err_close;
	}
	err = qmp_client_execute(c, "qmp_capabilities", NULL, ms_left(deadline), &reply);
	if (err == 0 && !json_object_get(reply, "return"))
		err = -EPROTO;
	json_decref(reply);
	if (err < 0)
		goto err_close;
	*out = c;
	return 0;

err_close:
	qmp_client_close(c);
	return err;
}

void qmp_client_close(struct qmp_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	qmp_framer_destroy(&c->in);
	json_decref(c->greeting);
	json_decref(c->queue);
	free(c);
}
