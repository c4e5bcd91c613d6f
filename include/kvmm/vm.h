/* One VM: its KVM handles, memory, buses, devices and vCPUs (src/core/vm.c). What devices may use:
 * vm->mem (through the gmem accessor), vm->pio / vm->mmio (register ranges at init), vm->loop
 * (from the loop thread), vm_irq_line() and vm_request_exit() (from any thread). */
#ifndef KVMM_VM_H
#define KVMM_VM_H

#include <kvmm/bus.h>
#include <kvmm/config.h>
#include <kvmm/ctl.h>
#include <kvmm/gmem.h>

#include <pthread.h>
#include <stdbool.h>

struct loop;
struct vcpu;
struct serial;
struct i8042;
struct rtc;
struct pci;
struct power;
struct qmp_server;
struct hostd_client;
struct balloon;
struct balloon_dev;
struct memmgr;
struct cgroup_watch;

/* Why a VM stops. kvmm's exit status: 0 for POWEROFF, RESET and QMP_RESET, the guest's value for
 * DEBUG_EXIT, 0 for SIGNAL and QUIT, 1 for TRIPLE_FAULT and INTERNAL. RESET, QMP_RESET and
 * TRIPLE_FAULT stop the VM only under --no-reboot; otherwise a reset reboots it in place. */
enum vm_exit_reason {
	VM_EXIT_NONE,
	VM_EXIT_POWEROFF,     /* ACPI S5 */
	VM_EXIT_RESET,        /* i8042 0xfe, port 0xcf9, ACPI reset register (--no-reboot) */
	VM_EXIT_DEBUG_EXIT,   /* a write to the test-exit port (QEMU's isa-debug-exit, 0xf4) */
	VM_EXIT_TRIPLE_FAULT, /* KVM_EXIT_SHUTDOWN (--no-reboot) */
	VM_EXIT_SIGNAL,       /* SIGINT / SIGTERM */
	VM_EXIT_INTERNAL,     /* a vCPU could not continue (KVM error, unhandled exit) */
	VM_EXIT_QUIT,         /* QMP quit */
	VM_EXIT_QMP_RESET,    /* QMP system_reset (--no-reboot) */
};

/* Who asked for a reset; the RESET event's reason (QEMU's ShutdownCause). */
enum vm_reset_cause {
	VM_RESET_GUEST,        /* i8042, 0xcf9, ACPI reset register: "guest-reset" */
	VM_RESET_TRIPLE_FAULT, /* "guest-reset", as QEMU reports it */
	VM_RESET_QMP,          /* system_reset: "host-qmp-system-reset" */
};

struct vm_power_on;

/* QEMU's RunState names, as much of qapi/run-state.json as kvmm has (QMP query-status). */
enum vm_run_state {
	VM_RUN_RUNNING,
	VM_RUN_PAUSED,    /* QMP stop */
	VM_RUN_PRELAUNCH, /* -S and never continued, or reset while paused */
	VM_RUN_SHUTDOWN,  /* stopped by a power-off (or a reset) under the shutdown action pause */
};

#define VM_DEBUG_EXIT_PORT 0xf4

struct vm {
	const struct vm_config *cfg;
	int kvm_fd, vm_fd;
	struct gmem mem;
	struct memmgr *memmgr;    /* the memory manager over mem (kvmm/mem.h) */
	struct bus pio, mmio;
	struct loop *loop;

	unsigned nr_vcpus;
	unsigned nr_created;      /* vCPUs created so far (what vm_destroy releases) */
	struct vcpu *vcpus;
	int sig_fd;               /* SIGINT / SIGTERM, read on the loop */
	bool ctl_up, devices_up;

	/* Devices (src/devices/registry.c creates them in order). */
	struct serial *serial;
	struct i8042 *i8042;
	struct rtc *rtc;
	struct pci *pci;
	struct power *power;
	struct balloon *balloon;  /* --balloon; NULL without (QMP's balloon commands use it) */
	struct balloon_dev *balloon_dev;

	struct qmp_server *qmp;   /* --qmp; NULL without */
	struct hostd_client *hostd; /* --hostd; NULL without (kvmm/hostd.h) */
	struct cgroup_watch *cgroup; /* --mem-cgroup; NULL when not followed (kvmm/cgroup.h) */

	/* Reset (src/core/reset.c): the irqchip and PIT state KVM created, written back at each
	 * reset; reset_hold keeps every vCPU parked from the request until the reset is done. */
	struct vm_power_on *power_on;
	_Atomic bool reset_hold;
	unsigned resets;          /* completed reboots */

	/* Pause (QMP stop / cont): vCPUs park in vcpu threads while pause_requested is set; parked
	 * counts them (under pause_lock). Written on the loop thread only. */
	_Atomic bool pause_requested;
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	unsigned parked;
	unsigned running_vcpus;   /* vCPU threads started and not yet ended */

	/* QEMU's reboot and shutdown actions (QMP set-action); they start as -no-reboot and
	 * -no-shutdown set them. Loop thread only, as are the run-state flags below. */
	bool reboot_shutdown;     /* a reset is a shutdown (reboot action "shutdown") */
	bool shutdown_pause;      /* a shutdown stops the VM, the process stays (action "pause") */
	bool prelaunch;           /* -S, or a reset while paused, and no cont since */
	bool shut_down;           /* stopped by shutdown_pause; only a reset makes it runnable */

	struct ctl ctl;           /* every front end acts through it, on the loop thread */
	/* Set on the loop thread by the first stop request; vCPU threads read `stopping`. */
	enum vm_exit_reason exit_reason;
	int exit_code;
	char exit_detail[128];
	_Atomic bool stopping;
};

/* Asserts (level true) or deasserts an interrupt line: GSI 0-23 on the IOAPIC (ISA IRQs 0-15 also
 * on the PIC). Safe from any thread. */
int vm_irq_line(struct vm *vm, unsigned gsi, bool level);

/* Asks the VM to stop; the first request wins. code is the DEBUG_EXIT value (else ignored).
 * Safe from any thread, including a vCPU's own. detail is a short reason for the log line. */
void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int code, const char *detail);

/* Asks for a system reset; safe from any thread (a vCPU's own included: that vCPU then parks
 * before it runs again). Requests while one is pending are merged. On the loop thread the VM
 * reboots in place: vCPUs parked, devices, irqchip, PIT and every vCPU back to their power-on
 * state, RAM discarded, the kernel, initrd and firmware tables loaded again, then the vCPUs run
 * and QMP clients get RESET. Under --no-reboot (or QMP set-action reboot=shutdown: the reboot
 * action, vm->reboot_shutdown) the VM stops instead (VM_EXIT_RESET,
 * VM_EXIT_TRIPLE_FAULT or VM_EXIT_QMP_RESET), as QEMU's -no-reboot does. */
void vm_request_reset(struct vm *vm, enum vm_reset_cause why, const char *detail);

/* QMP stop / cont, on the loop thread. vm_pause returns once every vCPU is parked outside
 * KVM_RUN (or the VM is stopping); 0, or -ETIMEDOUT after 10 s. Both are idempotent.
 * vm_resume refuses (-EPERM) a VM stopped by a shutdown under the shutdown action pause: as in
 * QEMU, it must be reset first (the vCPU that powered off may have ended). */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
bool vm_is_paused(const struct vm *vm);
enum vm_run_state vm_run_state(const struct vm *vm);

/* A live change of the memory limit and reservation (bytes; UINT64_MAX keeps one), on the loop
 * thread: checked by the memory manager, agreed with hostd when the VM has one, then applied.
 * 0, or -errno with the reason in why (nothing changed). QMP's x-kvmm-set-memory and the
 * cgroup watcher (src/core/vm_cgroup.c) change them this way. */
int vm_set_mem_limits(struct vm *vm, uint64_t limit, uint64_t reservation, char *why, size_t len);

/* Runs a VM for `kvmm run` from start to exit; returns kvmm's exit status. */
int vm_run(const struct vm_config *cfg);

#endif
