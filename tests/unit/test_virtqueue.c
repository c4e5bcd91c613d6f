/* Split virtqueue (src/devices/virtio/queue.c) against rings written into a fake guest RAM, playing the
 * driver's part by hand: well-formed chains, notification decisions, and a hostile driver. */
#include <kvmm/gmem.h>
#include <kvmm/log.h>
#include <kvmm/virtqueue.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#define RAM_SIZE (16ull << 20)
#define DESC_GPA 0x1000ull   /* room for 256 descriptors */
#define AVAIL_GPA 0x2000ull
#define USED_GPA 0x3000ull
#define TABLE_GPA 0x8000ull  /* indirect tables */
#define BUF_GPA 0x10000ull   /* buffers */
#define NSEG 8

/* A broken queue logs a warning: expected here, so keep the test output quiet. */
static void quiet_log(void)
{
	log_set_level(LOG_ERROR);
}

TestSuite(virtqueue, .init = quiet_log, .timeout = 10);

struct fx {
	struct gmem gm;
	struct virtqueue vq;
	struct virtq_seg rd[NSEG], wr[NSEG];
	struct virtq_elem e;
	uint16_t avail_idx; /* the driver's avail->idx */
};

static void fx_setup(struct fx *f, uint32_t size, bool event_idx)
{
	memset(f, 0, sizeof(*f));
	cr_assert_eq(gmem_init(&f->gm, RAM_SIZE, MEM_BACKEND_ANON), 0);
	virtq_init(&f->vq, &f->gm);
	f->vq.size = size;
	f->vq.desc_gpa = DESC_GPA;
	f->vq.avail_gpa = AVAIL_GPA;
	f->vq.used_gpa = USED_GPA;
	f->vq.event_idx = event_idx;
	cr_assert_eq(virtq_enable(&f->vq), 0);
	virtq_elem_init(&f->e, f->rd, NSEG, f->wr, NSEG);
}

static void fx_teardown(struct fx *f)
{
	gmem_destroy(&f->gm);
}

static void *ram(struct fx *f, uint64_t gpa, uint64_t len)
{
	void *p = gmem_ptr(&f->gm, gpa, len);

	cr_assert_not_null(p);
	return p;
}

/* The host is little-endian, like the virtio 1.x rings. */
static void put_desc(struct fx *f, uint64_t table, uint32_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };

	cr_assert_eq(gmem_write(&f->gm, table + 16ull * i, &d, sizeof(d)), 0);
}

static void desc(struct fx *f, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	put_desc(f, DESC_GPA, i, addr, len, flags, next);
}

static uint16_t *avail16(struct fx *f, size_t off)
{
	return ram(f, AVAIL_GPA + off, 2);
}

static void set_avail_idx(struct fx *f, uint16_t idx)
{
	f->avail_idx = idx;
	*avail16(f, 2) = idx;
}

/* Driver: makes chain `head` available. */
static void offer(struct fx *f, uint16_t head)
{
	*avail16(f, 4 + 2 * (size_t)(f->avail_idx & (f->vq.size - 1))) = head;
	set_avail_idx(f, f->avail_idx + 1);
}

static void set_used_event(struct fx *f, uint16_t v)
{
	*avail16(f, 4 + 2 * (size_t)f->vq.size) = v;
}

static uint16_t used_idx(struct fx *f)
{
	return *(uint16_t *)ram(f, USED_GPA + 2, 2);
}

static uint16_t used_flags(struct fx *f)
{
	return *(uint16_t *)ram(f, USED_GPA, 2);
}

static uint16_t avail_event(struct fx *f)
{
	return *(uint16_t *)ram(f, USED_GPA + 4 + 8ull * f->vq.size, 2);
}

static void used_elem(struct fx *f, uint16_t slot, uint32_t *id, uint32_t *len)
{
	uint32_t *p = ram(f, USED_GPA + 4 + 8ull * slot, 8);

	*id = p[0];
	*len = p[1];
}

/* The pop failed with err and broke the queue; later pops fail even after the driver fixes up. */
static void expect_broken(struct fx *f, int err)
{
	cr_expect_eq(virtq_pop(&f->vq, &f->e), err);
	cr_expect(f->vq.broken);
	desc(f, 0, BUF_GPA, 16, 0, 0);
	offer(f, 0);
	cr_expect_eq(virtq_pop(&f->vq, &f->e), -EIO);
	cr_expect_eq(virtq_pop(&f->vq, &f->e), -EIO);
	cr_expect_not(virtq_avail_pending(&f->vq));
	cr_expect_not(virtq_need_notify(&f->vq));
	cr_expect_eq(virtq_push(&f->vq, 0, 0), -EIO);
}

Test(virtqueue, simple_chain, .timeout = 10)
{
	struct fx f;
	uint32_t id, len;

	fx_setup(&f, 8, false);
	cr_expect_eq(virtq_pop(&f.vq, &f.e), -EAGAIN, "empty queue");
	cr_expect_not(virtq_avail_pending(&f.vq));

	desc(&f, 3, BUF_GPA, 100, 0, 0);
	offer(&f, 3);
	cr_expect(virtq_avail_pending(&f.vq));
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(f.e.head, 3);
	cr_expect_eq(f.e.nr_rd, 1);
	cr_expect_eq(f.e.nr_wr, 0);
	cr_expect_eq(f.e.rd_bytes, 100);
	cr_expect_eq(f.e.wr_bytes, 0);
	cr_expect_eq(f.rd[0].gpa, BUF_GPA);
	cr_expect_eq(f.rd[0].len, 100);
	cr_expect_eq(f.rd[0].host, gmem_ptr(&f.gm, BUF_GPA, 100));
	cr_expect_eq(virtq_pop(&f.vq, &f.e), -EAGAIN, "one chain only");
	cr_expect_eq(f.vq.last_avail_idx, 1);

	cr_expect_eq(used_idx(&f), 0, "nothing used before the push");
	cr_assert_eq(virtq_push(&f.vq, 3, 0), 0);
	cr_expect_eq(used_idx(&f), 1);
	used_elem(&f, 0, &id, &len);
	cr_expect_eq(id, 3);
	cr_expect_eq(len, 0);
	cr_expect_eq(virtq_push(&f.vq, 8, 0), -EINVAL, "id out of range");
	cr_expect_not(f.vq.broken, "a device bug does not break the queue");
	fx_teardown(&f);
}

Test(virtqueue, chain_and_copies, .timeout = 10)
{
	struct fx f;
	uint8_t in[40], out[64], back[64];

	fx_setup(&f, 16, false);
	for (unsigned i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	/* readable 16 + 24 bytes at scattered addresses, then writable 8 + 32. */
	memcpy(ram(&f, BUF_GPA + 0x1000, 16), in, 16);
	memcpy(ram(&f, BUF_GPA + 0x3000, 24), in + 16, 24);
	desc(&f, 5, BUF_GPA + 0x1000, 16, VIRTQ_DESC_F_NEXT, 9);
	desc(&f, 9, BUF_GPA + 0x3000, 24, VIRTQ_DESC_F_NEXT, 0);
	desc(&f, 0, BUF_GPA + 0x5000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 15);
	desc(&f, 15, BUF_GPA + 0x7000, 32, VIRTQ_DESC_F_WRITE, 0);
	offer(&f, 5);

	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(f.e.head, 5);
	cr_expect_eq(f.e.nr_rd, 2);
	cr_expect_eq(f.e.nr_wr, 2);
	cr_expect_eq(f.e.rd_bytes, 40);
	cr_expect_eq(f.e.wr_bytes, 40);
	cr_expect_eq(f.wr[1].gpa, BUF_GPA + 0x7000);

	memset(back, 0, sizeof(back));
	cr_expect_eq(virtq_elem_read(&f.e, 0, back, sizeof(back)), 40, "bounded by the readable bytes");
	cr_expect_arr_eq(back, in, 40);
	cr_expect_eq(virtq_elem_read(&f.e, 10, back, 10), 10, "across the segment boundary");
	cr_expect_arr_eq(back, in + 10, 10);
	cr_expect_eq(virtq_elem_read(&f.e, 40, back, 1), 0);
	cr_expect_eq(virtq_elem_read(&f.e, 1000, back, 1), 0);

	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(0xa0 + i);
	memset(ram(&f, BUF_GPA + 0x7000 + 32, 16), 0x5a, 16);
	cr_expect_eq(virtq_elem_write(&f.e, 0, out, sizeof(out)), 40, "bounded by the writable bytes");
	cr_expect_arr_eq(ram(&f, BUF_GPA + 0x5000, 8), out, 8);
	cr_expect_arr_eq(ram(&f, BUF_GPA + 0x7000, 32), out + 8, 32);
	cr_expect_eq(*(uint8_t *)ram(&f, BUF_GPA + 0x7000 + 32, 1), 0x5a, "nothing past the buffer");
	cr_expect_eq(virtq_elem_write(&f.e, 6, out, 4), 4);
	cr_expect_arr_eq(ram(&f, BUF_GPA + 0x5006, 2), out, 2);
	cr_expect_arr_eq(ram(&f, BUF_GPA + 0x7000, 2), out + 2, 2);

	cr_assert_eq(virtq_push(&f.vq, f.e.head, 40), 0);
	fx_teardown(&f);
}

Test(virtqueue, chain_as_long_as_the_queue, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	for (uint16_t i = 0; i < 8; i++)
		desc(&f, i, BUF_GPA + 64ull * i, 64, i < 7 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	offer(&f, 0);
	f.e.rd_max = 8;
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(f.e.nr_rd, 8);
	cr_expect_eq(f.e.rd_bytes, 512);
	fx_teardown(&f);
}

Test(virtqueue, indirect_table, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	put_desc(&f, TABLE_GPA, 0, BUF_GPA, 12, VIRTQ_DESC_F_NEXT, 2);
	put_desc(&f, TABLE_GPA, 2, BUF_GPA + 0x100, 200, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(&f, TABLE_GPA, 1, BUF_GPA + 0x200, 1, VIRTQ_DESC_F_WRITE, 0);
	desc(&f, 6, TABLE_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(&f, 6);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(f.e.head, 6);
	cr_expect_eq(f.e.nr_rd, 1);
	cr_expect_eq(f.e.nr_wr, 2);
	cr_expect_eq(f.e.rd_bytes, 12);
	cr_expect_eq(f.e.wr_bytes, 201);
	cr_expect_eq(f.wr[0].gpa, BUF_GPA + 0x100);
	cr_expect_eq(f.wr[1].gpa, BUF_GPA + 0x200);

	/* A direct descriptor may lead to an indirect one (which then ends the chain). */
	desc(&f, 1, BUF_GPA + 0x300, 4, VIRTQ_DESC_F_NEXT, 2);
	desc(&f, 2, TABLE_GPA + 16, 16, VIRTQ_DESC_F_INDIRECT, 0); /* entry 1 of the table only */
	offer(&f, 1);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(f.e.head, 1);
	cr_expect_eq(f.e.nr_rd, 1);
	cr_expect_eq(f.e.nr_wr, 1);
	cr_expect_eq(f.wr[0].gpa, BUF_GPA + 0x200);

	/* Tables need not be aligned. */
	put_desc(&f, TABLE_GPA + 0x1003, 0, BUF_GPA, 7, 0, 0);
	desc(&f, 4, TABLE_GPA + 0x1003, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(&f, 4);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(f.e.rd_bytes, 7);
	cr_expect_not(f.vq.broken);
	fx_teardown(&f);
}

Test(virtqueue, avail_wraps_at_65536, .timeout = 10)
{
	struct fx f;
	uint32_t id, len;

	fx_setup(&f, 4, false);
	for (uint16_t i = 0; i < 4; i++)
		desc(&f, i, BUF_GPA + 16ull * i, 16, 0, 0);
	/* The driver and device run through 65534 chains, then cross the 16-bit wrap. */
	for (unsigned n = 0; n < 65540; n++) {
		offer(&f, (uint16_t)(n % 4));
		/* Plain checks: Criterion reports every assertion, which is slow 65536 times over. */
		if (virtq_pop(&f.vq, &f.e) || f.e.head != n % 4 || virtq_push(&f.vq, f.e.head, n))
			cr_assert_fail("chain %u", n);
		if (n == 65535) {
			cr_expect_eq(f.vq.last_avail_idx, 0);
			cr_expect_eq(used_idx(&f), 0);
		}
	}
	cr_expect_eq(f.vq.last_avail_idx, 4);
	cr_expect_eq(used_idx(&f), 4);
	used_elem(&f, 3, &id, &len);
	cr_expect_eq(id, 3);
	cr_expect_eq(len, 65539);

	/* Several chains outstanding across the wrap. */
	f.vq.last_avail_idx = f.vq.avail_idx = 65534;
	set_avail_idx(&f, 65534);
	for (uint16_t i = 0; i < 4; i++)
		offer(&f, i);
	cr_expect_eq(f.avail_idx, 2);
	for (uint16_t i = 0; i < 4; i++) {
		cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
		cr_expect_eq(f.e.head, i);
	}
	cr_expect_eq(virtq_pop(&f.vq, &f.e), -EAGAIN);
	cr_expect_not(f.vq.broken);
	fx_teardown(&f);
}

Test(virtqueue, no_interrupt_flag, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, 16, 0, 0);
	cr_expect_not(virtq_need_notify(&f.vq), "nothing used yet");
	offer(&f, 0);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_assert_eq(virtq_push(&f.vq, 0, 0), 0);
	cr_expect(virtq_need_notify(&f.vq));
	cr_expect_not(virtq_need_notify(&f.vq), "already notified for that one");

	*avail16(&f, 0) = VIRTQ_AVAIL_F_NO_INTERRUPT;
	offer(&f, 0);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_assert_eq(virtq_push(&f.vq, 0, 0), 0);
	cr_expect_not(virtq_need_notify(&f.vq), "the driver asked for no interrupts");

	*avail16(&f, 0) = 0;
	offer(&f, 0);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_assert_eq(virtq_push(&f.vq, 0, 0), 0);
	cr_expect(virtq_need_notify(&f.vq));

	/* Device-side suppression without event-idx is used->flags. */
	virtq_set_notify(&f.vq, false);
	cr_expect_eq(used_flags(&f), VIRTQ_USED_F_NO_NOTIFY);
	virtq_set_notify(&f.vq, true);
	cr_expect_eq(used_flags(&f), 0);
	fx_teardown(&f);
}

Test(virtqueue, event_idx, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, true);
	for (uint16_t i = 0; i < 8; i++)
		desc(&f, i, BUF_GPA + 16ull * i, 16, 0, 0);

	/* avail_event: after each pop the device asks to hear about the next entry. */
	offer(&f, 0);
	offer(&f, 1);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(avail_event(&f), 1);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(avail_event(&f), 2);
	virtq_set_notify(&f.vq, false);
	offer(&f, 2);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(avail_event(&f), 2, "left behind while the device polls");
	cr_expect_eq(used_flags(&f), 0, "flags are not used with event-idx");
	cr_expect_not(virtq_avail_pending(&f.vq));
	virtq_set_notify(&f.vq, true);
	cr_expect_eq(avail_event(&f), 3);
	offer(&f, 3);
	cr_expect(virtq_avail_pending(&f.vq), "arrived while notifications were off");
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);

	/* used_event 0: interrupt once used->idx passes 0, i.e. for the first push only. */
	set_used_event(&f, 0);
	cr_assert_eq(virtq_push(&f.vq, 0, 0), 0);
	cr_expect(virtq_need_notify(&f.vq));
	cr_assert_eq(virtq_push(&f.vq, 1, 0), 0);
	cr_expect_not(virtq_need_notify(&f.vq), "used_event 0 already passed");

	/* used_event 3: no interrupt until entry 3 is used; two pushes at once that cross it. */
	set_used_event(&f, 3);
	cr_assert_eq(virtq_push(&f.vq, 2, 0), 0); /* used idx 3: entry 2 */
	cr_expect_not(virtq_need_notify(&f.vq));
	cr_assert_eq(virtq_push(&f.vq, 3, 0), 0); /* used idx 4: entry 3 */
	cr_expect(virtq_need_notify(&f.vq));
	cr_expect_not(virtq_need_notify(&f.vq), "nothing new");

	/* The flag is ignored with event-idx (section 2.7.7). */
	*avail16(&f, 0) = VIRTQ_AVAIL_F_NO_INTERRUPT;
	set_used_event(&f, 4);
	offer(&f, 4);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_assert_eq(virtq_push(&f.vq, 4, 0), 0);
	cr_expect(virtq_need_notify(&f.vq));
	fx_teardown(&f);
}

Test(virtqueue, event_idx_across_wrap, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, true);
	/* Pretend 65534 chains went by: device at 65534, driver's used_event 65535. */
	f.vq.used_idx = f.vq.signalled_used = 65534;
	set_used_event(&f, 65535);
	cr_assert_eq(virtq_push(&f.vq, 0, 0), 0);
	cr_expect_not(virtq_need_notify(&f.vq), "used idx 65535 has not passed entry 65535");
	cr_assert_eq(virtq_push(&f.vq, 1, 0), 0);
	cr_assert_eq(virtq_push(&f.vq, 2, 0), 0);
	cr_expect_eq(used_idx(&f), 1);
	cr_expect(virtq_need_notify(&f.vq));
	fx_teardown(&f);
}

/* The hostile driver. */

Test(virtqueue, loop_in_chain, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(&f, 1, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 0);
	offer(&f, 0);
	f.e.rd_max = NSEG; /* more segments than the queue: the loop is what stops it */
	expect_broken(&f, -ELOOP);
	fx_teardown(&f);
}

Test(virtqueue, self_loop_in_indirect_table, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	put_desc(&f, TABLE_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(&f, TABLE_GPA, 1, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	desc(&f, 2, TABLE_GPA, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(&f, 2);
	expect_broken(&f, -ELOOP);
	fx_teardown(&f);
}

Test(virtqueue, head_out_of_range, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	offer(&f, 8);
	expect_broken(&f, -EINVAL);
	fx_teardown(&f);
}

Test(virtqueue, next_out_of_range, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 0xffff);
	offer(&f, 0);
	expect_broken(&f, -EINVAL);
	fx_teardown(&f);
}

Test(virtqueue, next_out_of_indirect_table, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	put_desc(&f, TABLE_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries */
	put_desc(&f, TABLE_GPA, 2, BUF_GPA, 16, 0, 0);
	desc(&f, 0, TABLE_GPA, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(&f, 0);
	expect_broken(&f, -EINVAL);
	fx_teardown(&f);
}

Test(virtqueue, buffer_beyond_ram, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 1, RAM_SIZE - 8, 16, 0, 0); /* straddles the end */
	offer(&f, 1);
	expect_broken(&f, -EFAULT);
	fx_teardown(&f);

	fx_setup(&f, 8, false);
	desc(&f, 1, 1ull << 40, 16, VIRTQ_DESC_F_WRITE, 0);
	offer(&f, 1);
	expect_broken(&f, -EFAULT);
	fx_teardown(&f);
}

Test(virtqueue, length_overflow, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 0, UINT64_MAX - 15, 32, 0, 0); /* addr + len wraps to 16 */
	offer(&f, 0);
	expect_broken(&f, -EFAULT);
	fx_teardown(&f);

	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, UINT32_MAX, VIRTQ_DESC_F_WRITE, 0);
	offer(&f, 0);
	expect_broken(&f, -EFAULT);
	fx_teardown(&f);
}

Test(virtqueue, zero_length_buffer, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, 0, 0, 0);
	offer(&f, 0);
	expect_broken(&f, -EINVAL);
	fx_teardown(&f);
}

Test(virtqueue, indirect_inside_indirect, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	put_desc(&f, TABLE_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	put_desc(&f, TABLE_GPA, 1, TABLE_GPA, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	desc(&f, 0, TABLE_GPA, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(&f, 0);
	expect_broken(&f, -EINVAL);
	fx_teardown(&f);
}

Test(virtqueue, bad_indirect_tables, .timeout = 10)
{
	static const struct {
		uint64_t addr;
		uint32_t len;
		uint16_t flags;
		int err;
	} bad[] = {
		{ TABLE_GPA, 0, 0, -EINVAL },                      /* zero-length table */
		{ TABLE_GPA, 24, 0, -EINVAL },                     /* not a multiple of 16 */
		{ TABLE_GPA, 16, VIRTQ_DESC_F_NEXT, -EINVAL },     /* INDIRECT with NEXT */
		{ RAM_SIZE - 16, 32, 0, -EFAULT },                 /* past the end of RAM */
		{ UINT64_MAX - 15, 32, 0, -EFAULT },               /* wraps */
		{ TABLE_GPA, (VIRTQ_MAX_SIZE + 1) * 16, 0, -EINVAL }, /* longer than any chain */
	};

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fx f;

		fx_setup(&f, 8, false);
		put_desc(&f, TABLE_GPA, 0, BUF_GPA, 16, 0, 0);
		desc(&f, 0, bad[i].addr, bad[i].len, VIRTQ_DESC_F_INDIRECT | bad[i].flags, 1);
		desc(&f, 1, BUF_GPA, 16, 0, 0);
		offer(&f, 0);
		cr_expect_eq(virtq_pop(&f.vq, &f.e), bad[i].err, "case %u", i);
		cr_expect(f.vq.broken, "case %u", i);
		cr_expect_eq(virtq_pop(&f.vq, &f.e), -EIO, "case %u", i);
		fx_teardown(&f);
	}
}

Test(virtqueue, writable_then_readable, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(&f, 1, BUF_GPA + 16, 16, 0, 0);
	offer(&f, 0);
	expect_broken(&f, -EINVAL);
	fx_teardown(&f);

	/* Also across the switch into an indirect table. */
	fx_setup(&f, 8, false);
	put_desc(&f, TABLE_GPA, 0, BUF_GPA, 16, 0, 0);
	desc(&f, 0, BUF_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(&f, 1, TABLE_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(&f, 0);
	expect_broken(&f, -EINVAL);
	fx_teardown(&f);
}

Test(virtqueue, too_many_segments, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(&f, 1, BUF_GPA + 16, 16, VIRTQ_DESC_F_WRITE, 0);
	offer(&f, 0);
	f.e.wr_max = 1;
	expect_broken(&f, -ENOBUFS);
	fx_teardown(&f);
}

Test(virtqueue, avail_idx_jump, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, 16, 0, 0);
	set_avail_idx(&f, 8); /* exactly a full ring is fine */
	cr_expect_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_not(f.vq.broken);
	fx_teardown(&f);

	fx_setup(&f, 8, false);
	set_avail_idx(&f, 9);
	expect_broken(&f, -EINVAL);
	fx_teardown(&f);

	/* Going backwards is a jump of nearly 65536. */
	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, 16, 0, 0);
	offer(&f, 0);
	offer(&f, 0);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	set_avail_idx(&f, 1);
	expect_broken(&f, -EINVAL);
	fx_teardown(&f);
}

Test(virtqueue, bad_ring_setup, .timeout = 10)
{
	static const struct {
		uint32_t size;
		uint64_t desc, avail, used;
		int err;
	} bad[] = {
		{ 8, RAM_SIZE, AVAIL_GPA, USED_GPA, -EFAULT },          /* desc outside RAM */
		{ 8, RAM_SIZE - 64, AVAIL_GPA, USED_GPA, -EFAULT },     /* desc crosses the end */
		{ 8, DESC_GPA, 1ull << 40, USED_GPA, -EFAULT },         /* avail outside RAM */
		{ 8, DESC_GPA, AVAIL_GPA, RAM_SIZE - 8, -EFAULT },      /* used crosses the end */
		{ 8, UINT64_MAX - 15, AVAIL_GPA, USED_GPA, -EFAULT },   /* wraps */
		{ 8, DESC_GPA + 8, AVAIL_GPA, USED_GPA, -EINVAL },      /* desc not 16-aligned */
		{ 8, DESC_GPA, AVAIL_GPA + 1, USED_GPA, -EINVAL },      /* avail not 2-aligned */
		{ 8, DESC_GPA, AVAIL_GPA, USED_GPA + 2, -EINVAL },      /* used not 4-aligned */
		{ 0, DESC_GPA, AVAIL_GPA, USED_GPA, -EINVAL },          /* size 0 */
		{ 6, DESC_GPA, AVAIL_GPA, USED_GPA, -EINVAL },          /* not a power of 2 */
		{ 65536, DESC_GPA, AVAIL_GPA, USED_GPA, -EINVAL },      /* too large */
	};

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fx f;

		fx_setup(&f, 8, false);
		virtq_reset(&f.vq);
		f.vq.size = bad[i].size;
		f.vq.desc_gpa = bad[i].desc;
		f.vq.avail_gpa = bad[i].avail;
		f.vq.used_gpa = bad[i].used;
		cr_expect_eq(virtq_enable(&f.vq), bad[i].err, "case %u", i);
		cr_expect(f.vq.broken, "case %u", i);
		cr_expect_not(f.vq.enabled, "case %u", i);
		cr_expect_eq(virtq_pop(&f.vq, &f.e), -EIO, "case %u", i);
		cr_expect_eq(virtq_push(&f.vq, 0, 0), -EIO, "case %u", i);
		virtq_set_notify(&f.vq, true); /* must not touch a ring it does not have */
		fx_teardown(&f);
	}
}

Test(virtqueue, largest_queue_and_reset, .timeout = 10)
{
	struct fx f;

	fx_setup(&f, 8, false);
	desc(&f, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 0xffff);
	offer(&f, 0);
	cr_expect_eq(virtq_pop(&f.vq, &f.e), -EINVAL);
	cr_expect(f.vq.broken);

	/* Reset clears broken; a 32768-entry queue fits in RAM at 1 MiB. */
	virtq_reset(&f.vq);
	cr_expect_not(f.vq.broken);
	cr_expect_eq(virtq_pop(&f.vq, &f.e), -EAGAIN, "disabled after reset");
	f.vq.size = VIRTQ_MAX_SIZE;
	f.vq.desc_gpa = 1ull << 20;
	f.vq.avail_gpa = 2ull << 20;
	f.vq.used_gpa = 3ull << 20;
	cr_assert_eq(virtq_enable(&f.vq), 0);
	put_desc(&f, 1ull << 20, VIRTQ_MAX_SIZE - 1, BUF_GPA, 16, 0, 0);
	*(uint16_t *)ram(&f, (2ull << 20) + 4, 2) = VIRTQ_MAX_SIZE - 1;
	*(uint16_t *)ram(&f, (2ull << 20) + 2, 2) = 1;
	cr_assert_eq(virtq_pop(&f.vq, &f.e), 0);
	cr_expect_eq(f.e.head, VIRTQ_MAX_SIZE - 1);
	fx_teardown(&f);
}
