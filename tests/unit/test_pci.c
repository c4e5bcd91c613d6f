#include <kvmm/bus.h>
#include <kvmm/devices.h>
#include <kvmm/pci.h>
#include <kvmm/vm.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* vm.c needs KVM; these stand in for it (weak, so a library that does link vm.o still wins). */
static enum vm_exit_reason last_exit;
static int resets;

__attribute__((weak)) int vm_irq_line(struct vm *vm, unsigned gsi, bool level)
{
	(void)vm, (void)gsi, (void)level;
	return 0;
}

__attribute__((weak)) void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int code,
					   const char *detail)
{
	(void)vm, (void)code, (void)detail;
	last_exit = why;
}

__attribute__((weak)) void vm_request_reset(struct vm *vm, enum vm_reset_cause why,
					    const char *detail)
{
	(void)vm, (void)detail;
	if (why == VM_RESET_GUEST)
		resets++;
}

static void bar_fn(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write)
{
	uint64_t *last = opaque;

	*last = offset;
	if (!is_write)
		memset(data, 0x42, len);
}

static uint32_t cfg_addr(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t pio_read(struct vm *vm, uint16_t port, unsigned len)
{
	uint8_t d[4] = { 0 };
	uint32_t v = 0;

	bus_dispatch(&vm->pio, port, d, len, false);
	for (unsigned i = 0; i < len; i++)
		v |= (uint32_t)d[i] << (8 * i);
	return v;
}

static void pio_write(struct vm *vm, uint16_t port, unsigned len, uint32_t v)
{
	uint8_t d[4];

	for (unsigned i = 0; i < len; i++)
		d[i] = (uint8_t)(v >> (8 * i));
	bus_dispatch(&vm->pio, port, d, len, true);
}

static uint32_t cfg_read(struct vm *vm, unsigned dev, unsigned fn, unsigned reg, unsigned len)
{
	pio_write(vm, 0xcf8, 4, cfg_addr(0, dev, fn, reg));
	return pio_read(vm, (uint16_t)(0xcfc + (reg & 3)), len);
}

static void cfg_write(struct vm *vm, unsigned dev, unsigned reg, unsigned len, uint32_t v)
{
	pio_write(vm, 0xcf8, 4, cfg_addr(0, dev, 0, reg));
	pio_write(vm, (uint16_t)(0xcfc + (reg & 3)), len, v);
}

static struct vm *vm_new(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	cr_assert(vm);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	cr_assert_eq(pci_init(vm), 0);
	return vm;
}

static void vm_free(struct vm *vm)
{
	pci_exit(vm);
	cr_expect_eq(vm->pio.nr, 0, "pci_exit left pio ranges");
	cr_expect_eq(vm->mmio.nr, 0, "pci_exit left mmio ranges");
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	free(vm);
}

Test(pci, host_bridge_through_mechanism_1, .timeout = 10)
{
	struct vm *vm = vm_new();

	cr_expect_eq(cfg_read(vm, 0, 0, 0x00, 4), 0x00081b36);
	cr_expect_eq(cfg_read(vm, 0, 0, 0x00, 2), 0x1b36);
	cr_expect_eq(cfg_read(vm, 0, 0, 0x02, 2), 0x0008);
	cr_expect_eq(cfg_read(vm, 0, 0, 0x08, 4) >> 8, 0x060000, "class code");
	cr_expect_eq(cfg_read(vm, 0, 0, 0x0b, 1), 0x06);
	cr_expect_eq(cfg_read(vm, 0, 0, 0x0e, 1), 0x00, "type 0, single function");
	/* Linux's pci_check_type1: the address register reads back what was written. */
	pio_write(vm, 0xcf8, 4, 0x80000000u);
	cr_expect_eq(pio_read(vm, 0xcf8, 4), 0x80000000u);
	pio_write(vm, 0xcf8, 4, 0xffffffffu);
	cr_expect_eq(pio_read(vm, 0xcf8, 4), 0x80fffffcu, "reserved bits read 0");
	/* Enable bit clear: no config cycle. */
	pio_write(vm, 0xcf8, 4, 0);
	cr_expect_eq(pio_read(vm, 0xcfc, 4), 0xffffffffu);
	vm_free(vm);
}

Test(pci, unknown_slot_function_and_bus_read_all_ones, .timeout = 10)
{
	struct vm *vm = vm_new();

	cr_expect_eq(cfg_read(vm, 5, 0, 0x00, 4), 0xffffffffu);
	cr_expect_eq(cfg_read(vm, 0, 1, 0x00, 4), 0xffffffffu);
	cr_expect_eq(cfg_read(vm, 31, 0, 0x00, 2), 0xffff);
	pio_write(vm, 0xcf8, 4, cfg_addr(1, 0, 0, 0));
	cr_expect_eq(pio_read(vm, 0xcfc, 4), 0xffffffffu);
	/* Writes to nowhere are dropped. */
	cfg_write(vm, 5, 0x04, 2, 0x7);
	cr_expect_eq(cfg_read(vm, 5, 0, 0x04, 2), 0xffff);
	vm_free(vm);
}

Test(pci, reset_control_register, .timeout = 10)
{
	struct vm *vm = vm_new();

	resets = 0;
	pio_write(vm, 0xcf9, 1, 0x02);
	cr_expect_eq(resets, 0, "SYS_RST alone only selects the reset type");
	cr_expect_eq(pio_read(vm, 0xcf9, 1), 0x02);
	pio_write(vm, 0xcf9, 1, 0x06);
	cr_expect_eq(resets, 1, "RST_CPU: a guest-initiated system reset");
	cr_expect_eq(last_exit, VM_EXIT_NONE, "which does not stop the VM");
	/* A byte at 0xcf9 did not disturb CONFIG_ADDRESS. */
	pio_write(vm, 0xcf8, 4, 0x80000000u);
	pio_write(vm, 0xcf9, 1, 0x02);
	cr_expect_eq(pio_read(vm, 0xcf8, 4), 0x80000000u);
	vm_free(vm);
}

Test(pci, bar_sizing_memory_and_io, .timeout = 10)
{
	struct pci_dev d;
	uint64_t last = 0;

	pci_dev_init(&d, "t", 0x1af4, 0x1041, 0x020000, 0x1af4, 1);
	pci_dev_set_bar(&d, 0, 0x4000, false, bar_fn, &last);
	pci_dev_set_bar(&d, 2, 32, true, bar_fn, &last);

	pci_dev_cfg_write(&d, 0x10, 4, 0xffffffffu);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x10, 4), 0xffffc000u);
	pci_dev_cfg_write(&d, 0x18, 4, 0xffffffffu);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x18, 4), 0x0000ffe1u, "16-bit IO decode, IO bit");
	/* An unused BAR sizes to 0: not implemented. */
	pci_dev_cfg_write(&d, 0x14, 4, 0xffffffffu);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x14, 4), 0);
	/* Programming an address. */
	pci_dev_cfg_write(&d, 0x10, 4, 0xd0004123u);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x10, 4), 0xd0004000u);
	cr_expect_eq(d.bars[0].addr, 0xd0004000u);
	pci_dev_cfg_write(&d, 0x18, 4, 0xc0a3);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x18, 4), 0xc0a1);
	cr_expect_eq(d.bars[2].addr, 0xc0a0);
}

Test(pci, read_only_fields_ignore_writes, .timeout = 10)
{
	struct pci_dev d;

	pci_dev_init(&d, "t", 0x1af4, 0x1041, 0x020000, 0x1af4, 0x1100);
	pci_dev_cfg_write(&d, 0x00, 4, 0);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x00, 4), 0x10411af4u);
	pci_dev_cfg_write(&d, 0x08, 4, 0);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x08, 4), 0x02000000u);
	pci_dev_cfg_write(&d, 0x2c, 4, 0);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x2c, 4), 0x11001af4u);
	pci_dev_cfg_write(&d, 0x3d, 1, 4);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x3d, 1), 1, "interrupt pin A");
	/* Writable: command bits (not the reserved ones), interrupt line. */
	pci_dev_cfg_write(&d, 0x04, 4, 0xffffffffu);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x04, 2), 0x0547);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x06, 2), 0, "status unchanged");
	pci_dev_cfg_write(&d, 0x3c, 1, 11);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x3c, 1), 11);
	/* Out of range or odd sizes. */
	cr_expect_eq(pci_dev_cfg_read(&d, 0xff, 2), 0xffffffffu);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x00, 3), 0xffffffffu);
}

static unsigned cap_writes, cap_off;

static void cap_write(struct pci_dev *d, unsigned off, unsigned len)
{
	(void)d, (void)len;
	cap_writes++;
	cap_off = off;
}

Test(pci, capability_writes_reach_the_device, .timeout = 10)
{
	struct pci_dev d;

	pci_dev_init(&d, "t", 1, 2, 0, 0, 0);
	d.cfg_write = cap_write;
	d.wmask[0x42] = 0xff;
	pci_dev_cfg_write(&d, 0x04, 2, 1);
	cr_expect_eq(cap_writes, 0);
	pci_dev_cfg_write(&d, 0x40, 4, 0x00ab0000);
	cr_expect_eq(cap_writes, 1);
	cr_expect_eq(cap_off, 0x40);
	cr_expect_eq(d.cfg[0x42], 0xab);
}

Test(pci, bar_move_without_vm_only_updates_config, .timeout = 10)
{
	struct pci_dev d;
	uint64_t last = 0;

	pci_dev_init(&d, "t", 1, 2, 0, 0, 0);
	pci_dev_set_bar(&d, 1, 0x1000, false, bar_fn, &last);
	pci_dev_cfg_write(&d, 0x04, 2, 0x2);
	pci_dev_cfg_write(&d, 0x14, 4, 0xe0000000u);
	cr_expect_eq(d.bars[1].addr, 0xe0000000u);
	pci_dev_cfg_write(&d, 0x14, 2, 0x1000);
	cr_expect_eq(pci_dev_cfg_read(&d, 0x14, 4), 0xe0001000u, "word write to the low half");
	cr_expect_eq(d.bars[1].addr, 0xe0001000u);
	cr_expect_null(d.vm);
}

Test(pci, add_assigns_bars_and_moves_them_on_the_bus, .timeout = 10)
{
	struct vm *vm = vm_new();
	struct pci_dev d;
	uint64_t last = 0;
	uint8_t data[4];

	pci_dev_init(&d, "t", 0x1af4, 0x1041, 0x020000, 0x1af4, 1);
	pci_dev_set_bar(&d, 0, 0x4000, false, bar_fn, &last);
	pci_dev_set_bar(&d, 1, 0x1000, false, bar_fn, &last);
	pci_dev_set_bar(&d, 4, 64, true, bar_fn, &last);
	cr_assert_eq(pci_add(vm, &d), 0);
	cr_expect_eq(d.slot, 1);
	cr_expect_eq(d.bars[0].addr, PCI_MMIO_BASE);
	cr_expect_eq(d.bars[1].addr, PCI_MMIO_BASE + 0x4000);
	cr_expect_eq(d.bars[4].addr, PCI_IO_BASE);
	cr_expect_eq(cfg_read(vm, 1, 0, 0x10, 4), PCI_MMIO_BASE);
	cr_expect_eq(cfg_read(vm, 1, 0, 0x20, 4), PCI_IO_BASE | 1);
	cr_expect_eq(cfg_read(vm, 1, 0, 0x04, 2) & 3, 3, "decoding on");
	cr_expect_eq(cfg_read(vm, 1, 0, 0x3c, 2), 0x010a, "INTA, IRQ 10");

	cr_expect(bus_dispatch(&vm->mmio, PCI_MMIO_BASE + 0x4010, data, 4, false));
	cr_expect_eq(last, 0x10);
	cr_expect(bus_dispatch(&vm->pio, PCI_IO_BASE + 3, data, 1, false));
	cr_expect_eq(last, 3);

	/* The guest moves BAR 1 while decoding. */
	cfg_write(vm, 1, 0x14, 4, 0xd0000000u);
	cr_expect_not(bus_dispatch(&vm->mmio, PCI_MMIO_BASE + 0x4010, data, 4, false));
	cr_expect(bus_dispatch(&vm->mmio, 0xd0000020u, data, 4, false));
	cr_expect_eq(last, 0x20);
	/* Memory decode off: both memory BARs leave the bus, IO stays. */
	cfg_write(vm, 1, 0x04, 2, 0x1);
	cr_expect_eq(vm->mmio.nr, 0);
	cr_expect(bus_dispatch(&vm->pio, PCI_IO_BASE, data, 1, false));
	/* Sizing while decode is off touches no bus; decode on maps the programmed address. */
	cfg_write(vm, 1, 0x10, 4, 0xffffffffu);
	cr_expect_eq(cfg_read(vm, 1, 0, 0x10, 4), 0xffffc000u);
	cfg_write(vm, 1, 0x10, 4, 0xc8000000u);
	cfg_write(vm, 1, 0x04, 2, 0x3);
	cr_expect_eq(vm->mmio.nr, 2);
	cr_expect(bus_dispatch(&vm->mmio, 0xc8000004u, data, 4, false));
	cr_expect_eq(last, 4);
	vm_free(vm);
}

Test(pci, slots_fill_and_run_out, .timeout = 10)
{
	struct vm *vm = vm_new();
	static struct pci_dev devs[PCI_MAX_DEVICES];

	for (unsigned i = 1; i < PCI_MAX_DEVICES; i++) {
		pci_dev_init(&devs[i], "t", 1, 2, 0, 0, 0);
		cr_assert_eq(pci_add(vm, &devs[i]), 0);
		cr_expect_eq(devs[i].slot, i);
	}
	cr_expect_eq(cfg_read(vm, 2, 0, 0x3c, 1), 11);
	cr_expect_eq(cfg_read(vm, 4, 0, 0x3c, 1), 10);
	pci_dev_init(&devs[0], "t", 1, 2, 0, 0, 0);
	cr_expect_eq(pci_add(vm, &devs[0]), -ENOSPC);
	vm_free(vm);
}

static int dev_resets;

static void dev_reset(struct pci_dev *d)
{
	(void)d;
	dev_resets++;
}

Test(pci, reset_restores_kvmms_assignment, .timeout = 10)
{
	struct vm *vm = vm_new();
	struct pci_dev d;
	uint64_t last = 0;
	uint8_t data[4];

	pci_dev_init(&d, "t", 0x1af4, 0x1041, 0x020000, 0x1af4, 1);
	pci_dev_set_bar(&d, 0, 0x4000, false, bar_fn, &last);
	pci_dev_set_bar(&d, 4, 64, true, bar_fn, &last);
	d.reset = dev_reset;
	cr_assert_eq(pci_add(vm, &d), 0);
	/* The guest moves BAR 0, turns on bus mastering and INTx disable, changes the line. */
	cfg_write(vm, 1, 0x10, 4, 0xd0000000u);
	cfg_write(vm, 1, 0x04, 2, 0x0407);
	cfg_write(vm, 1, 0x3c, 1, 5);
	pio_write(vm, 0xcf8, 4, cfg_addr(0, 1, 0, 0));
	dev_resets = 0;
	pci_reset(vm);
	cr_expect_eq(dev_resets, 1, "the function's own reset hook ran");
	cr_expect_eq(pio_read(vm, 0xcf8, 4), 0, "CONFIG_ADDRESS cleared");
	cr_expect_eq(cfg_read(vm, 1, 0, 0x10, 4), PCI_MMIO_BASE, "BAR 0 back at kvmm's address");
	cr_expect_eq(d.bars[0].addr, PCI_MMIO_BASE);
	cr_expect_eq(cfg_read(vm, 1, 0, 0x04, 2), 0x3, "command: decode as kvmm set it, no master, INTx on");
	cr_expect_eq(cfg_read(vm, 1, 0, 0x3c, 1), 10, "interrupt line as kvmm wrote it");
	cr_expect(bus_dispatch(&vm->mmio, PCI_MMIO_BASE + 8, data, 4, false), "mapped there again");
	cr_expect_not(bus_dispatch(&vm->mmio, 0xd0000008u, data, 4, false), "not where the guest put it");
	cr_expect_eq(vm->mmio.nr, 1);
	vm_free(vm);
}

Test(pci, remove_takes_a_device_off_the_bus, .timeout = 10)
{
	struct vm *vm = vm_new();
	struct pci_dev d, e;
	uint64_t last = 0;

	pci_dev_init(&d, "t", 0x1af4, 0x1041, 0x020000, 0x1af4, 1);
	pci_dev_set_bar(&d, 0, 0x4000, false, bar_fn, &last);
	pci_dev_set_bar(&d, 4, 64, true, bar_fn, &last);
	cr_assert_eq(pci_add(vm, &d), 0);
	cr_expect_eq(vm->mmio.nr, 1);
	cr_expect_eq(pci_remove(vm, &d), 0);
	cr_expect_eq(vm->mmio.nr, 0, "its memory BAR left the bus");
	cr_expect_eq(vm->pio.nr, 2, "its IO BAR too: only the config ports remain");
	cr_expect_eq(cfg_read(vm, 1, 0, 0x00, 4), 0xffffffffu, "the slot reads as empty");
	cr_expect_null(d.vm);
	cr_expect_eq(pci_remove(vm, &d), -ENOENT, "not on the bus any more");
	/* The slot is free again; addresses are not reused. */
	pci_dev_init(&e, "u", 1, 2, 0, 0, 0);
	pci_dev_set_bar(&e, 0, 0x4000, false, bar_fn, &last);
	cr_assert_eq(pci_add(vm, &e), 0);
	cr_expect_eq(e.slot, 1);
	cr_expect_eq(e.bars[0].addr, PCI_MMIO_BASE + 0x4000);
	pci_exit(vm);
	cr_expect_eq(pci_remove(vm, &e), -ENODEV, "after pci_exit there is no bus");
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	free(vm);
}

Test(pci, intx_swizzle, .timeout = 10)
{
	/* SeaBIOS's i440FX map: PIRQ (slot + pin) & 3 over 10, 10, 11, 11. */
	cr_expect_eq(pci_intx_gsi(0, 0), 10);
	cr_expect_eq(pci_intx_gsi(1, 0), 10);
	cr_expect_eq(pci_intx_gsi(2, 0), 11);
	cr_expect_eq(pci_intx_gsi(3, 0), 11);
	cr_expect_eq(pci_intx_gsi(4, 0), 10);
	cr_expect_eq(pci_intx_gsi(1, 1), 11, "slot 1 INTB");
	cr_expect_eq(pci_intx_gsi(31, 3), 11, "slot 31 INTD: (31 + 3) & 3 = 2");
}
