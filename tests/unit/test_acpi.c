/* ACPI tables against ACPI 6.4 chapter 5, then against ACPICA's own disassembler and compiler. */
#include <kvmm/boot.h>
#include <kvmm/pci.h>

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct gmem gm;
static char dir[] = "/tmp/kvmm-test-acpi.XXXXXX";

static void setup(void)
{
	cr_assert_eq(gmem_init(&gm, 64ull << 20, MEM_BACKEND_ANON), 0);
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512];

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
	gmem_destroy(&gm);
}

TestSuite(acpi, .init = setup, .fini = teardown);

struct tables {
	uint64_t rsdp, xsdt, fadt, madt, dsdt;
};

static uint8_t *at(uint64_t gpa, uint64_t len)
{
	uint8_t *p = gmem_ptr(&gm, gpa, len);

	cr_assert_not_null(p, "%#llx+%#llx is not in guest RAM", (unsigned long long)gpa,
			   (unsigned long long)len);
	return p;
}

static uint32_t rd32(uint64_t gpa) { uint32_t v; memcpy(&v, at(gpa, 4), 4); return v; }
static uint64_t rd64(uint64_t gpa) { uint64_t v; memcpy(&v, at(gpa, 8), 8); return v; }
static uint16_t rd16(uint64_t gpa) { uint16_t v; memcpy(&v, at(gpa, 2), 2); return v; }
static uint8_t rd8(uint64_t gpa) { return *at(gpa, 1); }

static uint8_t sum(uint64_t gpa, uint64_t len)
{
	const uint8_t *p = at(gpa, len);
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

static bool in_acpi_area(uint64_t gpa, uint64_t len)
{
	return gpa >= BOOT_ACPI_GPA && gpa + len <= BOOT_ACPI_GPA + BOOT_ACPI_MAX;
}

/* The common header (§5.2.6): signature, length inside the area, checksum, revision, OEM ids. */
static uint32_t check_header(uint64_t gpa, const char *sig, uint8_t revision)
{
	uint32_t len = rd32(gpa + 4);

	cr_expect_eq(memcmp(at(gpa, 4), sig, 4), 0, "signature %.4s, expected %s", at(gpa, 4), sig);
	cr_assert_geq(len, 36, "%s length", sig);
	cr_expect(in_acpi_area(gpa, len), "%s lies in [BOOT_ACPI_GPA, +BOOT_ACPI_MAX)", sig);
	cr_expect_eq(sum(gpa, len), 0, "%s checksum", sig);
	cr_expect_eq(rd8(gpa + 8), revision, "%s revision", sig);
	cr_expect_eq(memcmp(at(gpa + 10, 6), "KVMM  ", 6), 0, "%s OEM id", sig);
	cr_expect_eq(gpa % 8, 0, "%s alignment", sig);
	return len;
}

static struct tables build(unsigned cpus)
{
	struct tables t;
	uint32_t xsdt_len;

	cr_assert_eq(acpi_build(&gm, cpus, &t.rsdp), 0);
	cr_expect_eq(t.rsdp, BOOT_ACPI_GPA);
	cr_expect_eq(t.rsdp % 16, 0, "the RSDP is on a 16-byte boundary (§5.2.5.1)");
	cr_expect(t.rsdp >= 0xe0000 && t.rsdp + 36 <= 0x100000, "in the BIOS search area");
	cr_expect_eq(memcmp(at(t.rsdp, 8), "RSD PTR ", 8), 0);
	cr_expect_eq(sum(t.rsdp, 20), 0, "RSDP checksum (first 20 bytes)");
	cr_expect_eq(sum(t.rsdp, 36), 0, "RSDP extended checksum");
	cr_expect_eq(memcmp(at(t.rsdp + 9, 6), "KVMM  ", 6), 0);
	cr_expect_eq(rd8(t.rsdp + 15), 2, "RSDP revision");
	cr_expect_eq(rd32(t.rsdp + 16), 0, "no RSDT");
	cr_expect_eq(rd32(t.rsdp + 20), 36, "RSDP length");
	t.xsdt = rd64(t.rsdp + 24);
	xsdt_len = check_header(t.xsdt, "XSDT", 1);
	cr_assert_eq(xsdt_len, 36 + 2 * 8, "XSDT: FADT and MADT");
	t.fadt = rd64(t.xsdt + 36);
	t.madt = rd64(t.xsdt + 44);
	check_header(t.fadt, "FACP", 6);
	t.dsdt = rd64(t.fadt + 140);
	check_header(t.dsdt, "DSDT", 2);
	check_header(t.madt, "APIC", 5);
	return t;
}

Test(acpi, fadt_is_hardware_reduced_revision_6, .timeout = 10)
{
	struct tables t = build(1);

	cr_expect_eq(rd32(t.fadt + 4), 276, "FADT revision 6 length");
	cr_expect_eq(rd8(t.fadt + 131), 4, "FADT minor version");
	cr_expect_eq(rd32(t.fadt + 40), 0, "32-bit DSDT unused");
	cr_expect_eq(rd16(t.fadt + 46), 0, "no SCI");
	cr_expect_eq(rd32(t.fadt + 56), 0, "no PM1a event block");
	cr_expect_eq(rd32(t.fadt + 64), 0, "no PM1a control block");
	cr_expect_eq(rd16(t.fadt + 109), 1u << 2, "IAPC_BOOT_ARCH: VGA not present, nothing else");
	cr_expect_eq(rd32(t.fadt + 112), (1u << 20) | (1u << 10), "HW_REDUCED_ACPI | RESET_REG_SUP");
	/* RESET_REG: system IO, 8 bits at BOOT_ACPI_RESET_PORT. */
	cr_expect_eq(rd8(t.fadt + 116), 1);
	cr_expect_eq(rd8(t.fadt + 117), 8);
	cr_expect_eq(rd8(t.fadt + 119), 1, "byte access");
	cr_expect_eq(rd64(t.fadt + 120), BOOT_ACPI_RESET_PORT);
	cr_expect_eq(rd8(t.fadt + 128), BOOT_ACPI_RESET_VALUE);
	cr_expect_eq(rd64(t.fadt + 140), t.dsdt, "X_DSDT");
	/* SLEEP_CONTROL_REG and SLEEP_STATUS_REG. */
	cr_expect_eq(rd8(t.fadt + 244), 1);
	cr_expect_eq(rd8(t.fadt + 245), 8);
	cr_expect_eq(rd64(t.fadt + 248), BOOT_ACPI_SLEEP_PORT);
	cr_expect_eq(rd8(t.fadt + 256), 1);
	cr_expect_eq(rd64(t.fadt + 260), BOOT_ACPI_SLEEP_PORT + 1);
	cr_expect_eq(memcmp(at(t.fadt + 268, 8), "KVMM\0\0\0\0", 8), 0, "hypervisor vendor identity");
}

static void check_madt(unsigned cpus)
{
	struct tables t = build(cpus);
	uint32_t len = rd32(t.madt + 4);
	unsigned lapics = 0, ioapics = 0, others = 0;

	cr_expect_eq(len, 44 + 8 * cpus + 12, "MADT length for %u CPUs", cpus);
	cr_expect_eq(rd32(t.madt + 36), BOOT_LAPIC_GPA);
	cr_expect_eq(rd32(t.madt + 40), 1, "PCAT_COMPAT");
	for (uint64_t p = t.madt + 44; p < t.madt + len;) {
		uint8_t type = rd8(p), elen = rd8(p + 1);

		cr_assert_geq(elen, 2);
		cr_assert_leq(p + elen, t.madt + len, "entry runs past the table");
		if (type == 0) {
			cr_expect_eq(elen, 8);
			cr_expect_eq(rd8(p + 2), lapics, "processor UID = index");
			cr_expect_eq(rd8(p + 3), lapics, "APIC id = index");
			cr_expect_eq(rd32(p + 4), 1, "enabled");
			lapics++;
		} else if (type == 1) {
			cr_expect_eq(elen, 12);
			cr_expect_eq(rd8(p + 2), 0, "IOAPIC id");
			cr_expect_eq(rd32(p + 4), BOOT_IOAPIC_GPA);
			cr_expect_eq(rd32(p + 8), 0, "GSI base");
			ioapics++;
		} else {
			others++;
		}
		p += elen;
	}
	cr_expect_eq(lapics, cpus, "one local APIC entry per vCPU");
	cr_expect_eq(ioapics, 1);
	cr_expect_eq(others, 0, "no interrupt source overrides or other entries");
}

Test(acpi, madt_1_cpu, .timeout = 10) { check_madt(1); }
Test(acpi, madt_2_cpus, .timeout = 10) { check_madt(2); }
Test(acpi, madt_8_cpus, .timeout = 10) { check_madt(8); }
Test(acpi, madt_255_cpus, .timeout = 10) { check_madt(255); }

Test(acpi, rejects_bad_cpu_counts_and_small_ram, .timeout = 10)
{
	uint64_t rsdp = 0;

	cr_expect_eq(acpi_build(&gm, 0, &rsdp), -EINVAL);
	cr_expect_eq(acpi_build(&gm, 256, &rsdp), -EINVAL, "APIC id 0xff is the broadcast id");
	cr_expect_eq(rsdp, 0);
}

Test(acpi, dsdt_bytes, .timeout = 10)
{
	struct tables t = build(1);
	uint32_t len = rd32(t.dsdt + 4);
	const uint8_t *aml = at(t.dsdt + 36, len - 36);
	static const uint8_t s5[] = { 0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04,
				      0x0a, BOOT_ACPI_S5_SLP_TYP, 0x00, 0x00, 0x00 };

	/* Name(\_S5, Package(4) { 5, 0, 0, 0 }) encoded by hand from §20.2. */
	cr_expect_eq(memcmp(aml, s5, sizeof(s5)), 0, "\\_S5 package");
	cr_expect_not_null(memmem(aml, len - 36, "\x08_HID\x0c\x41\xd0\x0a\x03", 10), "EISAID PNP0A03");
	cr_expect_not_null(memmem(aml, len - 36, "\x08_HID\x0c\x41\xd0\x05\x01", 10), "EISAID PNP0501");
	cr_expect_not_null(memmem(aml, len - 36, "\x08_HID\x0c\x41\xd0\x0b\x00", 10), "EISAID PNP0B00");
}

/* The power button and its Generic Event Device, byte for byte (§20.2, §6.4.3.6). */
Test(acpi, dsdt_power_button_and_ged_bytes, .timeout = 10)
{
	struct tables t = build(1);
	uint32_t len = rd32(t.dsdt + 4);
	const uint8_t *aml = at(t.dsdt + 36, len - 36);
	static const uint8_t pwrb[] = { 0x5b, 0x82, 0x15, 'P', 'W', 'R', 'B',
					0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0c, 0x0c,
					0x08, '_', 'U', 'I', 'D', 0x00 };
	static const uint8_t hid[] = { 0x08, '_', 'H', 'I', 'D', 0x0d,
				       'A', 'C', 'P', 'I', '0', '0', '1', '3', 0x00 };
	/* Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { BOOT_ACPI_GED_GSI }, EndTag */
	static const uint8_t irq[] = { 0x89, 0x06, 0x00, 0x03, 0x01, BOOT_ACPI_GED_GSI, 0, 0, 0,
				       0x79, 0x00 };
	/* OperationRegion (EREG, SystemIO, 0x3c4, 4); Field (EREG, DWordAcc, NoLock,
	 * WriteAsZeros) { ESEL, 32 } */
	static const uint8_t region[] = { 0x5b, 0x80, 'E', 'R', 'E', 'G', 0x01,
					  0x0b, BOOT_ACPI_GED_PORT & 0xff, BOOT_ACPI_GED_PORT >> 8,
					  0x0a, BOOT_ACPI_GED_LEN,
					  0x5b, 0x81, 0x0b, 'E', 'R', 'E', 'G', 0x43,
					  'E', 'S', 'E', 'L', 0x20 };
	/* Method (_EVT, 1, Serialized) { Store (ESEL, Local0)
	 *   If (And (Local0, 2, )) { Notify (PWRB, 0x80) } } */
	static const uint8_t evt[] = { 0x14, 0x1a, '_', 'E', 'V', 'T', 0x09,
				       0x70, 'E', 'S', 'E', 'L', 0x60,
				       0xa0, 0x0d, 0x7b, 0x60, 0x0a, BOOT_ACPI_GED_EVT_POWER_BUTTON, 0x00,
				       0x86, 'P', 'W', 'R', 'B', 0x0a, 0x80 };

	cr_expect_not_null(memmem(aml, len - 36, pwrb, sizeof(pwrb)), "Device (PWRB), PNP0C0C");
	cr_expect_not_null(memmem(aml, len - 36, "GED_", 4), "Device (GED_)");
	cr_expect_not_null(memmem(aml, len - 36, hid, sizeof(hid)), "_HID \"ACPI0013\"");
	cr_expect_not_null(memmem(aml, len - 36, irq, sizeof(irq)), "GED interrupt");
	cr_expect_not_null(memmem(aml, len - 36, region, sizeof(region)), "event selector register");
	cr_expect_not_null(memmem(aml, len - 36, evt, sizeof(evt)), "_EVT notifies the power button");
}

/* _PRT under PCI0: one entry per slot and pin, GSI as pci.c wires it. */
Test(acpi, dsdt_prt_matches_pci_intx, .timeout = 10)
{
	struct tables t = build(1);
	uint32_t len = rd32(t.dsdt + 4);
	const uint8_t *aml = at(t.dsdt + 36, len - 36);
	const uint8_t *prt = memmem(aml, len - 36, "\x08_PRT\x12", 6), *p;
	unsigned n = 0;

	cr_assert_not_null(prt, "Name (_PRT, Package ...)");
	/* PackageOp, a two-byte PkgLength (the table is larger than 63 bytes), NumElements. */
	p = prt + 6;
	cr_assert_eq(p[0] >> 6, 1, "two-byte PkgLength");
	cr_expect_eq(p[2], PCI_MAX_DEVICES * 4, "four pins for every slot");
	p += 3;
	for (unsigned slot = 0; slot < PCI_MAX_DEVICES; slot++) {
		for (unsigned pin = 0; pin < 4; pin++, n++) {
			uint32_t addr = slot << 16 | 0xffff;
			uint8_t e[16] = { 0x12, 0, 0x04 }, *q = e + 3;

			/* Package (4) { Address, Pin, Zero, GSI }, each integer in its shortest form. */
			*q++ = addr <= 0xffff ? 0x0b : 0x0c;
			memcpy(q, &addr, addr <= 0xffff ? 2 : 4);
			q += addr <= 0xffff ? 2 : 4;
			if (pin <= 1) {
				*q++ = (uint8_t)pin;
			} else {
				*q++ = 0x0a;
				*q++ = (uint8_t)pin;
			}
			*q++ = 0x00;
			*q++ = 0x0a;
			*q++ = (uint8_t)pci_intx_gsi(slot, pin);
			e[1] = (uint8_t)(q - e - 1);
			cr_assert_eq(memcmp(p, e, (size_t)(q - e)), 0, "_PRT entry for slot %u pin %u",
				     slot, pin);
			p += q - e;
		}
	}
	cr_expect_eq(n, 128);
	cr_expect_eq(pci_intx_gsi(1, 0), 10, "slot 1 INTA: IRQ 10, the line pci_add writes");
}

static bool have_iasl(void)
{
	return system("command -v iasl >/dev/null 2>&1") == 0;
}

static void write_table(const char *name, uint64_t gpa)
{
	char path[512];
	uint32_t len = rd32(gpa + 4);
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(at(gpa, len), 1, len, f), len);
	fclose(f);
}

/* Runs an iasl command in dir; fails on a non-zero exit or any line that reports an error. */
static void run_iasl(const char *args)
{
	char cmd[1024], line[1024];
	FILE *out;
	int status;

	snprintf(cmd, sizeof(cmd), "cd %s && iasl %s 2>&1", dir, args);
	out = popen(cmd, "r");
	cr_assert_not_null(out);
	while (fgets(line, sizeof(line), out)) {
		bool summary = strstr(line, " 0 Errors") != NULL;

		cr_expect(summary || !strstr(line, "Error"), "iasl %s: %s", args, line);
		cr_expect(!strstr(line, "Warning") || strstr(line, " 0 Warnings"), "iasl %s: %s", args,
			  line);
	}
	status = pclose(out);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "iasl %s exited with %d", args,
		  status);
}

/* Counts the lines of dir/name that contain needle; -1 if the file is missing. */
static int grep_count(const char *name, const char *needle)
{
	char path[512], line[1024];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* ACPICA reads every table back. (The RSDP is not a table iasl -d accepts on its own; it is
 * checked field by field in build().) */
Test(acpi, iasl_disassembles_every_table, .timeout = 60)
{
	struct tables t;

	if (!have_iasl())
		cr_skip_test("iasl (Debian package acpica-tools) is not installed: skipping the "
			     "disassembly check");
	t = build(8);
	write_table("xsdt.dat", t.xsdt);
	write_table("facp.dat", t.fadt);
	write_table("apic.dat", t.madt);
	write_table("dsdt.dat", t.dsdt);
	run_iasl("-d xsdt.dat facp.dat apic.dat dsdt.dat");

	cr_expect_eq(grep_count("dsdt.dsl", "Name (\\_S5, Package (0x04)"), 1, "\\_S5");
	cr_expect_eq(grep_count("dsdt.dsl", "EisaId (\"PNP0A03\")"), 1, "PCI root bridge");
	cr_expect_eq(grep_count("dsdt.dsl", "EisaId (\"PNP0501\")"), 1, "COM1");
	cr_expect_eq(grep_count("dsdt.dsl", "Device (PCI0)"), 1);
	cr_expect_eq(grep_count("dsdt.dsl", "WordBusNumber (ResourceProducer"), 1);
	cr_expect_eq(grep_count("dsdt.dsl", "WordIO (ResourceProducer"), 2);
	cr_expect_eq(grep_count("dsdt.dsl", "0xFEBFFFFF,         // Range Maximum"), 1,
		     "32-bit window ends below the IOAPIC");
	cr_expect_eq(grep_count("dsdt.dsl", "0x03F8,             // Range Minimum"), 1);
	cr_expect_eq(grep_count("dsdt.dsl", "{4}"), 1, "COM1 on IRQ 4");
	cr_expect_eq(grep_count("dsdt.dsl", "EisaId (\"PNP0B00\")"), 1, "CMOS RTC");
	cr_expect_eq(grep_count("dsdt.dsl", "0x0070,             // Range Minimum"), 1);
	cr_expect_eq(grep_count("dsdt.dsl", "{8}"), 1, "RTC on IRQ 8");
	cr_expect_eq(grep_count("dsdt.dsl", "Name (_PRT, Package (0x80)"), 1, "_PRT, 128 entries");
	cr_expect_eq(grep_count("dsdt.dsl", "EisaId (\"PNP0C0C\")"), 1, "power button");
	cr_expect_eq(grep_count("dsdt.dsl", "Name (_HID, \"ACPI0013\""), 1, "Generic Event Device");
	cr_expect_eq(grep_count("dsdt.dsl", "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive"),
		     1, "GED interrupt");
	cr_expect_eq(grep_count("dsdt.dsl", "OperationRegion (EREG, SystemIO, 0x03C4, 0x04)"), 1);
	cr_expect_eq(grep_count("dsdt.dsl", "Field (EREG, DWordAcc, NoLock, WriteAsZeros)"), 1);
	cr_expect_eq(grep_count("dsdt.dsl", "Method (_EVT, 1, Serialized)"), 1);
	cr_expect_eq(grep_count("dsdt.dsl", "Notify (PWRB, 0x80)"), 1);
	cr_expect_eq(grep_count("apic.dsl", "[Processor Local APIC]"), 8);
	cr_expect_eq(grep_count("apic.dsl", "[I/O APIC]"), 1);
	cr_expect_eq(grep_count("facp.dsl", "Hardware Reduced (V5) : 1"), 1);
	cr_expect_eq(grep_count("facp.dsl", "Reset Register Supported (V2) : 1"), 1);
	cr_expect_eq(grep_count("facp.dsl", "Address : 00000000000003C0"), 1, "sleep control");
	cr_expect_eq(grep_count("facp.dsl", "Address : 0000000000000CF9"), 1, "reset register");
	cr_expect_eq(grep_count("xsdt.dsl", "ACPI Table Address"), 2);
}

/* The DSDT that iasl disassembles compiles back (without optimisations) to the same AML: kvmm's
 * encoders produce exactly what ACPICA's compiler would. */
Test(acpi, iasl_recompiles_the_dsdt_to_the_same_aml, .timeout = 60)
{
	struct tables t;
	char path[512];
	uint8_t aml[16384];
	uint32_t len;
	size_t n;
	FILE *f;

	if (!have_iasl())
		cr_skip_test("iasl (Debian package acpica-tools) is not installed: skipping the "
			     "round-trip check");
	t = build(2);
	len = rd32(t.dsdt + 4);
	write_table("dsdt.dat", t.dsdt);
	run_iasl("-d dsdt.dat");
	run_iasl("-oa -p again dsdt.dsl");
	snprintf(path, sizeof(path), "%s/again.aml", dir);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "iasl produced no %s", path);
	n = fread(aml, 1, sizeof(aml), f);
	fclose(f);
	cr_assert_eq(n, len, "recompiled DSDT length %zu, kvmm's %u", n, len);
	cr_expect_eq(memcmp(aml + 36, at(t.dsdt + 36, len - 36), len - 36), 0,
		     "the AML bodies differ");
}
