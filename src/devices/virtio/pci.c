/* Virtio 1.x modern PCI transport: register logic (virtio 1.2, section 4.1). Pure: no KVM, no vm;
 * interrupts and notify placement go out through vp->ops (pci_kvm.c, or a unit test).
 *
 * The driver is untrusted: every BAR offset is bounds-checked, common-config fields answer only to
 * their own offset and width (4.1.3.1: the driver uses each field's natural width, 64-bit fields as
 * two 32-bit halves); anything else reads 0 and writes are dropped. */
#include <kvmm/log.h>
#include <kvmm/virtio.h>

#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

#include <errno.h>
#include <string.h>

/* PCI config-space facts (PCI 3.0, 6.2 and 6.8.2). */
#define CFG_STATUS 0x06
#define CFG_STATUS_INTX 0x08     /* Interrupt Status */
#define CFG_STATUS_CAPS 0x10     /* Capabilities List */
#define CFG_COMMAND 0x04
#define CFG_COMMAND_INTX_DISABLE 0x0400
#define CFG_REVISION 0x08
#define CFG_CAP_PTR 0x34
#define CAP_ID_VNDR 0x09
#define CAP_ID_MSIX 0x11
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSIX_ENTRY_MASKED 1u

#define ISR_QUEUE 0x1
#define ISR_CONFIG 0x2

static uint16_t msix_ctrl(const struct virtio_pci *vp)
{
	return (uint16_t)bus_data_get(&vp->pci.cfg[VIRTIO_CAP_MSIX + 2], 2);
}

static bool msix_enabled(const struct virtio_pci *vp)
{
	return msix_ctrl(vp) & MSIX_CTRL_ENABLE;
}

bool virtio_pci_msix_live(const struct virtio_pci *vp, unsigned v)
{
	uint16_t ctrl = msix_ctrl(vp);

	return v < vp->nr_vectors && (ctrl & MSIX_CTRL_ENABLE) && !(ctrl & MSIX_CTRL_MASKALL) &&
	       !(vp->msix[v].ctrl & MSIX_ENTRY_MASKED);
}

/* INTx follows the ISR while MSI-X is off and the command register allows it (4.1.5.3). */
static void intx_update(struct virtio_pci *vp)
{
	uint16_t cmd = (uint16_t)bus_data_get(&vp->pci.cfg[CFG_COMMAND], 2);
	bool level = vp->isr && !msix_enabled(vp) && !(cmd & CFG_COMMAND_INTX_DISABLE);

	if (level)
		vp->pci.cfg[CFG_STATUS] |= CFG_STATUS_INTX;
	else
		vp->pci.cfg[CFG_STATUS] &= (uint8_t)~CFG_STATUS_INTX;
	if (level == vp->intx_level)
		return;
	vp->intx_level = level;
	if (vp->ops.intx)
		vp->ops.intx(vp, level);
}

static void pba_set(struct virtio_pci *vp, unsigned v, bool on)
{
	vp->pba[v / 64] = (vp->pba[v / 64] & ~(1ull << (v % 64))) | (uint64_t)on << (v % 64);
}

/* With MSI-X on, a masked vector's message is held pending in the PBA until it is unmasked
 * (PCI 3.0, 6.8.3.4); NO_VECTOR means no interrupt at all. Without MSI-X, the ISR bit and INTx. */
static void vp_raise(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
	if (!msix_enabled(vp)) {
		vp->isr |= isr_bit;
		intx_update(vp);
		return;
	}
	if (vector >= vp->nr_vectors)
		return;
	if (!virtio_pci_msix_live(vp, vector)) {
		pba_set(vp, vector, true);
		return;
	}
	if (vp->ops.msi)
		vp->ops.msi(vp, vector);
}

/* Sends what became deliverable: after an unmask or MSI-X enable. */
static void msix_flush(struct virtio_pci *vp)
{
	for (unsigned v = 0; v < vp->nr_vectors; v++) {
		if (!(vp->pba[v / 64] >> (v % 64) & 1) || !virtio_pci_msix_live(vp, v))
			continue;
		pba_set(vp, v, false);
		if (vp->ops.msi)
			vp->ops.msi(vp, v);
	}
}

static void config_irq(struct virtio_pci *vp)
{
	if (vp->status & VIRTIO_CONFIG_S_DRIVER_OK)
		vp_raise(vp, vp->config_vector, ISR_CONFIG);
}

static void queue_defaults(struct virtio_pci *vp, unsigned q)
{
	virtq_reset(&vp->vqs[q]);
	vp->qs[q] = (struct virtio_pci_queue){ .size = vp->dev->queue_max_size,
					       .vector = VIRTIO_NO_VECTOR };
}

/* Device reset (2.4): back to the state after init, except MSI-X, which is PCI state. */
static void dev_reset(struct virtio_pci *vp)
{
	for (unsigned q = 0; q < vp->dev->num_queues; q++)
		queue_defaults(vp, q);
	vp->driver_features = 0;
	vp->dfselect = vp->gfselect = 0;
	vp->status = 0;
	vp->queue_sel = 0;
	vp->config_vector = VIRTIO_NO_VECTOR;
	vp->isr = 0;
	intx_update(vp);
	if (vp->dev->reset)
		vp->dev->reset(vp->dev);
}

static void mark_broken(struct virtio_pci *vp)
{
	if (vp->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	vp->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	log_warn("virtio: %s: device needs reset", vp->dev->name);
	config_irq(vp);
}

/* FEATURES_OK sticks only for a subset of what is offered that includes VERSION_1 (2.2, 6.1). */
static bool features_ok(const struct virtio_pci *vp)
{
	return (vp->driver_features & VIRTIO_FEATURE(VIRTIO_F_VERSION_1)) &&
	       !(vp->driver_features & ~vp->features);
}

static void status_write(struct virtio_pci *vp, uint8_t val)
{
	uint8_t old = vp->status;

	if (!val) {
		dev_reset(vp);
		return;
	}
	/* NEEDS_RESET is the device's to set; only a reset clears it. */
	val = (uint8_t)((val & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (old & VIRTIO_CONFIG_S_NEEDS_RESET));
	if ((val & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		if (!features_ok(vp)) {
			val &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
		} else {
			bool ev = vp->driver_features & VIRTIO_FEATURE(VIRTIO_RING_F_EVENT_IDX);

			for (unsigned q = 0; q < vp->dev->num_queues; q++)
				vp->vqs[q].event_idx = ev;
		}
	}
	vp->status = val;
	if (vp->dev->status)
		vp->dev->status(vp->dev, val);
}

static uint16_t vector_check(const struct virtio_pci *vp, uint32_t v)
{
	/* 4.1.5.1.2: a vector the device cannot use reads back as NO_VECTOR. */
	return v < vp->nr_vectors ? (uint16_t)v : VIRTIO_NO_VECTOR;
}

static struct virtio_pci_queue *sel_queue(struct virtio_pci *vp, unsigned *q)
{
	*q = vp->queue_sel;
	return vp->queue_sel < vp->dev->num_queues ? &vp->qs[vp->queue_sel] : NULL;
}

static void queue_enable(struct virtio_pci *vp, unsigned q)
{
	struct virtqueue *vq = &vp->vqs[q];
	struct virtio_pci_queue *s = &vp->qs[q];
	int r;

	if (vq->enabled)
		return;
	vq->size = s->size;
	vq->desc_gpa = s->desc;
	vq->avail_gpa = s->driver;
	vq->used_gpa = s->device;
	r = virtq_enable(vq);
	if (r < 0) {
		log_warn("virtio: %s: queue %u rejected: %s", vp->dev->name, q, strerror(-r));
		mark_broken(vp);
	}
}

/* 64-bit fields are written as two halves (4.1.3.1); hi selects the upper one. */
static void set_half(uint64_t *f, bool hi, uint32_t v)
{
	if (hi)
		*f = (*f & 0xffffffffull) | (uint64_t)v << 32;
	else
		*f = (*f & ~0xffffffffull) | v;
}

static uint64_t *queue_addr(struct virtio_pci_queue *s, unsigned off, bool *hi)
{
	*hi = off & 4;
	switch (off & ~4u) {
	case VIRTIO_PCI_COMMON_Q_DESCLO:
		return &s->desc;
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
		return &s->driver;
	case VIRTIO_PCI_COMMON_Q_USEDLO:
		return &s->device;
	}
	return NULL;
}

/* The natural width of each common-config field by offset, 0 inside a field or in a hole
 * (struct virtio_pci_common_cfg). */
static const uint8_t common_width[VIRTIO_PCI_COMMON_LEN] = {
	[VIRTIO_PCI_COMMON_DFSELECT] = 4, [VIRTIO_PCI_COMMON_DF] = 4,
	[VIRTIO_PCI_COMMON_GFSELECT] = 4, [VIRTIO_PCI_COMMON_GF] = 4,
	[VIRTIO_PCI_COMMON_MSIX] = 2,     [VIRTIO_PCI_COMMON_NUMQ] = 2,
	[VIRTIO_PCI_COMMON_STATUS] = 1,   [VIRTIO_PCI_COMMON_CFGGENERATION] = 1,
	[VIRTIO_PCI_COMMON_Q_SELECT] = 2, [VIRTIO_PCI_COMMON_Q_SIZE] = 2,
	[VIRTIO_PCI_COMMON_Q_MSIX] = 2,   [VIRTIO_PCI_COMMON_Q_ENABLE] = 2,
	[VIRTIO_PCI_COMMON_Q_NOFF] = 2,   [VIRTIO_PCI_COMMON_Q_DESCLO] = 4,
	[VIRTIO_PCI_COMMON_Q_DESCHI] = 4, [VIRTIO_PCI_COMMON_Q_AVAILLO] = 4,
	[VIRTIO_PCI_COMMON_Q_AVAILHI] = 4, [VIRTIO_PCI_COMMON_Q_USEDLO] = 4,
	[VIRTIO_PCI_COMMON_Q_USEDHI] = 4,
};

static uint32_t common_read(struct virtio_pci *vp, unsigned off)
{
	struct virtio_pci_queue *s;
	uint64_t *addr;
	unsigned q;
	bool hi;

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		return vp->dfselect;
	case VIRTIO_PCI_COMMON_DF:
		return vp->dfselect < 2 ? (uint32_t)(vp->features >> (32 * vp->dfselect)) : 0;
	case VIRTIO_PCI_COMMON_GFSELECT:
		return vp->gfselect;
	case VIRTIO_PCI_COMMON_GF:
		return vp->gfselect < 2 ? (uint32_t)(vp->driver_features >> (32 * vp->gfselect)) : 0;
	case VIRTIO_PCI_COMMON_MSIX:
		return vp->config_vector;
	case VIRTIO_PCI_COMMON_NUMQ:
		return vp->dev->num_queues;
	case VIRTIO_PCI_COMMON_STATUS:
		return vp->status;
	case VIRTIO_PCI_COMMON_CFGGENERATION:
		return vp->generation;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		return vp->queue_sel;
	}
	s = sel_queue(vp, &q);
	if (!s)
		return 0;
	switch (off) {
	case VIRTIO_PCI_COMMON_Q_SIZE:
		return s->size;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		return s->vector;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		return vp->vqs[q].enabled;
	case VIRTIO_PCI_COMMON_Q_NOFF:
		return q; /* notify address: NOTIFY_OFF + q * VIRTIO_PCI_NOTIFY_MULT */
	}
	addr = queue_addr(s, off, &hi);
	return addr ? (uint32_t)(*addr >> (hi ? 32 : 0)) : 0;
}

static bool pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static void common_write(struct virtio_pci *vp, unsigned off, uint32_t v)
{
	struct virtio_pci_queue *s;
	uint64_t *addr;
	unsigned q;
	bool hi;

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		vp->dfselect = v;
		return;
	case VIRTIO_PCI_COMMON_GFSELECT:
		vp->gfselect = v;
		return;
	case VIRTIO_PCI_COMMON_GF:
		/* Features are fixed once FEATURES_OK is accepted (3.1.1). */
		if (vp->gfselect < 2 && !(vp->status & VIRTIO_CONFIG_S_FEATURES_OK))
			set_half(&vp->driver_features, vp->gfselect, v);
		return;
	case VIRTIO_PCI_COMMON_MSIX:
		vp->config_vector = vector_check(vp, v);
		return;
	case VIRTIO_PCI_COMMON_STATUS:
		status_write(vp, (uint8_t)v);
		return;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		vp->queue_sel = (uint16_t)v;
		return;
	}
	s = sel_queue(vp, &q);
	if (!s)
		return;
	if (off == VIRTIO_PCI_COMMON_Q_MSIX) {
		s->vector = vector_check(vp, v);
		return;
	}
	/* Size and addresses are frozen while the queue runs (4.1.4.3.2). */
	if (vp->vqs[q].enabled)
		return;
	switch (off) {
	case VIRTIO_PCI_COMMON_Q_SIZE:
		if (pow2(v) && v <= vp->dev->queue_max_size)
			s->size = (uint16_t)v;
		return;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		/* Writing 0 is not allowed to the driver (4.1.4.3.2); only a reset disables. */
		if (v == 1)
			queue_enable(vp, q);
		return;
	}
	addr = queue_addr(s, off, &hi);
	if (addr)
		set_half(addr, hi, v);
}

static void common_access(struct virtio_pci *vp, unsigned off, uint8_t *data, unsigned len,
			  bool is_write)
{
	if (off >= VIRTIO_PCI_COMMON_LEN || common_width[off] != len) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (is_write)
		common_write(vp, off, bus_data_get(data, len));
	else
		bus_data_put(data, len, common_read(vp, off));
}

static void device_cfg_access(struct virtio_pci *vp, unsigned off, uint8_t *data, unsigned len,
			      bool is_write)
{
	struct virtio_dev *d = vp->dev;
	bool ok = (len == 1 || len == 2 || len == 4) && off < d->config_size &&
		  len <= d->config_size - off;

	if (!is_write) {
		memset(data, 0, len);
		if (ok && d->config_read)
			d->config_read(d, off, data, len);
	} else if (ok && d->config_write) {
		d->config_write(d, off, data, len);
	}
}

static void isr_access(struct virtio_pci *vp, unsigned off, uint8_t *data, unsigned len,
		       bool is_write)
{
	if (is_write)
		return; /* read-only */
	memset(data, 0, len);
	if (off != 0 || len != 1)
		return;
	/* 4.1.4.5: reading clears the ISR and de-asserts INTx. */
	data[0] = vp->isr;
	vp->isr = 0;
	intx_update(vp);
}

static void notify_access(struct virtio_pci *vp, unsigned off, uint8_t *data, unsigned len,
			  bool is_write)
{
	unsigned q = off / VIRTIO_PCI_NOTIFY_MULT;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (off % VIRTIO_PCI_NOTIFY_MULT || (len != 2 && len != 4) || q >= vp->dev->num_queues)
		return;
	if (vp->ops.notify_trapped)
		vp->ops.notify_trapped(vp, q);
	virtio_pci_notify(vp, q);
}

/* BAR 4: the four virtio structures, each in its own 4 KiB page. */
static void bar_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct virtio_pci *vp = opaque;
	unsigned off;

	if (offset >= VIRTIO_PCI_BAR_SIZE || len > VIRTIO_PCI_BAR_SIZE - offset || len > 8) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	off = (unsigned)offset & 0xfff;
	pthread_mutex_lock(&vp->lock);
	switch ((unsigned)offset & ~0xfffu) {
	case VIRTIO_PCI_COMMON_OFF:
		common_access(vp, off, data, len, is_write);
		break;
	case VIRTIO_PCI_ISR_OFF:
		isr_access(vp, off, data, len, is_write);
		break;
	case VIRTIO_PCI_DEVICE_OFF:
		device_cfg_access(vp, off, data, len, is_write);
		break;
	case VIRTIO_PCI_NOTIFY_OFF:
		pthread_mutex_unlock(&vp->lock); /* virtio_pci_notify takes it */
		notify_access(vp, off, data, len, is_write);
		return;
	default:
		if (!is_write)
			memset(data, 0, len);
	}
	pthread_mutex_unlock(&vp->lock);
}

static void msix_entry_write(struct virtio_pci *vp, unsigned v, unsigned field, uint32_t val)
{
	struct virtio_msix_entry *e = &vp->msix[v];
	uint32_t *f[4] = { &e->addr_lo, &e->addr_hi, &e->data, &e->ctrl };
	uint32_t old = *f[field];

	*f[field] = field == 3 ? (val & MSIX_ENTRY_MASKED) : val;
	if (*f[field] == old)
		return;
	if (vp->ops.msix_route)
		vp->ops.msix_route(vp, v);
	if (field == 3)
		msix_flush(vp);
}

static uint32_t msix_dword(struct virtio_pci *vp, unsigned off)
{
	const struct virtio_msix_entry *e;

	if (off >= VIRTIO_MSIX_PBA_OFF) {
		unsigned i = (off - VIRTIO_MSIX_PBA_OFF) / 8;

		return i < sizeof(vp->pba) / 8 ? (uint32_t)(vp->pba[i] >> (off & 4 ? 32 : 0)) : 0;
	}
	if (off / 16 >= vp->nr_vectors)
		return 0;
	e = &vp->msix[off / 16];
	return (const uint32_t[4]){ e->addr_lo, e->addr_hi, e->data, e->ctrl }[off % 16 / 4];
}

/* BAR 1: MSI-X table and PBA. PCI 3.0 6.8.2.9: dword or aligned qword accesses. */
static void msix_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct virtio_pci *vp = opaque;

	if (offset >= VIRTIO_MSIX_BAR_SIZE || (len != 4 && len != 8) || offset % len) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	for (unsigned i = 0; i < len; i += 4) {
		unsigned off = (unsigned)offset + i;

		if (!is_write)
			bus_data_put(data + i, 4, msix_dword(vp, off));
		else if (off < VIRTIO_MSIX_PBA_OFF && off / 16 < vp->nr_vectors)
			msix_entry_write(vp, off / 16, off % 16 / 4, bus_data_get(data + i, 4));
	}
	pthread_mutex_unlock(&vp->lock);
}

/* Config-space writes past the header: only MSI-X Message Control has writable bits. Under the
 * PCI lock; the transport lock nests inside it. */
static void cfg_write(struct pci_dev *pd, unsigned off, unsigned len)
{
	struct virtio_pci *vp = (struct virtio_pci *)pd;

	if (off >= VIRTIO_CAP_MSIX + 4 || off + len <= VIRTIO_CAP_MSIX + 2)
		return;
	pthread_mutex_lock(&vp->lock);
	intx_update(vp);
	msix_flush(vp);
	pthread_mutex_unlock(&vp->lock);
}

static void put_cap(struct virtio_pci *vp, unsigned at, unsigned next, uint8_t type, uint32_t off,
		    uint32_t len, uint8_t cap_len)
{
	uint8_t *c = &vp->pci.cfg[at];

	c[0] = CAP_ID_VNDR;
	c[1] = (uint8_t)next;
	c[2] = cap_len;
	c[3] = type;
	c[4] = VIRTIO_PCI_BAR;
	bus_data_put(&c[8], 4, off);
	bus_data_put(&c[12], 4, len);
}

static void build_caps(struct virtio_pci *vp)
{
	struct virtio_dev *d = vp->dev;
	uint8_t *cfg = vp->pci.cfg;
	unsigned after_isr = d->config_size ? VIRTIO_CAP_DEVICE : VIRTIO_CAP_MSIX;

	cfg[CFG_STATUS] |= CFG_STATUS_CAPS;
	cfg[CFG_CAP_PTR] = VIRTIO_CAP_COMMON;
	put_cap(vp, VIRTIO_CAP_COMMON, VIRTIO_CAP_NOTIFY, VIRTIO_PCI_CAP_COMMON_CFG,
		VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN, 16);
	put_cap(vp, VIRTIO_CAP_NOTIFY, VIRTIO_CAP_ISR, VIRTIO_PCI_CAP_NOTIFY_CFG,
		VIRTIO_PCI_NOTIFY_OFF, d->num_queues * VIRTIO_PCI_NOTIFY_MULT, 20);
	bus_data_put(&cfg[VIRTIO_CAP_NOTIFY + 16], 4, VIRTIO_PCI_NOTIFY_MULT);
	put_cap(vp, VIRTIO_CAP_ISR, after_isr, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, 1, 16);
	if (d->config_size)
		put_cap(vp, VIRTIO_CAP_DEVICE, VIRTIO_CAP_MSIX, VIRTIO_PCI_CAP_DEVICE_CFG,
			VIRTIO_PCI_DEVICE_OFF, d->config_size, 16);

	/* MSI-X (PCI 3.0, 6.8.2): table size N-1, table and PBA in BAR 1; the guest may write
	 * only Enable and Function Mask. */
	cfg[VIRTIO_CAP_MSIX] = CAP_ID_MSIX;
	cfg[VIRTIO_CAP_MSIX + 1] = 0;
	bus_data_put(&cfg[VIRTIO_CAP_MSIX + 2], 2, vp->nr_vectors - 1);
	bus_data_put(&cfg[VIRTIO_CAP_MSIX + 4], 4, VIRTIO_MSIX_TABLE_OFF | VIRTIO_MSIX_BAR);
	bus_data_put(&cfg[VIRTIO_CAP_MSIX + 8], 4, VIRTIO_MSIX_PBA_OFF | VIRTIO_MSIX_BAR);
	vp->pci.wmask[VIRTIO_CAP_MSIX + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
}

void virtio_pci_reset(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	dev_reset(vp);
	vp->generation = 0;
	memset(vp->pba, 0, sizeof(vp->pba));
	for (unsigned v = 0; v < vp->nr_vectors; v++) {
		vp->msix[v] = (struct virtio_msix_entry){ .ctrl = MSIX_ENTRY_MASKED };
		if (vp->ops.msix_route)
			vp->ops.msix_route(vp, v);
	}
	if (vp->ops.reset)
		vp->ops.reset(vp);
	pthread_mutex_unlock(&vp->lock);
}

static void pci_dev_reset(struct pci_dev *pd)
{
	virtio_pci_reset((struct virtio_pci *)pd);
}

int virtio_pci_init(struct virtio_pci *vp, struct virtio_dev *d, struct gmem *gm)
{
	pthread_mutexattr_t attr;

	if (!d->num_queues || d->num_queues > VIRTIO_MAX_QUEUES || !pow2(d->queue_max_size) ||
	    d->queue_max_size > VIRTQ_MAX_SIZE || d->config_size > VIRTIO_CONFIG_MAX ||
	    d->device_id > 0x3f) {
		log_error("virtio: %s: invalid device description", d->name ? d->name : "?");
		return -EINVAL;
	}
	memset(vp, 0, sizeof(*vp));
	vp->dev = d;
	d->transport = vp;
	vp->features = d->features | VIRTIO_FEATURE(VIRTIO_F_VERSION_1);
	vp->nr_vectors = d->num_queues + 1;
	vp->config_vector = VIRTIO_NO_VECTOR;
	for (unsigned q = 0; q < d->num_queues; q++) {
		virtq_init(&vp->vqs[q], gm);
		queue_defaults(vp, q);
	}
	/* Vectors start masked (PCI 3.0, 6.8.2.9). */
	for (unsigned v = 0; v < vp->nr_vectors; v++)
		vp->msix[v].ctrl = MSIX_ENTRY_MASKED;

	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&vp->lock, &attr);
	pthread_mutexattr_destroy(&attr);

	pci_dev_init(&vp->pci, d->name, VIRTIO_PCI_VENDOR,
		     (uint16_t)(VIRTIO_PCI_DEVICE_BASE + d->device_id),
		     d->class_code ? d->class_code : 0x00ff00, VIRTIO_PCI_VENDOR, d->device_id);
	/* 4.1.2.1: non-transitional devices have revision 1 or more. */
	vp->pci.cfg[CFG_REVISION] = 1;
	pci_dev_set_bar(&vp->pci, VIRTIO_MSIX_BAR, VIRTIO_MSIX_BAR_SIZE, false, msix_io, vp);
	pci_dev_set_bar(&vp->pci, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, false, bar_io, vp);
	vp->pci.cfg_write = cfg_write;
	vp->pci.reset = pci_dev_reset;
	vp->pci.opaque = vp;
	build_caps(vp);
	return 0;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	pthread_mutex_destroy(&vp->lock);
	if (vp->dev)
		vp->dev->transport = NULL;
}

void virtio_pci_notify(struct virtio_pci *vp, unsigned q)
{
	struct virtio_dev *d = vp->dev;

	pthread_mutex_lock(&vp->lock);
	if (q < d->num_queues && vp->vqs[q].enabled && !(vp->status & VIRTIO_CONFIG_S_NEEDS_RESET) &&
	    d->notify)
		d->notify(d, q);
	pthread_mutex_unlock(&vp->lock);
}

struct virtqueue *virtio_queue(struct virtio_dev *d, unsigned q)
{
	return q < d->num_queues ? &d->transport->vqs[q] : NULL;
}

uint64_t virtio_features(struct virtio_dev *d)
{
	return d->transport->driver_features;
}

bool virtio_has_feature(struct virtio_dev *d, unsigned bit)
{
	return bit < 64 && (d->transport->driver_features >> bit & 1);
}

bool virtio_driver_ok(struct virtio_dev *d)
{
	uint8_t s = d->transport->status;

	return (s & VIRTIO_CONFIG_S_DRIVER_OK) && !(s & VIRTIO_CONFIG_S_NEEDS_RESET);
}

void virtio_queue_interrupt(struct virtio_dev *d, unsigned q)
{
	struct virtio_pci *vp = d->transport;

	if (q >= d->num_queues)
		return;
	pthread_mutex_lock(&vp->lock);
	vp_raise(vp, vp->qs[q].vector, ISR_QUEUE);
	pthread_mutex_unlock(&vp->lock);
}

void virtio_config_changed(struct virtio_dev *d)
{
	struct virtio_pci *vp = d->transport;

	pthread_mutex_lock(&vp->lock);
	vp->generation++;
	config_irq(vp);
	pthread_mutex_unlock(&vp->lock);
}

void virtio_dev_broken(struct virtio_dev *d)
{
	struct virtio_pci *vp = d->transport;

	pthread_mutex_lock(&vp->lock);
	mark_broken(vp);
	pthread_mutex_unlock(&vp->lock);
}

void virtio_lock(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->transport->lock);
}

void virtio_unlock(struct virtio_dev *d)
{
	pthread_mutex_unlock(&d->transport->lock);
}
