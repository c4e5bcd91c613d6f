/* vCPUs (src/vcpu/vcpu.c: threads, KVM_RUN, exit dispatch; src/vcpu/x86.c: CPUID, MSRs, LAPIC and
 * the registers a boot entry asks for). */
#ifndef KVMM_VCPU_H
#define KVMM_VCPU_H

#include <kvmm/boot.h>

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct vm;
struct x86_reset_state;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool started;
	_Atomic bool dump_requested; /* vcpu_request_dump(): log the state at the next exit */
	_Atomic int tid;             /* the thread's Linux thread id, once it runs (query-cpus-fast) */
	struct x86_reset_state *reset_state; /* its power-on state (src/vcpu/x86_reset.c) */
};

/* Creates vCPU id with CPUID, MSRs, LAPIC and FPU set up; APs then wait for INIT/SIPI in KVM. */
int vcpu_create(struct vm *vm, unsigned id, const struct kvm_cpuid2 *supported, struct vcpu *v);
int vcpu_start(struct vcpu *v);
/* Makes KVM_RUN return at once (immediate_exit + a signal), so the thread sees vm->stopping. */
void vcpu_kick(struct vcpu *v);
void vcpu_join(struct vcpu *v);
/* Makes the vCPU log its registers and run state (one info line) from its own thread, then go on:
 * what SIGUSR2 asks of every vCPU, to see where a guest that stopped responding is. */
void vcpu_request_dump(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);

/* x86 state (src/vcpu/x86.c). */
struct kvm_cpuid2 *x86_supported_cpuid(int kvm_fd);
/* Adapts KVM's supported CPUID for vCPU id of nr (APIC ids, topology, hypervisor bit). Pure. */
void x86_cpuid_patch(struct kvm_cpuid2 *cpuid, unsigned id, unsigned nr);
/* The segment and control registers a boot entry asks for, applied on top of KVM's reset state. Pure. */
void x86_boot_sregs(const struct boot_entry *e, struct kvm_sregs *s);
int x86_vcpu_setup(struct vcpu *v, const struct kvm_cpuid2 *supported);
int x86_vcpu_boot(struct vcpu *v, const struct boot_entry *e);
/* System reset (src/vcpu/x86_reset.c): vcpu_create saves each vCPU's state before it first runs;
 * x86_vcpu_reset writes it back (with the vCPU stopped), x86_vcpu_boot then sets up the BSP. */
int x86_vcpu_save_reset_state(struct vcpu *v);
int x86_vcpu_reset(struct vcpu *v);
void x86_vcpu_free_reset_state(struct vcpu *v);
/* Whether reset restores MSR index (everything but the TSC and TSC_ADJUST). Pure. */
bool x86_reset_msr_wanted(uint32_t index);
/* Logs rip, rsp, rflags, cr0/cr3/cr4, the run state and pending events of v (on its own thread). */
void x86_vcpu_log_state(struct vcpu *v);

#endif
