/* The balloon:SECONDS step: a small polling virtio-balloon driver (virtio 1.2 section 5.5) over the
 * modern PCI transport. It gives pages of its free pool (all RAM the image, page tables, workload
 * area and checksums do not use) to the device and takes them back as the device's num_pages says,
 * answers stats requests, reports free pages, and can misbehave on purpose to test the VMM.
 *
 * The free pool is a stack in address order: pool pages [0, inflated) are in the balloon, so inflate
 * takes the next pages up and deflate gives back the topmost, both in ascending contiguous runs. */
#include "virtio.h"

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_BALLOON_MODERN 0x1045
#define VIRTIO_BALLOON_TRANSITIONAL 0x1002
#define VIRTIO_ID_BALLOON 5
#define BALLOON_F_STATS_VQ 1
#define BALLOON_F_REPORTING 5
#define CFG_NUM_PAGES 0
#define CFG_ACTUAL 4
#define Q_INFLATE 0
#define Q_DEFLATE 1
#define Q_STATS 2

#define BUF_PFNS 256          /* PFNs per inflate/deflate buffer (Linux: VIRTIO_BALLOON_ARRAY_PFNS_MAX) */
#define REPORT_SEGS 32        /* segments per reporting chain (Linux: PAGE_REPORTING_CAPACITY) */
#define REPORT_CHUNK_PAGES 512 /* 2 MiB */
#define STAT_TAGS 10          /* VIRTIO_BALLOON_S_SWAP_IN .. S_HTLB_PGFAIL */
#define STAT_LEN 10           /* le16 tag, le64 value */
#define S_MINFLT 3
#define S_MEMFREE 4
#define S_MEMTOT 5
#define S_AVAIL 6
#define POLL_US 1000          /* how often num_pages is read when at target */
#define STATUS_EVERY_US 10000 /* how often device_status is read while waiting */
#define WAIT_US 10000000      /* a buffer not back after this: the device is stuck or broken */
#define MISBEHAVE_WAIT_US 2000000
#define G 0x9e3779b97f4a7c15ull

static struct {
	bool up;
	struct virtio_dev dev;
	struct vq inflate, deflate, stats, report;
	uint64_t rings;            /* 4 x 3 pages of virtqueues */
	uint32_t *pfns;            /* the one inflate/deflate buffer */
	uint8_t *statbuf;          /* the stats buffer (descriptor 0 of the stats queue) */
	uint8_t *scratch;          /* garbage for misbehaving */
	bool want_stats, want_report;
	struct mem_chunk pool[MEM_CHUNKS_MAX];
	int nr_pool;
	uint64_t pool_pages, inflated, inflated_max, last_target, stats_n, reported;
} b;

/* --- the free pool ------------------------------------------------------------------------------ */

/* The address of pool page i and how many pages follow it contiguously (at most `max`). */
static uint64_t pool_run(uint64_t i, uint64_t max, uint64_t *run)
{
	for (int c = 0; c < b.nr_pool; c++) {
		if (i < b.pool[c].pages) {
			uint64_t left = b.pool[c].pages - i;
			*run = left < max ? left : max;
			return b.pool[c].addr + (i << PAGE_SHIFT);
		}
		i -= b.pool[c].pages;
	}
	*run = 0;
	return 0;
}

/* A non-zero word, different for every page, so the host must keep each page resident. */
static void pool_write(uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t run, addr = pool_run(first, n, &run);
		for (uint64_t p = 0; p < run; p++) {
			uint64_t a = addr + (p << PAGE_SHIFT), v = ((a >> PAGE_SHIFT) * G) | 1, cnt = PAGE_SIZE / 8;
			void *d = (void *)a;
			__asm__ volatile("rep stosq" : "+D"(d), "+c"(cnt) : "a"(v) : "memory");
		}
		first += run;
		n -= run;
	}
}

/* --- device set-up -------------------------------------------------------------------------------- */

static bool is_balloon(uint16_t vendor, uint16_t device, uint16_t subsys)
{
	return vendor == VIRTIO_VENDOR &&
	       (device == VIRTIO_BALLOON_MODERN || (device == VIRTIO_BALLOON_TRANSITIONAL && subsys == VIRTIO_ID_BALLOON));
}

static volatile uint32_t *cfg32(unsigned off)
{
	return (volatile uint32_t *)(b.dev.devcfg + off);
}

static void write_actual(void)
{
	*cfg32(CFG_ACTUAL) = (uint32_t)b.inflated;
}

static void stats_fill(void)
{
	uint64_t val[STAT_TAGS] = { 0 };
	uint64_t free_bytes = (b.pool_pages - b.inflated) << PAGE_SHIFT;

	val[S_MINFLT] = b.stats_n;
	val[S_MEMFREE] = free_bytes;
	val[S_MEMTOT] = mm_ram_bytes();
	val[S_AVAIL] = free_bytes;
	for (unsigned t = 0; t < STAT_TAGS; t++) {
		uint16_t tag = t;
		memcpy(b.statbuf + t * STAT_LEN, &tag, 2);
		memcpy(b.statbuf + t * STAT_LEN + 2, &val[t], 8);
	}
}

static void stats_submit(void)
{
	stats_fill();
	b.stats.desc[0] = (struct vring_desc){ (uint64_t)b.statbuf, STAT_TAGS * STAT_LEN, 0, 0 };
	vq_submit(&b.stats, 0);
}

/* Virtio 1.2 section 3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queues, DRIVER_OK. */
static int device_init(void)
{
	struct virtio_dev *d = &b.dev;

	virtio_reset(d);
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	uint64_t offered = virtio_device_features(d), want = 1ull << VIRTIO_F_VERSION_1;
	if (!(offered & want)) {
		print("KVMM balloon error=no-version-1 offered=0x%lx\n", offered);
		return -1;
	}
	if (b.want_stats && (offered & (1ull << BALLOON_F_STATS_VQ)))
		want |= 1ull << BALLOON_F_STATS_VQ;
	if (b.want_report && (offered & (1ull << BALLOON_F_REPORTING)))
		want |= 1ull << BALLOON_F_REPORTING;
	if (virtio_set_features(d, want)) {
		print("KVMM balloon error=features-refused features=0x%lx\n", want);
		return -1;
	}
	/* Queue numbers as Linux and QEMU give them: absent queues take no index. */
	uint16_t next = Q_STATS;
	b.stats.ready = b.report.ready = false;
	int err = virtio_vq_setup(d, &b.inflate, Q_INFLATE, b.rings) ||
		  virtio_vq_setup(d, &b.deflate, Q_DEFLATE, b.rings + 3 * PAGE_SIZE);
	if (!err && (want & (1ull << BALLOON_F_STATS_VQ)))
		err = virtio_vq_setup(d, &b.stats, next++, b.rings + 6 * PAGE_SIZE);
	if (!err && (want & (1ull << BALLOON_F_REPORTING)))
		err = virtio_vq_setup(d, &b.report, next++, b.rings + 9 * PAGE_SIZE);
	if (err) {
		print("KVMM balloon error=queue-setup\n");
		virtio_set_status(d, virtio_status(d) | VIRTIO_STATUS_FAILED);
		return -1;
	}
	virtio_set_status(d, virtio_status(d) | VIRTIO_STATUS_DRIVER_OK);
	/* Section 5.5.6.3: the driver makes a stats buffer available right after initialisation. */
	if (b.stats.ready)
		stats_submit();
	return 0;
}

/* After DEVICE_NEEDS_RESET, or a chain the device kept: start over. The balloon's contents stay
 * where they are (the host may keep them unbacked), so the driver tells the device its size again. */
static int device_reinit(bool write_size)
{
	int r = device_init();

	if (!r && write_size)
		write_actual();
	print("KVMM balloon event=reinit ok=%d\n", r ? 0 : 1);
	return r;
}

/* --- polling -------------------------------------------------------------------------------------- */

/* Drains every used ring; a returned stats buffer is the device asking for fresh values. */
static void service(void)
{
	uint32_t id, len;
	struct vq *qs[] = { &b.inflate, &b.deflate, &b.report };

	for (unsigned i = 0; i < 3; i++)
		while (qs[i]->ready && vq_used(qs[i], &id, &len))
			;
	while (b.stats.ready && vq_used(&b.stats, &id, &len)) {
		if (id != 0)
			continue;
		b.stats_n++;
		if (b.stats_n == 1 || b.stats_n % 10 == 0)
			print("KVMM balloon event=stats n=%lu\n", b.stats_n);
		stats_submit();
	}
}

enum wait_result { WAIT_DONE, WAIT_NEEDS_RESET, WAIT_TIMEOUT };

static enum wait_result wait_done(struct vq *q, uint16_t head, uint64_t timeout_us)
{
	uint64_t start = clock_now_us(), next_status = start + STATUS_EVERY_US;

	for (;;) {
		service();
		if (q->done & (1ull << head))
			return WAIT_DONE;
		uint64_t now = clock_now_us();
		if (now >= next_status) {
			if (virtio_status(&b.dev) & VIRTIO_STATUS_NEEDS_RESET)
				return WAIT_NEEDS_RESET;
			next_status = now + STATUS_EVERY_US;
		}
		if (now - start >= timeout_us)
			return WAIT_TIMEOUT;
		cpu_relax();
	}
}

/* A normal buffer that did not come back: say why, reset and go on. */
static int recover(struct vq *q, enum wait_result w)
{
	if (w == WAIT_NEEDS_RESET)
		print("KVMM balloon event=needs-reset\n");
	else
		print("KVMM balloon event=timeout queue=%u\n", q->index);
	return device_reinit(true);
}

/* One buffer of PFNs on the inflate or deflate queue, waited for. */
static int send_pfns(struct vq *q, unsigned n)
{
	q->desc[0] = (struct vring_desc){ (uint64_t)b.pfns, n * 4, 0, 0 };
	vq_submit(q, 0);
	enum wait_result w = wait_done(q, 0, WAIT_US);
	if (w != WAIT_DONE) {
		recover(q, w);
		return -1;
	}
	return 0;
}

static unsigned fill_pfns(uint64_t first, unsigned n)
{
	unsigned k = 0;

	while (k < n) {
		uint64_t run, addr = pool_run(first + k, n - k, &run);
		if (!run)
			break;
		for (uint64_t p = 0; p < run; p++)
			b.pfns[k++] = (uint32_t)((addr >> PAGE_SHIFT) + p);
	}
	return k;
}

static int inflate(unsigned n)
{
	n = fill_pfns(b.inflated, n);
	if (!n || send_pfns(&b.inflate, n))
		return -1;
	b.inflated += n;
	if (b.inflated > b.inflated_max)
		b.inflated_max = b.inflated;
	write_actual();
	return 0;
}

/* Deflated pages are the guest's again: it writes them (unless it will report them right away). */
static int deflate(unsigned n)
{
	uint64_t first = b.inflated - n;

	n = fill_pfns(first, n);
	if (!n || send_pfns(&b.deflate, n))
		return -1;
	b.inflated -= n;
	write_actual();
	if (!b.report.ready)
		pool_write(first, n);
	return 0;
}

/* Free page reporting (section 5.5.6.7): every pool page not in the balloon, in chains of up to
 * REPORT_SEGS device-writable segments, 2 MiB-aligned 2 MiB segments where the run allows. */
static void report_pass(void)
{
	uint64_t i = b.inflated, pages = 0;
	unsigned nseg = 0;

	while (i < b.pool_pages || nseg) {
		if (i < b.pool_pages) {
			uint64_t run, addr = pool_run(i, REPORT_CHUNK_PAGES, &run);
			uint64_t to_2m = (ALIGN_UP(addr + 1, REPORT_CHUNK_PAGES * PAGE_SIZE) - addr) >> PAGE_SHIFT;
			if (run > to_2m)
				run = to_2m;
			b.report.desc[nseg] = (struct vring_desc){ addr, (uint32_t)(run << PAGE_SHIFT),
							  VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, nseg + 1 };
			nseg++;
			i += run;
			pages += run;
		}
		if (nseg == REPORT_SEGS || (i >= b.pool_pages && nseg)) {
			b.report.desc[nseg - 1].flags = VRING_DESC_F_WRITE;
			vq_submit(&b.report, 0);
			enum wait_result w = wait_done(&b.report, 0, WAIT_US);
			nseg = 0;
			if (w != WAIT_DONE) {
				recover(&b.report, w);
				return;
			}
		}
	}
	b.reported += pages;
	print("KVMM balloon event=reported pages=%lu\n", pages);
}

/* --- misbehaving on purpose ------------------------------------------------------------------ */

/* After a chain the device must reject: did it flag DEVICE_NEEDS_RESET, ignore it, or return it? */
static void after_garbage(struct vq *q, uint16_t head)
{
	enum wait_result w = wait_done(q, head, MISBEHAVE_WAIT_US);

	if (w == WAIT_NEEDS_RESET || (virtio_status(&b.dev) & VIRTIO_STATUS_NEEDS_RESET)) {
		print("KVMM balloon event=needs-reset\n");
	} else {
		print("KVMM balloon event=no-reset returned=%d\n", w == WAIT_DONE);
		if (w == WAIT_DONE)
			return;
	}
	device_reinit(true);
}

static void misbehave_bad_pfn(void)
{
	uint64_t ram_pfns = mm_ram_end() >> PAGE_SHIFT, run;
	uint64_t top = b.pool_pages - 4, first = pool_run(top, 4, &run) >> PAGE_SHIFT;
	unsigned n = 0;

	if (b.pool_pages - b.inflated < 8 || run != 4)
		return;
	b.pfns[n++] = (uint32_t)(ram_pfns + 16);    /* beyond RAM */
	b.pfns[n++] = (uint32_t)(ram_pfns + 0x100000);
	b.pfns[n++] = 0xc0000;                      /* 3 GiB: the PCI hole */
	b.pfns[n++] = 0xfee00;                      /* the local APIC */
	b.pfns[n++] = 0xffffffff;
	for (unsigned k = 0; k < 4; k++) {          /* valid, from the top of the pool, each twice */
		b.pfns[n++] = (uint32_t)(first + k);
		b.pfns[n++] = (uint32_t)(first + k);
	}
	if (send_pfns(&b.inflate, n))
		return;
	/* The valid ones are the guest's own free pages: take them back properly. */
	for (unsigned k = 0; k < 4; k++)
		b.pfns[k] = (uint32_t)(first + k);
	if (!send_pfns(&b.deflate, 4))
		pool_write(top, 4);
}

static void misbehave_bad_chain(void)
{
	uint64_t far = ALIGN_UP(mm_ram_end() > (4ull << 30) ? mm_ram_end() : 4ull << 30, 1ull << 30) + (64ull << 30);
	struct vring_desc bad[] = {
		{ (uint64_t)b.scratch, 4, VRING_DESC_F_NEXT, 0 },                    /* next: itself */
		{ (uint64_t)b.scratch, 4, VRING_DESC_F_NEXT, VQ_SIZE_MAX + 7 },      /* next out of range */
		{ far, (uint32_t)PAGE_SIZE, 0, 0 },                                  /* outside RAM */
		{ 0xfffffffffffff000ull, 0x2000, 0, 0 },                             /* wraps around */
		{ far, 4 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0 },    /* table outside RAM */
	};

	for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		b.inflate.desc[0] = bad[k];
		vq_submit(&b.inflate, 0);
		after_garbage(&b.inflate, 0);
	}
}

static void misbehave_write_inflated(void)
{
	unsigned n = b.pool_pages - b.inflated < BUF_PFNS ? (unsigned)(b.pool_pages - b.inflated) : BUF_PFNS;
	uint64_t first = b.inflated;
	bool ok = true;

	if (!n || inflate(n))
		return;
	for (uint64_t k = 0; k < n; k++) {
		uint64_t run;
		volatile uint64_t *w = (volatile uint64_t *)pool_run(first + k, 1, &run);
		w[0] = (uint64_t)w * G;
		w[511] = ~(uint64_t)w;
	}
	for (uint64_t k = 0; k < n; k++) {
		uint64_t run;
		volatile uint64_t *w = (volatile uint64_t *)pool_run(first + k, 1, &run);
		ok = ok && w[0] == (uint64_t)w * G && w[511] == ~(uint64_t)w;
	}
	print("KVMM balloon event=write-inflated ok=%d pages=%u\n", ok ? 1 : 0, n);
	deflate(n);
}

static void misbehave_lie_stats(void)
{
	uint8_t *lie = b.scratch;
	static const uint16_t tags[] = { 10, 11, 0x7fff, 0xffff, 5, 4, 6, 0 };
	static const uint64_t vals[] = { 1, 0xffffffffffffffffull, 42, 7, 1ull << 63, 0xffffffffffffffffull, 3, 9 };

	if (!b.stats.ready) {
		print("KVMM balloon event=skipped kind=lie-stats reason=no-stats-queue\n");
		return;
	}
	for (unsigned t = 0; t < 8; t++) {
		memcpy(lie + t * STAT_LEN, &tags[t], 2);
		memcpy(lie + t * STAT_LEN + 2, &vals[t], 8);
	}
	struct vring_desc bad[] = {
		{ (uint64_t)lie, 8 * STAT_LEN, 0, 0 },           /* unknown tags, absurd values */
		{ (uint64_t)lie, 8 * STAT_LEN - 3, 0, 0 },       /* not a multiple of 10 */
		{ (uint64_t)lie, 0xfffffff0u, 0, 0 },            /* far more than RAM */
	};
	for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		b.stats.desc[1] = bad[k];
		vq_submit(&b.stats, 1);
		/* The device keeps one stats buffer and returns the previous one (descriptor 0, which
		 * service() refills) when a new one comes; this one is back when the next one is. */
		enum wait_result w = wait_done(&b.stats, 1, MISBEHAVE_WAIT_US);
		if (w == WAIT_NEEDS_RESET || (virtio_status(&b.dev) & VIRTIO_STATUS_NEEDS_RESET)) {
			print("KVMM balloon event=needs-reset\n");
			device_reinit(true);
		} else {
			print("KVMM balloon event=no-reset returned=%d\n", w == WAIT_DONE);
			if (w != WAIT_DONE && k + 1 < sizeof(bad) / sizeof(bad[0]))
				device_reinit(true); /* descriptor 1 is still the device's */
		}
	}
}

static void misbehave(unsigned kinds)
{
	void (*const act[MISBEHAVE_COUNT])(void) = {
		[MISBEHAVE_BAD_PFN] = misbehave_bad_pfn,
		[MISBEHAVE_BAD_CHAIN] = misbehave_bad_chain,
		[MISBEHAVE_WRITE_INFLATED] = misbehave_write_inflated,
		[MISBEHAVE_LIE_STATS] = misbehave_lie_stats,
	};

	for (unsigned k = 0; k < MISBEHAVE_COUNT; k++)
		if (kinds & (1u << k)) {
			print("KVMM balloon event=misbehave kind=%s\n", misbehave_names[k]);
			if (act[k])
				act[k]();
		}
}

/* --- the step ------------------------------------------------------------------------------------- */

static int balloon_up(const struct config *cfg)
{
	struct pci_fn f;

	if (!pci_find(is_balloon, &f)) {
		print("KVMM error=no-balloon\n");
		return EXIT_INTERNAL;
	}
	b.dev.pci = f;
	if (virtio_pci_attach(&b.dev)) {
		print("KVMM balloon event=no-modern-caps bdf=00:%02u.%u device=0x%04x\n", f.dev, f.fn, f.device);
		print("KVMM error=no-balloon reason=legacy-only\n");
		return EXIT_INTERNAL;
	}
	b.rings = mm_alloc_pages(12);
	b.pfns = (uint32_t *)mm_alloc_pages(1);
	b.statbuf = (uint8_t *)mm_alloc_pages(1);
	b.scratch = (uint8_t *)mm_alloc_pages(1);
	if (!b.rings || !b.pfns || !b.statbuf || !b.scratch) {
		print("KVMM error=no-balloon reason=no-memory\n");
		return EXIT_INTERNAL;
	}
	b.nr_pool = mm_alloc_rest(b.pool, MEM_CHUNKS_MAX);
	for (int c = 0; c < b.nr_pool; c++)
		b.pool_pages += b.pool[c].pages;
	b.want_stats = cfg->balloon_opts & BALLOON_OPT_STATS || cfg->misbehave & (1u << MISBEHAVE_LIE_STATS);
	b.want_report = cfg->balloon_opts & BALLOON_OPT_REPORT;
	if (device_init())
		return EXIT_INTERNAL;
	print("KVMM balloon event=found bdf=00:%02u.%u device=0x%04x features=0x%lx\n", f.dev, f.fn, f.device,
	      b.dev.features);
	for (unsigned bar = 0; bar < 6; bar++)
		if (b.dev.pci.reassigned_bars & (1u << bar))
			print("KVMM balloon event=bar-assigned bar=%u\n", bar);
	pool_write(0, b.pool_pages);
	b.up = true;
	return EXIT_OK;
}

/* Moves the balloon one buffer towards the device's target; true when at target. */
static bool adjust(uint64_t target)
{
	uint64_t want = target < b.pool_pages ? target : b.pool_pages;

	if (b.inflated < want)
		inflate(want - b.inflated < BUF_PFNS ? want - b.inflated : BUF_PFNS);
	else if (b.inflated > want)
		deflate(b.inflated - want < BUF_PFNS ? b.inflated - want : BUF_PFNS);
	return b.inflated == want;
}

int balloon_step(const struct config *cfg, uint64_t seconds)
{
	int r;

	if (clock_calibrate()) {
		print("KVMM error=rtc-not-ticking\n");
		return EXIT_INTERNAL;
	}
	if (!b.up && (r = balloon_up(cfg)))
		return r;
	print("KVMM balloon event=ready free_pages=%lu\n", b.pool_pages - b.inflated);
	if (b.report.ready)
		report_pass();
	misbehave(cfg->misbehave);

	bool ignore = cfg->misbehave & (1u << MISBEHAVE_IGNORE), deflated = false;
	uint64_t start = clock_now_us(), end = start + seconds * 1000000, next_poll = start;
	while (clock_now_us() < end) {
		service();
		if (ignore || clock_now_us() < next_poll) {
			cpu_relax();
			continue;
		}
		uint64_t target = *cfg32(CFG_NUM_PAGES), before = b.inflated;
		bool at = adjust(target);
		deflated |= b.inflated < before;
		if (at) {
			next_poll = clock_now_us() + POLL_US;
			if (b.inflated != b.last_target || deflated) {
				if (b.inflated != b.last_target)
					print("KVMM balloon target=%lu actual=%lu\n", target, b.inflated);
				b.last_target = b.inflated;
				if (deflated && b.report.ready)
					report_pass();
				deflated = false;
			}
		}
	}
	print("KVMM test=balloon seconds=%lu actual=%lu inflated_max=%lu stats=%lu reported=%lu\n", seconds,
	      b.inflated, b.inflated_max, b.stats_n, b.reported);
	return EXIT_OK;
}
