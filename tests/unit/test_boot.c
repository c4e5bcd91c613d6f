#include <kvmm/boot.h>

#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct gmem gm;
static char dir[] = "/tmp/kvmm-test-boot.XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(gmem_init(&gm, 128ull << 20, MEM_BACKEND_ANON), 0);
}

static void teardown(void)
{
	char cmd[128];

	gmem_destroy(&gm);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

static const char *write_file(const char *name, const void *data, size_t len)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
	return path;
}

/* A minimal bzImage: 4 setup sectors + boot sector, then `payload` bytes of "kernel". */
static uint8_t *make_bzimage(size_t payload, uint16_t version, uint8_t xload, size_t *len)
{
	size_t n = 5 * 512 + payload;
	uint8_t *img = calloc(1, n);
	uint32_t init_size = (uint32_t)payload * 2, max = 0x37ffffff, cmdsize = 2047;

	img[0x1f1] = 4;
	img[0x1fe] = 0x55;
	img[0x1ff] = 0xaa;
	img[0x201] = 0x66;            /* header runs to 0x268 */
	memcpy(img + 0x202, "HdrS", 4);
	memcpy(img + 0x206, &version, 2);
	memcpy(img + 0x22c, &max, 4);
	img[0x236] = xload;
	memcpy(img + 0x238, &cmdsize, 4);
	memcpy(img + 0x260, &init_size, 4);
	for (size_t i = 0; i < payload; i++)
		img[5 * 512 + i] = (uint8_t)(i * 7);
	*len = n;
	return img;
}

static const char *write_bz(const char *name, size_t payload, uint16_t version, uint8_t xload)
{
	size_t len;
	uint8_t *img = make_bzimage(payload, version, xload, &len);
	const char *path = write_file(name, img, len);

	free(img);
	return path;
}

static uint8_t acpi_checksum(uint64_t gpa, size_t len)
{
	uint8_t *p = gmem_ptr(&gm, gpa, len), s = 0;

	cr_assert_not_null(p);
	while (len--)
		s += *p++;
	return s;
}

static uint32_t table_len(uint64_t gpa)
{
	uint32_t len;

	cr_assert_eq(gmem_read(&gm, gpa + 4, &len, 4), 0);
	return len;
}

TestSuite(boot, .init = setup, .fini = teardown, .timeout = 30);

Test(boot, e820_layouts)
{
	struct gmem big;
	struct e820_entry e[8];
	size_t n = e820_build(&gm, e, 8);

	cr_assert_eq(n, 3);
	cr_expect_eq(e[0].addr, 0);
	cr_expect_eq(e[0].type, E820_RAM);
	cr_expect_eq(e[1].type, E820_RESERVED);
	cr_expect(e[1].addr <= BOOT_ACPI_GPA && e[1].addr + e[1].size >= BOOT_ACPI_GPA + BOOT_ACPI_MAX);
	cr_expect_eq(e[2].addr + e[2].size, 128ull << 20);
	for (size_t i = 1; i < n; i++)
		cr_expect_eq(e[i - 1].addr + e[i - 1].size, e[i].addr, "sorted and contiguous below 4 GiB");

	cr_assert_eq(gmem_init(&big, 5ull << 30, MEM_BACKEND_ANON), 0);
	n = e820_build(&big, e, 8);
	cr_assert_eq(n, 4);
	cr_expect_eq(e[2].addr + e[2].size, GMEM_PCI_HOLE_START);
	cr_expect_eq(e[3].addr, GMEM_HIGH_START);
	cr_expect_eq(e[3].size, (5ull << 30) - GMEM_PCI_HOLE_START);
	cr_expect_eq(e820_build(&big, e, 2), 2, "never more than cap");
	gmem_destroy(&big);
}

static void check_acpi(unsigned cpus)
{
	uint8_t rsdp[36];
	uint64_t rsdp_gpa, xsdt, fadt, madt, dsdt = 0;
	uint32_t n_lapic = 0;

	cr_assert_eq(acpi_build(&gm, cpus, &rsdp_gpa), 0);
	cr_assert_eq(gmem_read(&gm, rsdp_gpa, rsdp, sizeof(rsdp)), 0);
	cr_expect_eq(memcmp(rsdp, "RSD PTR ", 8), 0);
	cr_expect_eq(acpi_checksum(rsdp_gpa, 20), 0, "RSDP checksum");
	cr_expect_eq(acpi_checksum(rsdp_gpa, 36), 0, "RSDP extended checksum");
	memcpy(&xsdt, rsdp + 24, 8);
	cr_expect_eq(acpi_checksum(xsdt, table_len(xsdt)), 0, "XSDT checksum");
	cr_assert_eq(table_len(xsdt), 36 + 16);
	gmem_read(&gm, xsdt + 36, &fadt, 8);
	gmem_read(&gm, xsdt + 44, &madt, 8);
	cr_expect_eq(memcmp(gmem_ptr(&gm, fadt, 4), "FACP", 4), 0);
	cr_expect_eq(table_len(fadt), 276, "FADT revision 6 length");
	cr_expect_eq(acpi_checksum(fadt, 276), 0, "FADT checksum");
	gmem_read(&gm, fadt + 140, &dsdt, 8);
	cr_expect_eq(memcmp(gmem_ptr(&gm, dsdt, 4), "DSDT", 4), 0);
	cr_expect_eq(acpi_checksum(dsdt, table_len(dsdt)), 0, "DSDT checksum");
	cr_expect_eq(memcmp(gmem_ptr(&gm, madt, 4), "APIC", 4), 0);
	cr_expect_eq(acpi_checksum(madt, table_len(madt)), 0, "MADT checksum");
	for (uint64_t p = madt + 44; p < madt + table_len(madt);) {
		uint8_t *ent = gmem_ptr(&gm, p, 2);

		n_lapic += ent[0] == 0;
		cr_assert_gt(ent[1], 0);
		p += ent[1];
	}
	cr_expect_eq(n_lapic, cpus, "one local APIC entry per vCPU");
}

Test(boot, acpi_tables_for_1_2_and_8_cpus)
{
	check_acpi(1);
	check_acpi(2);
	check_acpi(8);
	cr_expect_eq(acpi_build(&gm, 0, &(uint64_t){ 0 }), -EINVAL);
}

/* iasl (acpica-tools) disassembles every table without complaint. */
Test(boot, acpi_tables_disassemble_with_iasl)
{
	static const char *const names[] = { "dsdt", "facp", "apic" };
	uint64_t rsdp, xsdt, addr[3];
	char cmd[512], path[256];
	FILE *out;
	char line[512];
	bool has_s5 = false, has_pci = false, has_lapic = false;

	if (system("command -v iasl >/dev/null 2>&1") != 0)
		cr_skip_test("iasl (acpica-tools) is not installed");
	cr_assert_eq(acpi_build(&gm, 2, &rsdp), 0);
	gmem_read(&gm, rsdp + 24, &xsdt, 8);
	gmem_read(&gm, xsdt + 36, &addr[1], 8);
	gmem_read(&gm, xsdt + 44, &addr[2], 8);
	gmem_read(&gm, addr[1] + 140, &addr[0], 8);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s.dat", names[i]);
		write_file(path, gmem_ptr(&gm, addr[i], table_len(addr[i])), table_len(addr[i]));
		snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s.dat 2>&1", dir, names[i]);
		out = popen(cmd, "r");
		cr_assert_not_null(out);
		while (fgets(line, sizeof(line), out))
			cr_expect_null(strstr(line, "Error"), "iasl on %s: %s", names[i], line);
		cr_expect_eq(pclose(out), 0, "iasl -d %s failed", names[i]);
		snprintf(cmd, sizeof(cmd), "%s/%s.dsl", dir, names[i]);
		out = fopen(cmd, "r");
		cr_assert_not_null(out, "no %s", cmd);
		while (fgets(line, sizeof(line), out)) {
			has_s5 |= strstr(line, "_S5_") != NULL;
			has_pci |= strstr(line, "PNP0A03") != NULL;
			has_lapic |= strstr(line, "Processor Local APIC") != NULL;
		}
		fclose(out);
	}
	cr_expect(has_s5, "the DSDT has \\_S5");
	cr_expect(has_pci, "the DSDT has a PNP0A03 root bridge");
	cr_expect(has_lapic, "the MADT has local APIC entries");
}

Test(boot, bzimage_zero_page_and_entry)
{
	size_t len;
	uint8_t *img = make_bzimage(8192, 0x020f, 1, &len);
	const char initrd[] = "initrd contents";
	struct boot_config bc = { NULL, NULL, "console=ttyS0 quiet", 2 };
	struct boot_entry e;
	uint8_t zp[4096];
	uint32_t v32;
	char cmdline[64];

	bc.initrd_path = strdup(write_file("initrd", initrd, sizeof(initrd)));
	bc.kernel_path = write_file("bz", img, len);
	cr_assert_eq(boot_load(&gm, &bc, &e), 0);
	cr_expect_eq(e.mode, BOOT_LINUX64);
	cr_expect_eq(e.rip, BOOT_KERNEL_GPA + 0x200);
	cr_expect_eq(e.rsi, BOOT_ZERO_PAGE_GPA);
	cr_expect_eq(e.cr3, BOOT_PML4_GPA);
	cr_expect_eq(memcmp(gmem_ptr(&gm, BOOT_KERNEL_GPA, 8192), img + 5 * 512, 8192), 0, "kernel at 1 MiB");
	gmem_read(&gm, BOOT_ZERO_PAGE_GPA, zp, sizeof(zp));
	cr_expect_eq(zp[0x210], 0xff, "type_of_loader");
	memcpy(&v32, zp + 0x228, 4);
	cr_expect_eq(v32, BOOT_CMDLINE_GPA);
	gmem_read(&gm, BOOT_CMDLINE_GPA, cmdline, sizeof(cmdline));
	cr_expect_str_eq(cmdline, "console=ttyS0 quiet");
	cr_expect_eq(zp[0x1e8], 3, "e820 entries");
	memcpy(&v32, zp + 0x218, 4);
	cr_expect_eq(v32 % 4096, 0, "initrd page-aligned");
	cr_expect_geq(v32, BOOT_KERNEL_GPA + 2 * 8192, "initrd above the kernel's init_size");
	cr_expect_leq(v32 + sizeof(initrd), 128u << 20);
	cr_expect_eq(memcmp(gmem_ptr(&gm, v32, sizeof(initrd)), initrd, sizeof(initrd)), 0);
	memcpy(&v32, zp + 0x21c, 4);
	cr_expect_eq(v32, sizeof(initrd));
	cr_expect_eq(*(uint64_t *)(zp + 0x070), BOOT_ACPI_GPA, "acpi_rsdp_addr");
	cr_expect_eq(*(uint64_t *)gmem_ptr(&gm, BOOT_PML4_GPA + 0x2000 + 8, 8), (2ull << 20) | 0x83,
		     "identity map, 2 MiB pages");
	{
		/* mov al, 6; mov dx, 0xcf9; out dx, al; hlt; jmp back to hlt (16-bit code at f000:fff0) */
		static const uint8_t reset[] = { 0xb0, 0x06, 0xba, 0xf9, 0x0c, 0xee, 0xf4, 0xeb, 0xfd };

		cr_expect_eq(memcmp(gmem_ptr(&gm, BOOT_RESET_VECTOR_GPA, sizeof(reset)), reset,
				    sizeof(reset)), 0, "the reset vector resets through 0xcf9");
	}
	free((void *)bc.initrd_path);
	free(img);
}

Test(boot, bad_kernels_are_refused)
{
	size_t len;
	uint8_t *img = make_bzimage(4096, 0x020f, 1, &len);
	struct boot_config bc = { NULL, NULL, "", 1 };
	struct boot_entry e;
	char *long_cmdline = malloc(BOOT_CMDLINE_MAX + 1);

	bc.kernel_path = "/nonexistent/kernel";
	cr_expect_eq(boot_load(&gm, &bc, &e), -ENOENT);
	bc.kernel_path = write_file("text", "hello, not a kernel\n", 20);
	cr_expect_eq(boot_load(&gm, &bc, &e), -ENOEXEC);
	bc.kernel_path = write_bz("old", 4096, 0x020a, 1);
	cr_expect_eq(boot_load(&gm, &bc, &e), -ENOEXEC, "protocol 2.10");
	bc.kernel_path = write_bz("no64", 4096, 0x020f, 0);
	cr_expect_eq(boot_load(&gm, &bc, &e), -ENOEXEC, "no XLF_KERNEL_64");
	bc.kernel_path = write_file("short", img, 5 * 512);
	cr_expect_eq(boot_load(&gm, &bc, &e), -EINVAL, "truncated after the setup");
	bc.kernel_path = write_bz("huge", 200u << 20, 0x020f, 1);
	cr_expect_eq(boot_load(&gm, &bc, &e), -E2BIG, "larger than guest memory");
	memset(long_cmdline, 'a', BOOT_CMDLINE_MAX);
	long_cmdline[BOOT_CMDLINE_MAX] = 0;
	bc.kernel_path = write_file("bz", img, 5 * 512 + 4096);
	bc.cmdline = long_cmdline;
	cr_expect_eq(boot_load(&gm, &bc, &e), -E2BIG, "command line too long");
	bc.cmdline = "";
	bc.initrd_path = "/nonexistent/initrd";
	cr_expect_eq(boot_load(&gm, &bc, &e), -ENOENT);
	free(long_cmdline);
	free(img);
}

/* An ELF64 kernel with one PT_LOAD at 16 MiB and a Xen PVH entry note. */
static size_t make_pvh(uint8_t *buf, uint64_t paddr, bool with_note)
{
	Elf64_Ehdr *eh = (void *)buf;
	Elf64_Phdr *ph = (void *)(buf + sizeof(*eh));
	uint8_t *note = buf + 0x200, *code = buf + 0x400;
	Elf64_Nhdr nh = { 4, 4, 18 };
	uint32_t entry = (uint32_t)paddr + 0x10;

	memset(buf, 0, 0x1000);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_machine = EM_X86_64;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 2;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = 0x400, .p_paddr = paddr, .p_filesz = 0x100,
			      .p_memsz = 0x2000 };
	ph[1] = (Elf64_Phdr){ .p_type = with_note ? PT_NOTE : PT_NULL, .p_offset = 0x200, .p_filesz = 20 };
	memcpy(note, &nh, sizeof(nh));
	memcpy(note + 12, "Xen", 4);
	memcpy(note + 16, &entry, 4);
	memset(code, 0x90, 0x100);
	return 0x1000;
}

Test(boot, pvh_start_info)
{
	uint8_t elf[0x1000];
	struct boot_config bc = { NULL, NULL, "pvh cmdline", 1 };
	struct boot_entry e;
	uint32_t magic, nr_mm, nr_mod;
	uint64_t cmdline, memmap, modlist, mod[2];

	bc.initrd_path = strdup(write_file("initrd", "RD", 2));
	bc.kernel_path = write_file("pvh", elf, make_pvh(elf, 16 << 20, true));
	cr_assert_eq(boot_load(&gm, &bc, &e), 0);
	cr_expect_eq(e.mode, BOOT_PVH);
	cr_expect_eq(e.rip, (16 << 20) + 0x10);
	cr_expect_eq(e.rbx, BOOT_PVH_INFO_GPA);
	cr_expect_eq(e.cr3, 0);
	gmem_read(&gm, BOOT_PVH_INFO_GPA, &magic, 4);
	cr_expect_eq(magic, 0x336ec578);
	gmem_read(&gm, BOOT_PVH_INFO_GPA + 12, &nr_mod, 4);
	gmem_read(&gm, BOOT_PVH_INFO_GPA + 16, &modlist, 8);
	gmem_read(&gm, BOOT_PVH_INFO_GPA + 24, &cmdline, 8);
	gmem_read(&gm, BOOT_PVH_INFO_GPA + 40, &memmap, 8);
	gmem_read(&gm, BOOT_PVH_INFO_GPA + 48, &nr_mm, 4);
	cr_expect_str_eq((char *)gmem_ptr(&gm, cmdline, 12), "pvh cmdline");
	cr_expect_eq(nr_mm, 3);
	cr_expect_eq(*(uint32_t *)gmem_ptr(&gm, memmap + 16, 4), E820_RAM, "memmap entry 0 is RAM");
	cr_assert_eq(nr_mod, 1);
	gmem_read(&gm, modlist, mod, sizeof(mod));
	cr_expect_eq(mod[1], 2);
	cr_expect_eq(memcmp(gmem_ptr(&gm, mod[0], 2), "RD", 2), 0);
	cr_expect_eq(*(uint8_t *)gmem_ptr(&gm, (16 << 20) + 0x100, 1), 0, "bss zeroed");
	cr_expect_eq(*(uint8_t *)gmem_ptr(&gm, (16 << 20), 1), 0x90, "segment copied");

	bc.kernel_path = write_file("nonote", elf, make_pvh(elf, 16 << 20, false));
	cr_expect_eq(boot_load(&gm, &bc, &e), -ENOEXEC, "ELF without the PVH note");
	bc.kernel_path = write_file("low", elf, make_pvh(elf, 0x1000, true));
	cr_expect_eq(boot_load(&gm, &bc, &e), -E2BIG, "a segment over kvmm's low structures");
	bc.kernel_path = write_file("outside", elf, make_pvh(elf, 1ull << 30, true));
	cr_expect_eq(boot_load(&gm, &bc, &e), -E2BIG, "a segment outside RAM");
	free((void *)bc.initrd_path);
}
