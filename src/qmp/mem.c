/* kvmm's own memory commands (DESIGN.md section 6: x-kvmm- prefix):
 * - x-kvmm-query-memory: the memory manager's figures (bytes; counts where named), the sharing
 *   mode and capture path, the scanner's limits, and what the host kernel offers;
 * - x-kvmm-set-memory {share-rate?, share-cpu?}: changes the scanner's limits live. */
#include <kvmm/mem.h>
#include <kvmm/qmp.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <string.h>

#define J(v) ((json_int_t)(v))

static json_t *features_json(const struct mem_features *f)
{
	return json_pack("{s:b, s:s, s:b, s:b, s:b, s:b, s:b, s:b, s:s, s:I, s:I}",
			 "userfaultfd", f->uffd, "userfaultfd-via", f->uffd_via,
			 "uffd-move", f->uffd_move, "uffd-wp", f->uffd_wp,
			 "uffd-wp-unpopulated", f->uffd_wp_unpopulated, "ksm", f->ksm,
			 "ksm-writable", f->ksm_writable, "ksm-advisor", f->ksm_advisor,
			 "thp", f->thp, "hugetlb-free-2m", J(f->hugetlb_free),
			 "max-map-count", J(f->max_map_count));
}

static int cmd_query_memory(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	struct mem_stats s;
	uint64_t rate;
	unsigned cpu;
	int r;

	(void)args;
	r = mem_get_stats(vm->memmgr, &s);
	if (r < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "cannot read the memory figures: %s", strerror(-r));
		return r;
	}
	mem_get_share_rate(vm->memmgr, &rate, &cpu);
	*ret = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
			 " s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
			 "mode", mem_share_name(vm->cfg->mem_share), "capture", mem_capture_name(vm->memmgr),
			 "configured", J(s.configured), "touched", J(s.touched), "consumed", J(s.consumed),
			 "private", J(s.private_), "zero", J(s.zero), "shared", J(s.shared),
			 "shared-saved", J(s.shared_saved), "pool", J(s.pool), "ballooned", J(s.ballooned),
			 "share-capped-pages", J(s.share_capped), "refaults", J(s.refaults),
			 "unshares", J(s.unshares), "faults", J(s.faults), "share-scans", J(s.share_scans),
			 "share-cpu-ns", J(s.share_cpu_ns), "captures", J(s.captures),
			 "captures-aborted", J(s.captures_aborted), "share-rate", J(rate), "share-cpu", J(cpu),
			 "features", features_json(mem_features(vm->memmgr)));
	if (*ret && vm->cfg->mem_share == MEM_SHARE_KSM)
		json_object_set_new(*ret, "ksm", json_pack("{s:I, s:I, s:I, s:I, s:I}",
				"merging-pages", J(s.ksm_merging), "zero-pages", J(s.ksm_zero),
				"pages-shared", J(s.ksm_pages_shared), "pages-sharing", J(s.ksm_pages_sharing),
				"full-scans", J(s.ksm_full_scans)));
	return *ret ? 0 : -ENOMEM;
}

static int cmd_set_memory(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	json_t *rate = json_object_get(args, "share-rate"), *cpu = json_object_get(args, "share-cpu");
	json_int_t r = rate ? json_integer_value(rate) : 0, c = cpu ? json_integer_value(cpu) : 0;

	(void)ret;
	if (rate && (r < 1 || r > CONFIG_SHARE_RATE_MAX)) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'share-rate' must be 1 to %u pages per second",
			      CONFIG_SHARE_RATE_MAX);
		return -EINVAL;
	}
	if (cpu && (c < 1 || c > 100)) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'share-cpu' must be 1 to 100 (percent of one core)");
		return -EINVAL;
	}
	if (mem_set_share_rate(vm->memmgr, (uint64_t)r, (unsigned)c) < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "cannot set KSM's scan rate");
		return -EIO;
	}
	return 0;
}

static const struct qmp_param set_params[] = {
	{ "share-rate", QMP_INT, true }, { "share-cpu", QMP_INT, true }, { NULL } };

static const struct qmp_command mem_commands[] = {
	{ "x-kvmm-query-memory", cmd_query_memory, NULL },
	{ "x-kvmm-set-memory", cmd_set_memory, set_params },
	{ NULL, NULL, NULL },
};

int qmp_mem_register(struct qmp_server *s, struct vm *vm)
{
	return qmp_server_register(s, mem_commands, vm);
}
