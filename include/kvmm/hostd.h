/* The host memory scheduler (src/sched/): `kvmm hostd`, its wire protocol, the VM's link to it and
 * `kvmm top`. The policy itself (who gets how much) is kvmm/policy.h.
 *
 * Wire protocol (docs/architecture.md, "hostd"): a unix stream socket (mode 0600), one JSON object
 * per line (LF; a CR before it is allowed), at most HOSTD_LINE_MAX bytes a line. QMP-like: requests
 * are {"execute": NAME, "arguments": {...}}; hostd answers each with {"return": {...}} or
 * {"error": {"class": C, "desc": TEXT}}, in order; to a registered VM it also pushes
 * {"event": "TARGET", "data": {...}} every period. A "report" gets no answer.
 *
 *   register  {name, pid, size, reservation, limit, shares, overhead, salt}  -> {"period-ms": N}
 *             then a TARGET event; or error class "AdmissionRefused" / "GenericError"
 *   report    {consumed, active, shared, ballooned, compressed, swapped}     (no answer)
 *   query-vms {}                                   -> {"host": {...}, "vms": [{...}, ...]}
 *   set-vm    {name, reservation?, limit?, shares?} -> {}   (a higher reservation is admission-checked;
 *             a VM sends it on its own connection for x-kvmm-set-memory)
 *   set-host  {tax}                                -> {}
 *   TARGET    {target, techniques: ["share", "balloon", "compress", "swap", "block"], state,
 *              reservation, limit}
 *
 * Every field of every message is checked (type, range) by the functions below, which are the
 * only code that builds or reads these messages; a malformed line gives an error text, never a
 * crash. Sizes are bytes (JSON integers, 0 .. 2^63 - 1). */
#ifndef KVMM_HOSTD_H
#define KVMM_HOSTD_H

#include <kvmm/policy.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOSTD_LINE_MAX 8192   /* longest line either side accepts (query-vms answers excepted) */
#define HOSTD_VIEW_MAX (1u << 20) /* longest query-vms answer `kvmm top` reads */
#define HOSTD_NAME_MAX 64     /* VM names and salts, bytes including the NUL */
#define HOSTD_PERIOD_MS 1000  /* default report / target period */

/* ---- the messages (src/sched/proto.c: pure, no syscalls) ------------------------------------ */

struct hostd_vm_info {       /* register */
	char name[HOSTD_NAME_MAX];
	char salt[HOSTD_NAME_MAX];
	int64_t pid;
	uint64_t size, reservation, limit, shares, overhead;
};

struct hostd_report {        /* report: the VM's mem_stats, bytes */
	uint64_t consumed, active, shared, ballooned, compressed, swapped;
};

struct hostd_target {        /* TARGET */
	uint64_t target, reservation, limit;
	unsigned techniques;     /* POLICY_TECH_* */
	enum policy_state state;
};

enum { HOSTD_SET_RESERVATION = 1, HOSTD_SET_LIMIT = 2, HOSTD_SET_SHARES = 4 };

enum hostd_req_kind { HOSTD_REQ_REGISTER, HOSTD_REQ_REPORT, HOSTD_REQ_QUERY_VMS, HOSTD_REQ_SET_VM,
		      HOSTD_REQ_SET_HOST };

struct hostd_request {
	enum hostd_req_kind kind;
	union {
		struct hostd_vm_info reg;
		struct hostd_report report;
		struct {
			char name[HOSTD_NAME_MAX];
			unsigned set;    /* HOSTD_SET_* */
			uint64_t reservation, limit, shares;
		} set_vm;
		struct {
			unsigned tax_pct;
		} set_host;
	} u;
};

/* What hostd sends a VM. */
enum hostd_reply_kind { HOSTD_REPLY_RETURN, HOSTD_REPLY_ERROR, HOSTD_REPLY_TARGET };

struct hostd_reply {
	enum hostd_reply_kind kind;
	unsigned period_ms;          /* RETURN of register (0 if absent) */
	char err_class[32];          /* ERROR */
	char err_desc[256];
	struct hostd_target target;  /* TARGET */
};

/* One VM in hostd's view (query-vms, `kvmm top`). */
struct hostd_vm_view {
	struct hostd_vm_info info;
	struct hostd_report report;
	uint64_t target;
	bool lagging;                /* consumed > target * 1.05 for more than the allowed periods */
	bool reported;               /* a report has arrived since registration */
};

struct hostd_host_view {
	uint64_t capacity, total, free, minfree;
	unsigned tax_pct, techniques;
	enum policy_state state;
};

struct hostd_view {
	struct hostd_host_view host;
	struct hostd_vm_view *vms;   /* malloc'ed by hostd_parse_view */
	size_t n;
};

/* Parses one request line (without its LF). 0, or -EINVAL with err set to a one-line reason. */
int hostd_parse_request(const char *line, size_t len, struct hostd_request *out, char *err,
			size_t errlen);
/* Parses one line hostd sent a VM. */
int hostd_parse_reply(const char *line, size_t len, struct hostd_reply *out, char *err, size_t errlen);
/* Parses a query-vms answer; *out's vms is malloc'ed (hostd_view_free). */
int hostd_parse_view(const char *line, size_t len, struct hostd_view *out, char *err, size_t errlen);
void hostd_view_free(struct hostd_view *v);

/* Each returns one malloc'ed line ending in LF (NUL-terminated; *len without the NUL), or NULL
 * when out of memory. */
char *hostd_fmt_register(const struct hostd_vm_info *info, size_t *len);
char *hostd_fmt_report(const struct hostd_report *r, size_t *len);
char *hostd_fmt_query_vms(size_t *len);
char *hostd_fmt_set_vm(const char *name, unsigned set, uint64_t reservation, uint64_t limit,
		       uint64_t shares, size_t *len);
char *hostd_fmt_set_host(unsigned tax_pct, size_t *len);
char *hostd_fmt_target(const struct hostd_target *t, size_t *len);
char *hostd_fmt_return_register(unsigned period_ms, size_t *len);
char *hostd_fmt_return_empty(size_t *len);
char *hostd_fmt_error(const char *err_class, const char *desc, size_t *len);
char *hostd_fmt_view(const struct hostd_view *v, size_t *len);

/* "share", "balloon", ... for one POLICY_TECH_* bit. */
const char *hostd_tech_name(unsigned bit);

/* Cuts a byte stream into lines of at most `cap` bytes. A longer line is refused: fn gets it with
 * line NULL, once, and the rest of it up to its LF is dropped. */
struct hostd_lines {
	char *buf;
	size_t len, cap;
	bool skipping;
};
typedef void (*hostd_line_fn)(void *opaque, const char *line, size_t len);
int hostd_lines_init(struct hostd_lines *l, size_t cap);
void hostd_lines_destroy(struct hostd_lines *l);
void hostd_lines_feed(struct hostd_lines *l, const char *data, size_t n, hostd_line_fn fn,
		      void *opaque);

/* ---- the daemon (src/sched/hostd.c) ------------------------------------------------------- */

struct hostd_opts {
	const char *socket;
	uint64_t capacity;           /* 0: MemTotal - minfree - hostd's own keep */
	uint64_t minfree;            /* 0: policy_minfree(MemTotal) */
	unsigned tax_pct;
	unsigned period_ms;
	unsigned lag_periods;        /* periods over target * 1.05 before a VM is lagging */
	struct policy_thresholds thresholds;
	const char *meminfo;         /* "/proc/meminfo"; tests point it at a file */
};

void hostd_opts_default(struct hostd_opts *o);

struct loop;
struct hostd;
/* Listens on o->socket (a stale socket file is replaced, a live one is -EADDRINUSE) and serves on
 * loop. Logs what it chose (capacity, minfree, state). */
int hostd_create(struct hostd **out, struct loop *loop, const struct hostd_opts *o);
/* Closes every connection and removes the socket file. */
void hostd_destroy(struct hostd *h);
/* One period now (tests): meminfo read, state, allocation, targets pushed. */
void hostd_tick(struct hostd *h);
/* `kvmm hostd [options]` (src/sched/hostd_main.c); exit status. */
int hostd_main(int argc, char **argv);

/* ---- the VM's link (src/sched/client.c, on the VM's loop thread) ---------------------------- */

struct memmgr;
struct vm_config;
struct hostd_client;
/* Connects to cfg->hostd and registers (waits up to 5 s for the answer). -EPERM when hostd refuses
 * the VM (the reason is logged), -errno when it cannot be reached. From then on it reports every
 * period and hands targets to the memory manager; when hostd goes away the VM keeps its last
 * target and reconnects every few seconds. */
int hostd_client_start(struct hostd_client **out, struct loop *loop, struct memmgr *m,
		       const struct vm_config *cfg);
void hostd_client_destroy(struct hostd_client *c);
/* A live change of the VM's reservation, limit or shares (HOSTD_SET_* in `set`; the others are
 * ignored), made on its QMP socket before the memory manager applies it. Registered: sent as
 * set-vm and awaited up to 2 s on the loop thread, so that hostd checks a higher reservation as it
 * did at start; 0 when hostd took it (its TARGETs carry it from then on), -EPERM when it refused,
 * -ETIMEDOUT or another -errno; why says it. Not connected: 0 and the change goes with the next registration
 * (admission-checked then). -EAGAIN while a registration is under way. */
int hostd_client_set(struct hostd_client *c, unsigned set, uint64_t reservation, uint64_t limit,
		     uint64_t shares, char *why, size_t len);

/* `kvmm top --hostd SOCKET [--once]`; exit status. */
int top_main(int argc, char **argv);
/* One frame of the table for a view (top.c, pure): malloc'ed text. */
char *top_format(const struct hostd_view *v);

#endif
