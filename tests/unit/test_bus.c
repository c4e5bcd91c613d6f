#include <kvmm/bus.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

struct probe {
	uint64_t offset;
	unsigned len, calls;
	bool write;
	uint8_t last;
};

static void probe_fn(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	struct probe *p = opaque;

	p->offset = offset;
	p->len = len;
	p->write = is_write;
	p->calls++;
	if (is_write)
		p->last = data[0];
	else
		memset(data, 0x5a, len);
}

Test(bus, dispatches_by_range_with_offsets, .timeout = 10)
{
	struct bus b;
	struct probe a = { 0 }, c = { 0 };
	uint8_t data[4] = { 0x11 };

	bus_init(&b, "pio");
	cr_assert_eq(bus_register(&b, 0x3f8, 8, probe_fn, &a, "a"), 0);
	cr_assert_eq(bus_register(&b, 0x60, 1, probe_fn, &c, "c"), 0);
	cr_expect(bus_dispatch(&b, 0x3fd, data, 1, true));
	cr_expect_eq(a.offset, 5);
	cr_expect(a.write);
	cr_expect_eq(a.last, 0x11);
	cr_expect(bus_dispatch(&b, 0x60, data, 1, false));
	cr_expect_eq(c.calls, 1);
	cr_expect_eq(data[0], 0x5a);
	bus_destroy(&b);
}

Test(bus, unhandled_reads_all_ones, .timeout = 10)
{
	struct bus b;
	struct probe a = { 0 };
	uint8_t data[4] = { 0 };

	bus_init(&b, "pio");
	cr_assert_eq(bus_register(&b, 0x3f8, 8, probe_fn, &a, "a"), 0);
	cr_expect(!bus_dispatch(&b, 0x2f8, data, 4, false));
	cr_expect_eq(data[0] & data[1] & data[2] & data[3], 0xff);
	cr_expect(!bus_dispatch(&b, 0x3fe, data, 4, false), "straddles the end of a range");
	for (int i = 0; i < 1100; i++)
		bus_dispatch(&b, (uint64_t)i, data, 1, true);
	cr_expect_eq(b.nr_unhandled, BUS_UNHANDLED_LOGGED, "the once-only table stays bounded");
	cr_expect_eq(a.calls, 8, "0x3f8..0x3ff hit the device during the sweep");
	bus_destroy(&b);
}

Test(bus, rejects_overlaps_and_bad_ranges, .timeout = 10)
{
	struct bus b;
	struct probe a = { 0 };

	bus_init(&b, "mmio");
	cr_assert_eq(bus_register(&b, 0x1000, 0x1000, probe_fn, &a, "a"), 0);
	cr_expect_eq(bus_register(&b, 0x1fff, 1, probe_fn, &a, "end"), -EEXIST);
	cr_expect_eq(bus_register(&b, 0x0800, 0x1000, probe_fn, &a, "start"), -EEXIST);
	cr_expect_eq(bus_register(&b, 0, 0x10000, probe_fn, &a, "covers"), -EEXIST);
	cr_expect_eq(bus_register(&b, 0x2000, 0, probe_fn, &a, "empty"), -EINVAL);
	cr_expect_eq(bus_register(&b, UINT64_MAX, 2, probe_fn, &a, "wraps"), -EINVAL);
	cr_expect_eq(bus_register(&b, 0x2000, 0x10, probe_fn, &a, "next"), 0);
	cr_expect_eq(bus_register(&b, 0x0, 0x1000, probe_fn, &a, "before"), 0);
	cr_expect_eq(b.nr, 3);
	bus_destroy(&b);
}

Test(bus, unregister_moves_a_range, .timeout = 10)
{
	struct bus b;
	struct probe a = { 0 };
	uint8_t data[4];

	bus_init(&b, "mmio");
	cr_assert_eq(bus_register(&b, 0xc0000000, 0x1000, probe_fn, &a, "bar"), 0);
	cr_expect_eq(bus_unregister(&b, 0xc0000001), -ENOENT);
	cr_expect_eq(bus_unregister(&b, 0xc0000000), 0);
	cr_expect(!bus_dispatch(&b, 0xc0000000, data, 4, false));
	cr_expect_eq(bus_register(&b, 0xd0000000, 0x1000, probe_fn, &a, "bar"), 0);
	cr_expect(bus_dispatch(&b, 0xd0000ffc, data, 4, false));
	cr_expect_eq(a.offset, 0xffc);
	bus_destroy(&b);
}
