#include <kvmm/mem.h>
#include <kvmm/boot.h>
#include <kvmm/daemon.h>
#include <kvmm/devices.h>
#include <kvmm/log.h>
#include <kvmm/hostd.h>
#include <kvmm/loop.h>
#include <kvmm/qmp.h>
#include <kvmm/size.h>
#include <kvmm/vcpu.h>
#include <kvmm/vm.h>

#include "vm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* Where KVM puts the real-mode TSS and identity map Intel's VMX needs, just below the 4 GiB BIOS
 * area and above the IOAPIC/LAPIC pages. */
#define VM_TSS_GPA 0xfffbd000u
#define VM_IDENTITY_MAP_GPA 0xfffbc000u

/* kvmm's exit status for a failure to start: bad usage or an unusable host (DESIGN.md: 2). */
#define VM_EXIT_STATUS_USAGE 2
#define VM_EXIT_STATUS_FAILURE 1

static const char *const vm_exit_names[] = {
	[VM_EXIT_NONE] = "running",
	[VM_EXIT_POWEROFF] = "guest powered off",
	[VM_EXIT_RESET] = "guest reset (--no-reboot)",
	[VM_EXIT_DEBUG_EXIT] = "guest test exit",
	[VM_EXIT_TRIPLE_FAULT] = "guest triple fault",
	[VM_EXIT_SIGNAL] = "stopped by signal",
	[VM_EXIT_INTERNAL] = "vCPU failure",
	[VM_EXIT_QUIT] = "quit by QMP",
	[VM_EXIT_QMP_RESET] = "system_reset by QMP (--no-reboot)",
};

/* QEMU's ShutdownCause names, for the SHUTDOWN event; guest: whether the guest asked. */
static const struct {
	const char *reason;
	bool guest;
} vm_shutdown_causes[] = {
	[VM_EXIT_NONE] = { "none", false },
	[VM_EXIT_POWEROFF] = { "guest-shutdown", true },
	[VM_EXIT_RESET] = { "guest-reset", true },
	[VM_EXIT_DEBUG_EXIT] = { "guest-shutdown", true },
	[VM_EXIT_TRIPLE_FAULT] = { "guest-reset", true },
	[VM_EXIT_SIGNAL] = { "host-signal", false },
	[VM_EXIT_INTERNAL] = { "host-error", false },
	[VM_EXIT_QUIT] = { "host-qmp-quit", false },
	[VM_EXIT_QMP_RESET] = { "host-qmp-system-reset", false },
};

int vm_irq_line(struct vm *vm, unsigned gsi, bool level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int code, const char *detail)
{
	struct ctl_cmd cmd = { .op = CTL_STOP, .arg = (int)why, .arg2 = code };

	snprintf(cmd.detail, sizeof(cmd.detail), "%s", detail ? detail : "");
	if (ctl_post(&vm->ctl, &cmd) < 0) {
		/* Out of memory: stop without a reason rather than run on. */
		atomic_store(&vm->stopping, true);
		loop_stop(vm->loop);
	}
}

static void vm_event_shutdown(struct vm *vm, enum vm_exit_reason why)
{
	if (vm->qmp) {
		json_t *data = json_pack("{s:b, s:s}", "guest", vm_shutdown_causes[why].guest, "reason",
					 vm_shutdown_causes[why].reason);

		qmp_server_event(vm->qmp, "SHUTDOWN", data);
		json_decref(data);
	}
}

/* The shutdown action "pause" (-no-shutdown, or QMP set-action): what the guest or a reset under
 * the reboot action "shutdown" would end stops the VM instead; signals, quit and failures still
 * end the process. */
static bool vm_no_shutdown_pauses(const struct vm *vm, enum vm_exit_reason why)
{
	return vm->shutdown_pause && (why == VM_EXIT_POWEROFF || why == VM_EXIT_RESET ||
				      why == VM_EXIT_TRIPLE_FAULT || why == VM_EXIT_QMP_RESET);
}

/* SHUTDOWN, then the vCPUs parked and STOP, as QEMU's -no-shutdown; the process waits for quit or
 * a signal (libvirt destroys the domain or restarts it), or a reset (QMP system_reset). */
static void vm_shutdown_pause(struct vm *vm, enum vm_exit_reason why, const char *detail)
{
	log_info("%s (%s): paused (shutdown action pause)", vm_exit_names[why], detail);
	vm_event_shutdown(vm, why);
	vm->shut_down = true;
	if (atomic_exchange(&vm->pause_requested, true))
		return;
	vm_wait_parked(vm);
	if (vm->qmp)
		qmp_server_event(vm->qmp, "STOP", NULL);
}

void vm_stop(struct vm *vm, enum vm_exit_reason why, int code, const char *detail)
{
	if (atomic_load(&vm->stopping))
		return;
	if (vm_no_shutdown_pauses(vm, why)) {
		vm_shutdown_pause(vm, why, detail);
		return;
	}
	vm->exit_reason = why;
	vm->exit_code = code;
	snprintf(vm->exit_detail, sizeof(vm->exit_detail), "%s", detail);
	atomic_store(&vm->stopping, true);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond); /* parked vCPUs see `stopping` */
	pthread_mutex_unlock(&vm->pause_lock);
	vm_event_shutdown(vm, why);
	loop_stop(vm->loop);
}

int vm_wait_parked(struct vm *vm)
{
	struct timespec deadline;
	int r = 0;

	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->parked < vm->running_vcpus && !atomic_load(&vm->stopping) && r == 0)
		r = pthread_cond_timedwait(&vm->pause_cond, &vm->pause_lock, &deadline);
	pthread_mutex_unlock(&vm->pause_lock);
	if (r == ETIMEDOUT) {
		log_warn("%u of %u vCPUs stopped within 10 s", vm->parked, vm->running_vcpus);
		return -ETIMEDOUT;
	}
	return 0;
}

int vm_pause(struct vm *vm)
{
	if (atomic_exchange(&vm->pause_requested, true))
		return 0;
	return vm_wait_parked(vm);
}

int vm_resume(struct vm *vm)
{
	if (vm->shut_down)
		return -EPERM;
	vm->prelaunch = false;
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_requested, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	return 0;
}

bool vm_is_paused(const struct vm *vm)
{
	return atomic_load(&vm->pause_requested);
}

enum vm_run_state vm_run_state(const struct vm *vm)
{
	if (vm->shut_down)
		return VM_RUN_SHUTDOWN;
	if (!vm_is_paused(vm))
		return VM_RUN_RUNNING;
	return vm->prelaunch ? VM_RUN_PRELAUNCH : VM_RUN_PAUSED;
}

static void vm_ctl(void *opaque, const struct ctl_cmd *cmd)
{
	struct vm *vm = opaque;

	switch (cmd->op) {
	case CTL_STOP:
		vm_stop(vm, (enum vm_exit_reason)cmd->arg, cmd->arg2, cmd->detail);
		break;
	case CTL_RESET:
		vm_reset(vm, (enum vm_reset_cause)cmd->arg, cmd->detail);
		break;
	}
}

static void vm_signal(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct signalfd_siginfo si;
	char detail[32];

	(void)events;
	if (read(vm->sig_fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGUSR2) {
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			vcpu_request_dump(&vm->vcpus[i]);
		return;
	}
	snprintf(detail, sizeof(detail), "%s", strsignal((int)si.ssi_signo));
	/* Through the queue like every other front end, so an earlier request keeps its place. */
	vm_request_exit(vm, VM_EXIT_SIGNAL, 0, detail);
}

static int vm_exit_status(const struct vm *vm)
{
	switch (vm->exit_reason) {
	case VM_EXIT_POWEROFF:
	case VM_EXIT_RESET:
	case VM_EXIT_SIGNAL:
	case VM_EXIT_QUIT:
	case VM_EXIT_QMP_RESET:
		return 0;
	case VM_EXIT_DEBUG_EXIT:
		return vm->exit_code & 0xff;
	default:
		return VM_EXIT_STATUS_FAILURE;
	}
}

/* Opens /dev/kvm and checks the API; failures here are the host's, reported as usage errors. */
static int vm_open_kvm(struct vm *vm)
{
	int max;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int err = errno;

		if (err == ENOENT)
			log_error("/dev/kvm does not exist: KVM is not available on this machine "
				  "(scripts/testhost runs kvmm in a VM that has it)");
		else if (err == EACCES || err == EPERM)
			log_error("/dev/kvm: permission denied (add yourself to the kvm group)");
		else
			log_error("/dev/kvm: %s", strerror(err));
		return -err;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		log_error("/dev/kvm: unsupported KVM API version");
		return -EPROTO;
	}
	max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && vm->nr_vcpus > (unsigned)max) {
		log_error("--cpus %u: KVM on this host allows at most %d vCPUs", vm->nr_vcpus, max);
		return -EINVAL;
	}
	return 0;
}

static int vm_create_machine(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		log_error("KVM_CREATE_VM: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, VM_TSS_GPA) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ VM_IDENTITY_MAP_GPA }) < 0 ||
	    ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 || ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		log_error("setting up the VM (TSS, irqchip, PIT): %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int vm_create_memory(struct vm *vm)
{
	char size[32];
	int r = gmem_init(&vm->mem, vm->cfg->memory, vm->cfg->mem_backend);

	if (r < 0) {
		log_error("--memory %s --mem-backend %s: %s", size_format(vm->cfg->memory, size, sizeof(size)),
			  gmem_backend_name(vm->cfg->mem_backend),
			  r == -ENOMEM ? "the host cannot map that much memory" :
			  r == -EINVAL ? "invalid size" : strerror(-r));
		return r;
	}
	r = gmem_register(&vm->mem, vm->vm_fd);
	if (r < 0)
		return r;
	/* The fault handler runs before anything (the loader included) touches guest RAM. */
	r = mem_create(&vm->memmgr, &vm->mem, vm->cfg);
	if (r == 0)
		r = mem_start(vm->memmgr);
	return r == -ENOTSUP ? -EINVAL : r;
}

static int vm_create_vcpus(struct vm *vm)
{
	struct kvm_cpuid2 *cpuid = x86_supported_cpuid(vm->kvm_fd);
	int r = 0;

	if (!cpuid)
		return -EIO;
	vm->vcpus = calloc(vm->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		free(cpuid);
		return -ENOMEM;
	}
	for (vm->nr_created = 0; vm->nr_created < vm->nr_vcpus; vm->nr_created++) {
		r = vcpu_create(vm, vm->nr_created, cpuid, &vm->vcpus[vm->nr_created]);
		if (r < 0)
			break;
	}
	free(cpuid);
	return r;
}

/* Before any thread starts (the memory manager's, in vm_build): threads inherit the mask, and one
 * that left SIGINT/SIGTERM unblocked would take their default action for the whole process
 * instead of the loop reading them from the signalfd. *old gets the mask to restore at exit. */
static void vm_block_signals(sigset_t *set, sigset_t *old)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGUSR2);
	sigaddset(set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, set, old);
}

/* SIGINT/SIGTERM (stop) and SIGUSR2 (log every vCPU's state), blocked in every thread since
 * vm_block_signals, are read from a signalfd on the loop. SIGPIPE: a serial or socket peer that
 * went away is an error return, not a death. */
static int vm_setup_signals(struct vm *vm, sigset_t set)
{
	signal(SIGPIPE, SIG_IGN);
	sigdelset(&set, SIGUSR1);
	vm->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vm->sig_fd < 0)
		return -errno;
	return loop_add(vm->loop, vm->sig_fd, EPOLLIN, vm_signal, vm);
}

static void vm_destroy(struct vm *vm)
{
	mem_stop(vm->memmgr);
	for (unsigned i = 0; i < vm->nr_created; i++)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	if (vm->devices_up)
		devices_exit(vm);
	qmp_server_destroy(vm->qmp);
	vm_cgroup_stop(vm);
	hostd_client_destroy(vm->hostd);
	if (vm->ctl_up)
		ctl_destroy(&vm->ctl);
	if (vm->sig_fd >= 0)
		close(vm->sig_fd);
	mem_destroy(vm->memmgr);
	loop_destroy(vm->loop);
	gmem_destroy(&vm->mem);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	vm_power_on_free(vm);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	pthread_mutex_destroy(&vm->pause_lock);
	pthread_cond_destroy(&vm->pause_cond);
	free(vm);
}

void vm_boot_config(const struct vm *vm, struct boot_config *bc)
{
	const struct vm_config *cfg = vm->cfg;

	*bc = (struct boot_config){
		.kernel_path = cfg->kernel,
		.initrd_path = cfg->initrd,
		.cmdline = cfg->append ? cfg->append : "",
		.nr_cpus = cfg->cpus,
	};
}

/* The QMP server on --qmp's path, or on the socket the QEMU front inherited (-chardev fd=N). */
static int vm_create_qmp(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;
	int r;

	if (cfg->qmp_fd > 2) {
		r = qmp_server_create_fd(vm->loop, cfg->qmp_fd, NULL, &vm->qmp);
		if (r < 0)
			log_error("QMP monitor on inherited fd %d: %s", cfg->qmp_fd, strerror(-r));
		return r;
	}
	if (!cfg->qmp)
		return 0;
	r = qmp_server_create(vm->loop, cfg->qmp, NULL, &vm->qmp);
	if (r < 0)
		log_error("--qmp unix:%s: %s", cfg->qmp, strerror(-r));
	return r;
}

/* Everything up to a VM ready to run; a failure returns kvmm's exit status for it. */
static int vm_build(struct vm *vm, struct boot_entry *entry)
{
	const struct vm_config *cfg = vm->cfg;
	struct boot_config bc;
	int r;

	vm_boot_config(vm, &bc);
	if (vm_open_kvm(vm) < 0 || vm_create_machine(vm) < 0)
		return VM_EXIT_STATUS_USAGE;
	if (vm_power_on_save(vm) < 0)
		return VM_EXIT_STATUS_FAILURE;
	r = vm_create_memory(vm);
	if (r < 0)
		return r == -ENOMEM || r == -EINVAL ? VM_EXIT_STATUS_USAGE : VM_EXIT_STATUS_FAILURE;
	if (loop_create(&vm->loop) < 0 || ctl_init(&vm->ctl, vm->loop, vm_ctl, vm) < 0 ||
	    mem_stats_timer(vm->memmgr, vm->loop, cfg->mem_stats_interval) < 0)
		return VM_EXIT_STATUS_FAILURE;
	vm->ctl_up = true;
	if (vm_create_qmp(vm) < 0)
		return VM_EXIT_STATUS_USAGE;
	if (vm->qmp && qmp_vm_register(vm->qmp, vm) < 0)
		return VM_EXIT_STATUS_FAILURE;
	r = boot_load(&vm->mem, &bc, entry);
	if (r < 0)
		return r == -EIO || r == -ENOMEM ? VM_EXIT_STATUS_FAILURE : VM_EXIT_STATUS_USAGE;
	if (devices_init(vm) < 0)
		return VM_EXIT_STATUS_FAILURE;
	vm->devices_up = true;
	if (vm_mem_hooks(vm) < 0)
		return VM_EXIT_STATUS_FAILURE;
	/* Admission control: hostd may refuse the VM; it then exits before any vCPU runs. */
	if (cfg->hostd && hostd_client_start(&vm->hostd, vm->loop, vm->memmgr, cfg) < 0)
		return VM_EXIT_STATUS_FAILURE;
	if (vm_cgroup_start(vm) < 0)
		return VM_EXIT_STATUS_FAILURE;
	if (vm_create_vcpus(vm) < 0 || x86_vcpu_boot(&vm->vcpus[0], entry) < 0)
		return VM_EXIT_STATUS_FAILURE;
	return 0;
}

int vm_run(const struct vm_config *cfg)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct boot_entry entry;
	sigset_t old, blocked;
	int status, pid_fd = -1;

	if (!vm)
		return VM_EXIT_STATUS_FAILURE;
	vm->cfg = cfg;
	vm->nr_vcpus = cfg->cpus;
	vm->reboot_shutdown = cfg->no_reboot;
	vm->shutdown_pause = cfg->no_shutdown;
	vm->kvm_fd = vm->vm_fd = vm->sig_fd = -1;
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm_block_signals(&blocked, &old);

	status = vm_build(vm, &entry);
	if (status == 0 && vm_setup_signals(vm, blocked) < 0)
		status = VM_EXIT_STATUS_FAILURE;
	if (status == 0 && cfg->pidfile) {
		int r = pidfile_create(cfg->pidfile, &pid_fd);

		if (r < 0) {
			log_error("-pidfile %s: %s", cfg->pidfile,
				  r == -EAGAIN ? "another process holds it" : strerror(-r));
			status = VM_EXIT_STATUS_FAILURE;
		}
	}
	if (status != 0)
		goto out;
	/* -S: the vCPUs start held, as if stopped, until QMP cont (QEMU's prelaunch). */
	if (cfg->start_paused) {
		vm->prelaunch = true;
		atomic_store(&vm->pause_requested, true);
	}
	daemon_ready();

	log_info("starting %s: %u vCPU%s, %llu MiB (%s), kernel %s", cfg->name ? cfg->name : "vm",
		 vm->nr_vcpus, vm->nr_vcpus > 1 ? "s" : "", (unsigned long long)(cfg->memory >> 20),
		 gmem_backend_name(cfg->mem_backend), cfg->kernel);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (vcpu_start(&vm->vcpus[i]) < 0) {
			vm_request_exit(vm, VM_EXIT_INTERNAL, 1, "cannot start a vCPU thread");
			break;
		}
	}
	if (loop_run(vm->loop) < 0 && !atomic_load(&vm->stopping))
		vm_stop(vm, VM_EXIT_INTERNAL, 1, "event loop failed");
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_join(&vm->vcpus[i]);

	status = vm_exit_status(vm);
	if (vm->exit_reason == VM_EXIT_DEBUG_EXIT)
		log_info("stopped: %s, status %d", vm_exit_names[vm->exit_reason], status);
	else if (vm->exit_detail[0])
		log_info("stopped: %s (%s)", vm_exit_names[vm->exit_reason], vm->exit_detail);
	else
		log_info("stopped: %s", vm_exit_names[vm->exit_reason]);
out:
	vm_destroy(vm);
	pidfile_remove(cfg->pidfile, pid_fd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return status;
}
