/* The platform's devices, in the order they come up; they go down in reverse. PCI is first so that
 * devices added later can put functions on its bus. */
#include <kvmm/devices.h>
#include <kvmm/log.h>

#include <stddef.h>

static const struct device_desc devices[] = {
	{ "pci", pci_init, pci_exit, pci_reset },
	{ "serial", serial_init, serial_exit, serial_reset },
	{ "i8042", i8042_init, i8042_exit, i8042_reset },
	{ "rtc", rtc_init, rtc_exit, rtc_reset },
	{ "power", power_init, power_exit, power_reset },
	{ "balloon", balloon_init, balloon_exit, NULL }, /* virtio functions reset with pci */
};

#define NR_DEVICES (sizeof(devices) / sizeof(devices[0]))

int devices_init(struct vm *vm)
{
	for (size_t i = 0; i < NR_DEVICES; i++) {
		int r = devices[i].init(vm);

		if (r < 0) {
			log_error("device %s failed to start", devices[i].name);
			while (i-- > 0)
				devices[i].exit(vm);
			return r;
		}
	}
	return 0;
}

void devices_exit(struct vm *vm)
{
	for (size_t i = NR_DEVICES; i-- > 0;)
		devices[i].exit(vm);
}

void devices_reset(struct vm *vm)
{
	for (size_t i = 0; i < NR_DEVICES; i++)
		if (devices[i].reset)
			devices[i].reset(vm);
}
