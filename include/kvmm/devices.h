/* The device registry (src/devices/registry.c): one explicit table of the platform's devices, set up
 * in order when a VM is created and torn down in reverse. Each device registers its ranges on
 * vm->pio / vm->mmio (and PCI functions on vm->pci) and keeps its state in its vm field. */
#ifndef KVMM_DEVICES_H
#define KVMM_DEVICES_H

struct vm;

struct device_desc {
	const char *name;
	int (*init)(struct vm *vm);   /* 0 or -errno, with a log_error() saying what failed */
	void (*exit)(struct vm *vm);  /* releases everything init acquired; safe after a failed init */
	/* Optional: system reset, with every vCPU parked, on the loop thread. Back to the state
	 * init left (what a power cycle does to the hardware), and every interrupt line low. */
	void (*reset)(struct vm *vm);
};

int devices_init(struct vm *vm);  /* on failure, exits the devices already initialised */
void devices_exit(struct vm *vm);
void devices_reset(struct vm *vm); /* each device's reset hook, in registry order */

/* The devices, in registry order. */
int pci_init(struct vm *vm);      /* PCI host bridge 00:00.0, config mechanism 1 (0xcf8-0xcff) */
void pci_exit(struct vm *vm);
void pci_reset(struct vm *vm);    /* config space as kvmm programmed it; each function's reset */
int serial_init(struct vm *vm);   /* 8250/16550A UART on COM1 (0x3f8, IRQ 4); cfg->serial backend */
void serial_exit(struct vm *vm);
void serial_reset(struct vm *vm); /* the UART (not the backend, not unread host input) */
int i8042_init(struct vm *vm);    /* keyboard controller (0x60, 0x64): reset on 0xfe, no keyboard */
void i8042_exit(struct vm *vm);
void i8042_reset(struct vm *vm);
int rtc_init(struct vm *vm);      /* CMOS/RTC (0x70, 0x71): host UTC time, memory size in CMOS */
void rtc_exit(struct vm *vm);
void rtc_reset(struct vm *vm);    /* keeps the time and CMOS RAM (battery-backed) */
int power_init(struct vm *vm);    /* ACPI sleep control port, GED (power button), test-exit port */
void power_exit(struct vm *vm);
void power_reset(struct vm *vm);  /* no GED event pending */
/* Presses the ACPI power button (QMP system_powerdown): the guest decides what to do. Any thread;
 * 0 or -errno. */
int power_button(struct vm *vm);
int balloon_init(struct vm *vm);  /* virtio-balloon on PCI, with --balloon (balloon_kvm.c) */
void balloon_exit(struct vm *vm);

#endif
