/* PCI (pci.c) and the polling virtio 1.x PCI transport with split virtqueues (virtio.c), as used
 * by the balloon driver (balloon.c). Virtio 1.2 sections 2.7 (split virtqueues), 4.1 (PCI). */
#ifndef KVMM_TEST_GUEST_VIRTIO_H
#define KVMM_TEST_GUEST_VIRTIO_H

#include "guest.h"

/* pci.c: bus 0 only. */
struct pci_fn {
	uint8_t dev, fn;
	uint16_t device;
	unsigned reassigned_bars; /* bit per BAR the driver had to place itself */
};
uint32_t pci_read32(uint8_t dev, uint8_t fn, uint8_t off);
void pci_write32(uint8_t dev, uint8_t fn, uint8_t off, uint32_t v);
bool pci_find(bool (*match)(uint16_t vendor, uint16_t device, uint16_t subsys), struct pci_fn *out);
bool pci_caps(const struct pci_fn *f, uint8_t cap_id, bool (*fn)(const struct pci_fn *, uint8_t, void *),
	      void *arg);
/* A memory BAR's address (assigned in the 3-4 GiB hole if firmware did not) with decoding on. */
int pci_bar_map(struct pci_fn *f, unsigned bar, uint64_t *base, uint64_t *size);

/* virtio.c */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_MSI_NO_VECTOR 0xffff

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* One split virtqueue in three pages of RAM (descriptors, driver area, device area). */
#define VQ_SIZE_MAX 128
struct vq {
	uint16_t index, size;
	volatile struct vring_desc *desc;
	volatile uint16_t *avail; /* flags, idx, ring[size] */
	volatile uint32_t *used;  /* flags|idx, then {id, len} pairs */
	volatile uint16_t *notify;
	uint16_t avail_idx, used_idx;
	uint64_t done; /* bit per head (< 64) the device has returned since it was submitted */
	bool ready;
};

struct virtio_dev {
	struct pci_fn pci;
	volatile uint8_t *common, *isr, *devcfg;
	volatile uint8_t *notify_base;
	uint32_t notify_mult;
	uint64_t features;
};

/* Finds the capabilities and maps their BARs; -1 if the device has no modern (1.x) interface. */
int virtio_pci_attach(struct virtio_dev *d);
uint8_t virtio_status(const struct virtio_dev *d);
void virtio_set_status(struct virtio_dev *d, uint8_t status);
void virtio_reset(struct virtio_dev *d);
uint64_t virtio_device_features(struct virtio_dev *d);
/* Writes `features` and sets FEATURES_OK; -1 if the device refuses them. */
int virtio_set_features(struct virtio_dev *d, uint64_t features);
/* Sets up queue `index` with rings at the given three pages (zeroed here), no MSI-X vector. */
int virtio_vq_setup(struct virtio_dev *d, struct vq *q, uint16_t index, uint64_t pages);
/* Makes the chain starting at descriptor `head` available and notifies the device. */
void vq_submit(struct vq *q, uint16_t head);
/* One used element, if the device returned one. */
bool vq_used(struct vq *q, uint32_t *id, uint32_t *len);

static inline uint32_t mmio_read32(volatile void *p)
{
	return *(volatile uint32_t *)p;
}

static inline void mmio_write32(volatile void *p, uint32_t v)
{
	*(volatile uint32_t *)p = v;
}

#endif
