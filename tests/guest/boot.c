/* Copies what the loader left in boot_params (Linux's zero page, Documentation/arch/x86/
 * zero-page.rst) into .bss, so nothing later depends on where the loader put it. */
#include "guest.h"

#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0

struct e820_entry boot_e820[E820_MAX];
unsigned boot_e820_count;
char boot_cmdline[CMDLINE_MAX];

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

int boot_import(const void *boot_params)
{
	const uint8_t *bp = boot_params;

	if (!bp)
		return -1;
	boot_e820_count = bp[BP_E820_ENTRIES];
	if (boot_e820_count > E820_MAX)
		boot_e820_count = E820_MAX;
	memcpy(boot_e820, bp + BP_E820_TABLE, boot_e820_count * sizeof(boot_e820[0]));

	uint64_t cmd = rd32(bp + BP_CMD_LINE_PTR) | (uint64_t)rd32(bp + BP_EXT_CMD_LINE_PTR) << 32;
	/* Below 4 GiB every loader's command line is mapped (identity 0-4 GiB at entry). */
	if (cmd && cmd < (1ull << 32)) {
		const char *s = (const char *)cmd;
		size_t n = 0;
		while (n < CMDLINE_MAX - 1 && s[n])
			n++;
		memcpy(boot_cmdline, s, n);
		boot_cmdline[n] = 0;
	}
	return boot_e820_count ? 0 : -1;
}
