/* Virtio modern PCI transport register logic (src/devices/virtio/pci.c) with a fake device and fake
 * interrupt sinks: no KVM, no vm. Config space is walked the way Linux's virtio_pci does. */
#include <kvmm/gmem.h>
#include <kvmm/log.h>
#include <kvmm/virtio.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <linux/virtio_pci.h>
#include <string.h>

#define RAM_SIZE (16ull << 20)

static void quiet_log(void)
{
	log_set_level(LOG_ERROR);
}

TestSuite(virtio_pci, .init = quiet_log, .timeout = 10);

struct fx {
	struct gmem gm;
	struct virtio_dev dev;
	struct virtio_pci vp;
	uint8_t config[8];
	unsigned notified[4], resets, msi[8], intx_changes, routes, trapped;
	bool intx;
};

static struct fx F;

static void cfg_rd(struct virtio_dev *d, unsigned off, uint8_t *data, unsigned len)
{
	memcpy(data, F.config + off, len);
}

static void cfg_wr(struct virtio_dev *d, unsigned off, const uint8_t *data, unsigned len)
{
	memcpy(F.config + off, data, len);
}

static void dev_notify(struct virtio_dev *d, unsigned q)
{
	F.notified[q]++;
}

static void dev_reset(struct virtio_dev *d)
{
	F.resets++;
}

static void sink_msi(struct virtio_pci *vp, unsigned v)
{
	F.msi[v]++;
}

static void sink_intx(struct virtio_pci *vp, bool level)
{
	F.intx = level;
	F.intx_changes++;
}

static void sink_route(struct virtio_pci *vp, unsigned v)
{
	F.routes++;
}

static void sink_trapped(struct virtio_pci *vp, unsigned q)
{
	F.trapped++;
}

static void setup(void)
{
	memset(&F, 0, sizeof(F));
	cr_assert_eq(gmem_init(&F.gm, RAM_SIZE, MEM_BACKEND_ANON), 0);
	F.dev = (struct virtio_dev){ .name = "fake", .device_id = 5, .features = 1ull << 1 | 1ull << 3,
				     .config_size = 8, .num_queues = 3, .queue_max_size = 256,
				     .config_read = cfg_rd, .config_write = cfg_wr,
				     .notify = dev_notify, .reset = dev_reset };
	cr_assert_eq(virtio_pci_init(&F.vp, &F.dev, &F.gm), 0);
	F.vp.ops = (struct virtio_pci_ops){ .msi = sink_msi, .intx = sink_intx,
					    .msix_route = sink_route, .notify_trapped = sink_trapped };
}

static void teardown(void)
{
	virtio_pci_destroy(&F.vp);
	gmem_destroy(&F.gm);
}

static uint64_t bar_rd(unsigned bar, uint64_t off, unsigned len)
{
	uint8_t d[8] = { 0 };
	uint64_t v = 0;

	F.vp.pci.bars[bar].fn(F.vp.pci.bars[bar].opaque, off, d, len, false);
	for (unsigned i = 0; i < len; i++)
		v |= (uint64_t)d[i] << (8 * i);
	return v;
}

static void bar_wr(unsigned bar, uint64_t off, unsigned len, uint64_t v)
{
	uint8_t d[8];

	for (unsigned i = 0; i < len; i++)
		d[i] = (uint8_t)(v >> (8 * i));
	F.vp.pci.bars[bar].fn(F.vp.pci.bars[bar].opaque, off, d, len, true);
}

#define CRD(off, len) bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_OFF + (off), len)
#define CWR(off, len, v) bar_wr(VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_OFF + (off), len, v)
#define CFG(off, len) pci_dev_cfg_read(&F.vp.pci, off, len)

/* Linux's virtio_pci_find_capability + vp_modern_map_capability checks: the cap of `type`, with
 * its bar valid and offset/length inside the BAR. Returns the cap's config offset or 0. */
static unsigned find_cap(uint8_t type, uint32_t minlen)
{
	unsigned pos, guard = 0;

	cr_assert(CFG(0x06, 2) & 0x10, "capability list bit");
	for (pos = CFG(0x34, 1); pos; pos = CFG(pos + 1, 1)) {
		cr_assert_lt(guard++, 48, "capability loop");
		cr_assert_geq(pos, 0x40);
		if (CFG(pos, 1) != 0x09 || CFG(pos + 3, 1) != type)
			continue;
		unsigned bar = CFG(pos + 4, 1);
		uint32_t off = CFG(pos + 8, 4), len = CFG(pos + 12, 4);

		cr_assert_lt(bar, 6);
		cr_assert_gt(F.vp.pci.bars[bar].size, 0);
		cr_assert(!F.vp.pci.bars[bar].io);
		cr_assert_geq(len, minlen);
		cr_assert_leq((uint64_t)off + len, F.vp.pci.bars[bar].size);
		return pos;
	}
	return 0;
}

Test(virtio_pci, identity_and_capabilities, .init = setup, .fini = teardown)
{
	unsigned pos, msix = 0;

	cr_assert_eq(CFG(0x00, 2), 0x1af4);
	cr_assert_eq(CFG(0x02, 2), 0x1045);
	cr_assert_eq(CFG(0x08, 1), 1, "revision 1");
	cr_assert_eq(CFG(0x2c, 2), 0x1af4);
	cr_assert_eq(CFG(0x2e, 2), 5);
	cr_assert_neq(find_cap(VIRTIO_PCI_CAP_COMMON_CFG, 0x38), 0);
	cr_assert_neq(find_cap(VIRTIO_PCI_CAP_ISR_CFG, 1), 0);
	cr_assert_neq(find_cap(VIRTIO_PCI_CAP_DEVICE_CFG, 8), 0);
	pos = find_cap(VIRTIO_PCI_CAP_NOTIFY_CFG, 2);
	cr_assert_neq(pos, 0);
	cr_assert_geq(CFG(pos + 2, 1), 20);
	cr_assert_eq(CFG(pos + 16, 4), 4, "notify_off_multiplier");
	cr_assert_eq(CFG(pos + 12, 4), 3 * 4, "room for every queue's notify address");
	cr_assert_eq(find_cap(VIRTIO_PCI_CAP_PCI_CFG, 0), 0, "no PCI_CFG cap");
	for (pos = CFG(0x34, 1); pos; pos = CFG(pos + 1, 1))
		if (CFG(pos, 1) == 0x11)
			msix = pos;
	cr_assert_neq(msix, 0);
	cr_assert_eq(CFG(msix + 2, 2) & 0x7ff, 3, "4 vectors (3 queues + config)");
	cr_assert_eq(CFG(msix + 4, 4) & 7, VIRTIO_MSIX_BAR);
	cr_assert_eq(CFG(msix + 8, 4) & 7, VIRTIO_MSIX_BAR);
	cr_assert_gt(F.vp.pci.bars[VIRTIO_MSIX_BAR].size, (CFG(msix + 8, 4) & ~7u) + 7);
	/* Enable and function mask are writable, the table size is not. */
	pci_dev_cfg_write(&F.vp.pci, msix + 2, 2, 0xffff);
	cr_assert_eq(CFG(msix + 2, 2), 0xc003);
}

Test(virtio_pci, feature_negotiation, .init = setup, .fini = teardown)
{
	CWR(VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_DF, 4), 0xa);
	CWR(VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_DF, 4), 1, "VERSION_1");
	CWR(VIRTIO_PCI_COMMON_DFSELECT, 4, 2);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_DF, 4), 0);

	/* Without VERSION_1: FEATURES_OK does not stick. */
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2);
	CWR(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	CWR(VIRTIO_PCI_COMMON_GF, 4, 0x2);
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2 | 8);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_STATUS, 1), 3);

	/* An unoffered feature: refused too. */
	CWR(VIRTIO_PCI_COMMON_GF, 4, 0x6);
	CWR(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	CWR(VIRTIO_PCI_COMMON_GF, 4, 1);
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2 | 8);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_STATUS, 1), 3);

	CWR(VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	CWR(VIRTIO_PCI_COMMON_GF, 4, 0x2);
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2 | 8);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_STATUS, 1), 0xb);
	cr_assert(virtio_has_feature(&F.dev, 1));
	cr_assert(virtio_has_feature(&F.dev, VIRTIO_F_VERSION_1));
	cr_assert(!virtio_has_feature(&F.dev, 3));
	/* Frozen after FEATURES_OK. */
	CWR(VIRTIO_PCI_COMMON_GF, 4, 0xa);
	cr_assert_eq(virtio_features(&F.dev), 0x100000002ull);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_GF, 4), 0x2);
}

static void setup_queue(unsigned q, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	CWR(VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	CWR(VIRTIO_PCI_COMMON_Q_SIZE, 2, size);
	CWR(VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)desc);
	CWR(VIRTIO_PCI_COMMON_Q_DESCHI, 4, desc >> 32);
	CWR(VIRTIO_PCI_COMMON_Q_AVAILLO, 4, (uint32_t)avail);
	CWR(VIRTIO_PCI_COMMON_Q_AVAILHI, 4, avail >> 32);
	CWR(VIRTIO_PCI_COMMON_Q_USEDLO, 4, (uint32_t)used);
	CWR(VIRTIO_PCI_COMMON_Q_USEDHI, 4, used >> 32);
}

static void driver_ok(void)
{
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2);
	CWR(VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	CWR(VIRTIO_PCI_COMMON_GF, 4, 1);
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2 | 8);
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 1 | 2 | 4 | 8);
}

Test(virtio_pci, queue_setup_and_enable, .init = setup, .fini = teardown)
{
	struct virtqueue *vq = virtio_queue(&F.dev, 1);

	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_NUMQ, 2), 3);
	CWR(VIRTIO_PCI_COMMON_Q_SELECT, 2, 1);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SIZE, 2), 256);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_NOFF, 2), 1);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_MSIX, 2), 0xffff);
	driver_ok();
	setup_queue(1, 64, 0x1000, 0x2000, 0x3000);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_AVAILLO, 4), 0x2000);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	CWR(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	cr_assert(vq->enabled);
	cr_assert_eq(vq->size, 64);
	cr_assert_eq(vq->desc_gpa, 0x1000);
	cr_assert_eq(vq->avail_gpa, 0x2000);
	cr_assert_eq(vq->used_gpa, 0x3000);
	/* Frozen while enabled. */
	CWR(VIRTIO_PCI_COMMON_Q_SIZE, 2, 32);
	CWR(VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x5000);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0x1000);

	/* Kicks: trapped MMIO writes reach the device only for enabled queues. */
	bar_wr(VIRTIO_PCI_BAR, VIRTIO_PCI_NOTIFY_OFF + 4, 2, 1);
	bar_wr(VIRTIO_PCI_BAR, VIRTIO_PCI_NOTIFY_OFF + 0, 2, 0);
	bar_wr(VIRTIO_PCI_BAR, VIRTIO_PCI_NOTIFY_OFF + 5, 2, 1);
	bar_wr(VIRTIO_PCI_BAR, VIRTIO_PCI_NOTIFY_OFF + 12, 2, 3);
	cr_assert_eq(F.notified[1], 1);
	cr_assert_eq(F.notified[0], 0);
	cr_assert_eq(F.trapped, 2);
	cr_assert(virtio_driver_ok(&F.dev));
}

Test(virtio_pci, bad_queue_sizes_and_addresses, .init = setup, .fini = teardown)
{
	driver_ok();
	CWR(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	CWR(VIRTIO_PCI_COMMON_Q_SIZE, 2, 100);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SIZE, 2), 256, "not a power of 2");
	CWR(VIRTIO_PCI_COMMON_Q_SIZE, 2, 512);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SIZE, 2), 256, "above the maximum");
	CWR(VIRTIO_PCI_COMMON_Q_SIZE, 2, 0);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SIZE, 2), 256);
	/* Rings outside RAM: the queue does not start, the device needs a reset. */
	setup_queue(0, 16, 0x1ull << 40, 0x2000, 0x3000);
	CWR(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	cr_assert(CRD(VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_CONFIG_S_NEEDS_RESET);
	cr_assert(!virtio_driver_ok(&F.dev));
	/* The driver cannot clear NEEDS_RESET but by a reset. */
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 0xf);
	cr_assert(CRD(VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_CONFIG_S_NEEDS_RESET);
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_STATUS, 1), 0);
}

Test(virtio_pci, queue_select_out_of_range, .init = setup, .fini = teardown)
{
	CWR(VIRTIO_PCI_COMMON_Q_SELECT, 2, 3);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SELECT, 2), 3);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0, "size 0: no such queue");
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_NOFF, 2), 0);
	CWR(VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
	CWR(VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x1000);
	CWR(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	CWR(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0xffff);
	CWR(VIRTIO_PCI_COMMON_Q_MSIX, 2, 0);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	for (unsigned q = 0; q < 3; q++) {
		cr_assert(!virtio_queue(&F.dev, q)->enabled);
		cr_assert_eq(F.vp.qs[q].desc, 0);
	}
	cr_assert_null(virtio_queue(&F.dev, 3));
}

Test(virtio_pci, reset_clears_state, .init = setup, .fini = teardown)
{
	driver_ok();
	CWR(VIRTIO_PCI_COMMON_MSIX, 2, 0);
	setup_queue(2, 32, 0x1000, 0x2000, 0x3000);
	CWR(VIRTIO_PCI_COMMON_Q_MSIX, 2, 3);
	CWR(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	cr_assert(virtio_queue(&F.dev, 2)->enabled);
	CWR(VIRTIO_PCI_COMMON_STATUS, 1, 0);
	cr_assert_eq(F.resets, 1);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_STATUS, 1), 0);
	cr_assert_eq(virtio_features(&F.dev), 0);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_MSIX, 2), 0xffff);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SELECT, 2), 0);
	CWR(VIRTIO_PCI_COMMON_Q_SELECT, 2, 2);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_MSIX, 2), 0xffff);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SIZE, 2), 256);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0);
	cr_assert(!virtio_queue(&F.dev, 2)->enabled);
}

static void msix_entry(unsigned v, uint32_t addr, uint32_t data, uint32_t ctrl)
{
	bar_wr(VIRTIO_MSIX_BAR, 16 * v + 0, 4, addr);
	bar_wr(VIRTIO_MSIX_BAR, 16 * v + 4, 4, 0);
	bar_wr(VIRTIO_MSIX_BAR, 16 * v + 8, 4, data);
	bar_wr(VIRTIO_MSIX_BAR, 16 * v + 12, 4, ctrl);
}

Test(virtio_pci, msix_vectors_and_masking, .init = setup, .fini = teardown)
{
	unsigned ctrl = VIRTIO_CAP_MSIX + 2;

	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, 12, 4), 1, "entries start masked");
	driver_ok();
	CWR(VIRTIO_PCI_COMMON_MSIX, 2, 4);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_MSIX, 2), 0xffff, "beyond the table");
	CWR(VIRTIO_PCI_COMMON_MSIX, 2, 0);
	CWR(VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	CWR(VIRTIO_PCI_COMMON_Q_MSIX, 2, 100);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_MSIX, 2), 0xffff);
	CWR(VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);

	pci_dev_cfg_write(&F.vp.pci, ctrl, 2, 0x8000);
	msix_entry(1, 0xfee00000, 0x41, 1);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, 16 + 8, 4), 0x41);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, 16, 8), 0xfee00000, "qword read");
	cr_assert_gt(F.routes, 0);
	/* Masked: pending in the PBA, sent on unmask. */
	virtio_queue_interrupt(&F.dev, 0);
	cr_assert_eq(F.msi[1], 0);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, VIRTIO_MSIX_PBA_OFF, 4), 2);
	bar_wr(VIRTIO_MSIX_BAR, 16 + 12, 4, 0);
	cr_assert_eq(F.msi[1], 1);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, VIRTIO_MSIX_PBA_OFF, 4), 0);
	virtio_queue_interrupt(&F.dev, 0);
	cr_assert_eq(F.msi[1], 2);
	/* Function mask holds it too. */
	pci_dev_cfg_write(&F.vp.pci, ctrl, 2, 0xc000);
	virtio_queue_interrupt(&F.dev, 0);
	cr_assert_eq(F.msi[1], 2);
	pci_dev_cfg_write(&F.vp.pci, ctrl, 2, 0x8000);
	cr_assert_eq(F.msi[1], 3);
	/* NO_VECTOR: nothing at all; no ISR or INTx while MSI-X is on. */
	virtio_queue_interrupt(&F.dev, 2);
	cr_assert_eq(F.vp.isr, 0);
	cr_assert(!F.intx);
	/* The PBA is read-only; writes past the table are dropped. */
	bar_wr(VIRTIO_MSIX_BAR, VIRTIO_MSIX_PBA_OFF, 4, 0xff);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, VIRTIO_MSIX_PBA_OFF, 4), 0);
	bar_wr(VIRTIO_MSIX_BAR, 16 * 10, 4, 0xff);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, 16 * 10, 4), 0);
	/* Vector control keeps only the mask bit. */
	bar_wr(VIRTIO_MSIX_BAR, 16 + 12, 4, 0xfffffffe);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, 16 + 12, 4), 0);
}

Test(virtio_pci, isr_and_intx, .init = setup, .fini = teardown)
{
	driver_ok();
	virtio_queue_interrupt(&F.dev, 0);
	cr_assert(F.intx);
	cr_assert(CFG(0x06, 1) & 0x08, "interrupt status");
	virtio_config_changed(&F.dev);
	cr_assert_eq(F.intx_changes, 1);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_ISR_OFF, 1), 3);
	cr_assert(!F.intx);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_ISR_OFF, 1), 0, "read clears");
	virtio_queue_interrupt(&F.dev, 1);
	cr_assert(F.intx);
	/* Enabling MSI-X drops the INTx line. */
	pci_dev_cfg_write(&F.vp.pci, VIRTIO_CAP_MSIX + 2, 2, 0x8000);
	cr_assert(!F.intx);
}

static unsigned transport_resets;

static void sink_reset(struct virtio_pci *vp)
{
	transport_resets++;
}

/* System reset (what pci_reset calls through the function's reset hook): as status 0, plus the
 * MSI-X table and PBA; the INTx line drops. */
Test(virtio_pci, system_reset, .init = setup, .fini = teardown)
{
	unsigned routes;

	cr_assert_eq(F.vp.pci.reset != NULL, true, "the transport hooks the PCI function's reset");
	F.vp.ops.reset = sink_reset;
	transport_resets = 0;
	driver_ok();
	setup_queue(0, 64, 0x1000, 0x2000, 0x3000);
	CWR(VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	virtio_config_changed(&F.dev);
	virtio_queue_interrupt(&F.dev, 0);
	cr_assert(F.intx);
	msix_entry(1, 0xfee00000, 0x41, 1);
	virtio_queue_interrupt(&F.dev, 1); /* MSI-X off: ISR and INTx */
	routes = F.routes;

	F.vp.pci.reset(&F.vp.pci);
	cr_expect_eq(F.resets, 1, "the device's own reset callback ran");
	cr_expect_eq(transport_resets, 1, "then the glue's");
	cr_expect(!F.intx, "INTx deasserted");
	cr_expect_eq(CRD(VIRTIO_PCI_COMMON_STATUS, 1), 0);
	cr_expect_eq(virtio_features(&F.dev), 0);
	cr_expect(!virtio_queue(&F.dev, 0)->enabled);
	cr_expect_eq(CRD(VIRTIO_PCI_COMMON_CFGGENERATION, 1), 0, "config generation back to 0");
	cr_expect_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_ISR_OFF, 1), 0, "ISR clear");
	cr_expect_eq(bar_rd(VIRTIO_MSIX_BAR, 16 + 8, 4), 0, "MSI-X entry cleared");
	cr_expect_eq(bar_rd(VIRTIO_MSIX_BAR, 16 + 12, 4), 1, "and masked");
	cr_expect_eq(bar_rd(VIRTIO_MSIX_BAR, VIRTIO_MSIX_PBA_OFF, 4), 0, "nothing pending");
	cr_expect_eq(F.routes, routes + F.vp.nr_vectors, "every vector's route updated");
	/* A driver can bring it up again. */
	driver_ok();
	cr_expect(virtio_driver_ok(&F.dev));
}

Test(virtio_pci, config_space_and_generation, .init = setup, .fini = teardown)
{
	uint8_t gen = (uint8_t)CRD(VIRTIO_PCI_COMMON_CFGGENERATION, 1);

	bar_wr(VIRTIO_PCI_BAR, VIRTIO_PCI_DEVICE_OFF + 4, 4, 0x12345678);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_DEVICE_OFF + 4, 4), 0x12345678);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_DEVICE_OFF + 6, 2), 0x1234);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_DEVICE_OFF + 6, 4), 0, "crosses the end");
	bar_wr(VIRTIO_PCI_BAR, VIRTIO_PCI_DEVICE_OFF + 8, 4, 0xffffffff);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_DEVICE_OFF + 8, 4), 0);
	virtio_config_changed(&F.dev);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_CFGGENERATION, 1), (uint8_t)(gen + 1));
	cr_assert(!F.intx, "no interrupt before DRIVER_OK");
}

Test(virtio_pci, odd_widths_and_offsets, .init = setup, .fini = teardown)
{
	/* Wrong widths of real fields, misaligned offsets, holes and the BAR's end. */
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_NUMQ, 4), 0);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_NUMQ, 1), 0);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_DF + 1, 1), 0);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0);
	CWR(VIRTIO_PCI_COMMON_STATUS, 4, 0x0f0f0f0f);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_STATUS, 1), 0);
	CWR(VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
	cr_assert_eq(CRD(VIRTIO_PCI_COMMON_Q_SELECT, 2), 0);
	cr_assert_eq(CRD(0x38, 4), 0);
	cr_assert_eq(CRD(0xffc, 4), 0);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_ISR_OFF, 4), 0);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_ISR_OFF + 1, 1), 0);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE - 2, 4), 0);
	cr_assert_eq(bar_rd(VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE + 8, 4), 0);
	bar_wr(VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE - 1, 8, ~0ull);
	bar_wr(VIRTIO_PCI_BAR, VIRTIO_PCI_NOTIFY_OFF + 0x800, 2, 0);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, 2, 4), 0);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, 0, 2), 0);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, VIRTIO_MSIX_BAR_SIZE - 4, 8), 0);
	bar_wr(VIRTIO_MSIX_BAR, 1, 4, ~0ull);
	cr_assert_eq(bar_rd(VIRTIO_MSIX_BAR, 0, 4), 0);
	cr_assert_eq(F.trapped, 0);
}

Test(virtio_pci, rejects_bad_descriptions)
{
	struct virtio_dev d = { .name = "bad", .num_queues = 1, .queue_max_size = 100 };
	struct virtio_pci vp;

	quiet_log();
	cr_assert_eq(virtio_pci_init(&vp, &d, NULL), -EINVAL);
	d.queue_max_size = 64;
	d.num_queues = VIRTIO_MAX_QUEUES + 1;
	cr_assert_eq(virtio_pci_init(&vp, &d, NULL), -EINVAL);
	d.num_queues = 0;
	cr_assert_eq(virtio_pci_init(&vp, &d, NULL), -EINVAL);
}
