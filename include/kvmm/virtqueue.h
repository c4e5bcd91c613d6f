/* Split virtqueues (virtio 1.2, section 2.7): the device side of one queue, shared by every virtio
 * device and independent of the transport (src/devices/virtio/queue.c).
 *
 * The driver is untrusted. Everything read from the rings is read once into host memory and checked
 * there; every guest address goes through gmem. A malformed queue (bad ring addresses, a descriptor
 * index out of range, a loop, a buffer outside RAM, ...) marks the queue `broken`: that pop fails and
 * so does every later one, until the transport resets the queue. The transport then sets
 * DEVICE_NEEDS_RESET (section 2.1.2).
 *
 * Threads: a virtqueue has no lock. One thread at a time drives it (pop, push, notification
 * decisions, reset); a device that hands a queue between threads provides the ordering itself.
 * The guest works on the rings concurrently; the barriers the protocol needs are inside this module.
 *
 * Typical device loop:
 *
 *	for (;;) {
 *		virtq_set_notify(vq, false);
 *		while ((err = virtq_pop(vq, &elem)) == 0) {
 *			... virtq_elem_read / virtq_elem_write ...
 *			virtq_push(vq, elem.head, bytes_written);
 *		}
 *		if (err != -EAGAIN)
 *			break;                  (vq->broken: the transport reports NEEDS_RESET)
 *		virtq_set_notify(vq, true);
 *		if (!virtq_avail_pending(vq))
 *			break;
 *	}
 *	if (virtq_need_notify(vq))
 *		... raise the queue's interrupt ...
 */
#ifndef KVMM_VIRTQUEUE_H
#define KVMM_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gmem;

#define VIRTQ_MAX_SIZE 32768u /* section 2.7: Queue Size is a power of 2, at most 32768 */

/* Descriptor flags (section 2.7.5). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
/* avail->flags: the driver asks for no interrupts (ignored with event-idx, section 2.7.7). */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
/* used->flags: the device asks for no notifications (without event-idx, section 2.7.10). */
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Ring alignment (section 2.7, table "Virtqueue Part Alignment"). */
#define VIRTQ_DESC_ALIGN 16
#define VIRTQ_AVAIL_ALIGN 2
#define VIRTQ_USED_ALIGN 4

/* Guest layout, little-endian (section 2.7.5). Also the element size of indirect tables. */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Bytes each ring part occupies for a queue of `size` entries, including the event-idx fields
 * (the driver always allocates them, section 2.7). */
#define VIRTQ_DESC_BYTES(size) (16ull * (size))
#define VIRTQ_AVAIL_BYTES(size) (6ull + 2ull * (size))
#define VIRTQ_USED_BYTES(size) (6ull + 8ull * (size))

struct virtqueue {
	/* Set by the transport as the driver programs them, then checked by virtq_enable. */
	uint32_t size;          /* entries; power of 2, 1..VIRTQ_MAX_SIZE */
	uint64_t desc_gpa;      /* descriptor table ("Descriptor Area") */
	uint64_t avail_gpa;     /* available ring ("Driver Area") */
	uint64_t used_gpa;      /* used ring ("Device Area") */
	bool event_idx;         /* VIRTIO_F_EVENT_IDX negotiated */

	/* State; read-only outside virtqueue.c. */
	bool enabled;
	bool broken;            /* malformed by the driver: every pop fails until virtq_reset */
	uint16_t last_avail_idx; /* next avail ring slot the device will pop */
	uint16_t avail_idx;     /* avail->idx as last read (entries up to it are visible) */
	uint16_t used_idx;      /* shadow of used->idx, as published */
	uint16_t signalled_used; /* used_idx when virtq_need_notify last ran */
	bool notify_enabled;    /* the device wants notifications (virtq_set_notify) */
	struct gmem *gm;
	/* Host views of the rings, from gmem when the queue is enabled (guest RAM never moves). */
	uint8_t *desc;
	uint8_t *avail;
	uint8_t *used;
};

/* One piece of a buffer: guest address, length, and where gmem maps it (never NULL: a segment lies
 * inside one RAM region, checked by gmem_ptr). The guest may change the bytes at any time: read a
 * request header once into host memory, then validate the copy. */
struct virtq_seg {
	uint64_t gpa;
	uint32_t len;
	void *host;
};

/* A popped descriptor chain. The caller supplies the segment arrays (virtq_elem_init); a chain with
 * more segments than they hold breaks the queue, so size them to at least what the device
 * advertises (seg_max and the like) or the queue size. */
struct virtq_elem {
	uint16_t head;          /* the id to give virtq_push */
	unsigned nr_rd, nr_wr;  /* segments filled */
	uint64_t rd_bytes;      /* total device-readable bytes */
	uint64_t wr_bytes;      /* total device-writable bytes */
	struct virtq_seg *rd;   /* device-readable segments, in chain order */
	struct virtq_seg *wr;   /* device-writable segments, in chain order */
	unsigned rd_max, wr_max;
};

/* Clears the queue and binds it to guest memory; the queue starts disabled. */
void virtq_init(struct virtqueue *vq, struct gmem *gm);
/* Back to the state of virtq_init (device or queue reset); keeps gm. */
void virtq_reset(struct virtqueue *vq);
/* Checks size and ring addresses (power-of-2 size, spec alignment, each part inside one RAM region)
 * and starts the queue at index 0. -EINVAL (bad size or alignment) or -EFAULT (outside RAM) mark
 * the queue broken. */
int virtq_enable(struct virtqueue *vq);

void virtq_elem_init(struct virtq_elem *e, struct virtq_seg *rd, unsigned rd_max,
		     struct virtq_seg *wr, unsigned wr_max);

/* Takes the next available chain into e. 0: done, the chain is the device's until virtq_push;
 * -EAGAIN: nothing available (or the queue is not enabled); any other -errno: the driver broke the
 * queue (vq->broken is set, the chain is not consumed, and later pops return -EIO). */
int virtq_pop(struct virtqueue *vq, struct virtq_elem *e);

/* Returns the chain with head `id` to the driver, `len` bytes written into it, and publishes the
 * used index. -EINVAL for an id out of range, -EIO when the queue is broken or disabled. */
int virtq_push(struct virtqueue *vq, uint16_t id, uint32_t len);

/* Whether the driver wants an interrupt for what was pushed since the last call: honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT, or with event-idx the used_event field (section 2.7.10). */
bool virtq_need_notify(struct virtqueue *vq);

/* Asks the driver to notify on new buffers, or not to bother (the device is polling): used->flags,
 * or with event-idx avail_event. After enabling, check virtq_avail_pending: buffers may have
 * arrived before the driver saw the request. */
void virtq_set_notify(struct virtqueue *vq, bool enable);
/* Whether a chain is available to pop. */
bool virtq_avail_pending(struct virtqueue *vq);

/* Copy between a popped element and host memory, starting `off` bytes into its readable (read) or
 * writable (write) bytes; return how many bytes were copied (less than len at the end). */
size_t virtq_elem_read(const struct virtq_elem *e, uint64_t off, void *buf, size_t len);
size_t virtq_elem_write(const struct virtq_elem *e, uint64_t off, const void *buf, size_t len);

#endif
