/* virtio-balloon, the device (virtio 1.2, section 5.5); see include/kvmm/balloon.h.
 *
 * Queues, in the order QEMU and Linux number them when every offered feature is accepted:
 * 0 inflate, 1 deflate, 2 stats, 3 reporting (with VIRTIO_BALLOON_F_REPORTING). Free page hinting
 * (VIRTIO_BALLOON_F_FREE_PAGE_HINT) is not offered. A driver that leaves out a feature numbers the
 * later queues down (Linux's vp_find_vqs skips absent ones), so the stats and reporting indices are
 * taken from the negotiated features.
 *
 * Inflate: the PFNs of every chain available at a kick are gathered (up to BATCH_PFNS), sorted,
 * merged into runs and released with one mem_release per run, and only then are the chains
 * returned. Deflate needs no work: without VIRTIO_BALLOON_F_MUST_TELL_HOST the guest may touch a
 * page before telling us, and a released page refaults as zero. */
#include <kvmm/balloon.h>
#include <kvmm/mem.h>
#include <kvmm/gmem.h>
#include <kvmm/log.h>
#include <kvmm/virtio.h>
#include <kvmm/virtqueue.h>

#include <endian.h>
#include <errno.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BALLOON_QUEUE_SIZE 128   /* as QEMU */
#define BALLOON_CONFIG_SIZE 8    /* num_pages, actual: no hinting or poisoning fields offered */
#define BATCH_PFNS 8192          /* PFNs merged and released together */
#define STATS_MAX 64             /* tag/value pairs read from one stats buffer */
#define STATS_ENTRY 10           /* le16 tag, le64 value, packed */

enum { Q_INFLATE, Q_DEFLATE, Q_NONE = -1 };

struct balloon {
	struct virtio_dev vdev;
	struct gmem *gm;
	struct memmgr *mm;
	struct balloon_hooks hooks;
	uint64_t ram_pages;

	uint32_t num_pages;           /* what the device asks for */
	uint8_t actual[4];            /* what the driver wrote, le32 (written bytewise) */
	unsigned interval;            /* stats polling, seconds */

	/* The stats buffer the device holds until it wants fresh stats. */
	bool stats_held;
	uint16_t stats_head;
	struct balloon_stats stats;
	struct balloon_counters counters;

	/* Scratch for queue processing (loop thread, under the transport lock). */
	struct virtq_seg rd[BALLOON_QUEUE_SIZE], wr[BALLOON_QUEUE_SIZE];
	uint16_t heads[BALLOON_QUEUE_SIZE];
	unsigned nr_heads;
	uint32_t pfns[BATCH_PFNS];
	unsigned nr_pfns;
};

static const char *const stat_names[BALLOON_S_NR] = {
	"stat-swap-in", "stat-swap-out", "stat-major-faults", "stat-minor-faults",
	"stat-free-memory", "stat-total-memory", "stat-available-memory", "stat-disk-caches",
	"stat-htlb-pgalloc", "stat-htlb-pgfail", "stat-oom-kills", "stat-alloc-stalls",
	"stat-async-scans", "stat-direct-scans", "stat-async-reclaims", "stat-direct-reclaims",
};

const char *balloon_stat_name(unsigned tag)
{
	return tag < BALLOON_S_NR ? stat_names[tag] : NULL;
}

static uint32_t actual_pages(const struct balloon *b)
{
	return (uint32_t)b->actual[0] | (uint32_t)b->actual[1] << 8 | (uint32_t)b->actual[2] << 16 |
	       (uint32_t)b->actual[3] << 24;
}

static int queue_index(struct balloon *b, unsigned feature)
{
	int q = 2;

	if (!virtio_has_feature(&b->vdev, feature))
		return Q_NONE;
	if (feature == VIRTIO_BALLOON_F_REPORTING &&
	    virtio_has_feature(&b->vdev, VIRTIO_BALLOON_F_STATS_VQ))
		q++;
	return q;
}

static void interrupt(struct balloon *b, unsigned q)
{
	if (virtq_need_notify(virtio_queue(&b->vdev, q)))
		virtio_queue_interrupt(&b->vdev, q);
}

/* The queue broke (virtq_pop said so): the transport sets DEVICE_NEEDS_RESET. */
static void broken(struct balloon *b, unsigned q, int err)
{
	log_warn("virtio-balloon: queue %u: bad request from the guest (%s)", q, strerror(-err));
	virtio_dev_broken(&b->vdev);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Releases the gathered PFNs: sorted, duplicates dropped, one discard per run of consecutive
 * frames. gmem_discard skips what is not RAM; PFNs outside RAM were already dropped. */
static void release_pfns(struct balloon *b)
{
	unsigned i = 0;

	qsort(b->pfns, b->nr_pfns, sizeof(b->pfns[0]), cmp_u32);
	while (i < b->nr_pfns) {
		uint64_t start = b->pfns[i], end = start + 1;
		int64_t r;

		for (i++; i < b->nr_pfns && b->pfns[i] <= end; i++)
			if (b->pfns[i] == end)
				end++;
		r = mem_release(b->mm, b->gm, start * BALLOON_PAGE_SIZE, (end - start) * BALLOON_PAGE_SIZE);
		if (r < 0)
			log_warn("virtio-balloon: releasing PFNs %#llx-%#llx: %s",
				 (unsigned long long)start, (unsigned long long)end - 1, strerror((int)-r));
		b->counters.released_ranges++;
	}
	b->nr_pfns = 0;
}

static void push_heads(struct balloon *b, unsigned q)
{
	struct virtqueue *vq = virtio_queue(&b->vdev, q);

	for (unsigned i = 0; i < b->nr_heads; i++)
		virtq_push(vq, b->heads[i], 0);
	b->nr_heads = 0;
}

/* Reads the PFN array of one inflate or deflate buffer (le32 each; trailing bytes ignored). */
static void take_pfns(struct balloon *b, const struct virtq_elem *e, bool inflate)
{
	uint64_t n = e->rd_bytes / 4;
	uint32_t chunk[256];

	for (uint64_t done = 0; done < n;) {
		unsigned k = n - done < 256 ? (unsigned)(n - done) : 256;

		virtq_elem_read(e, done * 4, chunk, k * 4);
		done += k;
		for (unsigned j = 0; j < k; j++) {
			uint32_t pfn = le32toh(chunk[j]);

			if (!gmem_ptr(b->gm, (uint64_t)pfn * BALLOON_PAGE_SIZE, BALLOON_PAGE_SIZE)) {
				if (!b->counters.bad_pfns++)
					log_warn("virtio-balloon: the guest %s PFN %#x, outside its RAM "
						 "(ignored; later ones are only counted)",
						 inflate ? "inflated" : "deflated", pfn);
				continue;
			}
			if (!inflate) {
				b->counters.deflated_pages++;
				continue;
			}
			b->counters.inflated_pages++;
			if (b->nr_pfns == BATCH_PFNS)
				release_pfns(b);
			b->pfns[b->nr_pfns++] = pfn;
		}
	}
}

static void process_pfn_queue(struct balloon *b, unsigned q)
{
	struct virtqueue *vq = virtio_queue(&b->vdev, q);
	struct virtq_elem e;
	int err;

	virtq_elem_init(&e, b->rd, BALLOON_QUEUE_SIZE, b->wr, BALLOON_QUEUE_SIZE);
	while ((err = virtq_pop(vq, &e)) == 0) {
		take_pfns(b, &e, q == Q_INFLATE);
		b->heads[b->nr_heads++] = e.head;
		/* A driver that keeps adding buffers could outrun heads[]: return a full round. */
		if (b->nr_heads == BALLOON_QUEUE_SIZE) {
			if (b->nr_pfns)
				release_pfns(b);
			push_heads(b, q);
		}
	}
	if (b->nr_pfns)
		release_pfns(b);
	push_heads(b, q);
	if (err != -EAGAIN)
		broken(b, q, err);
	else
		interrupt(b, q);
}

static void process_stats(struct balloon *b, unsigned q)
{
	struct virtqueue *vq = virtio_queue(&b->vdev, q);
	struct virtq_elem e;
	uint8_t buf[STATS_MAX * STATS_ENTRY];
	size_t n;
	int err;

	virtq_elem_init(&e, b->rd, BALLOON_QUEUE_SIZE, b->wr, BALLOON_QUEUE_SIZE);
	while ((err = virtq_pop(vq, &e)) == 0) {
		/* Only one buffer should be out at a time; give an earlier one back (as QEMU). */
		if (b->stats_held) {
			virtq_push(vq, b->stats_head, 0);
			interrupt(b, q);
		}
		n = virtq_elem_read(&e, 0, buf, sizeof(buf)) / STATS_ENTRY;
		for (size_t i = 0; i < n; i++) {
			const uint8_t *p = buf + i * STATS_ENTRY;
			uint16_t tag = (uint16_t)(p[0] | p[1] << 8);
			uint64_t val = 0;

			for (int k = 7; k >= 0; k--)
				val = val << 8 | p[2 + k];
			if (tag < BALLOON_S_NR) {
				b->stats.value[tag] = val;
				b->stats.valid[tag] = true;
			}
		}
		b->stats.last_update = (int64_t)time(NULL);
		b->counters.stats_updates++;
		b->stats_held = true;
		b->stats_head = e.head;
	}
	if (err != -EAGAIN)
		broken(b, q, err);
}

/* Free page reporting: every segment is a run of free guest pages (Linux hands them over as
 * device-writable buffers); release them and give the buffer back. */
static void process_reports(struct balloon *b, unsigned q)
{
	struct virtqueue *vq = virtio_queue(&b->vdev, q);
	struct virtq_elem e;
	int err;

	virtq_elem_init(&e, b->rd, BALLOON_QUEUE_SIZE, b->wr, BALLOON_QUEUE_SIZE);
	while ((err = virtq_pop(vq, &e)) == 0) {
		for (unsigned i = 0; i < e.nr_rd + e.nr_wr; i++) {
			const struct virtq_seg *s = i < e.nr_rd ? &e.rd[i] : &e.wr[i - e.nr_rd];
			int64_t r = mem_release(b->mm, b->gm, s->gpa, s->len);

			if (r > 0)
				b->counters.reported_pages += (uint64_t)r / BALLOON_PAGE_SIZE;
		}
		virtq_push(vq, e.head, 0);
	}
	if (err != -EAGAIN)
		broken(b, q, err);
	else
		interrupt(b, q);
}

static void dev_notify(struct virtio_dev *d, unsigned q)
{
	struct balloon *b = d->opaque;

	if (q == Q_INFLATE || q == Q_DEFLATE)
		process_pfn_queue(b, q);
	else if ((int)q == queue_index(b, VIRTIO_BALLOON_F_STATS_VQ))
		process_stats(b, q);
	else if ((int)q == queue_index(b, VIRTIO_BALLOON_F_REPORTING))
		process_reports(b, q);
}

static void dev_reset(struct virtio_dev *d)
{
	struct balloon *b = d->opaque;

	/* The queues are reset: a held stats buffer is no longer ours to return. A reset driver (or
	 * a rebooted guest) starts with an empty balloon and tells us `actual` again. */
	b->stats_held = false;
	if (actual_pages(b)) {
		memset(b->actual, 0, sizeof(b->actual));
		if (b->hooks.actual_changed)
			b->hooks.actual_changed(b->hooks.opaque, balloon_actual(b));
	}
}

static void config_read(struct virtio_dev *d, unsigned off, uint8_t *data, unsigned len)
{
	struct balloon *b = d->opaque;
	uint8_t cfg[BALLOON_CONFIG_SIZE];

	for (int i = 0; i < 4; i++)
		cfg[i] = (uint8_t)(b->num_pages >> (8 * i));
	memcpy(cfg + 4, b->actual, 4);
	memcpy(data, cfg + off, len);
}

/* Only `actual` is the driver's to write; num_pages is read-only (writes are ignored). */
static void config_write(struct virtio_dev *d, unsigned off, const uint8_t *data, unsigned len)
{
	struct balloon *b = d->opaque;
	uint32_t before = actual_pages(b);

	for (unsigned i = 0; i < len; i++)
		if (off + i >= 4)
			b->actual[off + i - 4] = data[i];
	if (actual_pages(b) != before && b->hooks.actual_changed)
		b->hooks.actual_changed(b->hooks.opaque, balloon_actual(b));
}

int balloon_create(struct gmem *gm, const struct balloon_opts *o, const struct balloon_hooks *h,
		   struct balloon **out)
{
	struct balloon *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->gm = gm;
	b->mm = o->mm;
	b->ram_pages = gm->ram_size / BALLOON_PAGE_SIZE;
	if (h)
		b->hooks = *h;
	b->interval = o->stats_interval;
	b->vdev = (struct virtio_dev){
		.name = "virtio-balloon",
		.device_id = VIRTIO_ID_BALLOON,
		.features = VIRTIO_FEATURE(VIRTIO_BALLOON_F_STATS_VQ) |
			    (o->deflate_on_oom ? VIRTIO_FEATURE(VIRTIO_BALLOON_F_DEFLATE_ON_OOM) : 0) |
			    (o->free_page_reporting ? VIRTIO_FEATURE(VIRTIO_BALLOON_F_REPORTING) : 0),
		.config_size = BALLOON_CONFIG_SIZE,
		.num_queues = o->free_page_reporting ? 4 : 3,
		.queue_max_size = BALLOON_QUEUE_SIZE,
		.config_read = config_read,
		.config_write = config_write,
		.notify = dev_notify,
		.reset = dev_reset,
		.opaque = b,
	};
	*out = b;
	return 0;
}

void balloon_destroy(struct balloon *b)
{
	free(b);
}

struct virtio_dev *balloon_virtio(struct balloon *b)
{
	return &b->vdev;
}

/* The transport lock guards the balloon's state (the device is on its transport before anyone
 * calls in: virtio_pci_add in kvmm, virtio_pci_init in unit tests). */
static void lock(struct balloon *b)
{
	virtio_lock(&b->vdev);
}

static void unlock(struct balloon *b)
{
	virtio_unlock(&b->vdev);
}

int balloon_set_target(struct balloon *b, uint64_t bytes)
{
	uint64_t pages = bytes / BALLOON_PAGE_SIZE;

	if (bytes == 0)
		return -EINVAL;
	if (pages > b->ram_pages)
		pages = b->ram_pages;
	lock(b);
	b->num_pages = (uint32_t)(b->ram_pages - pages);
	virtio_config_changed(&b->vdev);
	unlock(b);
	return 0;
}

uint64_t balloon_target(struct balloon *b)
{
	uint64_t v;

	lock(b);
	v = (b->ram_pages - b->num_pages) * BALLOON_PAGE_SIZE;
	unlock(b);
	return v;
}

uint64_t balloon_actual(struct balloon *b)
{
	uint64_t a;

	lock(b);
	/* The guest may claim more than it has; the VM cannot shrink below zero. */
	a = actual_pages(b);
	unlock(b);
	return (a > b->ram_pages ? 0 : b->ram_pages - a) * BALLOON_PAGE_SIZE;
}

void balloon_get_stats(struct balloon *b, struct balloon_stats *out)
{
	lock(b);
	*out = b->stats;
	unlock(b);
}

void balloon_get_counters(struct balloon *b, struct balloon_counters *out)
{
	lock(b);
	*out = b->counters;
	unlock(b);
}

unsigned balloon_stats_interval(struct balloon *b)
{
	unsigned v;

	lock(b);
	v = b->interval;
	unlock(b);
	return v;
}

void balloon_set_stats_interval(struct balloon *b, unsigned seconds)
{
	lock(b);
	b->interval = seconds;
	if (b->hooks.interval_changed)
		b->hooks.interval_changed(b->hooks.opaque, seconds);
	unlock(b);
}

void balloon_stats_request(struct balloon *b)
{
	int q;

	lock(b);
	q = queue_index(b, VIRTIO_BALLOON_F_STATS_VQ);
	if (b->stats_held && q != Q_NONE && virtio_driver_ok(&b->vdev)) {
		b->stats_held = false;
		virtq_push(virtio_queue(&b->vdev, (unsigned)q), b->stats_head, 0);
		interrupt(b, (unsigned)q);
	}
	unlock(b);
}
