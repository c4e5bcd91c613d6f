/* `kvmm run` options: the command line and --config FILE.ini (same keys as the long options, without
 * the dashes). Parsed and validated here, enforced by the modules that own them. Pure: no KVM. */
#ifndef KVMM_CONFIG_H
#define KVMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum mem_share_mode { MEM_SHARE_OFF, MEM_SHARE_ZERO, MEM_SHARE_TPS, MEM_SHARE_KSM };
enum mem_backend { MEM_BACKEND_ANON, MEM_BACKEND_MEMFD, MEM_BACKEND_HUGETLB, MEM_BACKEND_THP };
enum serial_kind { SERIAL_STDIO, SERIAL_FILE, SERIAL_UNIX };
/* How the memory manager captures a page (DESIGN.md section 4): auto picks wp (measured faster),
 * else move; the others force one path (tests run both). */
enum mem_capture_choice { MEM_CAPTURE_AUTO, MEM_CAPTURE_FORCE_MOVE, MEM_CAPTURE_FORCE_WP };
/* --mem-cgroup: follow the process's cgroup v2 memory limits (kvmm/cgroup.h). auto: when the
 * process's own cgroup has the memory controller (a memory.max file; the root cgroup has none). */
enum mem_cgroup_mode { MEM_CGROUP_AUTO, MEM_CGROUP_ON, MEM_CGROUP_OFF };

#define CONFIG_MAX_CPUS 255
#define CONFIG_DEFAULT_MEMORY (512ull << 20)
#define CONFIG_SHARES_LOW 5     /* per MiB of configured memory (ESXi) */
#define CONFIG_SHARES_NORMAL 10
#define CONFIG_SHARES_HIGH 20
/* Page sharing scan limits; defaults measured (docs/benchmarks.md, "Page sharing"). */
#define CONFIG_SHARE_RATE_DEFAULT 65536u  /* pages per second: 256 MiB/s */
#define CONFIG_SHARE_RATE_MAX (1u << 24)
#define CONFIG_SHARE_CPU_DEFAULT 50u      /* percent of one core */

struct vm_config {
	char *name;               /* default "kvmm" */
	uint64_t memory;          /* bytes, default CONFIG_DEFAULT_MEMORY */
	unsigned cpus;            /* default 1 */
	char *kernel;             /* required */
	char *initrd;             /* NULL: none */
	char *append;             /* NULL: empty */

	uint64_t mem_reservation; /* bytes, 0: none */
	uint64_t mem_limit;       /* bytes, 0: no limit beyond memory */
	uint64_t mem_shares;      /* absolute shares; presets resolve to per-MiB x memory in MiB */
	enum mem_share_mode mem_share;
	char *mem_salt;           /* "vm" (default), "host", or a group name */
	bool mem_compress;        /* default on */
	unsigned mem_compress_max_pct; /* default 10 */
	char *mem_swap;           /* NULL: off */
	uint64_t mem_swap_size;   /* bytes, 0: the guest's memory */
	enum mem_backend mem_backend;
	uint64_t mem_share_rate;  /* scanner pages per second, default CONFIG_SHARE_RATE_DEFAULT */
	unsigned mem_share_cpu;   /* scanner CPU percent of one core, 1-100 */
	enum mem_capture_choice mem_capture;
	unsigned mem_stats_interval; /* seconds between memory stats log lines, 0: none */
	enum mem_cgroup_mode mem_cgroup; /* default auto */

	bool balloon;
	bool balloon_deflate_on_oom;
	bool balloon_free_page_reporting;
	unsigned balloon_stats_interval; /* seconds, 0: stats not polled */

	char *qmp;                /* unix socket path, NULL: none */
	enum serial_kind serial;
	char *serial_path;        /* for SERIAL_FILE and SERIAL_UNIX */
	char *hostd;              /* hostd socket path, NULL: none */
	bool no_reboot;           /* a reset stops the VM instead of rebooting it (QEMU -no-reboot) */

	/* Set by the QEMU-compatible front (src/libvirt/qemu_front.c, docs/libvirt.md); `kvmm run`
	 * leaves the defaults. Inherited fds are above 2; -1 (or 0, as in a zeroed config): none. */
	int qmp_fd;               /* inherited QMP socket (listening, or one connected client) */
	int serial_fd;            /* COM1 output to this inherited fd (serial == SERIAL_FILE) */
	bool serial_append;       /* a file serial appends (O_APPEND), else a path is truncated as
				   * QEMU's -chardev file without append=on; default on */
	char *balloon_id;         /* the balloon's -device id (its QOM path /machine/peripheral/ID);
				   * NULL: BALLOON_ID */
	char *chardev_serial;     /* the chardev ids query-chardev reports; NULL: charserial0 */
	char *chardev_monitor;    /*   and charmonitor, libvirt's names */
	char *pidfile;            /* written once the QMP socket listens, removed on exit; NULL: none */
	bool start_paused;        /* -S: vCPUs created but held until QMP cont */
	bool no_shutdown;         /* -no-shutdown: a guest power-off pauses the VM; the process stays */
	char uuid[37];            /* -uuid, "" when not given */

	bool help;                /* --help was given: usage printed, nothing to run */
};

/* Sets every default. */
void config_init(struct vm_config *cfg);
void config_free(struct vm_config *cfg);

/*
 * Parses `kvmm run` arguments (argv[0] is "run"), reading --config files where they appear (later
 * options override earlier ones, on the command line and in files alike), then validates the whole.
 * Returns 0, or -EINVAL after printing one line to stderr that names the option (or file:line) and
 * the reason. --help prints the usage to stdout, sets cfg->help and returns 0.
 */
int config_parse_run(struct vm_config *cfg, int argc, char **argv);

/* Reads one ini file into cfg (no final validation); -EINVAL/-ENOENT with a message naming file:line. */
int config_load_ini(struct vm_config *cfg, const char *path);

/* Cross-option checks (kernel given and readable, reservation <= limit <= memory, ...). */
int config_validate(const struct vm_config *cfg);

void config_usage(FILE *out);

/* --mem-shares and QMP's x-kvmm-set-memory shares: "low", "normal", "high" set *per_mib (5 / 10 /
 * 20 shares per MiB of memory, ESXi's presets) and *shares 0; a number from 1 to UINT32_MAX sets
 * *shares and *per_mib 0. -EINVAL otherwise. */
int config_parse_shares(const char *value, unsigned *per_mib, uint64_t *shares);

#endif
