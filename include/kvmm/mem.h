/* The memory manager (src/mem/): owns host memory for guest RAM on top of gmem's mapping. It keeps
 * one state byte per 4 KiB guest page (pstate), serves guest faults from a userfaultfd handler
 * thread (fault.c), takes pages away from the guest only through a race-free capture (capture.c),
 * shares pages (share.c: zero pages and kvmm's own copy-on-write pool, `tps`; or the kernel's KSM,
 * ksm.c) and reports what it holds in ESXi's vocabulary (stats.c). Devices and policy ask it to
 * release memory (mem_release); nothing else calls madvise, mmap or userfaultfd on guest RAM.
 *
 * Threads: "mem-fault" (the userfaultfd handler) and "mem-share" (the scanner), started by
 * mem_start. Every other entry point runs on the loop thread. */
#ifndef KVMM_MEM_H
#define KVMM_MEM_H

#include <kvmm/config.h>
#include <kvmm/gmem.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the host kernel offers, detected at start (features.c). */
struct mem_features {
	bool uffd;             /* userfaultfd usable for faults KVM takes (not user-mode-only) */
	const char *uffd_via;  /* "syscall", "/dev/userfaultfd" or the reason it is not usable */
	bool uffd_move;        /* UFFDIO_MOVE (Linux 6.8+) */
	bool uffd_wp;          /* write-protect on anonymous memory */
	bool uffd_wp_unpopulated;
	bool ksm;              /* /sys/kernel/mm/ksm present */
	bool ksm_writable;     /* kvmm may set KSM's knobs (root) */
	bool ksm_advisor;      /* advisor_mode (Linux 6.7+) */
	char thp[16];          /* /sys/kernel/mm/transparent_hugepage/enabled: "always", "madvise", "never", "" */
	uint64_t hugetlb_free; /* free 2 MiB huge pages */
	uint64_t max_map_count;
	bool root;
};

/* Per-VM figures (bytes unless named otherwise), after ESXi's memory counters. */
struct mem_stats {
	uint64_t configured;   /* guest RAM size */
	uint64_t touched;      /* guest pages holding data: private + shared */
	uint64_t consumed;     /* host memory the guest's RAM holds: private pages + pool pages */
	uint64_t private_;     /* guest pages backed by their own host page */
	uint64_t zero;         /* pages kvmm dropped because they were zero */
	uint64_t shared;       /* guest pages mapping a pool page (tps) or merged by KSM (ksm) */
	uint64_t shared_saved; /* shared minus the pool pages they use */
	uint64_t pool;         /* pool pages in use */
	uint64_t ballooned;    /* pages the guest gave back */
	uint64_t share_capped; /* pages not shared because of the VMA cap (vm.max_map_count) */
	uint64_t refaults;     /* guest faults on pages kvmm had dropped (zero, ballooned) */
	uint64_t unshares;     /* shared pages the guest wrote (copy-on-write) */
	uint64_t faults;       /* userfaultfd faults served */
	uint64_t share_scans;  /* complete scanner passes */
	uint64_t share_cpu_ns; /* CPU time of the sharing threads (scanner and fault handler; ksmd not included) */
	uint64_t captures;     /* pages captured */
	uint64_t captures_aborted; /* captures given back: content changed or the guest wrote */
	/* ksm mode: the kernel's counters (pages), /proc/self/ksm_stat and /sys/kernel/mm/ksm. */
	uint64_t ksm_merging, ksm_zero, ksm_pages_shared, ksm_pages_sharing, ksm_full_scans;
	/* Reclaim (part 2). */
	uint64_t target;         /* what consumed is held to: max(min(limit, hostd's), reservation) */
	uint64_t limit, reservation;
	uint64_t compressed;     /* guest pages in the compression cache (bytes of guest memory) */
	uint64_t compress_saved; /* compressed minus the cache memory holding them */
	uint64_t zcache;         /* host memory the compression cache holds (counted in consumed) */
	uint64_t swapped;        /* guest pages in the swap file (bytes) */
	uint64_t swap_out, swap_in;       /* pages written to / read from swap, since start */
	uint64_t compress_out, compress_in; /* pages compressed / decompressed, since start */
	uint64_t reclaim_refaults; /* guest faults on compressed or swapped pages */
	uint64_t active;         /* estimated active guest memory (sampling), bytes */
	uint64_t balloon_asked;  /* what the reclaimer asked the balloon to hold, bytes */
	uint64_t swap_errors, swap_corrupt;
	bool swap_usable;
	/* hostd's block (its low state): guest faults that would allocate wait (fault.c). */
	uint64_t blocked_faults;   /* faults held, since start */
	uint64_t blocked_ns;       /* time they waited, summed (counted when each goes on) */
	uint64_t blocked_now;      /* faults held now */
	bool blocking;             /* hostd blocks allocation and this VM holds its target */
};

enum mem_capture_mode { MEM_CAPTURE_NONE, MEM_CAPTURE_MOVE, MEM_CAPTURE_WP };

struct memmgr;

/* Detects features and sets up sharing for cfg->mem_share on gm's RAM (gm stays owned by the
 * caller and must outlive the manager). Logs what it found and chose. A mode the host cannot run
 * (tps or zero without a usable userfaultfd, ksm without KSM) is an error naming the reason. */
int mem_create(struct memmgr **out, struct gmem *gm, const struct vm_config *cfg);
/* Starts the fault handler and the scanner; after gmem_register, before any vCPU runs. */
int mem_start(struct memmgr *m);
/* Ends the scanner and the reclaimer (they call the hooks: before the devices go); the fault
 * handler serves until mem_destroy. */
void mem_stop(struct memmgr *m);
void mem_destroy(struct memmgr *m);

/* Gives guest pages back to the host (the balloon's inflate, free page reporting): every whole
 * page of [gpa, gpa + len) that is RAM becomes BALLOONED and its host memory is freed; it reads as
 * zero when the guest touches it again. Returns the bytes released, or -errno. Overflow-safe for
 * any gpa/len. m may be NULL (then plain gmem_discard). */
int64_t mem_release(struct memmgr *m, struct gmem *gm, uint64_t gpa, uint64_t len);

/* System reset, every vCPU stopped: all RAM reads as zero again, the pool is emptied, every page
 * is PRESENT. m may be NULL (then gmem_discard_all). */
int mem_reset(struct memmgr *m, struct gmem *gm);

/* Current figures. The private/consumed counts come from /proc/self/pagemap at the call. */
int mem_get_stats(struct memmgr *m, struct mem_stats *st);
const struct mem_features *mem_features(const struct memmgr *m);
const char *mem_capture_name(const struct memmgr *m);
const char *mem_share_name(enum mem_share_mode mode);
/* The sharing mode in force (--mem-share, or off where the backend cannot share). */
enum mem_share_mode mem_share_mode(const struct memmgr *m);

/* Changes the scanner's limits live: pages per second (0 keeps it) and CPU percent of one core
 * (0 keeps it). -EINVAL for values out of range. */
int mem_set_share_rate(struct memmgr *m, uint64_t pages_per_sec, unsigned cpu_pct);
void mem_get_share_rate(const struct memmgr *m, uint64_t *pages_per_sec, unsigned *cpu_pct);

/* How mem_page_out stores the pages it takes. */
enum mem_out { MEM_OUT_AUTO, MEM_OUT_COMPRESS, MEM_OUT_SWAP };

/* Takes the pages of [gpa, gpa + len) that hold data out of guest RAM now, as the reclaimer does
 * with cold pages: zero pages are dropped, the rest compressed (AUTO, COMPRESS: if it fits in
 * 2 KiB and the cache has room) or written to swap (AUTO, SWAP). A page that can go nowhere stays.
 * For tests and benchmarks (QMP x-kvmm-page-out). Returns the pages taken, -ENOTSUP without
 * userfaultfd, -errno. */
int64_t mem_page_out(struct memmgr *m, uint64_t gpa, uint64_t len, enum mem_out how);

/* Live limit and reservation in bytes (UINT64_MAX keeps a value). -EINVAL when reservation >
 * limit, limit > memory, or reclaim is off (no userfaultfd: --mem-share off/ksm without
 * --mem-limit at start). */
int mem_set_limits(struct memmgr *m, uint64_t limit, uint64_t reservation);
/* mem_set_limits' checks without the change: UINT64_MAX in *limit or *reservation becomes the
 * value in force. */
int mem_check_limits(struct memmgr *m, uint64_t *limit, uint64_t *reservation);

/* hostd's word (kvmm/hostd.h): the effective target becomes max(min(limit, target), reservation),
 * and `techniques` (POLICY_TECH_* of kvmm/policy.h) says which reclaim steps may run: the balloon,
 * compression, swap. With neither compression nor swap allowed the reclaimer takes no pages (zero
 * pages are still dropped by the sharing scanner in the zero and tps modes). UINT64_MAX and all
 * techniques (the state at start) mean no hostd. -EINVAL when reclaim is off.
 *
 * POLICY_TECH_BLOCK (hostd's low state) blocks allocation while the VM holds at least its target
 * (ESXi blocks the VMs above their target): guest faults that would take a new host page (first
 * writes, fault-ins of compressed or swapped pages; any zero fill on memfd) wait, without the
 * manager's lock, until BLOCK is withdrawn, the reclaimer brings the VM under its target, or the
 * VM stops. Not held: the faults of the thread that called mem_set_hooks (the loop: devices, and
 * hostd's link), and what the kernel allocates without asking kvmm: copy-on-write of a page that
 * was mapped to the zero page or to a pool page before the block. */
int mem_set_host_target(struct memmgr *m, uint64_t target, unsigned techniques);
/* Makes the target hard, as hostd's BLOCK does, for a limit the kernel enforces above kvmm (a
 * cgroup's memory.max: past it, the kernel's OOM killer): allocating guest faults wait while the VM
 * is at or over its target. Except when the reclaimer cannot take anything for 2 s (nothing
 * reclaimable, swap full): then faults are served, and a warning says the limit is not held. */
void mem_set_hard_limit(struct memmgr *m, bool on);

/* What the memory manager needs from the VM around it; any member may be NULL. Called from the
 * manager's threads. */
struct mem_hooks {
	void *opaque;
	/* A QMP event; data is a JSON object's text (or NULL). */
	void (*event)(void *opaque, const char *name, const char *data);
	/* Guest memory was lost (a swap slot failed its checksum): stop the VM with this error. */
	void (*fatal)(void *opaque, const char *detail);
	/* Whether the VM is stopping (vCPUs will not enter the guest again). */
	bool (*stopping)(void *opaque);
	/* The balloon, when the VM has one: ask the guest to hold `bytes` in it; how many bytes it
	 * holds now, or -1 when no driver has set it up. */
	int (*balloon_ask)(void *opaque, uint64_t bytes);
	int64_t (*balloon_held)(void *opaque);
};

/* Before the vCPUs run, on the loop thread (whose faults hostd's block never holds). */
void mem_set_hooks(struct memmgr *m, const struct mem_hooks *h);
/* Lets the manager age pages with KVM's dirty log on the VM's memslots (gmem_register's). */
int mem_attach_vm(struct memmgr *m, int vm_fd);

/* One log line of stats; mem_stats_timer prints it every `seconds` (0: never) from the loop. */
struct loop;
void mem_log_stats(struct memmgr *m);
int mem_stats_timer(struct memmgr *m, struct loop *loop, unsigned seconds);

#endif
