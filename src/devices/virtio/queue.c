/* Split virtqueues, device side (virtio 1.2, section 2.7). See include/kvmm/virtqueue.h.
 *
 * Ordering with the guest (section 2.7.13 and 2.7.8): the driver writes descriptors and the avail
 * ring entry before avail->idx, so avail->idx is loaded with acquire before anything it covers. The
 * device writes buffers and the used ring entry before used->idx, so used->idx is stored with
 * release. Deciding whether the other side must be told (interrupt or notification) is a store
 * followed by a load of what the other side stores, so a full fence separates them. */
#include <kvmm/gmem.h>
#include <kvmm/log.h>
#include <kvmm/virtqueue.h>

#include <endian.h>
#include <errno.h>
#include <string.h>

_Static_assert(sizeof(struct virtq_desc) == 16, "section 2.7.5: descriptors are 16 bytes");

/* Offsets inside the avail and used rings (section 2.7.6 and 2.7.8). */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 2
#define AVAIL_RING(i) (4 + 2 * (size_t)(i))
#define USED_FLAGS 0
#define USED_IDX 2
#define USED_RING(i) (4 + 8 * (size_t)(i))

/* Ring fields are read with one load each: the guest may be rewriting them as we read. The rings
 * are aligned (checked in virtq_enable) and host mappings keep guest page offsets, so these loads
 * and stores are naturally aligned. */
static uint16_t ring_load16(const uint8_t *base, size_t off, int order)
{
	return le16toh(__atomic_load_n((const uint16_t *)(base + off), order));
}

static void ring_store16(uint8_t *base, size_t off, uint16_t v, int order)
{
	__atomic_store_n((uint16_t *)(base + off), htole16(v), order);
}

static void ring_store32(uint8_t *base, size_t off, uint32_t v)
{
	__atomic_store_n((uint32_t *)(base + off), htole32(v), __ATOMIC_RELAXED);
}

/* The driver broke the queue. Logged once per queue: a guest must not be able to flood the log. */
static int vq_fail(struct virtqueue *vq, int err, const char *why)
{
	if (!vq->broken)
		log_warn("virtqueue (desc %#llx): %s; queue needs reset",
			 (unsigned long long)vq->desc_gpa, why);
	vq->broken = true;
	return err;
}

void virtq_init(struct virtqueue *vq, struct gmem *gm)
{
	memset(vq, 0, sizeof(*vq));
	vq->gm = gm;
}

void virtq_reset(struct virtqueue *vq)
{
	virtq_init(vq, vq->gm);
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int virtq_enable(struct virtqueue *vq)
{
	uint32_t n = vq->size;

	vq->enabled = false;
	if (!is_pow2(n) || n > VIRTQ_MAX_SIZE)
		return vq_fail(vq, -EINVAL, "queue size is not a power of 2 up to 32768");
	if (vq->desc_gpa % VIRTQ_DESC_ALIGN || vq->avail_gpa % VIRTQ_AVAIL_ALIGN ||
	    vq->used_gpa % VIRTQ_USED_ALIGN)
		return vq_fail(vq, -EINVAL, "ring address misaligned");
	vq->desc = gmem_ptr(vq->gm, vq->desc_gpa, VIRTQ_DESC_BYTES(n));
	vq->avail = gmem_ptr(vq->gm, vq->avail_gpa, VIRTQ_AVAIL_BYTES(n));
	vq->used = gmem_ptr(vq->gm, vq->used_gpa, VIRTQ_USED_BYTES(n));
	if (!vq->desc || !vq->avail || !vq->used) {
		vq->desc = vq->avail = vq->used = NULL;
		return vq_fail(vq, -EFAULT, "ring outside guest RAM");
	}
	vq->last_avail_idx = vq->avail_idx = 0;
	vq->used_idx = vq->signalled_used = 0;
	vq->notify_enabled = true;
	vq->enabled = true;
	return 0;
}

void virtq_elem_init(struct virtq_elem *e, struct virtq_seg *rd, unsigned rd_max,
		     struct virtq_seg *wr, unsigned wr_max)
{
	memset(e, 0, sizeof(*e));
	e->rd = rd;
	e->rd_max = rd_max;
	e->wr = wr;
	e->wr_max = wr_max;
}

/* Appends one descriptor's buffer to e. The descriptor is the host copy, never re-read. */
static int elem_add(struct virtqueue *vq, struct virtq_elem *e, const struct virtq_desc *d)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	struct virtq_seg *seg;
	void *host;

	/* Section 2.7.4.2: device-readable descriptors come before device-writable ones. */
	if (!writable && e->nr_wr)
		return vq_fail(vq, -EINVAL, "readable descriptor after a writable one");
	if (d->len == 0)
		return vq_fail(vq, -EINVAL, "zero-length descriptor");
	host = gmem_ptr(vq->gm, d->addr, d->len); /* overflow-safe: addr + len may wrap */
	if (!host)
		return vq_fail(vq, -EFAULT, "buffer outside guest RAM");
	if (writable) {
		if (e->nr_wr == e->wr_max)
			return vq_fail(vq, -ENOBUFS, "more writable segments than the device takes");
		seg = &e->wr[e->nr_wr++];
		e->wr_bytes += d->len;
	} else {
		if (e->nr_rd == e->rd_max)
			return vq_fail(vq, -ENOBUFS, "more readable segments than the device takes");
		seg = &e->rd[e->nr_rd++];
		e->rd_bytes += d->len;
	}
	*seg = (struct virtq_seg){ .gpa = d->addr, .len = d->len, .host = host };
	return 0;
}

/* Copies descriptor i of a table (the ring's or an indirect one) to host memory. memcpy, not
 * single loads: the copy is what gets validated and used, so a torn read is just another bad
 * descriptor. Indirect tables need not be aligned (section 2.7.5.3). */
static void desc_copy(const uint8_t *table, uint32_t i, struct virtq_desc *d)
{
	memcpy(d, table + 16 * (size_t)i, sizeof(*d));
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
}

/* Walks the chain starting at head into e. A chain visits at most `size` descriptors of the ring
 * (more is a loop, section 2.7.5.2) and at most one indirect table, whose own chain visits each of
 * its entries at most once. */
static int chain_walk(struct virtqueue *vq, uint16_t head, struct virtq_elem *e)
{
	const uint8_t *table = vq->desc;
	uint32_t entries = vq->size, seen = 0, i = head;
	bool indirect = false;
	struct virtq_desc d;
	int err;

	for (;;) {
		if (i >= entries)
			return vq_fail(vq, -EINVAL, "descriptor index out of range");
		if (++seen > entries)
			return vq_fail(vq, -ELOOP, "descriptor chain loops");
		desc_copy(table, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* Section 2.7.5.3.1: one table per descriptor, never nested, never with NEXT. */
			if (indirect)
				return vq_fail(vq, -EINVAL, "indirect descriptor inside an indirect table");
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return vq_fail(vq, -EINVAL, "indirect descriptor with F_NEXT");
			if (d.len == 0 || d.len % sizeof(d) || d.len / sizeof(d) > VIRTQ_MAX_SIZE)
				return vq_fail(vq, -EINVAL, "bad indirect table length");
			table = gmem_ptr(vq->gm, d.addr, d.len);
			if (!table)
				return vq_fail(vq, -EFAULT, "indirect table outside guest RAM");
			indirect = true;
			entries = d.len / sizeof(d);
			seen = 0;
			i = 0;
			continue;
		}
		err = elem_add(vq, e, &d);
		if (err)
			return err;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
	}
}

int virtq_pop(struct virtqueue *vq, struct virtq_elem *e)
{
	uint16_t head;
	int err;

	if (vq->broken)
		return -EIO;
	if (!vq->enabled)
		return -EAGAIN;
	if (vq->last_avail_idx == vq->avail_idx) {
		uint16_t idx = ring_load16(vq->avail, AVAIL_IDX, __ATOMIC_ACQUIRE);

		/* Section 2.7.6: the driver is at most `size` entries ahead of the device. */
		if ((uint16_t)(idx - vq->last_avail_idx) > vq->size)
			return vq_fail(vq, -EINVAL, "avail idx moved more than the queue size");
		vq->avail_idx = idx;
		if (idx == vq->last_avail_idx)
			return -EAGAIN;
	}
	head = ring_load16(vq->avail, AVAIL_RING(vq->last_avail_idx & (vq->size - 1)),
			   __ATOMIC_RELAXED);
	e->head = head;
	e->nr_rd = e->nr_wr = 0;
	e->rd_bytes = e->wr_bytes = 0;
	err = chain_walk(vq, head, e);
	if (err)
		return err;
	vq->last_avail_idx++;
	/* Section 2.7.10: with event-idx the driver notifies once avail->idx passes avail_event; keep
	 * asking for the entry after the one just taken while the device wants notifications. */
	if (vq->event_idx && vq->notify_enabled)
		ring_store16(vq->used, USED_RING(vq->size), vq->last_avail_idx, __ATOMIC_RELAXED);
	return 0;
}

int virtq_push(struct virtqueue *vq, uint16_t id, uint32_t len)
{
	size_t slot;

	if (vq->broken || !vq->enabled)
		return -EIO;
	if (id >= vq->size)
		return -EINVAL;
	slot = USED_RING(vq->used_idx & (vq->size - 1));
	ring_store32(vq->used, slot, id);
	ring_store32(vq->used, slot + 4, len);
	vq->used_idx++;
	/* Release: the buffer contents and the ring entry are visible before the new idx. */
	ring_store16(vq->used, USED_IDX, vq->used_idx, __ATOMIC_RELEASE);
	return 0;
}

/* Section 2.7.10: notify when new_idx has passed event since old_idx (all modulo 2^16). */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_need_notify(struct virtqueue *vq)
{
	uint16_t old = vq->signalled_used, now = vq->used_idx;

	if (!vq->enabled || vq->broken)
		return false;
	/* used->idx (stored) must be visible before used_event / flags are read (loaded). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vq->signalled_used = now;
	if (old == now)
		return false;
	if (vq->event_idx)
		return need_event(ring_load16(vq->avail, AVAIL_RING(vq->size), __ATOMIC_RELAXED),
				  now, old);
	return !(ring_load16(vq->avail, AVAIL_FLAGS, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

void virtq_set_notify(struct virtqueue *vq, bool enable)
{
	if (!vq->enabled || vq->broken)
		return;
	vq->notify_enabled = enable;
	if (vq->event_idx) {
		/* Event-idx has no "off": leaving avail_event behind means no further notifications
		 * once the driver has passed it. */
		if (enable)
			ring_store16(vq->used, USED_RING(vq->size), vq->last_avail_idx,
				     __ATOMIC_RELAXED);
	} else {
		ring_store16(vq->used, USED_FLAGS, enable ? 0 : VIRTQ_USED_F_NO_NOTIFY,
			     __ATOMIC_RELAXED);
	}
	/* The request (stored) must be visible before the caller loads avail->idx again. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool virtq_avail_pending(struct virtqueue *vq)
{
	if (!vq->enabled || vq->broken)
		return false;
	if (vq->last_avail_idx != vq->avail_idx)
		return true;
	return ring_load16(vq->avail, AVAIL_IDX, __ATOMIC_ACQUIRE) != vq->last_avail_idx;
}

/* Copies between buf and the segments, from byte `off` of their concatenation. */
static size_t segs_copy(const struct virtq_seg *segs, unsigned nr, uint64_t off, void *buf,
			size_t len, bool to_guest)
{
	uint8_t *p = buf;
	size_t done = 0;

	for (unsigned i = 0; i < nr && done < len; i++) {
		uint64_t n;

		if (off >= segs[i].len) {
			off -= segs[i].len;
			continue;
		}
		n = segs[i].len - off;
		if (n > len - done)
			n = len - done;
		if (to_guest)
			memcpy((uint8_t *)segs[i].host + off, p + done, n);
		else
			memcpy(p + done, (const uint8_t *)segs[i].host + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_elem_read(const struct virtq_elem *e, uint64_t off, void *buf, size_t len)
{
	return segs_copy(e->rd, e->nr_rd, off, buf, len, false);
}

size_t virtq_elem_write(const struct virtq_elem *e, uint64_t off, const void *buf, size_t len)
{
	return segs_copy(e->wr, e->nr_wr, off, (void *)buf, len, true);
}
