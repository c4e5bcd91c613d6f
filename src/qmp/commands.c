/* kvmm's VM commands for QMP: one table, name -> handler, behaving as QEMU documents them
 * (qapi/run-state.json, qapi/machine.json, qapi/misc.json). Handlers run on the loop thread, the
 * one writer of VM state, so they act on the VM directly. */
#include <kvmm/devices.h>
#include <kvmm/qmp.h>
#include <kvmm/vcpu.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static const char *const run_state_names[] = {
	[VM_RUN_RUNNING] = "running",
	[VM_RUN_PAUSED] = "paused",
	[VM_RUN_PRELAUNCH] = "prelaunch",
	[VM_RUN_SHUTDOWN] = "shutdown",
};

static int cmd_query_status(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	enum vm_run_state st = vm_run_state(vm);

	(void)args;
	(void)err;
	*ret = json_pack("{s:b, s:s}", "running", st == VM_RUN_RUNNING, "status",
			 run_state_names[st]);
	return *ret ? 0 : -ENOMEM;
}

static int cmd_stop(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	bool was_paused = vm_is_paused(vm);

	(void)args;
	(void)ret;
	if (vm_pause(vm) < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "not every vCPU stopped in time");
		return -ETIMEDOUT;
	}
	if (!was_paused)
		qmp_server_event(vm->qmp, "STOP", NULL);
	return 0;
}

static int cmd_cont(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;

	(void)args;
	(void)ret;
	if (!vm_is_paused(vm))
		return 0;
	/* QEMU's qmp_cont refuses the shutdown run state with these words. */
	if (vm_resume(vm) < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Resetting the Virtual Machine is required");
		return -EPERM;
	}
	qmp_server_event(vm->qmp, "RESUME", NULL);
	return 0;
}

static int cmd_quit(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	(void)args;
	(void)ret;
	(void)err;
	vm_request_exit(opaque, VM_EXIT_QUIT, 0, "QMP quit");
	return 0;
}

/* QEMU: returns at once; the reset happens afterwards on the loop (RESET event). */
static int cmd_system_reset(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	(void)args;
	(void)ret;
	(void)err;
	vm_request_reset(opaque, VM_RESET_QMP, "QMP system_reset");
	return 0;
}

/* QEMU: POWERDOWN event, then the ACPI power button; whether it powers off is the guest's call. */
static int cmd_system_powerdown(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	int r;

	(void)args;
	(void)ret;
	qmp_server_event(vm->qmp, "POWERDOWN", NULL);
	r = power_button(vm);
	if (r < 0)
		qmp_error_set(err, QMP_ERR_GENERIC, "cannot signal the power button: %s", strerror(-r));
	return r;
}

static int cmd_query_cpus_fast(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	json_t *list = json_array();
	char path[64];

	(void)args;
	(void)err;
	if (!list)
		return -ENOMEM;
	/* One socket of nr_vcpus cores, one thread each (src/vcpu/x86.c's CPUID topology). */
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		snprintf(path, sizeof(path), "/machine/unattached/device[%u]", i);
		json_array_append_new(
			list, json_pack("{s:i, s:s, s:i, s:{s:i, s:i, s:i}, s:s}", "cpu-index", (int)i,
					"qom-path", path, "thread-id",
					atomic_load(&vm->vcpus[i].tid), "props", "core-id", (int)i,
					"socket-id", 0, "thread-id", 0, "target", "x86_64"));
	}
	*ret = list;
	return 0;
}

static int cmd_query_memory_size_summary(void *opaque, json_t *args, json_t **ret,
					 struct qmp_error *err)
{
	struct vm *vm = opaque;

	(void)args;
	(void)err;
	*ret = json_pack("{s:I, s:I}", "base-memory", (json_int_t)vm->cfg->memory, "plugged-memory",
			 (json_int_t)0);
	return *ret ? 0 : -ENOMEM;
}

static const struct qmp_command vm_commands[] = {
	{ "query-status", cmd_query_status, NULL },
	{ "stop", cmd_stop, NULL },
	{ "cont", cmd_cont, NULL },
	{ "quit", cmd_quit, NULL },
	{ "system_reset", cmd_system_reset, NULL },
	{ "system_powerdown", cmd_system_powerdown, NULL },
	{ "query-cpus-fast", cmd_query_cpus_fast, NULL },
	{ "query-memory-size-summary", cmd_query_memory_size_summary, NULL },
	{ NULL, NULL, NULL },
};

int qmp_vm_register(struct qmp_server *s, struct vm *vm)
{
	int r = qmp_server_register(s, vm_commands, vm);

	if (r == 0)
		r = qmp_balloon_register(s, vm);
	if (r == 0)
		r = qmp_mem_register(s, vm);
	return r < 0 ? r : qmp_compat_register(s, vm);
}
