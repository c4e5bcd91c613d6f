/* kvmm's own memory commands (DESIGN.md section 6: x-kvmm- prefix):
 * - x-kvmm-query-memory: the memory manager's figures (bytes; counts where named), the sharing
 *   mode and capture path, the scanner's limits, and what the host kernel offers;
 * - x-kvmm-set-memory {share-rate?, share-cpu?, limit?, reservation?, shares?}: changes the
 *   scanner's limits and the VM's memory limit and reservation (bytes) live; under kvmm hostd
 *   these and the shares (a number, or low / normal / high) go to hostd first, which checks a
 *   higher reservation for admission (refused: an error, and nothing changes);
 * - x-kvmm-page-out {gpa, size, how?}: takes those pages out now (compress, swap or auto), as
 *   the reclaimer does with cold ones; for tests and benchmarks. */
#include <kvmm/config.h>
#include <kvmm/hostd.h>
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
			 "mode", mem_share_name(mem_share_mode(vm->memmgr)), "capture", mem_capture_name(vm->memmgr),
			 "configured", J(s.configured), "touched", J(s.touched), "consumed", J(s.consumed),
			 "private", J(s.private_), "zero", J(s.zero), "shared", J(s.shared),
			 "shared-saved", J(s.shared_saved), "pool", J(s.pool), "ballooned", J(s.ballooned),
			 "share-capped-pages", J(s.share_capped), "refaults", J(s.refaults),
			 "unshares", J(s.unshares), "faults", J(s.faults), "share-scans", J(s.share_scans),
			 "share-cpu-ns", J(s.share_cpu_ns), "captures", J(s.captures),
			 "captures-aborted", J(s.captures_aborted), "share-rate", J(rate), "share-cpu", J(cpu),
			 "features", features_json(mem_features(vm->memmgr)));
	if (*ret)
		json_object_update_missing_new(*ret, json_pack(
			"{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
			" s:b}",
			"target", J(s.target), "limit", J(s.limit), "reservation", J(s.reservation),
			"compressed", J(s.compressed), "compress-saved", J(s.compress_saved),
			"compress-cache", J(s.zcache), "swapped", J(s.swapped),
			"compress-out", J(s.compress_out), "compress-in", J(s.compress_in),
			"swap-out", J(s.swap_out), "swap-in", J(s.swap_in),
			"reclaim-refaults", J(s.reclaim_refaults), "active", J(s.active),
			"balloon-asked", J(s.balloon_asked), "swap-errors", J(s.swap_errors),
			"swap-corrupt", J(s.swap_corrupt), "swap-usable", s.swap_usable));
	if (*ret)
		json_object_update_missing_new(*ret, json_pack("{s:b, s:I, s:I, s:I}",
				"blocking", s.blocking, "blocked-faults", J(s.blocked_faults),
				"blocked-ns", J(s.blocked_ns), "blocked-now", J(s.blocked_now)));
	if (*ret && mem_share_mode(vm->memmgr) == MEM_SHARE_KSM)
		json_object_set_new(*ret, "ksm", json_pack("{s:I, s:I, s:I, s:I, s:I}",
				"merging-pages", J(s.ksm_merging), "zero-pages", J(s.ksm_zero),
				"pages-shared", J(s.ksm_pages_shared), "pages-sharing", J(s.ksm_pages_sharing),
				"full-scans", J(s.ksm_full_scans)));
	return *ret ? 0 : -ENOMEM;
}

/* shares: a number, or "low", "normal", "high" (per MiB of the VM's memory). */
static int shares_arg(struct vm *vm, json_t *v, uint64_t *out, struct qmp_error *err)
{
	unsigned per_mib;
	json_int_t n = json_integer_value(v);

	if (json_is_integer(v) && n >= 1 && n <= UINT32_MAX) {
		*out = (uint64_t)n;
		return 0;
	}
	if (!json_is_string(v) || config_parse_shares(json_string_value(v), &per_mib, out) < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'shares' must be low, normal, high or a "
			      "number from 1 to %u", UINT32_MAX);
		return -EINVAL;
	}
	if (per_mib)
		*out = (uint64_t)per_mib * (vm->cfg->memory >> 20);
	return 0;
}

/* limit, reservation and shares: checked here, then by hostd when the VM has one (a higher
 * reservation must pass its admission control), then applied; refused, nothing changes. */
static int set_limits(struct vm *vm, json_t *args, struct qmp_error *err)
{
	json_t *limit = json_object_get(args, "limit"), *res = json_object_get(args, "reservation");
	json_t *shares_j = json_object_get(args, "shares");
	json_int_t l = limit ? json_integer_value(limit) : 0, v = res ? json_integer_value(res) : 0;
	uint64_t lim = limit ? (uint64_t)l : UINT64_MAX, rsv = res ? (uint64_t)v : UINT64_MAX, shares = 0;
	unsigned set = (limit ? HOSTD_SET_LIMIT : 0) | (res ? HOSTD_SET_RESERVATION : 0) |
		       (shares_j ? HOSTD_SET_SHARES : 0);
	char why[320];
	int r;

	if ((limit && l < 4096) || (res && v < 0)) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter '%s' must be a size in bytes%s",
			      limit && l < 4096 ? "limit" : "reservation",
			      limit && l < 4096 ? ", at least 4096" : "");
		return -EINVAL;
	}
	if (shares_j && shares_arg(vm, shares_j, &shares, err) < 0)
		return -EINVAL;
	if (shares_j && !vm->hostd) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'shares' matters only under kvmm hostd: "
			      "start the VM with --hostd");
		return -EINVAL;
	}
	if ((limit || res) && mem_check_limits(vm->memmgr, &lim, &rsv) < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "cannot set limit/reservation: the reservation must "
			      "not exceed the limit, nor the limit the memory, and the VM must have been "
			      "started with --mem-share zero|tps, a --mem-limit or --hostd (reclaim needs "
			      "userfaultfd)");
		return -EINVAL;
	}
	if (vm->hostd && set &&
	    (r = hostd_client_set(vm->hostd, set, rsv, lim, shares, why, sizeof(why))) < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "%s; nothing changed", why);
		return r;
	}
	if ((limit || res) && (r = mem_set_limits(vm->memmgr, lim, rsv)) < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "cannot set limit/reservation: %s", strerror(-r));
		return r;
	}
	return 0;
}

static int cmd_set_memory(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	json_t *rate = json_object_get(args, "share-rate"), *cpu = json_object_get(args, "share-cpu");
	json_int_t r = rate ? json_integer_value(rate) : 0, c = cpu ? json_integer_value(cpu) : 0;
	int e;

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
	if ((e = set_limits(vm, args, err)) < 0)
		return e;
	if ((rate || cpu) && mem_set_share_rate(vm->memmgr, (uint64_t)r, (unsigned)c) < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "cannot set KSM's scan rate");
		return -EIO;
	}
	return 0;
}

static int cmd_page_out(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct vm *vm = opaque;
	json_int_t gpa = json_integer_value(json_object_get(args, "gpa"));
	json_int_t size = json_integer_value(json_object_get(args, "size"));
	json_t *how_j = json_object_get(args, "how");
	const char *how = how_j ? json_string_value(how_j) : "auto";
	enum mem_out o;
	int64_t n;

	if (!strcmp(how, "auto"))
		o = MEM_OUT_AUTO;
	else if (!strcmp(how, "compress"))
		o = MEM_OUT_COMPRESS;
	else if (!strcmp(how, "swap"))
		o = MEM_OUT_SWAP;
	else {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'how' must be auto, compress or swap");
		return -EINVAL;
	}
	if (gpa < 0 || size < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameters 'gpa' and 'size' must not be negative");
		return -EINVAL;
	}
	n = mem_page_out(vm->memmgr, (uint64_t)gpa, (uint64_t)size, o);
	if (n < 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "%s", n == -ENOTSUP ? "reclaim needs userfaultfd: start "
			      "with --mem-share zero|tps or a --mem-limit" : strerror((int)-n));
		return (int)n;
	}
	*ret = json_pack("{s:I}", "pages", J(n));
	return *ret ? 0 : -ENOMEM;
}

static const struct qmp_param set_params[] = {
	{ "share-rate", QMP_INT, true }, { "share-cpu", QMP_INT, true }, { "limit", QMP_INT, true },
	{ "reservation", QMP_INT, true }, { "shares", QMP_ANY, true }, { NULL } };

static const struct qmp_param page_out_params[] = {
	{ "gpa", QMP_INT, false }, { "size", QMP_INT, false }, { "how", QMP_STR, true }, { NULL } };

static const struct qmp_command mem_commands[] = {
	{ "x-kvmm-query-memory", cmd_query_memory, NULL },
	{ "x-kvmm-set-memory", cmd_set_memory, set_params },
	{ "x-kvmm-page-out", cmd_page_out, page_out_params },
	{ NULL, NULL, NULL },
};

int qmp_mem_register(struct qmp_server *s, struct vm *vm)
{
	return qmp_server_register(s, mem_commands, vm);
}
