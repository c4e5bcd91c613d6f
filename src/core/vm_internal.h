/* Private to src/core/: what vm.c (lifecycle) and reset.c (reboot in place) share. All of it runs
 * on the loop thread. */
#ifndef KVMM_CORE_VM_INTERNAL_H
#define KVMM_CORE_VM_INTERNAL_H

#include <kvmm/boot.h>
#include <kvmm/vm.h>

/* Stops the VM for why (the first stop wins): SHUTDOWN event, vCPUs released and told to end,
 * the loop told to return. */
void vm_stop(struct vm *vm, enum vm_exit_reason why, int code, const char *detail);
/* Kicks every vCPU and waits until all running ones are parked (the caller has set a flag that
 * holds them: pause_requested or reset_hold) or the VM is stopping; -ETIMEDOUT after 10 s. */
int vm_wait_parked(struct vm *vm);
/* The boot configuration vm->cfg asks for. */
void vm_boot_config(const struct vm *vm, struct boot_config *bc);

/* reset.c: saves the irqchip and PIT state KVM created (before any vCPU runs), frees it. */
int vm_power_on_save(struct vm *vm);
void vm_power_on_free(struct vm *vm);
/* The CTL_RESET command: reboots the VM in place (or stops it under --no-reboot). */
void vm_reset(struct vm *vm, enum vm_reset_cause why, const char *detail);

/* vm_mem.c: hands the memory manager its hooks (events, fatal stop, the balloon) and the VM's
 * fd for dirty logging; after devices_init, before the vCPUs run. */
int vm_mem_hooks(struct vm *vm);

/* vm_cgroup.c: --mem-cgroup: follows the process's cgroup memory limits from the loop (after
 * the memory manager and hostd's link are up); stop before the loop goes. */
int vm_cgroup_start(struct vm *vm);
void vm_cgroup_stop(struct vm *vm);

#endif
