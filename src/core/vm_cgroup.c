/* The VM's side of --mem-cgroup (kvmm/cgroup.h): finds the process's cgroup, starts the watcher on
 * the loop and hands it the one path by which limit and reservation change live (checked by the
 * memory manager, agreed with hostd when the VM has one, then applied), the path QMP's
 * x-kvmm-set-memory takes too. */
#include <kvmm/cgroup.h>
#include <kvmm/hostd.h>
#include <kvmm/log.h>
#include <kvmm/mem.h>
#include <kvmm/vm.h>

#include "vm_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int vm_set_mem_limits(struct vm *vm, uint64_t limit, uint64_t reservation, char *why, size_t len)
{
	uint64_t lim = limit, rsv = reservation;
	unsigned set = (limit != UINT64_MAX ? HOSTD_SET_LIMIT : 0) |
		       (reservation != UINT64_MAX ? HOSTD_SET_RESERVATION : 0);
	int r;

	if (!vm->memmgr || mem_check_limits(vm->memmgr, &lim, &rsv) < 0) {
		snprintf(why, len, "the reservation must not exceed the limit, nor the limit the memory, "
			 "and reclaim needs userfaultfd: start with --mem-share zero|tps, a --mem-limit, "
			 "--hostd or --mem-cgroup on");
		return -EINVAL;
	}
	if (vm->hostd && set && (r = hostd_client_set(vm->hostd, set, rsv, lim, 0, why, len)) < 0)
		return r;
	if ((r = mem_set_limits(vm->memmgr, lim, rsv)) < 0)
		snprintf(why, len, "%s", strerror(-r));
	return r;
}

static int apply(void *opaque, uint64_t limit, uint64_t reservation, char *why, size_t len)
{
	return vm_set_mem_limits(opaque, limit, reservation, why, len);
}

static int64_t consumed(void *opaque)
{
	struct vm *vm = opaque;
	struct mem_stats st;

	if (!vm->memmgr || mem_get_stats(vm->memmgr, &st) < 0)
		return -1;
	return (int64_t)st.consumed;
}

/* Whether dir or a cgroup above it, below the mount's root, has the memory controller's files.
 * libvirt puts the emulator in a threaded child (domain/emulator) that has none: its memory.max
 * is on the domain's directory one level up. */
static bool limited_above(const char *dir, const char *top, char *file, size_t len)
{
	size_t root = strlen(top);
	char *slash;

	snprintf(file, len, "%s", dir);
	while (strlen(file) > root) {
		size_t n = strlen(file);

		snprintf(file + n, len - n, "/memory.max");
		if (access(file, F_OK) == 0)
			return true;
		file[n] = '\0';
		if (!(slash = strrchr(file, '/')))
			break;
		*slash = '\0';
	}
	return false;
}

int vm_cgroup_start(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;
	struct cgroup_watch_cfg wc = {
		.memory = vm->mem.ram_size,
		.base_limit = cfg->mem_limit,
		.base_reservation = cfg->mem_reservation,
	};
	struct cgroup_watch_ops ops = { .opaque = vm, .apply = apply, .consumed = consumed };
	char dir[PATH_MAX], top[PATH_MAX], file[PATH_MAX + 16];
	int r;

	if (cfg->mem_cgroup == MEM_CGROUP_OFF)
		return 0;
	r = cgroup_self_dir_proc(dir, sizeof(dir), top, sizeof(top));
	if (r < 0) {
		if (cfg->mem_cgroup == MEM_CGROUP_ON)
			log_warn("--mem-cgroup on: cannot find this process's cgroup v2 (%s); not followed",
				 r == -ENOENT ? "no cgroup2 mount, or cgroup v1 only" : strerror(-r));
		return 0;
	}
	if (cfg->mem_cgroup == MEM_CGROUP_AUTO && !limited_above(dir, top, file, sizeof(file))) {
		log_debug("cgroup %s: no memory controller here; not followed (--mem-cgroup on forces it)", dir);
		return 0;
	}
	wc.dir = dir;
	wc.top = top;
	log_info("cgroup %s: following its memory limits (--mem-cgroup %s)", dir,
		 cfg->mem_cgroup == MEM_CGROUP_ON ? "on" : "auto");
	r = cgroup_watch_start(&vm->cgroup, vm->loop, &wc, &ops);
	if (r < 0)
		log_error("--mem-cgroup: cannot watch %s: %s", dir, strerror(-r));
	/* Past memory.max the kernel kills the VM: kvmm's limit under it must hold, not converge. */
	else if (vm->memmgr)
		mem_set_hard_limit(vm->memmgr, true);
	return r;
}

void vm_cgroup_stop(struct vm *vm)
{
	cgroup_watch_destroy(vm->cgroup);
	vm->cgroup = NULL;
}
