#include <kvmm/bus.h>
#include <kvmm/log.h>
#include <kvmm/vcpu.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define VCPU_KICK_SIGNAL SIGUSR1

int vcpu_create(struct vm *vm, unsigned id, const struct kvm_cpuid2 *supported, struct vcpu *v)
{
	int r, size;

	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0) {
		r = -errno;
		log_error("KVM_CREATE_VCPU %u: %s", id, strerror(-r));
		return r;
	}
	size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < 0) {
		r = -errno;
		goto fail;
	}
	v->run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		r = -errno;
		goto fail;
	}
	v->run_size = (size_t)size;
	r = x86_vcpu_setup(v, supported);
	if (r == 0)
		r = x86_vcpu_save_reset_state(v);
	if (r < 0)
		goto fail;
	return 0;
fail:
	vcpu_destroy(v);
	return r;
}

static void vcpu_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;

	/* String instructions (rep outsb/insb) arrive as count back-to-back elements. */
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size)
		bus_dispatch(&v->vm->pio, run->io.port, data, run->io.size, out);
}

/* Handles one exit; false when the vCPU must stop. */
static bool vcpu_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char detail[96];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_io(v);
		return true;
	case KVM_EXIT_MMIO:
		bus_dispatch(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data,
			     run->mmio.len > 8 ? 8 : run->mmio.len, run->mmio.is_write);
		return true;
	case KVM_EXIT_HLT:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		/* As on a PC, where the chipset turns a shutdown cycle into a reset (QEMU does too).
		 * The request holds this vCPU outside KVM_RUN until the reset is done. */
		snprintf(detail, sizeof(detail), "triple fault on vcpu%u", v->id);
		vm_request_reset(v->vm, VM_RESET_TRIPLE_FAULT, detail);
		return true;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
			vm_request_reset(v->vm, VM_RESET_GUEST, "guest reset");
			return true;
		} else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
			vm_request_exit(v->vm, VM_EXIT_POWEROFF, 0, "guest shutdown");
		} else {
			snprintf(detail, sizeof(detail), "system event %u on vcpu%u",
				 run->system_event.type, v->id);
			vm_request_exit(v->vm, VM_EXIT_INTERNAL, 1, detail);
		}
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(detail, sizeof(detail), "vcpu%u: KVM entry failed, reason %#llx", v->id,
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(detail, sizeof(detail), "vcpu%u: KVM internal error, suberror %u", v->id,
			 run->internal.suberror);
		break;
	default:
		snprintf(detail, sizeof(detail), "vcpu%u: unhandled KVM exit %u", v->id, run->exit_reason);
		break;
	}
	vm_request_exit(v->vm, VM_EXIT_INTERNAL, 1, detail);
	return false;
}

static bool vcpu_held(const struct vm *vm)
{
	return atomic_load(&vm->pause_requested) || atomic_load(&vm->reset_hold);
}

/* Waits here, outside KVM_RUN, while the VM is paused (vm_pause) or being reset, and not
 * stopping. */
static void vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (vcpu_held(vm) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->pause_lock);
}

static void vcpu_thread_ends(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->pause_lock);
	vm->running_vcpus--;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];
	sigset_t set;

	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	atomic_store(&v->tid, (int)gettid());

	while (!atomic_load(&v->vm->stopping)) {
		if (vcpu_held(v->vm)) {
			vcpu_park(v);
			continue;
		}
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->run->immediate_exit = 0;
				if (atomic_exchange(&v->dump_requested, false))
					x86_vcpu_log_state(v);
				continue;
			}
			vm_request_exit(v->vm, VM_EXIT_INTERNAL, 1, strerror(errno));
			break;
		}
		if (!vcpu_exit(v))
			break;
	}
	vcpu_thread_ends(v);
	return NULL;
}

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

/* No SA_RESTART: the kick must make KVM_RUN return EINTR. */
static void vcpu_install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

int vcpu_start(struct vcpu *v)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	int r;

	pthread_once(&once, vcpu_install_kick_handler);
	pthread_mutex_lock(&v->vm->pause_lock);
	v->vm->running_vcpus++;
	pthread_mutex_unlock(&v->vm->pause_lock);
	r = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (r) {
		vcpu_thread_ends(v);
		return -r;
	}
	v->started = true;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->started)
		return;
	/* immediate_exit covers a kick that lands before the thread enters KVM_RUN. */
	v->run->immediate_exit = 1;
	pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_request_dump(struct vcpu *v)
{
	atomic_store(&v->dump_requested, true);
	vcpu_kick(v);
}

void vcpu_join(struct vcpu *v)
{
	if (v->started)
		pthread_join(v->thread, NULL);
	v->started = false;
}

void vcpu_destroy(struct vcpu *v)
{
	x86_vcpu_free_reset_state(v);
	if (v->run)
		munmap(v->run, v->run_size);
	if (v->fd >= 0 && v->vm)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}
