/* cgroup v2 memory limits -> the VM's memory limit and reservation (src/mem/cgroup.c: reading and
 * the mapping rule, pure but for file reads; src/mem/cgroup_watch.c: following changes on the
 * event loop). libvirt's <memtune> and `virsh memtune` (hard_limit -> memory.max, soft_limit ->
 * memory.high), systemd's MemoryMax=/MemoryHigh=/MemoryLow= and container runtimes all write the
 * same files; kvmm turns them into its own limit so that it reclaims (balloon, compression, swap)
 * before the kernel throttles the process (memory.high) or its OOM killer acts (memory.max).
 * docs/libvirt.md, "cgroup memtune", states the rule. */
#ifndef KVMM_CGROUP_H
#define KVMM_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CGROUP_NO_LIMIT UINT64_MAX

/* The memory files of the cgroups from the process's own up to (not including) the cgroup2
 * mount's root, combined as the kernel applies them: max and high are the least along the path
 * (CGROUP_NO_LIMIT: "max" everywhere), low the nearest non-zero one (0: none). The files of the
 * cgroup whose max or high binds are read too: current, and the reclaimable page cache
 * (memory.stat active_file + inactive_file), which kvmm's overhead leaves out. */
struct cgroup_mem {
	uint64_t max, high, low;
	uint64_t current;      /* memory.current of the binding cgroup (0: unknown) */
	uint64_t file;         /* its active_file + inactive_file (0: unknown) */
	bool controller;       /* some cgroup on the path has the memory controller's files */
	char bind[4096];       /* directory of the binding cgroup ("" when nothing binds) */
};

/* memory.events counters (hierarchical: events below count too). */
struct cgroup_events {
	uint64_t low, high, max, oom, oom_kill;
};

/* "max" -> CGROUP_NO_LIMIT, decimal bytes -> the value; surrounding whitespace is allowed.
 * -EINVAL for anything else (empty, "garbage", "12abc", a negative number, overflow). */
int cgroup_parse_value(const char *text, uint64_t *out);

/* memory.events' text ("low N\nhigh N\nmax N\noom N\noom_kill N\n"; unknown keys ignored).
 * -EINVAL when a known key's value is not a number. */
int cgroup_parse_events(const char *text, struct cgroup_events *ev);

/* The process's cgroup v2 directory from the texts of /proc/self/cgroup (the "0::PATH" line) and
 * /proc/self/mountinfo (the cgroup2 mount; octal escapes decoded; a mount of a sub-tree, root
 * other than "/", handled). *top gets the mount point. -ENOENT without a cgroup2 mount or a
 * "0::" line (cgroup v1 only), -ENAMETOOLONG, -EINVAL for text that is not what the kernel
 * writes. */
int cgroup_self_dir(const char *proc_cgroup, const char *mountinfo, char *dir, size_t dir_len,
		    char *top, size_t top_len);
/* The same from the files /proc/self/cgroup and /proc/self/mountinfo. */
int cgroup_self_dir_proc(char *dir, size_t dir_len, char *top, size_t top_len);

/* Reads dir and its parents up to top (exclusive) into *out. A missing file on a level means
 * that level does not limit; an unreadable or malformed value is -EINVAL (-errno for a read
 * error) with *out unchanged, so the caller keeps what it had. */
int cgroup_read_mem(const char *dir, const char *top, struct cgroup_mem *out);

/* kvmm's limit and reservation for the guest. */
struct cgroup_policy {
	uint64_t limit;        /* bytes of guest memory (consumed) kvmm holds the VM to */
	uint64_t reservation;
	bool limited;          /* the cgroup's max or high binds */
	uint64_t cg_limit;     /* min(max, high), the value that bound (CGROUP_NO_LIMIT: none) */
};

/*
 * The mapping rule. The cgroup counts the whole process (guest RAM, the VMM's own memory, page
 * tables and KVM's, the compression cache, kernel objects such as VMAs) while kvmm's limit counts
 * guest memory (consumed, which includes the compression cache): so
 *   limit = min(max, high) - overhead - margin, at least 4096 bytes;
 * a cgroup value at or above memory + overhead + margin (or "max") is no limit (limit = memory);
 * base_limit (--mem-limit, 0: none) stays a ceiling. reservation = low - overhead when low is set,
 * else base_reservation; never above the limit.
 */
void cgroup_map(const struct cgroup_mem *cg, uint64_t memory, uint64_t overhead, uint64_t margin,
		uint64_t base_limit, uint64_t base_reservation, struct cgroup_policy *out);

/* kvmm's overhead as the cgroup sees it: current - reclaimable page cache - consumed guest
 * memory, but at least the estimate 8 MiB + memory / 256 (hostd's, for the per-page tables). */
uint64_t cgroup_overhead(const struct cgroup_mem *cg, uint64_t memory, uint64_t consumed);

/* --- following changes (cgroup_watch.c) --- */

struct loop;
struct cgroup_watch;

struct cgroup_watch_ops {
	void *opaque;
	/* Applies a limit and reservation exactly as QMP's x-kvmm-set-memory does; 0 or -errno
	 * (a refusal, with the reason in why). */
	int (*apply)(void *opaque, uint64_t limit, uint64_t reservation, char *why, size_t len);
	/* Guest memory consumed now (bytes), or -1 when unknown. */
	int64_t (*consumed)(void *opaque);
};

struct cgroup_watch_cfg {
	const char *dir, *top;        /* the process's cgroup and the cgroup2 mount point */
	uint64_t memory;              /* guest RAM */
	uint64_t base_limit;          /* --mem-limit (0: none) */
	uint64_t base_reservation;    /* --mem-reservation */
	unsigned period_ms;           /* poll period (0: 1000) */
};

/* Reads the cgroup, applies the result once (logged at info), then, with a loop, polls every
 * period and watches the binding cgroup's memory.events with inotify. Without a loop (tests)
 * nothing runs until cgroup_watch_poll. */
int cgroup_watch_start(struct cgroup_watch **out, struct loop *loop,
		       const struct cgroup_watch_cfg *cfg, const struct cgroup_watch_ops *ops);
/* One poll now: re-read, apply when the result changed. Returns 1 when applied, 0 when nothing
 * changed, -errno when the cgroup could not be read (a warning, once per kind of failure). */
int cgroup_watch_poll(struct cgroup_watch *w);
/* memory.events changed: a new high or max hit widens the margin by 8 MiB (up to a quarter of
 * the cgroup's value) and re-applies; for tests, what inotify calls. */
void cgroup_watch_events(struct cgroup_watch *w);
/* What was applied last (limit, reservation), for tests and logs. */
void cgroup_watch_current(const struct cgroup_watch *w, struct cgroup_policy *p, uint64_t *margin);
void cgroup_watch_destroy(struct cgroup_watch *w);

#endif
