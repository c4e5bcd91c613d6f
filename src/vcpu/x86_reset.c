/* A vCPU's power-on state, for system reset. KVM has no "reset this vCPU" ioctl, and a vCPU cannot
 * be destroyed and created again in the same VM, so the state each vCPU has right after
 * x86_vcpu_setup (before it ever ran: KVM's reset values plus kvmm's CPUID, MSRs and LAPIC set-up)
 * is saved once and written back at every reset. That covers what a guest changes: registers,
 * control registers and EFER, FPU/SSE/AVX state and XCR0, debug registers, the LAPIC (its timer,
 * IRR/ISR, software enable), the run state (the BSP runnable, APs waiting for INIT/SIPI), pending
 * events, and every MSR KVM lists (KVM_GET_MSR_INDEX_LIST) and can read back. The KVM paravirtual
 * MSRs are among them: kvmclock, steal time, async page faults and PV EOI point KVM at guest
 * memory, and KVM keeps writing there until the MSR is 0 again, so the new guest would find its
 * memory changed under it. The TSC and TSC_ADJUST are left alone: resetting them would make the
 * guest's time go backwards relative to the host's kvmclock; QEMU's reset zeroes the TSC, kvmm
 * lets it run on (a guest does not rely on its value at boot). */
#include <kvmm/log.h>
#include <kvmm/vcpu.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_ADJUST 0x3b

struct x86_reset_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp;
	struct kvm_vcpu_events events;
	struct kvm_debugregs dregs;
	struct kvm_xcrs xcrs;
	bool have_xcrs;
	struct kvm_xsave *xsave; /* NULL without KVM_CAP_XSAVE */
	struct kvm_msrs *msrs;   /* those KVM let us read */
};

bool x86_reset_msr_wanted(uint32_t index)
{
	return index != MSR_IA32_TSC && index != MSR_IA32_TSC_ADJUST;
}

/* Every MSR KVM lists that x86_reset_msr_wanted keeps, with its value now; NULL on failure. */
static struct kvm_msrs *x86_read_msrs(struct vcpu *v)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list = NULL;
	struct kvm_msrs *msrs = NULL, *part = NULL;
	unsigned n = 0, done = 0;

	if (ioctl(v->vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return NULL;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(list->indices[0]));
	msrs = calloc(1, sizeof(*msrs) + probe.nmsrs * sizeof(msrs->entries[0]));
	part = calloc(1, sizeof(*part) + probe.nmsrs * sizeof(part->entries[0]));
	if (!list || !msrs || !part)
		goto fail;
	list->nmsrs = probe.nmsrs;
	if (ioctl(v->vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0)
		goto fail;
	for (unsigned i = 0; i < list->nmsrs; i++)
		if (x86_reset_msr_wanted(list->indices[i]))
			msrs->entries[n++].index = list->indices[i];
	/* KVM_GET_MSRS stops at the first MSR it cannot read (one this CPUID does not have): drop
	 * that one and go on with the rest. */
	while (done < n) {
		int r;

		part->nmsrs = n - done;
		memcpy(part->entries, &msrs->entries[done], part->nmsrs * sizeof(part->entries[0]));
		r = ioctl(v->fd, KVM_GET_MSRS, part);
		if (r < 0)
			goto fail;
		memcpy(&msrs->entries[done], part->entries, (size_t)r * sizeof(part->entries[0]));
		done += (unsigned)r;
		if (done < n) {
			memmove(&msrs->entries[done], &msrs->entries[done + 1],
				(n - done - 1) * sizeof(msrs->entries[0]));
			n--;
		}
	}
	msrs->nmsrs = n;
	free(list);
	free(part);
	return msrs;
fail:
	free(list);
	free(part);
	free(msrs);
	return NULL;
}

int x86_vcpu_save_reset_state(struct vcpu *v)
{
	struct x86_reset_state *s = calloc(1, sizeof(*s));
	int size;

	if (!s)
		return -ENOMEM;
	if (ioctl(v->fd, KVM_GET_REGS, &s->regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s->sregs) < 0 ||
	    ioctl(v->fd, KVM_GET_FPU, &s->fpu) < 0 || ioctl(v->fd, KVM_GET_LAPIC, &s->lapic) < 0 ||
	    ioctl(v->fd, KVM_GET_MP_STATE, &s->mp) < 0 ||
	    ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s->events) < 0 ||
	    ioctl(v->fd, KVM_GET_DEBUGREGS, &s->dregs) < 0)
		goto fail;
	s->have_xcrs = ioctl(v->vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0 &&
		       ioctl(v->fd, KVM_GET_XCRS, &s->xcrs) == 0;
	if (ioctl(v->vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		size = ioctl(v->vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
		if (size < (int)sizeof(struct kvm_xsave))
			size = (int)sizeof(struct kvm_xsave);
		s->xsave = calloc(1, (size_t)size);
		if (!s->xsave)
			goto fail;
		if (ioctl(v->fd, size > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
			  s->xsave) < 0)
			goto fail;
	}
	s->msrs = x86_read_msrs(v);
	if (!s->msrs)
		goto fail;
	v->reset_state = s;
	return 0;
fail:
	log_error("vcpu%u: cannot save its power-on state: %s", v->id, strerror(errno));
	free(s->xsave);
	free(s->msrs);
	free(s);
	return -EIO;
}

void x86_vcpu_free_reset_state(struct vcpu *v)
{
	if (!v->reset_state)
		return;
	free(v->reset_state->xsave);
	free(v->reset_state->msrs);
	free(v->reset_state);
	v->reset_state = NULL;
}

/* Writes the saved MSRs; one KVM refuses now is skipped (and logged at debug level). */
static void x86_write_msrs(struct vcpu *v, const struct kvm_msrs *saved)
{
	size_t size = sizeof(*saved) + saved->nmsrs * sizeof(saved->entries[0]);
	struct kvm_msrs *m = malloc(size);
	unsigned done = 0;

	if (!m)
		return;
	while (done < saved->nmsrs) {
		int r;

		m->nmsrs = saved->nmsrs - done;
		memcpy(m->entries, &saved->entries[done], m->nmsrs * sizeof(m->entries[0]));
		r = ioctl(v->fd, KVM_SET_MSRS, m);
		if (r < 0)
			break;
		done += (unsigned)r;
		if (done < saved->nmsrs) {
			log_debug("vcpu%u: reset: MSR %#x not restored", v->id,
				  saved->entries[done].index);
			done++;
		}
	}
	free(m);
}

int x86_vcpu_reset(struct vcpu *v)
{
	struct x86_reset_state *s = v->reset_state;
	struct kvm_vcpu_events ev;
	int r = 0;

	if (!s)
		return -EINVAL;
	/* MSRs first (some depend on nothing else), then EFER/APIC base through sregs, then the
	 * LAPIC, which KVM accepts only in the APIC mode apic_base selects. */
	x86_write_msrs(v, s->msrs);
	ev = s->events;
	/* Without these flags KVM keeps the pending NMI and SIPI vector as they are. */
	ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if (ioctl(v->fd, KVM_SET_SREGS, &s->sregs) < 0 || ioctl(v->fd, KVM_SET_REGS, &s->regs) < 0 ||
	    ioctl(v->fd, KVM_SET_LAPIC, &s->lapic) < 0 ||
	    ioctl(v->fd, KVM_SET_DEBUGREGS, &s->dregs) < 0 ||
	    (s->have_xcrs && ioctl(v->fd, KVM_SET_XCRS, &s->xcrs) < 0) ||
	    (s->xsave ? ioctl(v->fd, KVM_SET_XSAVE, s->xsave) : ioctl(v->fd, KVM_SET_FPU, &s->fpu)) < 0 ||
	    ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0 || ioctl(v->fd, KVM_SET_MP_STATE, &s->mp) < 0)
		r = -errno;
	if (r < 0)
		log_error("vcpu%u: cannot restore its power-on state: %s", v->id, strerror(-r));
	return r;
}
