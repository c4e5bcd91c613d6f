#include <kvmm/gmem.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

Test(gmem, small_layout_is_one_region, .timeout = 10)
{
	struct gmem gm;

	cr_assert_eq(gmem_init(&gm, 64ull << 20), 0);
	cr_expect_eq(gm.nr_regions, 1);
	cr_expect_eq(gm.regions[0].gpa, 0);
	cr_expect_eq(gm.regions[0].size, 64ull << 20);
	cr_expect_eq(gmem_low_top(&gm), 64ull << 20);
	gmem_destroy(&gm);
}

Test(gmem, large_layout_splits_around_pci_hole, .timeout = 10)
{
	struct gmem gm;

	cr_assert_eq(gmem_init(&gm, 5ull << 30), 0);
	cr_expect_eq(gm.nr_regions, 2);
	cr_expect_eq(gm.regions[0].size, GMEM_PCI_HOLE_START);
	cr_expect_eq(gm.regions[1].gpa, GMEM_HIGH_START);
	cr_expect_eq(gm.regions[1].size, (5ull << 30) - GMEM_PCI_HOLE_START);
	cr_expect_null(gmem_ptr(&gm, GMEM_PCI_HOLE_START, 1), "the PCI hole is not RAM");
	cr_expect_null(gmem_ptr(&gm, GMEM_PCI_HOLE_START - 1, 2), "a range may not span regions");
	cr_expect_not_null(gmem_ptr(&gm, GMEM_HIGH_START, 4096));
	cr_expect_eq((uint8_t *)gmem_ptr(&gm, GMEM_HIGH_START, 1), gm.map + GMEM_PCI_HOLE_START);
	gmem_destroy(&gm);
}

Test(gmem, rejects_bad_sizes, .timeout = 10)
{
	struct gmem gm;

	cr_expect_eq(gmem_init(&gm, 0), -EINVAL);
	cr_expect_eq(gmem_init(&gm, 1ull << 20), -EINVAL);
	cr_expect_eq(gmem_init(&gm, (64ull << 20) + 1), -EINVAL);
	cr_expect_eq(gmem_init(&gm, UINT64_MAX & ~4095ull), -EINVAL);
}

Test(gmem, checked_access, .timeout = 10)
{
	struct gmem gm;
	const uint64_t size = 16ull << 20;
	uint32_t v = 0xdeadbeef, back = 0;

	cr_assert_eq(gmem_init(&gm, size), 0);
	cr_expect_eq(gmem_write(&gm, 0x1000, &v, sizeof(v)), 0);
	cr_expect_eq(gmem_read(&gm, 0x1000, &back, sizeof(back)), 0);
	cr_expect_eq(back, v);
	cr_expect_eq(gmem_write(&gm, size - 2, &v, sizeof(v)), -EFAULT, "crosses the end");
	cr_expect_eq(gmem_read(&gm, size, &back, 1), -EFAULT);
	cr_expect_not_null(gmem_ptr(&gm, size - 1, 1));
	cr_expect_null(gmem_ptr(&gm, 0, 0), "empty ranges are never valid");
	cr_expect_null(gmem_ptr(&gm, UINT64_MAX, 2), "gpa + len overflows");
	cr_expect_null(gmem_ptr(&gm, 4096, UINT64_MAX), "len overflows");
	cr_expect_null(gmem_ptr(&gm, UINT64_MAX - 4095, 4096));
	gmem_destroy(&gm);
}

Test(gmem, discard_all_reads_back_zero, .timeout = 10)
{
	struct gmem gm;
	uint64_t v = 0x1122334455667788ull, back = 1;

	cr_assert_eq(gmem_init(&gm, 64ull << 20), 0);
	cr_assert_eq(gmem_write(&gm, 0x100000, &v, sizeof(v)), 0);
	cr_assert_eq(gmem_write(&gm, (64ull << 20) - 8, &v, sizeof(v)), 0);
	cr_assert_eq(gmem_discard_all(&gm), 0);
	cr_assert_eq(gmem_read(&gm, 0x100000, &back, sizeof(back)), 0);
	cr_expect_eq(back, 0, "a discarded page reads as zero");
	back = 1;
	cr_assert_eq(gmem_read(&gm, (64ull << 20) - 8, &back, sizeof(back)), 0);
	cr_expect_eq(back, 0, "so does the last page");
	cr_assert_eq(gmem_write(&gm, 0x100000, &v, sizeof(v)), 0, "and the memory is usable again");
	gmem_destroy(&gm);
	cr_expect_eq(gmem_discard_all(&gm), -EINVAL, "nothing to discard after destroy");
}
