/* ACPI tables (ACPI 6.4 chapter 5): RSDP, XSDT, FADT, DSDT and MADT. Debian's cloud kernels are
 * built without MP-table parsing (CONFIG_X86_MPPARSE=n), so the MADT is how they find their CPUs
 * and the IOAPIC. The platform is hardware-reduced (§4.1): no PM1 blocks, no SCI, no GPEs; the FADT
 * sleep control register (BOOT_ACPI_SLEEP_PORT, src/devices/power.c) powers off with the _S5 value,
 * the reset register (0xcf9, src/bus/pci.c) resets, and the power button is a control-method
 * button (PNP0C0C) that a Generic Event Device (ACPI0013, §5.6.9) notifies, as on QEMU's microvm
 * and arm virt machines. Everything is built in one host buffer and
 * written to guest memory at BOOT_ACPI_GPA in one go. */
#include "aml.h"

#include <kvmm/boot.h>
#include <kvmm/log.h>
#include <kvmm/pci.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ACPI_OEM_ID "KVMM  "        /* 6 bytes */
#define ACPI_OEM_TABLE_ID "KVMMVM  " /* 8 bytes */
#define ACPI_OEM_REVISION 1
#define ACPI_CREATOR_ID "KVMM"
#define ACPI_CREATOR_REVISION 1
#define ACPI_HEADER_SIZE 36
#define ACPI_ALIGN 16

/* RSDP (§5.2.5.3): revision 2 points at the XSDT only. */
#define RSDP_SIZE 36
#define RSDP_V1_SIZE 20
#define RSDP_REVISION 2

/* FADT (§5.2.9), revision 6, minor version 4: 276 bytes. */
#define FADT_REVISION 6
#define FADT_MINOR_REVISION 4
#define FADT_SIZE 276
#define FADT_X_DSDT 140
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)
#define FADT_BOOT_ARCH_VGA_NOT_PRESENT (1u << 2)

/* Generic address structure (§5.2.3.2). */
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1

/* MADT (§5.2.12), revision 5 (ACPI 6.2-6.4). */
#define MADT_REVISION 5
#define MADT_PCAT_COMPAT 0x1
#define MADT_LOCAL_APIC 0
#define MADT_IO_APIC 1
#define MADT_LAPIC_ENABLED 0x1
/* KVM's in-kernel IOAPIC resets its ID register to 0 (virt/kvm/ioapic.c, kvm_ioapic_reset), and
 * QEMU's MADT uses the same id for it; the MADT must name the id the guest will read back. */
#define MADT_IOAPIC_ID 0
#define MADT_MAX_CPUS 255           /* xAPIC ids 0-254; 0xff is the broadcast id */

#define DSDT_REVISION 2             /* 2: AML integers are 64-bit */
#define XSDT_REVISION 1

#define COM1_PORT 0x3f8
#define COM1_IRQ 4
#define RTC_PORT 0x70 /* src/devices/rtc.c */
#define RTC_IRQ 8
#define PCI_CONFIG_PORT 0xcf8

/* Starts a table at the next aligned offset; returns that offset (the table's start). */
static size_t table_begin(struct abuf *a, const char sig[4], uint8_t revision)
{
	static const uint8_t pad[ACPI_ALIGN];
	size_t start;

	abuf_put(a, pad, (ACPI_ALIGN - a->len % ACPI_ALIGN) % ACPI_ALIGN);
	start = a->len;
	abuf_put(a, sig, 4);
	abuf_u32(a, 0); /* length, patched by table_end */
	abuf_u8(a, revision);
	abuf_u8(a, 0);  /* checksum, patched by table_end */
	abuf_put(a, ACPI_OEM_ID, 6);
	abuf_put(a, ACPI_OEM_TABLE_ID, 8);
	abuf_u32(a, ACPI_OEM_REVISION);
	abuf_put(a, ACPI_CREATOR_ID, 4);
	abuf_u32(a, ACPI_CREATOR_REVISION);
	return start;
}

static uint8_t acpi_checksum(const uint8_t *p, size_t n)
{
	uint8_t sum = 0;

	while (n--)
		sum += *p++;
	return (uint8_t)-sum;
}

/* Patches the length and then the checksum (all bytes of the table sum to 0). */
static void table_end(struct abuf *a, size_t start)
{
	uint32_t len;
	uint8_t sum;

	if (a->overflow)
		return;
	len = (uint32_t)(a->len - start);
	abuf_set(a, start + 4, &len, 4);
	sum = acpi_checksum(a->b + start, len);
	abuf_set(a, start + 9, &sum, 1);
}

static void put_gas_io(struct abuf *a, uint16_t port)
{
	abuf_u8(a, GAS_SYSTEM_IO);
	abuf_u8(a, 8); /* register bit width */
	abuf_u8(a, 0); /* bit offset */
	abuf_u8(a, GAS_ACCESS_BYTE);
	abuf_u64(a, port);
}

static void put_gas_none(struct abuf *a)
{
	abuf_u32(a, 0);
	abuf_u64(a, 0);
}

static void put_zeros(struct abuf *a, size_t n)
{
	while (n--)
		abuf_u8(a, 0);
}

static size_t acpi_fadt(struct abuf *a, uint64_t dsdt)
{
	size_t t = table_begin(a, "FACP", FADT_REVISION);

	abuf_u32(a, 0);    /* 36 FIRMWARE_CTRL: no FACS on HW-reduced ACPI */
	abuf_u32(a, 0);    /* 40 DSDT: X_DSDT is used instead */
	put_zeros(a, 2);   /* 44 reserved, Preferred_PM_Profile: unspecified */
	abuf_u16(a, 0);    /* 46 SCI_INT: none */
	abuf_u32(a, 0);    /* 48 SMI_CMD: no SMM */
	put_zeros(a, 4);   /* 52 ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT */
	put_zeros(a, 32);  /* 56 PM1a_EVT_BLK .. GPE1_BLK: no fixed hardware */
	put_zeros(a, 8);   /* 88 block lengths, GPE1_BASE, CST_CNT */
	put_zeros(a, 12);  /* 96 P_LVL2_LAT .. MON_ALRM */
	abuf_u8(a, 0x32);  /* 108 CENTURY: the CMOS register src/devices/rtc.c keeps it in */
	/* 110 IAPC_BOOT_ARCH: no VGA; no 8042 either, so Linux does not probe for a keyboard (the
	 * i8042 model is there for its reset line only); the CMOS RTC is present. */
	abuf_u16(a, FADT_BOOT_ARCH_VGA_NOT_PRESENT);
	abuf_u8(a, 0);     /* 111 reserved */
	abuf_u32(a, FADT_F_HW_REDUCED_ACPI | FADT_F_RESET_REG_SUP); /* 112 flags */
	put_gas_io(a, BOOT_ACPI_RESET_PORT);                          /* 116 RESET_REG */
	abuf_u8(a, BOOT_ACPI_RESET_VALUE);                            /* 128 RESET_VALUE */
	abuf_u16(a, 0);    /* 129 ARM_BOOT_ARCH */
	abuf_u8(a, FADT_MINOR_REVISION);                              /* 131 */
	abuf_u64(a, 0);    /* 132 X_FIRMWARE_CTRL */
	abuf_u64(a, dsdt); /* 140 X_DSDT */
	for (int i = 0; i < 8; i++) /* 148 X_PM1a_EVT_BLK .. X_GPE1_BLK */
		put_gas_none(a);
	put_gas_io(a, BOOT_ACPI_SLEEP_PORT);     /* 244 SLEEP_CONTROL_REG */
	put_gas_io(a, BOOT_ACPI_SLEEP_PORT + 1); /* 256 SLEEP_STATUS_REG */
	abuf_put(a, "KVMM\0\0\0\0", 8);          /* 268 hypervisor vendor identity */
	table_end(a, t);
	return t;
}

/* Ends the resource template r and names it _CRS in a; an overflow anywhere marks a. */
static void dsdt_crs(struct abuf *a, struct abuf *r)
{
	res_end(r);
	aml_name(a, "_CRS");
	if (r->overflow)
		a->overflow = true;
	else
		aml_buffer(a, r->b, r->len);
}

/* _PRT (§6.2.13) of the root bridge: for every slot and pin, the GSI it drives (pci_intx_gsi),
 * with Source 0: "a global system interrupt", level-triggered, active-low by the spec's default for
 * PCI. (KVM's IOAPIC takes kvmm's KVM_IRQ_LINE level as "asserted" whatever the polarity.) */
static void dsdt_prt(struct abuf *a)
{
	size_t all, one;

	aml_name(a, "_PRT");
	all = aml_package(a, PCI_MAX_DEVICES * 4);
	for (unsigned slot = 0; slot < PCI_MAX_DEVICES; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			one = aml_package(a, 4);
			aml_int(a, (uint64_t)slot << 16 | 0xffff); /* Address: device, any function */
			aml_int(a, pin);
			aml_int(a, 0);                             /* Source: none, a GSI */
			aml_int(a, pci_intx_gsi(slot, pin));       /* Source Index: the GSI */
			aml_close(a, one);
		}
	}
	aml_close(a, all);
}

/* \_SB.PCI0: the host bridge behind configuration mechanism 1 (src/bus/pci.c). */
static void dsdt_pci0(struct abuf *a)
{
	uint8_t mem[128];
	struct abuf r;
	size_t dev = aml_device(a, "PCI0");

	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A03");
	aml_name(a, "_UID");
	aml_int(a, 0);
	aml_name(a, "_SEG");
	aml_int(a, 0);
	aml_name(a, "_BBN");
	aml_int(a, 0);
	abuf_init(&r, mem, sizeof(mem));
	res_word_bus(&r, 0, 0);
	res_io(&r, PCI_CONFIG_PORT, 8);   /* consumed by the bridge itself */
	res_word_io(&r, 0x0000, PCI_CONFIG_PORT - 1);
	res_word_io(&r, 0x0d00, 0xffff);
	res_dword_mem(&r, (uint32_t)PCI_MMIO_BASE, (uint32_t)(PCI_MMIO_END - 1));
	dsdt_crs(a, &r);
	dsdt_prt(a);
	aml_close(a, dev);
}

/* \_SB.PWRB, a control-method power button (§4.8.2.2.1.2), and \_SB.GED_, the Generic Event
 * Device that signals it: an edge on BOOT_ACPI_GED_GSI runs _EVT, which reads the event selector
 * (the read clears it, src/devices/power.c) and notifies the button for its bit:
 *   Method (_EVT, 1, Serialized) { Local0 = ESEL; If ((Local0 & 2)) { Notify (PWRB, 0x80) } } */
static void dsdt_power_button(struct abuf *a)
{
	uint8_t mem[32];
	struct abuf r;
	size_t dev, method, cond;

	dev = aml_device(a, "PWRB");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0C0C");
	aml_name(a, "_UID");
	aml_int(a, 0);
	aml_close(a, dev);

	dev = aml_device(a, "GED_");
	aml_name(a, "_HID");
	aml_string(a, "ACPI0013");
	aml_name(a, "_UID");
	aml_int(a, 0);
	abuf_init(&r, mem, sizeof(mem));
	res_ext_irq_edge(&r, BOOT_ACPI_GED_GSI);
	dsdt_crs(a, &r);
	aml_opregion(a, "EREG", AML_REGION_SYSTEM_IO, BOOT_ACPI_GED_PORT, BOOT_ACPI_GED_LEN);
	aml_field(a, "EREG", AML_FIELD_DWORD_ACC | AML_FIELD_WRITE_AS_ZEROS, "ESEL",
		  BOOT_ACPI_GED_LEN * 8);
	method = aml_method(a, "_EVT", 1, true);
	abuf_u8(a, AML_STORE_OP);
	aml_namestring(a, "ESEL");
	abuf_u8(a, AML_LOCAL0_OP);
	cond = aml_if(a);
	abuf_u8(a, AML_AND_OP);
	abuf_u8(a, AML_LOCAL0_OP);
	aml_int(a, BOOT_ACPI_GED_EVT_POWER_BUTTON);
	abuf_u8(a, AML_ZERO_OP); /* no Target */
	abuf_u8(a, AML_NOTIFY_OP);
	aml_namestring(a, "PWRB");
	aml_int(a, 0x80);        /* §5.6.6: for a button device, "button pressed" */
	aml_close(a, cond);
	aml_close(a, method);
	aml_close(a, dev);
}

/* An ISA device at port..port+len-1 on one IRQ: COM1, and the CMOS RTC (PNP0B00), which Linux's
 * rtc_cmos only takes on a HW-reduced ACPI platform when ACPI enumerates it. */
static void dsdt_isa_device(struct abuf *a, const char *name, const char *eisaid, unsigned uid,
			    uint16_t port, uint8_t len, uint8_t irq)
{
	uint8_t mem[32];
	struct abuf r;
	size_t dev = aml_device(a, name);

	aml_name(a, "_HID");
	aml_eisaid(a, eisaid);
	aml_name(a, "_UID");
	aml_int(a, uid);
	abuf_init(&r, mem, sizeof(mem));
	res_io(&r, port, len);
	res_irq(&r, irq);
	dsdt_crs(a, &r);
	aml_close(a, dev);
}

static size_t acpi_dsdt(struct abuf *a)
{
	size_t t = table_begin(a, "DSDT", DSDT_REVISION), pkg, sb;

	/* Name(\_S5, Package() { SLP_TYP_a, SLP_TYP_b, reserved, reserved }) (§7.4.2): on HW-reduced
	 * ACPI the first value is written to the sleep control register's SLP_TYP field. */
	aml_name(a, "\\_S5_");
	pkg = aml_package(a, 4);
	aml_int(a, BOOT_ACPI_S5_SLP_TYP);
	aml_int(a, 0);
	aml_int(a, 0);
	aml_int(a, 0);
	aml_close(a, pkg);

	sb = aml_scope(a, "\\_SB_");
	dsdt_pci0(a);
	dsdt_isa_device(a, "COM1", "PNP0501", 1, COM1_PORT, 8, COM1_IRQ);
	dsdt_isa_device(a, "RTC_", "PNP0B00", 0, RTC_PORT, 2, RTC_IRQ);
	dsdt_power_button(a);
	aml_close(a, sb);
	table_end(a, t);
	return t;
}

/* One enabled Processor Local APIC per vCPU (ACPI UID = APIC id = index: KVM gives vCPU n the
 * APIC id n, the KVM_CREATE_VCPU id) and the IOAPIC. No Interrupt Source Overrides: kvmm keeps
 * KVM's default GSI routing (default_routing in arch/x86/kvm/irq_comm.c, installed by
 * KVM_CREATE_IRQCHIP), where GSI n < 16 drives PIC pin n and IOAPIC pin n; that is what a MADT
 * without overrides says (§5.2.12.5: ISA interrupts are identity-mapped to the first IOAPIC).
 * PC chipsets wire the PIT to pin 2, which is why QEMU, routing GSIs itself, declares IRQ0 ->
 * GSI 2; KVM's default table does not. */
static size_t acpi_madt(struct abuf *a, unsigned nr_cpus)
{
	size_t t = table_begin(a, "APIC", MADT_REVISION);

	abuf_u32(a, BOOT_LAPIC_GPA);
	abuf_u32(a, MADT_PCAT_COMPAT); /* KVM's in-kernel irqchip has the 8259 pair */
	for (unsigned i = 0; i < nr_cpus; i++) {
		abuf_u8(a, MADT_LOCAL_APIC);
		abuf_u8(a, 8);
		abuf_u8(a, (uint8_t)i); /* ACPI processor UID */
		abuf_u8(a, (uint8_t)i); /* APIC id */
		abuf_u32(a, MADT_LAPIC_ENABLED);
	}
	abuf_u8(a, MADT_IO_APIC);
	abuf_u8(a, 12);
	abuf_u8(a, MADT_IOAPIC_ID);
	abuf_u8(a, 0);
	abuf_u32(a, BOOT_IOAPIC_GPA);
	abuf_u32(a, 0); /* global system interrupt base */
	table_end(a, t);
	return t;
}

static size_t acpi_xsdt(struct abuf *a, const uint64_t *tables, size_t n)
{
	size_t t = table_begin(a, "XSDT", XSDT_REVISION);

	for (size_t i = 0; i < n; i++)
		abuf_u64(a, tables[i]);
	table_end(a, t);
	return t;
}

static void acpi_rsdp(struct abuf *a, uint64_t xsdt)
{
	uint8_t sum;

	abuf_put(a, "RSD PTR ", 8);
	abuf_u8(a, 0);               /* checksum of the first 20 bytes */
	abuf_put(a, ACPI_OEM_ID, 6);
	abuf_u8(a, RSDP_REVISION);
	abuf_u32(a, 0);              /* RsdtAddress: no RSDT */
	abuf_u32(a, RSDP_SIZE);
	abuf_u64(a, xsdt);
	abuf_u8(a, 0);               /* extended checksum, all 36 bytes */
	abuf_put(a, "\0\0\0", 3);
	if (a->overflow)
		return;
	sum = acpi_checksum(a->b, RSDP_V1_SIZE);
	abuf_set(a, 8, &sum, 1);
	sum = acpi_checksum(a->b, RSDP_SIZE);
	abuf_set(a, 32, &sum, 1);
}

int acpi_build(struct gmem *gm, unsigned nr_cpus, uint64_t *rsdp)
{
	uint8_t *mem;
	struct abuf a;
	uint64_t tables[2];
	size_t dsdt, xsdt, total;
	int err = 0;

	if (nr_cpus == 0 || nr_cpus > MADT_MAX_CPUS) {
		log_error("acpi: %u vCPUs; the MADT describes 1 to %u", nr_cpus, MADT_MAX_CPUS);
		return -EINVAL;
	}
	mem = calloc(1, BOOT_ACPI_MAX);
	if (!mem)
		return -ENOMEM;
	/* The RSDP goes first, where a BIOS-style search of 0xe0000-0xfffff finds it; its XSDT
	 * pointer is known only at the end, so it is written last over the reserved space. */
	abuf_init(&a, mem, BOOT_ACPI_MAX);
	a.len = RSDP_SIZE;
	dsdt = acpi_dsdt(&a);
	tables[0] = BOOT_ACPI_GPA + acpi_fadt(&a, BOOT_ACPI_GPA + dsdt);
	tables[1] = BOOT_ACPI_GPA + acpi_madt(&a, nr_cpus);
	xsdt = acpi_xsdt(&a, tables, 2);
	if (a.overflow) {
		log_error("acpi: the tables do not fit in %u KiB", BOOT_ACPI_MAX >> 10);
		err = -E2BIG;
		goto out;
	}
	total = a.len;
	a.len = 0;
	acpi_rsdp(&a, BOOT_ACPI_GPA + xsdt);
	if (gmem_write(gm, BOOT_ACPI_GPA, mem, total) < 0) {
		log_error("acpi: guest RAM does not cover [%#x, +%#zx)", BOOT_ACPI_GPA, total);
		err = -EFAULT;
		goto out;
	}
	*rsdp = BOOT_ACPI_GPA;
out:
	free(mem);
	return err;
}
