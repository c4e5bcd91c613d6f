/* Loading a guest kernel and the firmware tables it needs (src/boot/): Linux bzImage (64-bit boot
 * protocol), PVH ELF (hvm_start_info), the e820 map and ACPI (RSDP, XSDT, FADT, DSDT, MADT).
 * Everything is written through the gmem accessor, so it is unit-testable without KVM. */
#ifndef KVMM_BOOT_H
#define KVMM_BOOT_H

#include <kvmm/gmem.h>

#include <stddef.h>
#include <stdint.h>

/* Guest-physical layout of what kvmm writes below 1 MiB (all inside RAM region 0). */
#define BOOT_GDT_GPA 0x500          /* GDT: 0 null, 0x08 null, 0x10 code, 0x18 data */
#define BOOT_PVH_INFO_GPA 0x6000    /* hvm_start_info + its memmap and modlist */
#define BOOT_ZERO_PAGE_GPA 0x7000   /* Linux boot_params */
#define BOOT_PML4_GPA 0x9000        /* identity page tables: PML4, PDPT, 4 PDs (0-4 GiB, 2 MiB pages) */
#define BOOT_CMDLINE_GPA 0x20000
#define BOOT_CMDLINE_MAX 4096       /* bytes including the NUL */
#define BOOT_STACK_GPA 0x8ff0       /* initial rsp for the PVH entry (below the page tables) */
#define BOOT_EBDA_GPA 0x9fc00       /* e820: [EBDA, 1 MiB) is reserved */
#define BOOT_ACPI_GPA 0xe0000       /* RSDP (where a BIOS search finds it) and the ACPI tables */
#define BOOT_ACPI_MAX 0x20000
#define BOOT_RESET_VECTOR_GPA 0xffff0 /* f000:fff0: a stub that resets the machine (loader.c) */
#define BOOT_KERNEL_GPA 0x100000    /* 1 MiB: protected-mode kernel / PVH load address floor */

#define BOOT_SEL_CODE 0x10
#define BOOT_SEL_DATA 0x18

/* Ports kvmm's firmware tables point the guest at. */
#define BOOT_ACPI_SLEEP_PORT 0x3c0  /* FADT sleep control register (HW-reduced ACPI): S5 = power off */
#define BOOT_ACPI_RESET_PORT 0xcf9  /* FADT reset register; value BOOT_ACPI_RESET_VALUE */
#define BOOT_ACPI_RESET_VALUE 0x06
#define BOOT_ACPI_S5_SLP_TYP 5      /* _S5 package value: sleep control = (5 << 2) | SLP_EN (1 << 5) */
/* Generic Event Device (ACPI0013, ACPI 6.4 §5.6.9): on an edge of its interrupt the guest's _EVT
 * reads (and so clears) the event selector, a 32-bit register at BOOT_ACPI_GED_PORT, and acts on
 * each bit set. The bit values are QEMU's (hw/acpi/generic_event_device.h). */
#define BOOT_ACPI_GED_PORT 0x3c4
#define BOOT_ACPI_GED_LEN 4
#define BOOT_ACPI_GED_GSI 16        /* an IOAPIC-only pin: no ISA device or PCI INTx line uses it */
#define BOOT_ACPI_GED_EVT_POWER_BUTTON 0x2 /* _EVT: Notify(\_SB.PWRB, 0x80) */

#define BOOT_IOAPIC_GPA 0xfec00000u
#define BOOT_LAPIC_GPA 0xfee00000u

enum boot_mode {
	BOOT_LINUX64, /* 64-bit long mode, paging on (identity 0-4 GiB), rsi = boot_params */
	BOOT_PVH,     /* 32-bit protected mode, paging off, ebx = hvm_start_info */
};

/* The vCPU 0 state a loaded kernel starts with; src/vcpu/x86.c turns it into KVM registers. */
struct boot_entry {
	enum boot_mode mode;
	uint64_t rip;
	uint64_t rsi;
	uint64_t rbx;
	uint64_t rsp;
	uint64_t cr3; /* 0 for PVH (paging off) */
	uint64_t gdt_base;
	uint16_t gdt_limit;
};

struct boot_config {
	const char *kernel_path; /* bzImage or ELF with a PVH note */
	const char *initrd_path; /* NULL for none */
	const char *cmdline;     /* "" for none; at most BOOT_CMDLINE_MAX - 1 bytes */
	unsigned nr_cpus;
};

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3

/*
 * Loads the kernel (format detected from its contents), the initrd and the command line, writes the
 * e820 map, ACPI tables, GDT and page tables, and fills *entry. Errors, each with a log_error()
 * naming the file and the reason: -ENOENT/-EACCES (cannot open), -ENOEXEC (neither a bzImage nor an
 * ELF with a PVH note, or a kernel too old for the 64-bit boot protocol), -E2BIG (kernel, initrd or
 * command line does not fit in guest memory), -EINVAL (anything malformed in the file).
 */
int boot_load(struct gmem *gm, const struct boot_config *bc, struct boot_entry *entry);

/* The e820 map for this RAM layout, sorted, non-overlapping; returns the number of entries (<= cap). */
size_t e820_build(const struct gmem *gm, struct e820_entry *out, size_t cap);

/* Writes RSDP, XSDT, FADT (HW-reduced), DSDT and MADT for nr_cpus at BOOT_ACPI_GPA; *rsdp = its gpa. */
int acpi_build(struct gmem *gm, unsigned nr_cpus, uint64_t *rsdp);

#endif
