/* Virtio devices and their modern PCI transport (virtio 1.2, section 4.1): what a device such as the
 * balloon fills in, and the calls it makes back into the transport.
 *
 * A device describes itself in a struct virtio_dev and calls virtio_pci_add(); the transport
 * (src/devices/virtio/pci.c, registers; pci_kvm.c, KVM glue) then owns the PCI function, the
 * virtqueues, feature negotiation, device status and interrupts. The device sees:
 *   - notify(q) when the driver kicks queue q (on the loop thread, through an ioeventfd);
 *   - config_read / config_write for its device-specific configuration (vCPU threads);
 *   - reset() when the driver resets the device (all queues are already reset);
 *   - status(s) after every driver write of device_status (optional).
 * and it calls virtio_queue_interrupt(), virtio_config_changed() and virtio_dev_broken().
 *
 * PCI identity (4.1.2): vendor 0x1af4, device 0x1040 + device id, revision 1, subsystem 0x1af4 /
 * device id. Layout: BAR 4 (32-bit memory, 16 KiB) holds COMMON_CFG at 0x0000, ISR at 0x1000,
 * DEVICE_CFG at 0x2000 and NOTIFY at 0x3000 (notify_off_multiplier 4, queue q at 4 * q);
 * BAR 1 (4 KiB) holds the MSI-X table at 0 and the PBA at 0x800, one vector per queue plus one for
 * configuration changes. There is no PCI_CFG_CAP (VIRTIO_PCI_CAP_PCI_CFG): Linux and the test
 * guest do not need it.
 *
 * Locking: each device has one transport lock (recursive). Every callback above runs with it held,
 * so a callback may call the virtio_* functions below, and queue processing in notify() is
 * serialised with the driver resetting or enabling queues. A device that touches its queues from
 * another thread (or outside a callback) takes virtio_lock() / virtio_unlock() around it. */
#ifndef KVMM_VIRTIO_H
#define KVMM_VIRTIO_H

#include <linux/virtio_config.h> /* VIRTIO_CONFIG_S_*, VIRTIO_F_* */

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct virtqueue;
struct virtio_pci;

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040 /* + virtio device id (4.1.2.1) */
#define VIRTIO_MAX_QUEUES 64
#define VIRTIO_CONFIG_MAX 0x1000      /* device-specific config bytes */
#define VIRTIO_NO_VECTOR 0xffff
#define VIRTIO_FEATURE(bit) (1ull << (bit))

struct virtio_dev {
	/* Filled in by the device before virtio_pci_add. */
	const char *name;
	uint16_t device_id;          /* virtio device id (section 5), e.g. 5 for the balloon */
	uint32_t class_code;         /* PCI class, e.g. 0x00ff00 (other); 0 reads as that */
	uint64_t features;           /* offered; the transport adds VIRTIO_F_VERSION_1 */
	unsigned config_size;        /* device-specific config bytes, <= VIRTIO_CONFIG_MAX */
	unsigned num_queues;         /* 1..VIRTIO_MAX_QUEUES */
	uint16_t queue_max_size;     /* power of 2, <= 32768 */

	/* off + len <= config_size is checked before these are called; len is 1, 2 or 4. */
	void (*config_read)(struct virtio_dev *d, unsigned off, uint8_t *data, unsigned len);
	void (*config_write)(struct virtio_dev *d, unsigned off, const uint8_t *data, unsigned len);
	/* The driver made buffers available on queue q (an enabled queue). */
	void (*notify)(struct virtio_dev *d, unsigned q);
	/* The device was reset: by the driver (status 0) or by a system reset (virtio_pci_reset).
	 * Features, queues and vectors are already back to their initial state; drop in-flight work
	 * and go back to the device's own initial state. Optional. */
	void (*reset)(struct virtio_dev *d);
	/* device_status after a driver write (after the FEATURES_OK check). Optional. */
	void (*status)(struct virtio_dev *d, uint8_t status);
	void *opaque;

	/* Set by the transport. */
	struct virtio_pci *transport;
};

/* Queue q (NULL when out of range). The device pops and pushes with kvmm/virtqueue.h. */
struct virtqueue *virtio_queue(struct virtio_dev *d, unsigned q);
/* Negotiated features (those the driver accepted; meaningful once FEATURES_OK is set). */
uint64_t virtio_features(struct virtio_dev *d);
bool virtio_has_feature(struct virtio_dev *d, unsigned bit);
/* Whether the driver has set DRIVER_OK (and the device is not broken). */
bool virtio_driver_ok(struct virtio_dev *d);

/* Used-buffer notification for queue q (section 2.3): the device decides first, with
 * virtq_need_notify(), whether the driver wants one. */
void virtio_queue_interrupt(struct virtio_dev *d, unsigned q);
/* The device changed its config space: bumps config_generation and notifies the driver. */
void virtio_config_changed(struct virtio_dev *d);
/* The device cannot go on (e.g. a queue the driver broke): sets DEVICE_NEEDS_RESET and, after
 * DRIVER_OK, sends a configuration change notification (section 2.1.2). The driver must reset. */
void virtio_dev_broken(struct virtio_dev *d);

void virtio_lock(struct virtio_dev *d);
void virtio_unlock(struct virtio_dev *d);

/* KVM glue (pci_kvm.c): creates the transport, adds the PCI function to vm->pci, wires queue
 * notifications (ioeventfd, read on vm->loop) and interrupts (irqfd + MSI routes, or INTx). Call
 * on the loop thread during device init. 0 or -errno (logged). */
int virtio_pci_add(struct vm *vm, struct virtio_dev *d);
/* Takes the function off the PCI bus (pci_remove) and releases what virtio_pci_add acquired
 * (ioeventfds, irqfds, MSI routes, loop watches) and the transport. Call with the vCPUs stopped,
 * from the device's exit hook: devices come after "pci" in the registry, so they go down before
 * the bus does. */
void virtio_pci_exit(struct virtio_dev *d);

/* The transport itself: pci.c (pure register logic) and pci_kvm.c (KVM glue) share it, and unit
 * tests drive it without KVM by filling in `ops` themselves. Devices use the functions above. */
#include <kvmm/pci.h>
#include <kvmm/virtqueue.h>

#define VIRTIO_PCI_BAR 4
#define VIRTIO_PCI_BAR_SIZE 0x4000
#define VIRTIO_PCI_COMMON_OFF 0x0000
#define VIRTIO_PCI_COMMON_LEN 0x38      /* struct virtio_pci_common_cfg, no queue_notify_data */
#define VIRTIO_PCI_ISR_OFF 0x1000
#define VIRTIO_PCI_DEVICE_OFF 0x2000
#define VIRTIO_PCI_NOTIFY_OFF 0x3000
#define VIRTIO_PCI_NOTIFY_MULT 4
#define VIRTIO_MSIX_BAR 1
#define VIRTIO_MSIX_BAR_SIZE 0x1000
#define VIRTIO_MSIX_TABLE_OFF 0x000
#define VIRTIO_MSIX_PBA_OFF 0x800
#define VIRTIO_MSIX_MAX (VIRTIO_MAX_QUEUES + 1)
/* Config-space offsets of the capabilities (a chain from PCI_CAPABILITY_LIST = 0x40). */
#define VIRTIO_CAP_COMMON 0x40
#define VIRTIO_CAP_NOTIFY 0x50 /* 20 bytes: virtio_pci_notify_cap */
#define VIRTIO_CAP_ISR 0x64
#define VIRTIO_CAP_DEVICE 0x74 /* only when config_size > 0 */
#define VIRTIO_CAP_MSIX 0x84

struct virtio_msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct virtio_pci_queue {
	uint16_t size;     /* as the driver set it (max until then) */
	uint16_t vector;   /* queue_msix_vector */
	uint64_t desc, driver, device;
};

/* What the transport needs from the outside world; pci_kvm.c fills these in, tests fake them.
 * All run with the transport lock held. */
struct virtio_pci_ops {
	void (*msi)(struct virtio_pci *vp, unsigned vector);   /* send an unmasked, enabled vector */
	void (*intx)(struct virtio_pci *vp, bool level);       /* the INTx pin changed level */
	void (*msix_route)(struct virtio_pci *vp, unsigned vector); /* table entry changed */
	/* A queue notify reached the MMIO handler (not an ioeventfd): the BAR may have moved. */
	void (*notify_trapped)(struct virtio_pci *vp, unsigned q);
	/* System reset: the transport is back to its initial state and BAR 4 back at kvmm's
	 * address; put what depends on it back there. Optional. */
	void (*reset)(struct virtio_pci *vp);
};

struct virtio_pci {
	struct pci_dev pci;              /* first: the PCI model's view */
	struct virtio_dev *dev;
	struct virtio_pci_ops ops;
	void *opaque;                    /* the glue's or the test's */
	pthread_mutex_t lock;            /* recursive */

	uint64_t features;               /* offered, with VERSION_1 */
	uint64_t driver_features;
	uint32_t dfselect, gfselect;
	uint8_t status;
	uint8_t generation;
	uint8_t isr;
	bool intx_level;
	uint16_t config_vector;
	uint16_t queue_sel;
	unsigned nr_vectors;
	struct virtqueue vqs[VIRTIO_MAX_QUEUES];
	struct virtio_pci_queue qs[VIRTIO_MAX_QUEUES];
	struct virtio_msix_entry msix[VIRTIO_MSIX_MAX];
	uint64_t pba[(VIRTIO_MSIX_MAX + 63) / 64];
};

/* Pure set-up of the transport for d over guest memory gm (no KVM): config space, capabilities,
 * BARs (not yet placed: pci_add does that), queues. -EINVAL for a device description out of range. */
int virtio_pci_init(struct virtio_pci *vp, struct virtio_dev *d, struct gmem *gm);
void virtio_pci_destroy(struct virtio_pci *vp);
/* A kick for queue q, from an ioeventfd or a trapped write: calls d->notify if the queue is
 * enabled and the device usable. Takes the lock. */
void virtio_pci_notify(struct virtio_pci *vp, unsigned q);
/* System reset of one function (its struct pci_dev's reset hook, so pci_reset reaches every
 * virtio function): as a driver write of status 0 (queues, features, status, ISR; the device's
 * own reset callback runs), and the PCI-side state too: MSI-X table entries masked and cleared,
 * nothing pending; routes follow through ops.msix_route, then ops.reset. Takes the lock. */
void virtio_pci_reset(struct virtio_pci *vp);
/* Whether vector v is enabled and unmasked (MSI-X on, function and entry unmasked). */
bool virtio_pci_msix_live(const struct virtio_pci *vp, unsigned v);

#endif
