#include <kvmm/log.h>
#include <kvmm/vcpu.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_HYPERVISOR (1u << 31) /* leaf 1 ECX: running under a hypervisor */
#define CPUID_HTT (1u << 28)        /* leaf 1 EDX: EBX[23:16] counts logical processors */

#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

#define X86_CR0_PE 0x1u
#define X86_CR0_ET 0x10u
#define X86_CR0_PG 0x80000000u
#define X86_CR4_PAE 0x20u
#define EFER_LME 0x100u
#define EFER_LMA 0x400u

struct kvm_cpuid2 *x86_supported_cpuid(int kvm_fd)
{
	for (unsigned n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG)
			break;
	}
	log_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	return NULL;
}

static unsigned order_base2(unsigned n)
{
	unsigned bits = 0;

	while ((1u << bits) < n)
		bits++;
	return bits;
}

void x86_cpuid_patch(struct kvm_cpuid2 *cpuid, unsigned id, unsigned nr)
{
	/* Topology: one package of nr cores, one thread each; APIC id = vCPU index (as in the MADT). */
	for (unsigned i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffffu) | (id << 24) | ((nr & 0xff) << 16);
			e->ecx |= CPUID_HYPERVISOR;
			if (nr > 1)
				e->edx |= CPUID_HTT;
			break;
		case 0xb:
		case 0x1f:
			/* Extended topology: subleaf 0 is the SMT level, 1 the core level; EDX the x2APIC id. */
			e->edx = id;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = order_base2(nr);
				e->ebx = nr;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x8000001e:
			/* AMD extended APIC id; core id = vCPU index, one thread per core. */
			e->eax = id;
			e->ebx = id & 0xff;
			break;
		}
	}
}

static int x86_set_msrs(struct vcpu *v)
{
	static const uint32_t zeroed[] = { MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP,
					   MSR_IA32_SYSENTER_EIP, MSR_STAR, MSR_LSTAR, MSR_CSTAR,
					   MSR_SYSCALL_MASK, MSR_KERNEL_GS_BASE };
	const unsigned n = sizeof(zeroed) / sizeof(zeroed[0]) + 2;
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + n * sizeof(msrs->entries[0]));
	int r;

	if (!msrs)
		return -ENOMEM;
	for (unsigned i = 0; i < n - 2; i++)
		msrs->entries[i].index = zeroed[i];
	/* Fast strings, and MTRRs enabled with write-back as the default memory type, as firmware leaves
	 * them; without it Linux treats all memory as uncached in its MTRR sanity checks. */
	msrs->entries[n - 2] = (struct kvm_msr_entry){ .index = MSR_IA32_MISC_ENABLE, .data = 1 };
	msrs->entries[n - 1] = (struct kvm_msr_entry){ .index = MSR_MTRR_DEF_TYPE, .data = 0x806 };
	msrs->nmsrs = n;
	r = ioctl(v->fd, KVM_SET_MSRS, msrs);
	if (r < 0)
		r = -errno;
	else if ((unsigned)r < n)
		log_debug("vcpu%u: KVM_SET_MSRS stopped at MSR %#x", v->id, msrs->entries[r].index);
	free(msrs);
	return r < 0 ? r : 0;
}

static int x86_set_lapic(struct vcpu *v)
{
	struct kvm_lapic_state lapic;
	uint32_t *lint0, *lint1;

	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	/* Virtual wire mode: PIC interrupts arrive through LINT0 as ExtINT, NMIs through LINT1. */
	lint0 = (uint32_t *)&lapic.regs[APIC_LVT_LINT0];
	lint1 = (uint32_t *)&lapic.regs[APIC_LVT_LINT1];
	*lint0 = (*lint0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
	*lint1 = (*lint1 & ~0x700u) | (APIC_MODE_NMI << 8);
	if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

int x86_vcpu_setup(struct vcpu *v, const struct kvm_cpuid2 *supported)
{
	size_t size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *cpuid = malloc(size);
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	int r;

	if (!cpuid)
		return -ENOMEM;
	memcpy(cpuid, supported, size);
	x86_cpuid_patch(cpuid, v->id, v->vm->nr_vcpus);
	r = ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
	free(cpuid);
	if (r < 0) {
		log_error("vcpu%u: KVM_SET_CPUID2: %s", v->id, strerror(-r));
		return r;
	}
	r = x86_set_msrs(v);
	if (r == 0)
		r = x86_set_lapic(v);
	if (r == 0 && ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		r = -errno;
	if (r < 0)
		log_error("vcpu%u: setting MSRs, LAPIC or FPU: %s", v->id, strerror(-r));
	return r;
}

void x86_boot_sregs(const struct boot_entry *e, struct kvm_sregs *s)
{
	const struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = BOOT_SEL_CODE, .type = 0xb, .present = 1,
		.s = 1, .g = 1, .l = e->mode == BOOT_LINUX64, .db = e->mode != BOOT_LINUX64,
	};
	const struct kvm_segment data = {
		.base = 0, .limit = 0xffffffff, .selector = BOOT_SEL_DATA, .type = 0x3, .present = 1,
		.s = 1, .g = 1, .db = 1,
	};

	s->cs = code;
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	/* A busy 32-bit TSS: VMX refuses to enter with an unusable TR; nothing uses it before the
	 * kernel loads its own. */
	s->tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .type = 0xb, .present = 1 };
	s->gdt.base = e->gdt_base;
	s->gdt.limit = e->gdt_limit;
	s->idt.base = 0;
	s->idt.limit = 0;
	if (e->mode == BOOT_LINUX64) {
		s->cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
		s->cr3 = e->cr3;
		s->cr4 = X86_CR4_PAE;
		s->efer = EFER_LME | EFER_LMA;
	} else {
		s->cr0 = X86_CR0_PE | X86_CR0_ET;
		s->cr3 = 0;
		s->cr4 = 0;
		s->efer = 0;
	}
}

int x86_vcpu_boot(struct vcpu *v, const struct boot_entry *e)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = e->rip, .rsi = e->rsi, .rbx = e->rbx, .rsp = e->rsp, .rbp = e->rsp, .rflags = 0x2,
	};

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	x86_boot_sregs(e, &sregs);
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

static const char *const x86_mp_state_names[] = {
	[KVM_MP_STATE_RUNNABLE] = "runnable",
	[KVM_MP_STATE_UNINITIALIZED] = "waiting-for-INIT/SIPI",
	[KVM_MP_STATE_INIT_RECEIVED] = "INIT-received",
	[KVM_MP_STATE_HALTED] = "halted",
	[KVM_MP_STATE_SIPI_RECEIVED] = "SIPI-received",
};

void x86_vcpu_log_state(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_mp_state mp = { 0 };
	struct kvm_vcpu_events ev = { 0 };
	const char *state = "?";

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_warn("vcpu%u: cannot read its registers: %s", v->id, strerror(errno));
		return;
	}
	if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) == 0 && mp.mp_state < sizeof(x86_mp_state_names) /
	    sizeof(x86_mp_state_names[0]) && x86_mp_state_names[mp.mp_state])
		state = x86_mp_state_names[mp.mp_state];
	ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev);
	log_info("vcpu%u: %s rip=%#llx rsp=%#llx rflags=%#llx cr0=%#llx cr3=%#llx cr4=%#llx cs=%#x/%#llx "
		 "apic_base=%#llx irq-injected=%u nmi-pending=%u shadow=%u",
		 v->id, state, (unsigned long long)r.rip, (unsigned long long)r.rsp,
		 (unsigned long long)r.rflags, (unsigned long long)s.cr0, (unsigned long long)s.cr3,
		 (unsigned long long)s.cr4, s.cs.selector, (unsigned long long)s.cs.base,
		 (unsigned long long)s.apic_base, ev.interrupt.injected, ev.nmi.pending,
		 ev.interrupt.shadow);
}
