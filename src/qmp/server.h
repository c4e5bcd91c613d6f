/* Internals shared by the QMP server's files (src/qmp/): the server and client-connection state. */
#ifndef KVMM_QMP_SERVER_H
#define KVMM_QMP_SERVER_H

#include "json.h"

#include <kvmm/qmp.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct loop;

struct qmp_conn {
	struct qmp_server *srv;
	int fd;
	bool negotiated;
	bool dead;     /* closed; freed by srv_reap() once no handler uses it */
	bool want_out; /* EPOLLOUT is being watched */
	struct qmp_framer in;
	char *out;
	size_t out_off, out_len, out_cap;
	struct qmp_conn *next;
};

struct qmp_table {
	const struct qmp_command *cmds;
	void *opaque;
};

struct qmp_event {
	struct qmp_event *next;
	size_t len;
	char text[];
};

struct qmp_server {
	struct loop *loop;
	int lfd, efd;
	char *path;        /* the socket's path, or "inherited socket" */
	bool unlink_path;  /* path is ours to remove */
	struct qmp_server_config cfg;
	struct qmp_table *tables;
	size_t ntables;
	struct qmp_conn *conns;
	unsigned nconns;
	struct qmp_conn *cur; /* whose command is running, for qmp_capabilities */
	pthread_mutex_t lock; /* guards the event queue, the only state other threads touch */
	struct qmp_event *ev_head, **ev_tail;
};

/* server.c: queue a reply ({"return": ret} or {"error": err}, with id when given); steals ret. */
void qmp_conn_reply(struct qmp_conn *c, json_t *id, json_t *ret, const struct qmp_error *err);
void qmp_conn_reply_error(struct qmp_conn *c, json_t *id, enum qmp_error_class cls,
			  const char *desc);

/* dispatch.c */
void qmp_dispatch(struct qmp_conn *c, json_t *req);
json_t *qmp_version_json(void);
extern const struct qmp_command qmp_builtin_commands[];

#endif
