/* The virtio 1.x PCI transport (virtio 1.2 section 4.1.4), polled: no MSI-X vectors, no interrupts,
 * and split virtqueues (section 2.7) whose used rings the driver reads itself. */
#include "virtio.h"

#define PCI_CAP_VENDOR 0x09
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4
#define CAP_BAR 4
#define CAP_OFFSET 8
#define CAP_LENGTH 12
#define CAP_NOTIFY_MULT 16

/* Common configuration (section 4.1.4.3). */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX 0x10
#define CC_STATUS 0x14
#define CC_Q_SELECT 0x16
#define CC_Q_SIZE 0x18
#define CC_Q_MSIX 0x1a
#define CC_Q_ENABLE 0x1c
#define CC_Q_NOFF 0x1e
#define CC_Q_DESC 0x20
#define CC_Q_AVAIL 0x28
#define CC_Q_USED 0x30
#define RESET_SPINS 1000000

struct cap_walk {
	struct virtio_dev *d;
	uint64_t bar_base[6], bar_size[6];
	unsigned found;
	int err;
};

static volatile uint8_t *cap_map(struct cap_walk *w, const struct pci_fn *f, uint8_t off, uint32_t min_len)
{
	uint8_t bar = pci_read32(f->dev, f->fn, off + CAP_BAR) & 0xff;
	uint32_t start = pci_read32(f->dev, f->fn, off + CAP_OFFSET);
	uint32_t len = pci_read32(f->dev, f->fn, off + CAP_LENGTH);

	if (bar >= 6 || len < min_len)
		return NULL;
	if (!w->bar_size[bar] && pci_bar_map(&w->d->pci, bar, &w->bar_base[bar], &w->bar_size[bar]))
		return NULL;
	if ((uint64_t)start + len > w->bar_size[bar])
		return NULL;
	return (volatile uint8_t *)(w->bar_base[bar] + start);
}

/* The first capability of each type wins (section 4.1.4: the driver SHOULD use the first one). */
static bool on_cap(const struct pci_fn *f, uint8_t off, void *arg)
{
	struct cap_walk *w = arg;
	uint8_t type = pci_read32(f->dev, f->fn, off) >> 24;
	volatile uint8_t *p;

	if (type < CAP_COMMON || type > CAP_DEVICE || (w->found & (1u << type)))
		return false;
	p = cap_map(w, f, off, type == CAP_COMMON ? 0x38 : type == CAP_DEVICE ? 8 : 1);
	if (!p) {
		w->err = -1;
		return false;
	}
	w->found |= 1u << type;
	switch (type) {
	case CAP_COMMON: w->d->common = p; break;
	case CAP_NOTIFY:
		w->d->notify_base = p;
		w->d->notify_mult = pci_read32(f->dev, f->fn, off + CAP_NOTIFY_MULT);
		break;
	case CAP_ISR: w->d->isr = p; break;
	case CAP_DEVICE: w->d->devcfg = p; break;
	}
	return false;
}

int virtio_pci_attach(struct virtio_dev *d)
{
	struct cap_walk w = { .d = d };

	pci_caps(&d->pci, PCI_CAP_VENDOR, on_cap, &w);
	const unsigned need = 1u << CAP_COMMON | 1u << CAP_NOTIFY | 1u << CAP_DEVICE;
	return (w.found & need) == need ? 0 : -1;
}

static inline uint8_t rd8(const struct virtio_dev *d, unsigned off)
{
	return *(volatile uint8_t *)(d->common + off);
}

static inline uint16_t rd16(const struct virtio_dev *d, unsigned off)
{
	return *(volatile uint16_t *)(d->common + off);
}

static inline void wr8(struct virtio_dev *d, unsigned off, uint8_t v)
{
	*(volatile uint8_t *)(d->common + off) = v;
}

static inline void wr16(struct virtio_dev *d, unsigned off, uint16_t v)
{
	*(volatile uint16_t *)(d->common + off) = v;
}

/* 64-bit fields as two 32-bit writes, low half first (section 4.1.3.1 allows it). */
static inline void wr64(struct virtio_dev *d, unsigned off, uint64_t v)
{
	mmio_write32(d->common + off, (uint32_t)v);
	mmio_write32(d->common + off + 4, v >> 32);
}

uint8_t virtio_status(const struct virtio_dev *d)
{
	return rd8(d, CC_STATUS);
}

void virtio_set_status(struct virtio_dev *d, uint8_t status)
{
	wr8(d, CC_STATUS, status);
}

/* Writing 0 resets; the driver waits until it reads 0 back (section 4.1.4.3.2). */
void virtio_reset(struct virtio_dev *d)
{
	wr8(d, CC_STATUS, 0);
	for (int i = 0; i < RESET_SPINS && rd8(d, CC_STATUS); i++)
		cpu_relax();
	wr16(d, CC_MSIX, VIRTIO_MSI_NO_VECTOR);
}

uint64_t virtio_device_features(struct virtio_dev *d)
{
	mmio_write32(d->common + CC_DFSELECT, 0);
	uint64_t lo = mmio_read32(d->common + CC_DF);
	mmio_write32(d->common + CC_DFSELECT, 1);
	return lo | (uint64_t)mmio_read32(d->common + CC_DF) << 32;
}

int virtio_set_features(struct virtio_dev *d, uint64_t features)
{
	mmio_write32(d->common + CC_GFSELECT, 0);
	mmio_write32(d->common + CC_GF, (uint32_t)features);
	mmio_write32(d->common + CC_GFSELECT, 1);
	mmio_write32(d->common + CC_GF, features >> 32);
	virtio_set_status(d, virtio_status(d) | VIRTIO_STATUS_FEATURES_OK);
	if (!(virtio_status(d) & VIRTIO_STATUS_FEATURES_OK))
		return -1;
	d->features = features;
	return 0;
}

int virtio_vq_setup(struct virtio_dev *d, struct vq *q, uint16_t index, uint64_t pages)
{
	wr16(d, CC_Q_SELECT, index);
	uint16_t max = rd16(d, CC_Q_SIZE);
	if (!max)
		return -1;
	uint16_t size = max < VQ_SIZE_MAX ? max : VQ_SIZE_MAX;
	memset((void *)pages, 0, 3 * PAGE_SIZE);
	*q = (struct vq){
		.index = index,
		.size = size,
		.desc = (volatile struct vring_desc *)pages,
		.avail = (volatile uint16_t *)(pages + PAGE_SIZE),
		.used = (volatile uint32_t *)(pages + 2 * PAGE_SIZE),
	};
	/* We poll: ask the device not to interrupt (section 2.7.7). */
	q->avail[0] = VRING_AVAIL_F_NO_INTERRUPT;
	wr16(d, CC_Q_SIZE, size);
	wr16(d, CC_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
	wr64(d, CC_Q_DESC, pages);
	wr64(d, CC_Q_AVAIL, pages + PAGE_SIZE);
	wr64(d, CC_Q_USED, pages + 2 * PAGE_SIZE);
	q->notify = (volatile uint16_t *)(d->notify_base + (uint64_t)rd16(d, CC_Q_NOFF) * d->notify_mult);
	wr16(d, CC_Q_ENABLE, 1);
	q->ready = true;
	return 0;
}

void vq_submit(struct vq *q, uint16_t head)
{
	if (head < 64)
		q->done &= ~(1ull << head);
	q->avail[2 + q->avail_idx % q->size] = head;
	/* The ring entry before the index, the index before the notification (section 2.7.13). */
	__asm__ volatile("sfence" ::: "memory");
	q->avail[1] = ++q->avail_idx;
	__asm__ volatile("mfence" ::: "memory");
	*q->notify = q->index;
}

bool vq_used(struct vq *q, uint32_t *id, uint32_t *len)
{
	uint16_t idx = q->used[0] >> 16;

	if (idx == q->used_idx)
		return false;
	__asm__ volatile("" ::: "memory");
	unsigned slot = q->used_idx % q->size;
	*id = q->used[1 + 2 * slot];
	*len = q->used[2 + 2 * slot];
	if (*id < 64)
		q->done |= 1ull << *id;
	q->used_idx++;
	return true;
}
