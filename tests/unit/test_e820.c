#include <kvmm/boot.h>

#include <criterion/criterion.h>

/* Checks the invariants every map must have: sorted, non-overlapping, non-empty entries. */
static void check_sorted(const struct e820_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		cr_expect_gt(e[i].size, 0, "entry %zu is empty", i);
		if (i)
			cr_expect_geq(e[i].addr, e[i - 1].addr + e[i - 1].size, "entry %zu overlaps", i);
	}
}

static void check_low(const struct e820_entry *e, uint64_t low_top)
{
	cr_expect_eq(e[0].addr, 0);
	cr_expect_eq(e[0].size, BOOT_EBDA_GPA);
	cr_expect_eq(e[0].type, E820_RAM);
	cr_expect_eq(e[1].addr, BOOT_EBDA_GPA);
	cr_expect_eq(e[1].addr + e[1].size, 1ull << 20);
	cr_expect_eq(e[1].type, E820_RESERVED);
	cr_expect(e[1].addr <= BOOT_ACPI_GPA && BOOT_ACPI_GPA + BOOT_ACPI_MAX <= e[1].addr + e[1].size,
		  "the ACPI tables lie in the reserved range");
	cr_expect_eq(e[2].addr, 1ull << 20);
	cr_expect_eq(e[2].addr + e[2].size, low_top);
	cr_expect_eq(e[2].type, E820_RAM);
}

Test(e820, small_64m, .timeout = 10)
{
	struct gmem gm;
	struct e820_entry e[8];
	size_t n;

	cr_assert_eq(gmem_init(&gm, 64ull << 20, MEM_BACKEND_ANON), 0);
	n = e820_build(&gm, e, 8);
	cr_assert_eq(n, 3);
	check_low(e, 64ull << 20);
	check_sorted(e, n);
	cr_expect_eq(sizeof(struct e820_entry), 20, "the zero page's packed layout");
	gmem_destroy(&gm);
}

Test(e820, just_below_the_hole_3g, .timeout = 10)
{
	struct gmem gm;
	struct e820_entry e[8];
	size_t n;

	cr_assert_eq(gmem_init(&gm, 3ull << 30, MEM_BACKEND_ANON), 0);
	n = e820_build(&gm, e, 8);
	cr_assert_eq(n, 3, "3 GiB fills region 0 exactly, nothing above 4 GiB");
	check_low(e, GMEM_PCI_HOLE_START);
	check_sorted(e, n);
	gmem_destroy(&gm);
}

Test(e820, split_around_the_hole_5g, .timeout = 10)
{
	struct gmem gm;
	struct e820_entry e[8];
	size_t n;
	uint64_t ram = 0;

	cr_assert_eq(gmem_init(&gm, 5ull << 30, MEM_BACKEND_ANON), 0);
	n = e820_build(&gm, e, 8);
	cr_assert_eq(n, 4);
	check_low(e, GMEM_PCI_HOLE_START);
	cr_expect_eq(e[3].addr, GMEM_HIGH_START);
	cr_expect_eq(e[3].size, (5ull << 30) - GMEM_PCI_HOLE_START);
	cr_expect_eq(e[3].type, E820_RAM);
	check_sorted(e, n);
	for (size_t i = 0; i < n; i++)
		if (e[i].type == E820_RAM)
			ram += e[i].size;
	cr_expect_eq(ram, (5ull << 30) - ((1ull << 20) - BOOT_EBDA_GPA), "all RAM but the legacy hole");
	gmem_destroy(&gm);
}

Test(e820, never_more_than_cap, .timeout = 10)
{
	struct gmem gm;
	struct e820_entry e[8];

	cr_assert_eq(gmem_init(&gm, 5ull << 30, MEM_BACKEND_ANON), 0);
	cr_expect_eq(e820_build(&gm, e, 2), 2);
	cr_expect_eq(e[1].type, E820_RESERVED);
	cr_expect_eq(e820_build(&gm, NULL, 0), 0);
	gmem_destroy(&gm);
}
