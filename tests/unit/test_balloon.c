/* The virtio-balloon device (src/devices/virtio/balloon.c) behind the real PCI transport registers,
 * driven the way Linux's virtio_balloon drives it, over 32 MiB of guest memory: no KVM, no vm. */
#include <kvmm/balloon.h>
#include <kvmm/gmem.h>
#include <kvmm/log.h>
#include <kvmm/virtio.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_pci.h>
#include <string.h>

#define RAM_SIZE (32ull << 20)
#define QSIZE 128
#define RINGS 0x100000ull     /* queue q's rings at RINGS + q * 0x10000 */
#define BUFS 0x200000ull      /* request buffers */
#define PG 4096ull

static void quiet_log(void)
{
	log_set_level(LOG_ERROR);
}

TestSuite(balloon, .init = quiet_log, .timeout = 10);

static struct {
	struct gmem gm;
	struct balloon *b;
	struct virtio_pci vp;
	uint16_t avail_idx[4];
	unsigned changes, intervals;
	uint64_t last_logical;
	unsigned last_interval;
} F;

static void on_actual(void *opaque, uint64_t logical)
{
	F.changes++;
	F.last_logical = logical;
}

static void on_interval(void *opaque, unsigned seconds)
{
	F.intervals++;
	F.last_interval = seconds;
}

static void no_msi(struct virtio_pci *vp, unsigned v)
{
}

static void no_intx(struct virtio_pci *vp, bool level)
{
}

static void common_wr(unsigned off, unsigned len, uint64_t v)
{
	uint8_t d[8];

	for (unsigned i = 0; i < len; i++)
		d[i] = (uint8_t)(v >> (8 * i));
	F.vp.pci.bars[VIRTIO_PCI_BAR].fn(&F.vp, VIRTIO_PCI_COMMON_OFF + off, d, len, true);
}

static uint8_t status(void)
{
	uint8_t s;

	F.vp.pci.bars[VIRTIO_PCI_BAR].fn(&F.vp, VIRTIO_PCI_COMMON_STATUS, &s, 1, false);
	return s;
}

static uint64_t ring(unsigned q)
{
	return RINGS + q * 0x10000ull;
}

/* A driver brings the device up, accepting every offered feature, with `nq` queues. */
static void setup_with(const struct balloon_opts *o, unsigned nq)
{
	memset(&F, 0, sizeof(F));
	cr_assert_eq(gmem_init(&F.gm, RAM_SIZE, MEM_BACKEND_ANON), 0);
	cr_assert_eq(balloon_create(&F.gm, o,
				    &(struct balloon_hooks){ .actual_changed = on_actual,
							     .interval_changed = on_interval },
				    &F.b),
		     0);
	cr_assert_eq(virtio_pci_init(&F.vp, balloon_virtio(F.b), &F.gm), 0);
	F.vp.ops = (struct virtio_pci_ops){ .msi = no_msi, .intx = no_intx };
	cr_assert_eq(balloon_virtio(F.b)->num_queues, nq);

	common_wr(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2);
	for (unsigned half = 0; half < 2; half++) {
		common_wr(VIRTIO_PCI_COMMON_GFSELECT, 4, half);
		common_wr(VIRTIO_PCI_COMMON_GF, 4, (uint32_t)(F.vp.features >> (32 * half)));
	}
	common_wr(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2 | 8);
	for (unsigned q = 0; q < nq; q++) {
		common_wr(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
		common_wr(VIRTIO_PCI_COMMON_Q_SIZE, 2, QSIZE);
		common_wr(VIRTIO_PCI_COMMON_Q_DESCLO, 4, ring(q));
		common_wr(VIRTIO_PCI_COMMON_Q_AVAILLO, 4, ring(q) + 0x1000);
		common_wr(VIRTIO_PCI_COMMON_Q_USEDLO, 4, ring(q) + 0x2000);
		common_wr(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	}
	common_wr(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2 | 4 | 8);
	cr_assert(virtio_driver_ok(balloon_virtio(F.b)));
}

static void setup(void)
{
	setup_with(&(struct balloon_opts){ .free_page_reporting = true }, 4);
}

static void teardown(void)
{
	virtio_pci_destroy(&F.vp);
	balloon_destroy(F.b);
	gmem_destroy(&F.gm);
}

static void *ram(uint64_t gpa)
{
	return gmem_ptr(&F.gm, gpa, 1);
}

/* Puts descriptor i of queue q; the chain is made available by offer(). */
static void desc(unsigned q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	memcpy(ram(ring(q) + 16ull * i), &d, sizeof(d));
}

static void offer(unsigned q, uint16_t head)
{
	uint16_t *avail = ram(ring(q) + 0x1000);

	avail[2 + F.avail_idx[q] % QSIZE] = head;
	__atomic_store_n(&avail[1], ++F.avail_idx[q], __ATOMIC_RELEASE);
	virtio_pci_notify(&F.vp, q);
}

static uint16_t used_idx(unsigned q)
{
	return ((uint16_t *)ram(ring(q) + 0x2000))[1];
}

static void fill_pages(uint64_t first, uint64_t n, uint8_t v)
{
	memset(ram(first * PG), v, n * PG);
}

static bool page_is(uint64_t pfn, uint8_t v)
{
	const uint8_t *p = ram(pfn * PG);

	for (uint64_t i = 0; i < PG; i++)
		if (p[i] != v)
			return false;
	return true;
}

static void send_pfns(unsigned q, uint16_t head, const uint32_t *pfns, unsigned n)
{
	uint64_t buf = BUFS + head * PG;

	memcpy(ram(buf), pfns, n * 4);
	desc(q, head, buf, n * 4, 0, 0);
	offer(q, head);
}

static uint32_t cfg32(unsigned off)
{
	uint8_t d[4];

	balloon_virtio(F.b)->config_read(balloon_virtio(F.b), off, d, 4);
	return d[0] | d[1] << 8 | d[2] << 16 | (uint32_t)d[3] << 24;
}

static void set_actual(uint32_t pages)
{
	uint8_t d[4] = { (uint8_t)pages, (uint8_t)(pages >> 8), (uint8_t)(pages >> 16),
			 (uint8_t)(pages >> 24) };

	balloon_virtio(F.b)->config_write(balloon_virtio(F.b), 4, d, 4);
}

Test(balloon, identity_and_features, .init = setup, .fini = teardown)
{
	struct virtio_dev *d = balloon_virtio(F.b);

	cr_assert_eq(d->device_id, 5);
	cr_assert(virtio_has_feature(d, VIRTIO_BALLOON_F_STATS_VQ));
	cr_assert(virtio_has_feature(d, VIRTIO_BALLOON_F_REPORTING));
	cr_assert(!virtio_has_feature(d, VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	cr_assert(!virtio_has_feature(d, VIRTIO_BALLOON_F_FREE_PAGE_HINT));
	cr_assert_eq(d->config_size, 8);
	cr_assert_str_eq(balloon_stat_name(VIRTIO_BALLOON_S_MEMFREE), "stat-free-memory");
	cr_assert_str_eq(balloon_stat_name(15), "stat-direct-reclaims");
	cr_assert_null(balloon_stat_name(16));
}

Test(balloon, target_and_actual, .init = setup, .fini = teardown)
{
	uint8_t gen = F.vp.generation;

	cr_assert_eq(balloon_actual(F.b), RAM_SIZE);
	cr_assert_eq(balloon_set_target(F.b, 0), -EINVAL);
	cr_assert_eq(balloon_set_target(F.b, RAM_SIZE - (8ull << 20) + 100), 0);
	cr_assert_eq(cfg32(0), 2048, "num_pages: 8 MiB of 4 KiB pages (the target rounds down)");
	cr_assert_neq(F.vp.generation, gen, "the driver is told the config changed");
	cr_assert_eq(balloon_target(F.b), RAM_SIZE - (8ull << 20));
	cr_assert_eq(balloon_set_target(F.b, 1ull << 40), 0);
	cr_assert_eq(cfg32(0), 0, "a target above RAM size deflates completely");

	set_actual(1000);
	cr_assert_eq(F.changes, 1);
	cr_assert_eq(F.last_logical, RAM_SIZE - 1000 * PG);
	cr_assert_eq(balloon_actual(F.b), RAM_SIZE - 1000 * PG);
	set_actual(1000);
	cr_assert_eq(F.changes, 1, "no change, no event");
	set_actual(0xffffffff);
	cr_assert_eq(balloon_actual(F.b), 0, "a guest claiming more than its RAM reads as 0");

	/* num_pages is the device's: a driver write does not change it. */
	balloon_virtio(F.b)->config_write(balloon_virtio(F.b), 0, (uint8_t[]){ 7 }, 1);
	cr_assert_eq(cfg32(0), 0);
}

Test(balloon, inflate_merges_and_releases, .init = setup, .fini = teardown)
{
	uint32_t pfns[120];
	unsigned n = 0;
	struct balloon_counters c;
	int64_t before, after;

	fill_pages(99, 203, 0xa5);
	fill_pages(BUFS / PG, 1, 0); /* where send_pfns puts the request */
	before = gmem_resident(&F.gm);
	/* 100..199 in two reversed halves, 300 twice, and frames that are not RAM. */
	for (uint32_t p = 149; p >= 100; p--)
		pfns[n++] = p;
	for (uint32_t p = 199; p >= 150; p--)
		pfns[n++] = p;
	pfns[n++] = 300;
	pfns[n++] = 300;
	pfns[n++] = 0xffffffff;
	pfns[n++] = (uint32_t)(RAM_SIZE / PG);
	send_pfns(0, 0, pfns, n);

	cr_assert_eq(used_idx(0), 1, "the buffer is returned");
	after = gmem_resident(&F.gm);
	cr_assert(before - after >= (int64_t)(101 * PG), "resident memory fell by %lld bytes",
		  (long long)(before - after));
	for (uint64_t p = 100; p < 200; p++)
		cr_assert(page_is(p, 0), "page %llu released (reads as zero)", (unsigned long long)p);
	cr_assert(page_is(300, 0));
	cr_assert(page_is(99, 0xa5) && page_is(200, 0xa5) && page_is(301, 0xa5),
		  "neighbours untouched");
	balloon_get_counters(F.b, &c);
	cr_assert_eq(c.inflated_pages, 102);
	cr_assert_eq(c.bad_pfns, 2);
	cr_assert_eq(c.released_ranges, 2, "one madvise per run: 100-199 and 300");
}

Test(balloon, deflate_only_counts, .init = setup, .fini = teardown)
{
	uint32_t pfns[] = { 50, 51, 0x7fffffff };
	struct balloon_counters c;

	fill_pages(50, 2, 0x11);
	send_pfns(1, 3, pfns, 3);
	cr_assert_eq(used_idx(1), 1);
	cr_assert(page_is(50, 0x11) && page_is(51, 0x11), "deflate releases nothing");
	balloon_get_counters(F.b, &c);
	cr_assert_eq(c.deflated_pages, 2);
	cr_assert_eq(c.bad_pfns, 1);
}

Test(balloon, free_page_reporting, .init = setup, .fini = teardown)
{
	struct balloon_counters c;

	fill_pages(1024, 1024, 0x5a);
	/* Two device-writable segments: 2 MiB at page 1024 and 8 KiB at page 1536 + 100. */
	desc(3, 0, 1024 * PG, 512 * PG, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(3, 1, (1536 + 100) * PG, 2 * PG, VIRTQ_DESC_F_WRITE, 0);
	offer(3, 0);
	cr_assert_eq(used_idx(3), 1);
	cr_assert(page_is(1024, 0) && page_is(1535, 0) && page_is(1636, 0) && page_is(1637, 0));
	cr_assert(page_is(1536, 0x5a) && page_is(1638, 0x5a));
	balloon_get_counters(F.b, &c);
	cr_assert_eq(c.reported_pages, 514);
}

static void stats_buffer(uint16_t head, const uint16_t *tags, const uint64_t *vals, unsigned n,
			 unsigned extra)
{
	uint8_t *p = ram(BUFS + head * PG);

	for (unsigned i = 0; i < n; i++) {
		memcpy(p + 10 * i, &tags[i], 2);
		memcpy(p + 10 * i + 2, &vals[i], 8);
	}
	desc(2, head, BUFS + head * PG, 10 * n + extra, 0, 0);
	offer(2, head);
}

Test(balloon, stats_held_until_requested, .init = setup, .fini = teardown)
{
	uint16_t tags[] = { VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT, 999,
			    VIRTIO_BALLOON_S_SWAP_IN };
	uint64_t vals[] = { 123 << 20, 256 << 20, 7, UINT64_MAX };
	struct balloon_stats st;

	balloon_get_stats(F.b, &st);
	cr_assert_eq(st.last_update, 0);
	cr_assert(!st.valid[VIRTIO_BALLOON_S_MEMFREE]);

	stats_buffer(0, tags, vals, 4, 3 /* a torn last entry is ignored */);
	balloon_get_stats(F.b, &st);
	cr_assert(st.last_update > 0);
	cr_assert(st.valid[VIRTIO_BALLOON_S_MEMFREE] && st.value[VIRTIO_BALLOON_S_MEMFREE] == 123 << 20);
	cr_assert(st.valid[VIRTIO_BALLOON_S_MEMTOT] && st.value[VIRTIO_BALLOON_S_MEMTOT] == 256 << 20);
	cr_assert(st.valid[VIRTIO_BALLOON_S_SWAP_IN] && st.value[VIRTIO_BALLOON_S_SWAP_IN] == UINT64_MAX);
	cr_assert(!st.valid[VIRTIO_BALLOON_S_MAJFLT]);
	cr_assert_eq(used_idx(2), 0, "the device keeps the buffer");

	balloon_stats_request(F.b);
	cr_assert_eq(used_idx(2), 1, "asking for stats returns the buffer");
	balloon_stats_request(F.b);
	cr_assert_eq(used_idx(2), 1, "nothing held, nothing returned");

	vals[0] = 1 << 20;
	stats_buffer(1, tags, vals, 1, 0);
	balloon_get_stats(F.b, &st);
	cr_assert_eq(st.value[VIRTIO_BALLOON_S_MEMFREE], 1 << 20);

	balloon_set_stats_interval(F.b, 5);
	cr_assert_eq(F.intervals, 1);
	cr_assert_eq(F.last_interval, 5);
	cr_assert_eq(balloon_stats_interval(F.b), 5);
}

Test(balloon, malformed_chain_needs_reset, .init = setup, .fini = teardown)
{
	uint32_t pfn = 10;

	/* A descriptor that chains to itself. */
	desc(0, 0, BUFS, 4, VIRTQ_DESC_F_NEXT, 0);
	offer(0, 0);
	cr_assert(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* Later kicks are ignored until the driver resets; nothing crashes. */
	fill_pages(10, 1, 0x77);
	send_pfns(0, 1, &pfn, 1);
	cr_assert(page_is(10, 0x77));
	common_wr(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	cr_assert_eq(status(), 0);
}

Test(balloon, buffer_outside_ram_needs_reset, .init = setup, .fini = teardown)
{
	desc(0, 0, RAM_SIZE - 2, 4, 0, 0);
	offer(0, 0);
	cr_assert(status() & VIRTIO_CONFIG_S_NEEDS_RESET);
}

Test(balloon, without_reporting_three_queues)
{
	struct balloon_counters c;

	setup_with(&(struct balloon_opts){ .deflate_on_oom = true, .stats_interval = 2 }, 3);
	cr_assert(virtio_has_feature(balloon_virtio(F.b), VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	cr_assert(!virtio_has_feature(balloon_virtio(F.b), VIRTIO_BALLOON_F_REPORTING));
	cr_assert_eq(balloon_stats_interval(F.b), 2);
	desc(2, 0, BUFS, 10, 0, 0);
	offer(2, 0);
	balloon_get_counters(F.b, &c);
	cr_assert_eq(c.stats_updates, 1, "queue 2 is the stats queue");
	teardown();
}
