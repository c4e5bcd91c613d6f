/* PCI (src/bus/pci.c): host bridge at 00:00.0 behind config mechanism 1, and the device/BAR model
 * virtio-pci builds on. kvmm assigns BAR addresses itself (the guest finds them programmed, as with
 * firmware); a guest that moves a BAR has its range moved on the bus. */
#ifndef KVMM_PCI_H
#define KVMM_PCI_H

#include <kvmm/bus.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define PCI_MAX_DEVICES 32 /* bus 0 only, function 0 only */
#define PCI_NR_BARS 6
#define PCI_CFG_SIZE 256
#define PCI_MMIO_BASE 0xc0000000ull /* 32-bit BAR window [3 GiB, 0xfec00000) */
#define PCI_MMIO_END 0xfec00000ull
#define PCI_IO_BASE 0xc000          /* IO BAR window [0xc000, 0x10000) */
#define PCI_IO_END 0x10000

struct vm;

struct pci_bar {
	uint64_t size;          /* power of two, 0: unused */
	bool io;                /* IO space (else 32-bit memory) */
	uint64_t addr;          /* current address */
	bus_handler fn;         /* accesses to the BAR, offset relative to it */
	void *opaque;
};

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];     /* config space as the guest sees it (little-endian) */
	uint8_t wmask[PCI_CFG_SIZE];   /* bits the guest may write */
	struct pci_bar bars[PCI_NR_BARS];
	unsigned slot;
	const char *name;
	struct vm *vm;                 /* set by pci_add; NULL in unit tests */
	/* Optional: config writes beyond the standard header (capabilities), after cfg is updated. */
	void (*cfg_write)(struct pci_dev *d, unsigned off, unsigned len);
	/* Optional: system reset (pci_reset), after config space is back to what pci_add left and
	 * the BARs are back at kvmm's addresses; the function resets its own state. Under the PCI
	 * lock, with every vCPU parked. */
	void (*reset)(struct pci_dev *d);
	void *opaque;
};

/* Fills the standard type-0 header: ids, class, and sets wmask for command, BARs, interrupt line. */
void pci_dev_init(struct pci_dev *d, const char *name, uint16_t vendor, uint16_t device,
		  uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id);
/* Declares BAR n (before pci_add). */
void pci_dev_set_bar(struct pci_dev *d, unsigned n, uint64_t size, bool io, bus_handler fn,
		     void *opaque);

/* Adds a device at the next free slot, assigns its BARs and registers them on the buses. */
int pci_add(struct vm *vm, struct pci_dev *d);
/* Takes a device off the bus again: its BARs leave the buses, its slot reads as empty, d->vm is
 * cleared; the device itself stays its owner's. Call with the vCPUs stopped (device teardown),
 * before pci_exit. Its BAR addresses are not handed out again. 0, -ENODEV without a bus, -ENOENT
 * when d is not on it. */
int pci_remove(struct vm *vm, struct pci_dev *d);

/* The GSI that interrupt pin `pin` (0 = INTA .. 3 = INTD) of slot `slot` drives: the i440FX/SeaBIOS
 * swizzle, PIRQ (slot + pin) & 3 over GSIs 10, 10, 11, 11. pci_add writes pin A's into Interrupt
 * Line; the DSDT's _PRT lists the same map. Pure. */
unsigned pci_intx_gsi(unsigned slot, unsigned pin);

/* Config-space accesses as mechanism 1 delivers them (pure; exposed for unit tests). */
uint32_t pci_dev_cfg_read(struct pci_dev *d, unsigned off, unsigned len);
void pci_dev_cfg_write(struct pci_dev *d, unsigned off, unsigned len, uint32_t val);

#endif
