/* The BIOS-style memory map (e820) that Linux reads from the zero page and PVH kernels from
 * hvm_start_info's memmap: kvmm's two RAM regions, minus the legacy hole below 1 MiB. */
#include <kvmm/boot.h>

#include <string.h>

#define E820_LEGACY_END 0x100000ull /* 1 MiB */

_Static_assert(GMEM_MAX_REGIONS <= 2, "e820_build's table holds two RAM regions");

size_t e820_build(const struct gmem *gm, struct e820_entry *out, size_t cap)
{
	struct e820_entry all[4];
	size_t n = 0;

	all[n++] = (struct e820_entry){ 0, BOOT_EBDA_GPA, E820_RAM };
	/* [EBDA, 1 MiB) is where a PC has its EBDA, VGA window and BIOS ROM; kvmm keeps the ACPI
	 * tables there (BOOT_ACPI_GPA), so the guest must not take it for RAM. */
	all[n++] = (struct e820_entry){ BOOT_EBDA_GPA, E820_LEGACY_END - BOOT_EBDA_GPA, E820_RESERVED };
	if (gmem_low_top(gm) > E820_LEGACY_END)
		all[n++] = (struct e820_entry){ E820_LEGACY_END, gmem_low_top(gm) - E820_LEGACY_END,
						E820_RAM };
	for (unsigned i = 1; i < gm->nr_regions; i++)
		all[n++] = (struct e820_entry){ gm->regions[i].gpa, gm->regions[i].size, E820_RAM };
	if (n > cap)
		n = cap;
	if (n)
		memcpy(out, all, n * sizeof(*out));
	return n;
}
