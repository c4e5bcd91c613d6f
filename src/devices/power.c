/* Power: the ports through which a guest ends its run, and the power button.
 * - the ACPI sleep control register (HW-reduced ACPI, FADT SLEEP_CONTROL_REG at
 *   BOOT_ACPI_SLEEP_PORT): SLP_EN with SLP_TYP = the _S5 value powers off (ACPI 6.4, 4.8.3.7);
 *   the sleep status register next to it reads 0 (no wake events);
 * - QEMU's isa-debug-exit port (VM_DEBUG_EXIT_PORT, 4 bytes): a write ends the run with the
 *   written value's low byte as kvmm's exit status, so test guests report pass/fail;
 * - the Generic Event Device's event selector (BOOT_ACPI_GED_PORT, src/boot/acpi.c describes the
 *   device): power_button() sets a bit there and sends an edge on BOOT_ACPI_GED_GSI; the guest's
 *   _EVT reads the register, which clears it, and notifies its power button device. This is the
 *   hardware-reduced replacement for the PM1 power button bit (ACPI 6.4 §4.8.2.2).
 * The reset register (0xcf9) belongs to the PCI host bridge (src/bus/pci.c), where it shares the
 * CONFIG_ADDRESS dword as on the PIIX. */
#include <kvmm/boot.h>
#include <kvmm/devices.h>
#include <kvmm/log.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define POWER_SLP_EN 0x20
#define POWER_SLP_TYP(v) (((v) >> 2) & 7)

struct power {
	struct vm *vm;
	bool sleep_registered, exit_registered, ged_registered;
	_Atomic uint32_t ged_events; /* GED event selector: set by the host, read-to-clear */
};

static void power_sleep_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len,
			   bool is_write)
{
	struct power *p = opaque;

	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	/* Byte 0 is the control register; writes to the status register (1) only clear WAK_STS. */
	if (offset == 0 && (data[0] & POWER_SLP_EN)) {
		if (POWER_SLP_TYP(data[0]) == BOOT_ACPI_S5_SLP_TYP)
			vm_request_exit(p->vm, VM_EXIT_POWEROFF, 0, "ACPI S5");
		else
			log_debug("power: sleep type %u not supported, ignored", POWER_SLP_TYP(data[0]));
	}
}

static void power_exit_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len,
			  bool is_write)
{
	struct power *p = opaque;
	uint32_t v;

	if (!is_write) {
		memset(data, 0xff, len);
		return;
	}
	v = bus_data_get(data, len);
	(void)offset;
	vm_request_exit(p->vm, VM_EXIT_DEBUG_EXIT, (int)(v & 0xff), "guest test exit");
}

static void power_ged_io(void *opaque, uint64_t offset, uint8_t *data, unsigned len,
			 bool is_write)
{
	struct power *p = opaque;

	/* The AML reads the whole register (DWordAcc); anything else reads 0 and writes do nothing. */
	if (is_write)
		return;
	if (offset == 0 && len == BOOT_ACPI_GED_LEN)
		bus_data_put(data, len, atomic_exchange(&p->ged_events, 0));
	else
		memset(data, 0, len);
}

int power_button(struct vm *vm)
{
	struct power *p = vm->power;
	int r;

	if (!p)
		return -ENODEV;
	atomic_fetch_or(&p->ged_events, BOOT_ACPI_GED_EVT_POWER_BUTTON);
	/* Edge-triggered (the _CRS says so): a rising edge per press; the line rests low. */
	r = vm_irq_line(vm, BOOT_ACPI_GED_GSI, true);
	if (r == 0)
		r = vm_irq_line(vm, BOOT_ACPI_GED_GSI, false);
	return r;
}

void power_reset(struct vm *vm)
{
	atomic_store(&vm->power->ged_events, 0);
}

int power_init(struct vm *vm)
{
	struct power *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	p->vm = vm;
	vm->power = p;
	r = bus_register(&vm->pio, BOOT_ACPI_SLEEP_PORT, 2, power_sleep_io, p, "acpi-sleep");
	if (r < 0)
		goto fail;
	p->sleep_registered = true;
	r = bus_register(&vm->pio, VM_DEBUG_EXIT_PORT, 4, power_exit_io, p, "debug-exit");
	if (r < 0)
		goto fail;
	p->exit_registered = true;
	r = bus_register(&vm->pio, BOOT_ACPI_GED_PORT, BOOT_ACPI_GED_LEN, power_ged_io, p, "acpi-ged");
	if (r < 0)
		goto fail;
	p->ged_registered = true;
	return 0;
fail:
	log_error("power: cannot register its ports: %s", strerror(-r));
	power_exit(vm);
	return r;
}

void power_exit(struct vm *vm)
{
	struct power *p = vm->power;

	if (!p)
		return;
	if (p->sleep_registered)
		bus_unregister(&vm->pio, BOOT_ACPI_SLEEP_PORT);
	if (p->exit_registered)
		bus_unregister(&vm->pio, VM_DEBUG_EXIT_PORT);
	if (p->ged_registered)
		bus_unregister(&vm->pio, BOOT_ACPI_GED_PORT);
	free(p);
	vm->power = NULL;
}
