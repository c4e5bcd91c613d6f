/* Linux bzImage through the 64-bit boot protocol (Documentation/arch/x86/boot.rst; field offsets
 * from arch/x86/include/uapi/asm/bootparam.h and Documentation/arch/x86/zero-page.rst). kvmm plays
 * the boot loader: the protected-mode part goes to 1 MiB, the zero page (boot_params) carries the
 * setup header, command line, initrd, e820 map and RSDP, and vCPU 0 starts at the 64-bit entry
 * (+0x200) in long mode. Every field read from the file is checked before it is used. */
#include "loader.h"

#include <kvmm/log.h>

#include <errno.h>
#include <stdlib.h>

/* Setup header (boot.rst, "THE REAL-MODE KERNEL HEADER"): offsets in the file and the zero page. */
#define HDR_START 0x1f1
#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe      /* 0xaa55 */
#define HDR_JUMP_LEN 0x201       /* the header ends at 0x202 + this byte */
#define HDR_MAGIC 0x202          /* "HdrS" */
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_SETUP_DATA 0x250
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define HDR_MIN_END 0x264        /* through init_size: what protocol 2.12 guarantees */
#define HDR_MAX_END 0x290        /* struct setup_header ends before edd_mbr_sig_buffer */

#define BOOT_FLAG 0xaa55
#define PROTOCOL_MIN 0x020c      /* 2.12: xloadflags, and with it XLF_KERNEL_64 */
#define XLF_KERNEL_64 0x0001     /* a 64-bit entry at +0x200 */
#define LOADER_UNDEFINED 0xff    /* type_of_loader: a boot loader without an assigned id */

/* Zero page (struct boot_params) fields outside the setup header. */
#define ZP_SIZE 4096
#define ZP_ACPI_RSDP_ADDR 0x070
#define ZP_E820_ENTRIES 0x1e8
#define ZP_E820_TABLE 0x2d0
#define ZP_E820_MAX 128          /* E820_MAX_ENTRIES_ZEROPAGE */

_Static_assert(ZP_E820_TABLE + ZP_E820_MAX * sizeof(struct e820_entry) <= ZP_SIZE,
	       "the e820 table fits in the zero page");

bool bzimage_probe(const struct kfile *k)
{
	return k->size >= HDR_MAGIC + 4 && kf_rd16(k->data + HDR_BOOT_FLAG) == BOOT_FLAG &&
	       memcmp(k->data + HDR_MAGIC, "HdrS", 4) == 0;
}

/* Where the kernel runs from and how much it needs there before it reads the e820 map (init_size):
 * a relocatable kernel rounds its load address up to kernel_alignment but never goes below
 * pref_address (LOAD_PHYSICAL_ADDR; arch/x86/boot/compressed/head_64.S); one that is not runs at
 * pref_address. The initrd must stay above all of it. */
static uint64_t bzimage_end(const struct kfile *k, size_t pm_size)
{
	uint64_t start = BOOT_KERNEL_GPA, pref = kf_rd64(k->data + HDR_PREF_ADDRESS);
	uint32_t align = kf_rd32(k->data + HDR_KERNEL_ALIGNMENT);
	uint64_t init_size = kf_rd32(k->data + HDR_INIT_SIZE), end;

	if (k->data[HDR_RELOCATABLE] && align && !(align & (align - 1)))
		start = (start + align - 1) & ~((uint64_t)align - 1);
	if (pref > start)
		start = pref;
	end = BOOT_KERNEL_GPA + pm_size;
	/* pref_address comes from the file: saturate instead of wrapping. */
	if (start > UINT64_MAX - init_size)
		return UINT64_MAX;
	return start + init_size > end ? start + init_size : end;
}

int bzimage_load(struct gmem *gm, const struct boot_config *bc, const struct kfile *k,
		 struct boot_entry *entry)
{
	uint8_t *zp;
	struct e820_entry map[ZP_E820_MAX];
	struct initrd_place rd;
	uint16_t version;
	size_t hdr_end, pm_off, pm_size, n;
	uint64_t kernel_end, rsdp, initrd_ceiling;
	uint32_t v32;
	int err;

	if (k->size < HDR_VERSION + 2) {
		log_error("kernel %s: truncated bzImage header (%zu bytes)", k->path, k->size);
		return -EINVAL;
	}
	version = kf_rd16(k->data + HDR_VERSION);
	if (version < PROTOCOL_MIN) {
		log_error("kernel %s: boot protocol %u.%02u is too old for the 64-bit boot protocol "
			  "(kvmm needs 2.12+)", k->path, version >> 8, version & 0xff);
		return -ENOEXEC;
	}
	if (k->size < HDR_MIN_END) {
		log_error("kernel %s: truncated bzImage header (%zu bytes)", k->path, k->size);
		return -EINVAL;
	}
	if (!(kf_rd16(k->data + HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
		log_error("kernel %s: no XLF_KERNEL_64 in xloadflags (a 32-bit kernel?): too old for "
			  "the 64-bit boot protocol", k->path);
		return -ENOEXEC;
	}
	hdr_end = 0x202 + (size_t)k->data[HDR_JUMP_LEN];
	pm_off = ((size_t)(k->data[HDR_SETUP_SECTS] ? k->data[HDR_SETUP_SECTS] : 4) + 1) * 512;
	if (hdr_end < HDR_MIN_END || hdr_end > HDR_MAX_END || hdr_end > pm_off) {
		log_error("kernel %s: malformed setup header (it ends at %#zx)", k->path, hdr_end);
		return -EINVAL;
	}
	if (pm_off >= k->size) {
		log_error("kernel %s: truncated bzImage: %zu bytes, the setup code alone is %zu",
			  k->path, k->size, pm_off);
		return -EINVAL;
	}
	pm_size = k->size - pm_off;
	kernel_end = bzimage_end(k, pm_size);
	if (kernel_end > gmem_low_top(gm)) {
		log_error("kernel %s: needs guest RAM up to %llu MiB (boot protocol init_size %u MiB); "
			  "this guest has %llu MiB below 4 GiB", k->path,
			  (unsigned long long)(kernel_end >> 20) + 1,
			  kf_rd32(k->data + HDR_INIT_SIZE) >> 20, (unsigned long long)(gmem_low_top(gm) >> 20));
		return -E2BIG;
	}

	err = boot_cmdline_write(gm, bc->cmdline, kf_rd32(k->data + HDR_CMDLINE_SIZE));
	if (err < 0)
		return err;
	if (gmem_write(gm, BOOT_KERNEL_GPA, k->data + pm_off, pm_size) < 0)
		return -E2BIG; /* unreachable after the check above; kept as the accessor's answer */
	/* initrd_addr_max is the highest address the initrd may occupy (boot.rst). */
	initrd_ceiling = (uint64_t)kf_rd32(k->data + HDR_INITRD_ADDR_MAX) + 1;
	err = boot_initrd_load(gm, bc->initrd_path, kernel_end, initrd_ceiling, &rd);
	if (err < 0)
		return err;
	err = acpi_build(gm, bc->nr_cpus, &rsdp);
	if (err < 0)
		return err;

	zp = calloc(1, ZP_SIZE);
	if (!zp)
		return -ENOMEM;
	memcpy(zp + HDR_START, k->data + HDR_START, hdr_end - HDR_START);
	zp[HDR_TYPE_OF_LOADER] = LOADER_UNDEFINED;
	v32 = BOOT_CMDLINE_GPA;
	memcpy(zp + HDR_CMD_LINE_PTR, &v32, 4);
	v32 = (uint32_t)rd.gpa;
	memcpy(zp + HDR_RAMDISK_IMAGE, &v32, 4);
	v32 = (uint32_t)rd.size;
	memcpy(zp + HDR_RAMDISK_SIZE, &v32, 4);
	/* A setup_data pointer in the file would point at nothing kvmm wrote. */
	memset(zp + HDR_SETUP_DATA, 0, 8);
	memcpy(zp + ZP_ACPI_RSDP_ADDR, &rsdp, 8);
	n = e820_build(gm, map, ZP_E820_MAX);
	zp[ZP_E820_ENTRIES] = (uint8_t)n;
	memcpy(zp + ZP_E820_TABLE, map, n * sizeof(map[0]));
	err = gmem_write(gm, BOOT_ZERO_PAGE_GPA, zp, ZP_SIZE);
	free(zp);
	if (err == 0)
		err = boot_cpu_tables_write(gm, BOOT_LINUX64, entry);
	if (err < 0) {
		log_error("kernel %s: guest RAM too small for the boot structures", k->path);
		return err;
	}
	entry->mode = BOOT_LINUX64;
	entry->rip = BOOT_KERNEL_GPA + 0x200;
	entry->rsi = BOOT_ZERO_PAGE_GPA;
	entry->rsp = BOOT_STACK_GPA;
	return 0;
}
