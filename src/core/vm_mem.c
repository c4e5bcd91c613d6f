/* What the memory manager needs from the running VM (struct mem_hooks): QMP events, stopping the
 * VM when guest memory is lost, and the balloon, which the reclaimer asks before it compresses or
 * swaps (DESIGN.md section 5: balloon first, the guest chooses what to give up). */
#include <kvmm/balloon.h>
#include <kvmm/mem.h>
#include <kvmm/qmp.h>
#include <kvmm/virtio.h>
#include <kvmm/vm.h>

#include "vm_internal.h"

#include <errno.h>
#include <stdatomic.h>

static void hook_event(void *opaque, const char *name, const char *data)
{
	struct vm *vm = opaque;
	json_t *j = data ? json_loads(data, 0, NULL) : NULL;

	if (vm->qmp)
		qmp_server_event(vm->qmp, name, j);
	json_decref(j);
}

static void hook_fatal(void *opaque, const char *detail)
{
	vm_request_exit(opaque, VM_EXIT_INTERNAL, 1, detail);
}

static bool hook_stopping(void *opaque)
{
	struct vm *vm = opaque;

	return atomic_load(&vm->stopping);
}

static int hook_balloon_ask(void *opaque, uint64_t bytes)
{
	struct vm *vm = opaque;

	/* The balloon's target is the VM's size as the guest should see it. */
	return balloon_set_target(vm->balloon, vm->mem.ram_size - bytes);
}

static int64_t hook_balloon_held(void *opaque)
{
	struct vm *vm = opaque;

	if (!virtio_driver_ok(balloon_virtio(vm->balloon)))
		return -1;
	return (int64_t)(vm->mem.ram_size - balloon_actual(vm->balloon));
}

int vm_mem_hooks(struct vm *vm)
{
	struct mem_hooks h = {
		.opaque = vm,
		.event = hook_event,
		.fatal = hook_fatal,
		.stopping = hook_stopping,
		.balloon_ask = vm->balloon ? hook_balloon_ask : NULL,
		.balloon_held = vm->balloon ? hook_balloon_held : NULL,
	};

	if (!vm->memmgr)
		return 0;
	mem_set_hooks(vm->memmgr, &h);
	return mem_attach_vm(vm->memmgr, vm->vm_fd);
}
