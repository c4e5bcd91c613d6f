/* System reset: the VM reboots in place, as QEMU's does (qemu_system_reset: every vCPU paused, the
 * machine reset, vCPUs resumed, then the RESET event).
 *
 * A request (guest: i8042 command 0xfe, 0xcf9, the ACPI reset register, a triple fault; host: QMP
 * system_reset) sets reset_hold, which parks every vCPU thread outside KVM_RUN at its next exit,
 * and posts CTL_RESET; on the loop thread vm_reset() then, once all vCPUs are parked:
 *   1. resets the devices through their registry hooks (their interrupt lines go low first);
 *   2. writes back the PICs', IOAPIC's and PIT's state as KVM created it (saved before any vCPU
 *      ran: KVM has no reset ioctl for them);
 *   3. writes back every vCPU's power-on state (src/vcpu/x86_reset.c): the BSP runnable, the APs
 *      waiting for INIT/SIPI;
 *   4. discards all guest RAM (it reads as zero again, as after power-on) and loads the kernel,
 *      initrd, command line, boot parameters and ACPI tables again, from the same files as at
 *      start, then enters the BSP through the same boot path;
 *   5. clears reset_hold and sends RESET {"guest": ..., "reason": ...} to QMP clients.
 * Under --no-reboot or QMP set-action reboot=shutdown (vm->reboot_shutdown), the VM stops instead
 * (SHUTDOWN with the same reason), like QEMU -no-reboot, which also turns system_reset into a
 * shutdown; under the shutdown action pause (-no-shutdown) that stop pauses the VM. A reset that
 * fails half-way cannot resume the old guest, so the VM stops with a runtime failure (exit
 * status 1). */
#include <kvmm/mem.h>
#include <kvmm/devices.h>
#include <kvmm/log.h>
#include <kvmm/loop.h>
#include <kvmm/qmp.h>
#include <kvmm/vcpu.h>

#include "vm_internal.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define VM_NR_IRQCHIPS 3 /* KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC */

struct vm_power_on {
	struct kvm_irqchip chips[VM_NR_IRQCHIPS];
	struct kvm_pit_state2 pit;
};

int vm_power_on_save(struct vm *vm)
{
	struct vm_power_on *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	for (unsigned i = 0; i < VM_NR_IRQCHIPS; i++) {
		p->chips[i].chip_id = i;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &p->chips[i]) < 0)
			goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &p->pit) < 0)
		goto fail;
	vm->power_on = p;
	return 0;
fail:
	log_error("saving the irqchip and PIT power-on state: %s", strerror(errno));
	free(p);
	return -EIO;
}

void vm_power_on_free(struct vm *vm)
{
	free(vm->power_on);
	vm->power_on = NULL;
}

void vm_request_reset(struct vm *vm, enum vm_reset_cause why, const char *detail)
{
	struct ctl_cmd cmd = { .op = CTL_RESET, .arg = (int)why };

	/* One reset at a time: a request while one is pending is part of it. */
	if (atomic_exchange(&vm->reset_hold, true))
		return;
	snprintf(cmd.detail, sizeof(cmd.detail), "%s", detail ? detail : "");
	if (ctl_post(&vm->ctl, &cmd) < 0) {
		atomic_store(&vm->stopping, true);
		loop_stop(vm->loop);
	}
}

static int vm_irqchip_reset(struct vm *vm)
{
	struct vm_power_on *p = vm->power_on;

	for (unsigned i = 0; i < VM_NR_IRQCHIPS; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &p->chips[i]) < 0)
			return -errno;
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &p->pit) < 0)
		return -errno;
	return 0;
}

/* Steps 1-4 with every vCPU parked; 0, or -errno with *what naming the step that failed. */
static int vm_reboot(struct vm *vm, const char **what)
{
	struct boot_config bc;
	struct boot_entry entry;
	int r;

	devices_reset(vm);
	*what = "irqchip and PIT";
	r = vm_irqchip_reset(vm);
	for (unsigned i = 0; r == 0 && i < vm->nr_vcpus; i++) {
		*what = "vCPU state";
		r = x86_vcpu_reset(&vm->vcpus[i]);
	}
	if (r == 0) {
		*what = "guest RAM";
		r = mem_reset(vm->memmgr, &vm->mem);
	}
	if (r == 0) {
		*what = "loading the kernel";
		vm_boot_config(vm, &bc);
		r = boot_load(&vm->mem, &bc, &entry);
	}
	if (r == 0) {
		*what = "entering the kernel";
		r = x86_vcpu_boot(&vm->vcpus[0], &entry);
	}
	return r;
}

static void vm_reset_stop(struct vm *vm, enum vm_reset_cause why, const char *detail)
{
	switch (why) {
	case VM_RESET_GUEST:
		vm_stop(vm, VM_EXIT_RESET, 0, detail);
		break;
	case VM_RESET_TRIPLE_FAULT:
		vm_stop(vm, VM_EXIT_TRIPLE_FAULT, 1, detail);
		break;
	case VM_RESET_QMP:
		vm_stop(vm, VM_EXIT_QMP_RESET, 0, detail);
		break;
	}
}

void vm_reset(struct vm *vm, enum vm_reset_cause why, const char *detail)
{
	const char *what = "";
	char msg[192];
	int r;

	if (atomic_load(&vm->stopping))
		return;
	if (vm->reboot_shutdown) {
		vm_reset_stop(vm, why, detail);
		/* Under the shutdown action pause the VM stays, its vCPUs held by the pause: this
		 * request is over, and a later one (QMP system_reset) must not merge into it. */
		atomic_store(&vm->reset_hold, false);
		return;
	}
	if (vm_wait_parked(vm) < 0) {
		vm_stop(vm, VM_EXIT_INTERNAL, 1, "reset: the vCPUs did not stop");
		return;
	}
	if (atomic_load(&vm->stopping))
		return;
	r = vm_reboot(vm, &what);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "reset failed: %s: %s", what, strerror(-r));
		vm_stop(vm, VM_EXIT_INTERNAL, 1, msg);
		return;
	}
	vm->resets++;
	log_info("reset (%s): rebooting, reboot %u", detail, vm->resets);
	/* QEMU: a VM reset while not running waits in prelaunch for cont (main_loop_should_exit);
	 * this is also how a VM stopped by a shutdown under the shutdown action pause runs again. */
	if (vm_is_paused(vm)) {
		vm->prelaunch = true;
		vm->shut_down = false;
	}
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->reset_hold, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	if (vm->qmp) {
		bool guest = why != VM_RESET_QMP;
		json_t *data = json_pack("{s:b, s:s}", "guest", guest, "reason",
					 guest ? "guest-reset" : "host-qmp-system-reset");

		qmp_server_event(vm->qmp, "RESET", data);
		json_decref(data);
	}
}
