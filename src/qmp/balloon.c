/* QMP for the balloon, as QEMU documents it (qapi/machine.json): balloon and query-balloon;
 * kvmm's own x-kvmm-query-balloon adds what the host measured. The QOM view libvirt reads the
 * stats through (/machine/peripheral/balloon0: guest-stats, guest-stats-polling-interval) is
 * part of the QOM tree, src/qmp/qom.c. */
#include <kvmm/balloon.h>
#include <kvmm/gmem.h>
#include <kvmm/mem.h>
#include <kvmm/qmp.h>
#include <kvmm/vm.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

static struct balloon *active(struct vm *vm, struct qmp_error *err)
{
	if (!vm->balloon)
		qmp_error_set(err, QMP_ERR_DEVICE_NOT_ACTIVE, "No balloon device has been activated");
	return vm->balloon;
}

static int cmd_balloon(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct balloon *b = active(opaque, err);
	json_int_t value = json_integer_value(json_object_get(args, "value"));

	(void)ret;
	if (!b)
		return -ENODEV;
	if (value <= 0) {
		qmp_error_set(err, QMP_ERR_GENERIC, "Parameter 'target' expects a size");
		return -EINVAL;
	}
	return balloon_set_target(b, (uint64_t)value);
}

static int cmd_query_balloon(void *opaque, json_t *args, json_t **ret, struct qmp_error *err)
{
	struct balloon *b = active(opaque, err);

	(void)args;
	if (!b)
		return -ENODEV;
	*ret = json_pack("{s:I}", "actual", (json_int_t)balloon_actual(b));
	return *ret ? 0 : -ENOMEM;
}

static int cmd_x_kvmm_query_balloon(void *opaque, json_t *args, json_t **ret,
				    struct qmp_error *err)
{
	struct vm *vm = opaque;
	struct balloon *b = active(vm, err);
	struct balloon_counters c;
	struct mem_stats ms;
	int64_t resident;

	(void)args;
	if (!b)
		return -ENODEV;
	balloon_get_counters(b, &c);
	resident = mem_get_stats(vm->memmgr, &ms) < 0 ? -1 : (int64_t)ms.consumed;
	*ret = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "target", (json_int_t)balloon_target(b),
			 "actual", (json_int_t)balloon_actual(b),
			 "inflated-pages", (json_int_t)c.inflated_pages,
			 "deflated-pages", (json_int_t)c.deflated_pages,
			 "released-ranges", (json_int_t)c.released_ranges,
			 "reported-pages", (json_int_t)c.reported_pages,
			 "bad-pfns", (json_int_t)c.bad_pfns,
			 "stats-updates", (json_int_t)c.stats_updates,
			 "guest-ram-resident", (json_int_t)(resident < 0 ? -1 : resident));
	return *ret ? 0 : -ENOMEM;
}

static const struct qmp_param balloon_params[] = { { "value", QMP_INT, false, NULL }, { NULL } };
static const struct qmp_command balloon_commands[] = {
	{ "balloon", cmd_balloon, balloon_params },
	{ "query-balloon", cmd_query_balloon, NULL },
	{ "x-kvmm-query-balloon", cmd_x_kvmm_query_balloon, NULL },
	{ NULL, NULL, NULL },
};

int qmp_balloon_register(struct qmp_server *s, struct vm *vm)
{
	return qmp_server_register(s, balloon_commands, vm);
}
