/* virtio-balloon (virtio 1.2, section 5.5): the guest hands pages back to the host.
 *
 * src/devices/virtio/balloon.c is the device: the inflate and deflate queues (PFNs merged into
 * ranges, released through gmem_discard, one madvise per range), the stats queue (every
 * VIRTIO_BALLOON_S_* tag Linux sends, polled at a settable interval), free page reporting
 * (reported ranges released like inflated ones) and VIRTIO_BALLOON_F_DEFLATE_ON_OOM (offered; the
 * guest deflates by itself when it runs out of memory). src/devices/balloon_kvm.c puts it on the
 * VM's PCI bus and loop; src/qmp/balloon.c serves balloon, query-balloon and the QOM properties.
 *
 * The guest is untrusted: PFNs outside RAM are counted and skipped, a malformed queue marks the
 * device DEVICE_NEEDS_RESET, stats are stored as given (never used for decisions), and what the
 * host really got back is measured (gmem_resident), not taken from `actual`.
 *
 * Threads: the queue callbacks run on the VM's loop thread and config accesses on vCPU threads,
 * both under the transport lock; the balloon_* calls below take it, so any thread may call them
 * once the device is on its transport (virtio_pci_add, or virtio_pci_init in unit tests). */
#ifndef KVMM_BALLOON_H
#define KVMM_BALLOON_H

#include <stdbool.h>
#include <stdint.h>

struct gmem;
struct balloon;
struct virtio_dev;

#define BALLOON_PAGE_SIZE 4096ull /* VIRTIO_BALLOON_PFN_SHIFT 12, whatever the host page size */
#define BALLOON_ID "balloon0"     /* libvirt's name; QOM path /machine/peripheral/balloon0 */

/* Stats tags (section 5.5.6.3) as Linux 6.12 sends them; QEMU's QOM names in balloon_stat_name. */
#define BALLOON_S_NR 16

struct balloon_opts {
	bool deflate_on_oom;        /* offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM */
	bool free_page_reporting;   /* offer VIRTIO_BALLOON_F_REPORTING */
	unsigned stats_interval;    /* seconds between stats requests, 0: not polled */
	struct memmgr *mm;          /* releases inflated pages (mem_release); NULL: plain gmem_discard */
};

/* What the guest last reported: value[i] is valid when valid[i]. last_update is the host's wall
 * clock (seconds) when the stats arrived, 0 before the first time. */
struct balloon_stats {
	uint64_t value[BALLOON_S_NR];
	bool valid[BALLOON_S_NR];
	int64_t last_update;
};

/* What the device did, for logs, QMP and tests. Pages are 4 KiB. */
struct balloon_counters {
	uint64_t inflated_pages;   /* valid PFNs the guest inflated (duplicates included) */
	uint64_t deflated_pages;
	uint64_t released_ranges;  /* gmem_discard calls for inflate */
	uint64_t reported_pages;   /* released through free page reporting */
	uint64_t bad_pfns;         /* inflate/deflate entries outside guest RAM */
	uint64_t stats_updates;    /* stats buffers received */
};

/* Hooks the KVM glue fills in (NULL in unit tests). Called with the transport lock held. */
struct balloon_hooks {
	/* The guest changed `actual`; logical is the VM's new size in bytes as QEMU reports it. */
	void (*actual_changed)(void *opaque, uint64_t logical);
	/* The stats interval changed (0: stop polling); the glue re-arms its timer. */
	void (*interval_changed)(void *opaque, unsigned seconds);
	void *opaque;
};

const char *balloon_stat_name(unsigned tag); /* "stat-swap-in", ...; NULL past the table */

/* The device over guest memory gm; its struct virtio_dev is ready for virtio_pci_add (or, in unit
 * tests, virtio_pci_init). -ENOMEM. */
int balloon_create(struct gmem *gm, const struct balloon_opts *o, const struct balloon_hooks *h,
		   struct balloon **out);
void balloon_destroy(struct balloon *b);
struct virtio_dev *balloon_virtio(struct balloon *b);

/* QMP `balloon`: asks the guest to bring the VM to `bytes` (clamped to RAM size; the target is
 * rounded down to whole pages). -EINVAL for 0. Notifies the driver of the config change. */
int balloon_set_target(struct balloon *b, uint64_t bytes);
uint64_t balloon_target(struct balloon *b);   /* bytes, RAM size minus num_pages */
/* QMP `query-balloon`: RAM size minus what the guest says it has inflated (`actual`). */
uint64_t balloon_actual(struct balloon *b);

void balloon_get_stats(struct balloon *b, struct balloon_stats *out);
void balloon_get_counters(struct balloon *b, struct balloon_counters *out);
unsigned balloon_stats_interval(struct balloon *b);
/* guest-stats-polling-interval (seconds, 0 stops polling); calls hooks->interval_changed. */
void balloon_set_stats_interval(struct balloon *b, unsigned seconds);
/* The stats timer fired: hands the held stats buffer back to the guest, which refills it. */
void balloon_stats_request(struct balloon *b);

#endif
