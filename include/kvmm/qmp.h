/* QMP, the QEMU Machine Protocol (src/qmp/): QEMU's wire format exactly (QEMU's
 * docs/interop/qmp-spec.rst), so existing QMP clients work unchanged. This module knows nothing
 * about VMs: the VM registers its command table and raises events; the server does sockets,
 * framing, negotiation and dispatch.
 *
 * Threads: everything here runs on the event loop thread (struct loop) except qmp_server_event(),
 * which any thread may call (vCPU threads, the memory manager): events go on a mutex-protected
 * queue and an eventfd wakes the loop, which sends them. Command handlers run on the loop thread,
 * one at a time, so they may touch VM state the way ctl handlers do; they must not destroy the
 * server. An event raised by a handler is sent after that handler's reply.
 *
 * The client functions at the end are plain blocking code for `kvmm qmp` and tests. */
#ifndef KVMM_QMP_H
#define KVMM_QMP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct loop;
struct qmp_server;
struct qmp_client;

/* QEMU's QapiErrorClass; the wire names are in qmp_error_class_name(). */
enum qmp_error_class {
	QMP_ERR_GENERIC,           /* "GenericError": nearly everything */
	QMP_ERR_COMMAND_NOT_FOUND, /* "CommandNotFound" */
	QMP_ERR_DEVICE_NOT_ACTIVE, /* "DeviceNotActive", e.g. balloon commands without a balloon */
	QMP_ERR_DEVICE_NOT_FOUND,  /* "DeviceNotFound" */
	QMP_ERR_KVM_MISSING_CAP,   /* "KVMMissingCap" */
};

struct qmp_error {
	bool set;
	enum qmp_error_class cls;
	char desc[256];
};

const char *qmp_error_class_name(enum qmp_error_class cls);
/* Fills err once: the first error set wins, as with QEMU's Error **. */
void qmp_error_set(struct qmp_error *err, enum qmp_error_class cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Argument types, named in errors as QEMU does ("expected: integer"). QMP_NUMBER accepts
 * integers too. */
enum qmp_type { QMP_ANY, QMP_INT, QMP_NUMBER, QMP_BOOL, QMP_STR, QMP_OBJECT, QMP_ARRAY };

struct qmp_param {
	const char *name;
	enum qmp_type type;
	bool optional;
	const char *schema; /* its query-qmp-schema type (src/qmp/schema.c); NULL: the builtin */
};

/* Checks args (an object) against params (ended by { NULL }; NULL: the command takes no
 * arguments) in QEMU's order: each declared parameter for type or absence, then leftover members.
 * 0, or -EINVAL with err set to "Invalid parameter type for 'x', expected: integer", "Parameter 'x'
 * is missing" or "Parameter 'x' is unexpected". The dispatcher runs it before every handler. */
int qmp_args_check(json_t *args, const struct qmp_param *params, struct qmp_error *err);

/* A command handler. args is always an object (empty when the client sent none) that passed
 * qmp_args_check; the handler borrows it. On success return 0 and optionally set *ret to a new
 * reference (the server steals it; NULL means {}). On failure return -errno and set err; if err is
 * left unset the client gets GenericError with strerror. */
typedef int (*qmp_handler)(void *opaque, json_t *args, json_t **ret, struct qmp_error *err);

struct qmp_command {
	const char *name;
	qmp_handler fn;
	const struct qmp_param *params;
	/* For query-qmp-schema (QEMU's SchemaInfo): the return type's name in src/qmp/schema.c's
	 * table (NULL: "any") and the command's features, NULL-ended (NULL: none). */
	const char *ret;
	const char *const *features;
};

struct qmp_server_config {
	size_t out_limit;    /* bytes queued for one client before it is dropped (default 1 MiB) */
	size_t in_limit;     /* bytes of one incomplete message before it is refused (default 64 KiB) */
	unsigned max_clients; /* default 64; more connections are closed at once */
};

/* Listens on the unix socket path (mode 0600) and serves clients on loop. A stale socket at path
 * is replaced; -EADDRINUSE if a server answers there, -EEXIST if path is not a socket. cfg may be
 * NULL. Built in: qmp_capabilities, query-commands, query-version. These qmp_server_*
 * functions, but for qmp_server_event(), run on the loop thread or while the loop is idle. */
int qmp_server_create(struct loop *l, const char *path, const struct qmp_server_config *cfg,
		      struct qmp_server **out);
/* The same on an inherited socket fd (QEMU's -chardev socket,fd=N,server=on, as libvirt passes its
 * monitor): a listening socket is accepted on; a connected one is served as the one client. Takes
 * fd (closed on failure). -ENOTSOCK if fd is not a socket. */
int qmp_server_create_fd(struct loop *l, int fd, const struct qmp_server_config *cfg,
			 struct qmp_server **out);
/* Serves an already connected stream socket (e.g. one end of a socketpair); takes fd. */
int qmp_server_add_client(struct qmp_server *s, int fd);
/* Adds a command table (ended by { NULL }); table and opaque must outlive the server. -EEXIST if a
 * name is taken (nothing is added then). */
int qmp_server_register(struct qmp_server *s, const struct qmp_command *table, void *opaque);
/* Sends {"event": name, "data": data, "timestamp": ...} to every client past negotiation. data
 * is an object or NULL (no "data" member) and is only read, during the call. The timestamp is
 * taken here. Any thread; never blocks on clients. 0, -EINVAL or -ENOMEM. */
int qmp_server_event(struct qmp_server *s, const char *name, json_t *data);
/* Closes every client and the socket, and unlinks path. No qmp_server_event() may run meanwhile. */
void qmp_server_destroy(struct qmp_server *s);

/* Client: connects, reads the greeting and negotiates within timeout_ms. -ETIMEDOUT, -EPROTO (not a
 * QMP server, or negotiation refused), or the connect errno. */
int qmp_client_connect(const char *path, int timeout_ms, struct qmp_client **out);
/* The server's greeting, {"QMP": {...}}; owned by the client. */
json_t *qmp_client_greeting(struct qmp_client *c);
/* Runs one command (args: object or NULL, borrowed) and waits up to timeout_ms for its reply,
 * skipping events. *reply is the whole reply ({"return": ...} or {"error": ...}), a new reference.
 * 0 whenever a reply came, also an error reply; -ETIMEDOUT, -EPIPE (server went away), -EPROTO. */
int qmp_client_execute(struct qmp_client *c, const char *cmd, json_t *args, int timeout_ms,
		       json_t **reply);
void qmp_client_close(struct qmp_client *c);

/* kvmm's VM commands (src/qmp/commands.c): query-status, stop, cont, quit, system_reset,
 * system_powerdown, query-cpus-fast, query-memory-size-summary. The handlers run on the VM's loop thread. */
struct vm;
int qmp_vm_register(struct qmp_server *s, struct vm *vm);
/* balloon, query-balloon, x-kvmm-query-balloon (src/qmp/balloon.c); qmp_vm_register adds them.
 * The balloon's QOM properties are in the QOM tree (src/qmp/qom.c, qmp_compat_register). */
int qmp_balloon_register(struct qmp_server *s, struct vm *vm);
/* x-kvmm-query-memory, x-kvmm-set-memory (src/qmp/mem.c). */
int qmp_mem_register(struct qmp_server *s, struct vm *vm);

/* What libvirt's QEMU driver asks beyond kvmm's own commands (docs/libvirt.md, "QMP for
 * libvirt"): query-qmp-schema built from every table registered on s (call this last, or at
 * least before clients connect; it finds the tables at each query), the probe commands
 * (query-target, query-kvm, qom-list-types, device-list-properties, qom-list-properties,
 * query-machines, query-cpu-definitions, query-cpu-model-expansion, ...) and, with a VM, the
 * domain monitor's (set-action, query-chardev, query-hotpluggable-cpus, the QOM tree of the
 * vCPUs and the balloon, ...). vm NULL: probe mode, a VM-less server (`-machine none`).
 * qmp_vm_register() calls it with its VM. */
int qmp_compat_register(struct qmp_server *s, struct vm *vm);

/* `kvmm qmp SOCKET [COMMAND [JSON]]` (src/qmp/cli.c); argv[0] is "qmp". Returns the exit status. */
int qmp_cli_main(int argc, char **argv);

#endif
