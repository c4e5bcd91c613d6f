/* hostd's wire protocol (kvmm/hostd.h): the one place its JSON lines are built and read. Pure: no
 * syscalls. Requests are checked strictly (an unknown argument is an error, as in QMP); in what
 * hostd sends, members kvmm does not know are ignored, so a newer hostd can add some. */
#include <kvmm/hostd.h>

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIZE_MAX_JSON ((uint64_t)INT64_MAX)

static const char *const tech_names[] = { "share", "balloon", "compress", "swap", "block" };
#define NR_TECH (sizeof(tech_names) / sizeof(tech_names[0]))

const char *hostd_tech_name(unsigned bit)
{
	for (unsigned i = 0; i < NR_TECH; i++)
		if (bit == 1u << i)
			return tech_names[i];
	return "?";
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* ---- reading ---------------------------------------------------------------------------- */

static json_t *parse_object(const char *line, size_t len, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j;

	if (len > HOSTD_VIEW_MAX) {
		fail(err, errlen, "line longer than %u bytes", HOSTD_VIEW_MAX);
		return NULL;
	}
	j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		fail(err, errlen, "JSON parse error: %s", je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		fail(err, errlen, "a message must be a JSON object");
		return NULL;
	}
	return j;
}

/* A size or count member: an integer 0 .. max. Absent is an error when required. */
static int get_u64(json_t *obj, const char *key, bool required, uint64_t max, uint64_t *out,
		   char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	if (!v) {
		if (required)
			return fail(err, errlen, "'%s' is missing", key);
		return 1;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
		return fail(err, errlen, "'%s' must be an integer from 0 to %llu", key,
			    (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_str(json_t *obj, const char *key, bool required, char *out, size_t cap, char *err,
		   size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	const char *s;

	if (!v) {
		if (required)
			return fail(err, errlen, "'%s' is missing", key);
		return 1;
	}
	if (!json_is_string(v))
		return fail(err, errlen, "'%s' must be a string", key);
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v) || strlen(s) >= cap)
		return fail(err, errlen, "'%s' must be a string of at most %zu bytes without NUL", key,
			    cap - 1);
	if (required && !*s)
		return fail(err, errlen, "'%s' must not be empty", key);
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int get_bool(json_t *obj, const char *key, bool *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		return fail(err, errlen, "'%s' is missing", key);
	if (!json_is_boolean(v))
		return fail(err, errlen, "'%s' must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int get_state(json_t *obj, const char *key, enum policy_state *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	if (!v || !json_is_string(v))
		return fail(err, errlen, "'%s' must be a state name", key);
	for (int s = 0; s < POLICY_NSTATES; s++) {
		if (strcmp(json_string_value(v), policy_state_name((enum policy_state)s)) == 0) {
			*out = (enum policy_state)s;
			return 0;
		}
	}
	return fail(err, errlen, "'%s': unknown state '%s'", key, json_string_value(v));
}

static int get_techniques(json_t *obj, const char *key, unsigned *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key), *e;
	size_t i;

	if (!v || !json_is_array(v))
		return fail(err, errlen, "'%s' must be an array of technique names", key);
	*out = 0;
	json_array_foreach(v, i, e) {
		unsigned k;

		if (!json_is_string(e))
			return fail(err, errlen, "'%s' must be an array of technique names", key);
		for (k = 0; k < NR_TECH && strcmp(json_string_value(e), tech_names[k]) != 0; k++)
			;
		if (k == NR_TECH)
			return fail(err, errlen, "'%s': unknown technique '%s'", key, json_string_value(e));
		*out |= 1u << k;
	}
	return 0;
}

/* Only the members in `known` may be present. */
static int only_known(json_t *obj, const char *const *known, const char *what, char *err,
		      size_t errlen)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		size_t i;

		for (i = 0; known[i] && strcmp(known[i], key) != 0; i++)
			;
		if (!known[i])
			return fail(err, errlen, "%s: unknown member '%s'", what, key);
	}
	return 0;
}

#define CHECK(expr)                        \
	do {                               \
		if ((r = (expr)) < 0)      \
			goto out;          \
	} while (0)

static int parse_register(json_t *a, struct hostd_vm_info *v, char *err, size_t errlen)
{
	static const char *const known[] = { "name", "pid", "size", "reservation", "limit", "shares",
					     "overhead", "salt", NULL };
	uint64_t pid = 0;
	int r;

	memset(v, 0, sizeof(*v));
	CHECK(only_known(a, known, "register", err, errlen));
	CHECK(get_str(a, "name", true, v->name, sizeof(v->name), err, errlen));
	CHECK(get_u64(a, "pid", true, INT32_MAX, &pid, err, errlen));
	v->pid = (int64_t)pid;
	CHECK(get_u64(a, "size", true, SIZE_MAX_JSON, &v->size, err, errlen));
	CHECK(get_u64(a, "reservation", true, SIZE_MAX_JSON, &v->reservation, err, errlen));
	CHECK(get_u64(a, "limit", true, SIZE_MAX_JSON, &v->limit, err, errlen));
	CHECK(get_u64(a, "shares", true, SIZE_MAX_JSON, &v->shares, err, errlen));
	CHECK(get_u64(a, "overhead", true, SIZE_MAX_JSON, &v->overhead, err, errlen));
	r = get_str(a, "salt", false, v->salt, sizeof(v->salt), err, errlen);
	if (r == 1)
		strcpy(v->salt, "vm");
	if (r < 0)
		goto out;
	if (v->size == 0)
		return fail(err, errlen, "register: 'size' must not be 0");
	if (v->limit > v->size || v->reservation > v->limit)
		return fail(err, errlen, "register: need reservation <= limit <= size");
	r = 0;
out:
	return r;
}

static int report_fields(json_t *a, struct hostd_report *rp, char *err, size_t errlen);

static int parse_report(json_t *a, struct hostd_report *rp, char *err, size_t errlen)
{
	static const char *const known[] = { "consumed", "active", "shared", "ballooned", "compressed",
					     "swapped", NULL };
	int r;

	CHECK(only_known(a, known, "report", err, errlen));
	r = report_fields(a, rp, err, errlen);
out:
	return r;
}

static int report_fields(json_t *a, struct hostd_report *rp, char *err, size_t errlen)
{
	int r;

	CHECK(get_u64(a, "consumed", true, SIZE_MAX_JSON, &rp->consumed, err, errlen));
	CHECK(get_u64(a, "active", true, SIZE_MAX_JSON, &rp->active, err, errlen));
	CHECK(get_u64(a, "shared", true, SIZE_MAX_JSON, &rp->shared, err, errlen));
	CHECK(get_u64(a, "ballooned", true, SIZE_MAX_JSON, &rp->ballooned, err, errlen));
	CHECK(get_u64(a, "compressed", true, SIZE_MAX_JSON, &rp->compressed, err, errlen));
	CHECK(get_u64(a, "swapped", true, SIZE_MAX_JSON, &rp->swapped, err, errlen));
out:
	return r;
}

static int parse_set_vm(json_t *a, struct hostd_request *q, char *err, size_t errlen)
{
	static const char *const known[] = { "name", "reservation", "limit", "shares", NULL };
	int r;

	CHECK(only_known(a, known, "set-vm", err, errlen));
	CHECK(get_str(a, "name", true, q->u.set_vm.name, sizeof(q->u.set_vm.name), err, errlen));
	CHECK(get_u64(a, "reservation", false, SIZE_MAX_JSON, &q->u.set_vm.reservation, err, errlen));
	q->u.set_vm.set |= r == 0 ? HOSTD_SET_RESERVATION : 0;
	CHECK(get_u64(a, "limit", false, SIZE_MAX_JSON, &q->u.set_vm.limit, err, errlen));
	q->u.set_vm.set |= r == 0 ? HOSTD_SET_LIMIT : 0;
	CHECK(get_u64(a, "shares", false, SIZE_MAX_JSON, &q->u.set_vm.shares, err, errlen));
	q->u.set_vm.set |= r == 0 ? HOSTD_SET_SHARES : 0;
	r = q->u.set_vm.set ? 0 : fail(err, errlen, "set-vm: give reservation, limit or shares");
out:
	return r;
}

int hostd_parse_request(const char *line, size_t len, struct hostd_request *out, char *err,
			size_t errlen)
{
	static const char *const top[] = { "execute", "arguments", NULL };
	json_t *j, *ex, *a, *empty = NULL;
	const char *name;
	uint64_t tax = 0;
	int r;

	memset(out, 0, sizeof(*out));
	if (len > HOSTD_LINE_MAX)
		return fail(err, errlen, "line longer than %u bytes", HOSTD_LINE_MAX);
	if (!(j = parse_object(line, len, err, errlen)))
		return -EINVAL;
	CHECK(only_known(j, top, "request", err, errlen));
	ex = json_object_get(j, "execute");
	if (!ex || !json_is_string(ex)) {
		r = fail(err, errlen, "'execute' must be a command name");
		goto out;
	}
	name = json_string_value(ex);
	a = json_object_get(j, "arguments");
	if (a && !json_is_object(a)) {
		r = fail(err, errlen, "'arguments' must be an object");
		goto out;
	}
	if (!a)
		a = empty = json_object();
	if (!a) {
		r = -ENOMEM;
		goto out;
	}
	if (strcmp(name, "register") == 0) {
		out->kind = HOSTD_REQ_REGISTER;
		r = parse_register(a, &out->u.reg, err, errlen);
	} else if (strcmp(name, "report") == 0) {
		out->kind = HOSTD_REQ_REPORT;
		r = parse_report(a, &out->u.report, err, errlen);
	} else if (strcmp(name, "query-vms") == 0) {
		static const char *const none[] = { NULL };

		out->kind = HOSTD_REQ_QUERY_VMS;
		r = only_known(a, none, "query-vms", err, errlen);
	} else if (strcmp(name, "set-vm") == 0) {
		out->kind = HOSTD_REQ_SET_VM;
		r = parse_set_vm(a, out, err, errlen);
	} else if (strcmp(name, "set-host") == 0) {
		static const char *const known[] = { "tax", NULL };

		out->kind = HOSTD_REQ_SET_HOST;
		CHECK(only_known(a, known, "set-host", err, errlen));
		CHECK(get_u64(a, "tax", true, 99, &tax, err, errlen));
		out->u.set_host.tax_pct = (unsigned)tax;
	} else {
		r = fail(err, errlen, "unknown command '%.64s'", name);
	}
out:
	json_decref(empty);
	json_decref(j);
	return r < 0 ? r : 0;
}

static int parse_target(json_t *d, struct hostd_target *t, char *err, size_t errlen)
{
	int r;

	if (!json_is_object(d))
		return fail(err, errlen, "TARGET: 'data' must be an object");
	CHECK(get_u64(d, "target", true, SIZE_MAX_JSON, &t->target, err, errlen));
	CHECK(get_u64(d, "reservation", true, SIZE_MAX_JSON, &t->reservation, err, errlen));
	CHECK(get_u64(d, "limit", true, SIZE_MAX_JSON, &t->limit, err, errlen));
	CHECK(get_techniques(d, "techniques", &t->techniques, err, errlen));
	CHECK(get_state(d, "state", &t->state, err, errlen));
	if (t->reservation > t->limit)
		r = fail(err, errlen, "TARGET: reservation above limit");
out:
	return r;
}

int hostd_parse_reply(const char *line, size_t len, struct hostd_reply *out, char *err, size_t errlen)
{
	json_t *j, *v;
	uint64_t period = 0;
	int r = 0;

	memset(out, 0, sizeof(*out));
	if (len > HOSTD_LINE_MAX)
		return fail(err, errlen, "line longer than %u bytes", HOSTD_LINE_MAX);
	if (!(j = parse_object(line, len, err, errlen)))
		return -EINVAL;
	if ((v = json_object_get(j, "return"))) {
		out->kind = HOSTD_REPLY_RETURN;
		if (!json_is_object(v)) {
			r = fail(err, errlen, "'return' must be an object");
			goto out;
		}
		CHECK(get_u64(v, "period-ms", false, 3600 * 1000, &period, err, errlen));
		out->period_ms = (unsigned)period;
		r = 0;
	} else if ((v = json_object_get(j, "error"))) {
		out->kind = HOSTD_REPLY_ERROR;
		if (!json_is_object(v)) {
			r = fail(err, errlen, "'error' must be an object");
			goto out;
		}
		CHECK(get_str(v, "class", true, out->err_class, sizeof(out->err_class), err, errlen));
		/* A long description is cut, not refused: it is only shown. */
		v = json_object_get(v, "desc");
		if (!v || !json_is_string(v)) {
			r = fail(err, errlen, "'desc' must be a string");
			goto out;
		}
		snprintf(out->err_desc, sizeof(out->err_desc), "%s", json_string_value(v));
	} else if ((v = json_object_get(j, "event"))) {
		if (!json_is_string(v) || strcmp(json_string_value(v), "TARGET") != 0) {
			r = fail(err, errlen, "unknown event");
			goto out;
		}
		out->kind = HOSTD_REPLY_TARGET;
		r = parse_target(json_object_get(j, "data"), &out->target, err, errlen);
	} else {
		r = fail(err, errlen, "neither 'return', 'error' nor 'event'");
	}
out:
	json_decref(j);
	return r;
}

static int parse_vm_view(json_t *o, struct hostd_vm_view *v, char *err, size_t errlen)
{
	uint64_t pid = 0;
	int r;

	if (!json_is_object(o))
		return fail(err, errlen, "'vms' must hold objects");
	CHECK(get_str(o, "name", true, v->info.name, sizeof(v->info.name), err, errlen));
	CHECK(get_str(o, "salt", true, v->info.salt, sizeof(v->info.salt), err, errlen));
	CHECK(get_u64(o, "pid", true, INT32_MAX, &pid, err, errlen));
	v->info.pid = (int64_t)pid;
	CHECK(get_u64(o, "size", true, SIZE_MAX_JSON, &v->info.size, err, errlen));
	CHECK(get_u64(o, "reservation", true, SIZE_MAX_JSON, &v->info.reservation, err, errlen));
	CHECK(get_u64(o, "limit", true, SIZE_MAX_JSON, &v->info.limit, err, errlen));
	CHECK(get_u64(o, "shares", true, SIZE_MAX_JSON, &v->info.shares, err, errlen));
	CHECK(get_u64(o, "overhead", true, SIZE_MAX_JSON, &v->info.overhead, err, errlen));
	CHECK(get_u64(o, "target", true, SIZE_MAX_JSON, &v->target, err, errlen));
	CHECK(get_bool(o, "lagging", &v->lagging, err, errlen));
	CHECK(get_bool(o, "reported", &v->reported, err, errlen));
	r = report_fields(o, &v->report, err, errlen);
out:
	return r;
}

int hostd_parse_view(const char *line, size_t len, struct hostd_view *out, char *err, size_t errlen)
{
	json_t *j, *ret, *h, *vms, *o;
	uint64_t tax = 0;
	size_t i;
	int r;

	memset(out, 0, sizeof(*out));
	if (!(j = parse_object(line, len, err, errlen)))
		return -EINVAL;
	if ((ret = json_object_get(j, "error")) && json_is_object(ret) &&
	    json_is_string(json_object_get(ret, "desc"))) {
		r = fail(err, errlen, "hostd: %s", json_string_value(json_object_get(ret, "desc")));
		goto out;
	}
	ret = json_object_get(j, "return");
	h = ret ? json_object_get(ret, "host") : NULL;
	vms = ret ? json_object_get(ret, "vms") : NULL;
	if (!json_is_object(h) || !json_is_array(vms)) {
		r = fail(err, errlen, "not a query-vms answer ('return' with 'host' and 'vms')");
		goto out;
	}
	CHECK(get_u64(h, "capacity", true, SIZE_MAX_JSON, &out->host.capacity, err, errlen));
	CHECK(get_u64(h, "total", true, SIZE_MAX_JSON, &out->host.total, err, errlen));
	CHECK(get_u64(h, "free", true, SIZE_MAX_JSON, &out->host.free, err, errlen));
	CHECK(get_u64(h, "minfree", true, SIZE_MAX_JSON, &out->host.minfree, err, errlen));
	CHECK(get_u64(h, "tax", true, 99, &tax, err, errlen));
	out->host.tax_pct = (unsigned)tax;
	CHECK(get_techniques(h, "techniques", &out->host.techniques, err, errlen));
	CHECK(get_state(h, "state", &out->host.state, err, errlen));
	if (json_array_size(vms)) {
		out->vms = calloc(json_array_size(vms), sizeof(*out->vms));
		if (!out->vms) {
			r = -ENOMEM;
			goto out;
		}
	}
	json_array_foreach(vms, i, o) {
		CHECK(parse_vm_view(o, &out->vms[i], err, errlen));
		out->n++;
	}
	r = 0;
out:
	if (r < 0)
		hostd_view_free(out);
	json_decref(j);
	return r;
}

void hostd_view_free(struct hostd_view *v)
{
	free(v->vms);
	v->vms = NULL;
	v->n = 0;
}

/* ---- building --------------------------------------------------------------------------- */

static char *dump(json_t *j, size_t *len)
{
	char *s, *line;
	size_t n;

	if (!j)
		return NULL;
	s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(j);
	if (!s)
		return NULL;
	n = strlen(s);
	line = realloc(s, n + 2);
	if (!line) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	if (len)
		*len = n + 1;
	return line;
}

static json_t *u64(uint64_t v)
{
	return json_integer((json_int_t)(v > SIZE_MAX_JSON ? SIZE_MAX_JSON : v));
}

static json_t *tech_array(unsigned mask)
{
	json_t *a = json_array();

	for (unsigned i = 0; a && i < NR_TECH; i++)
		if (mask & 1u << i)
			json_array_append_new(a, json_string(tech_names[i]));
	return a;
}

static json_t *execute(const char *name, json_t *args)
{
	return args ? json_pack("{s:s, s:o}", "execute", name, "arguments", args) : NULL;
}

char *hostd_fmt_register(const struct hostd_vm_info *v, size_t *len)
{
	return dump(execute("register", json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o}",
						  "name", v->name, "salt", v->salt,
						  "pid", json_integer(v->pid), "size", u64(v->size),
						  "reservation", u64(v->reservation), "limit", u64(v->limit),
						  "shares", u64(v->shares), "overhead", u64(v->overhead))),
		    len);
}

static json_t *report_obj(const struct hostd_report *r)
{
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "consumed", u64(r->consumed),
			 "active", u64(r->active), "shared", u64(r->shared), "ballooned", u64(r->ballooned),
			 "compressed", u64(r->compressed), "swapped", u64(r->swapped));
}

char *hostd_fmt_report(const struct hostd_report *r, size_t *len)
{
	return dump(execute("report", report_obj(r)), len);
}

char *hostd_fmt_query_vms(size_t *len)
{
	return dump(execute("query-vms", json_object()), len);
}

char *hostd_fmt_set_vm(const char *name, unsigned set, uint64_t reservation, uint64_t limit,
		       uint64_t shares, size_t *len)
{
	json_t *a = json_pack("{s:s}", "name", name);

	if (a && (set & HOSTD_SET_RESERVATION))
		json_object_set_new(a, "reservation", u64(reservation));
	if (a && (set & HOSTD_SET_LIMIT))
		json_object_set_new(a, "limit", u64(limit));
	if (a && (set & HOSTD_SET_SHARES))
		json_object_set_new(a, "shares", u64(shares));
	return dump(execute("set-vm", a), len);
}

char *hostd_fmt_set_host(unsigned tax_pct, size_t *len)
{
	return dump(execute("set-host", json_pack("{s:i}", "tax", (int)tax_pct)), len);
}

char *hostd_fmt_target(const struct hostd_target *t, size_t *len)
{
	return dump(json_pack("{s:s, s:{s:o, s:o, s:o, s:o, s:s}}", "event", "TARGET", "data",
			      "target", u64(t->target), "reservation", u64(t->reservation),
			      "limit", u64(t->limit), "techniques", tech_array(t->techniques),
			      "state", policy_state_name(t->state)),
		    len);
}

char *hostd_fmt_return_register(unsigned period_ms, size_t *len)
{
	return dump(json_pack("{s:{s:i}}", "return", "period-ms", (int)period_ms), len);
}

char *hostd_fmt_return_empty(size_t *len)
{
	return dump(json_pack("{s:{}}", "return"), len);
}

char *hostd_fmt_error(const char *err_class, const char *desc, size_t *len)
{
	return dump(json_pack("{s:{s:s, s:s}}", "error", "class", err_class, "desc", desc), len);
}

char *hostd_fmt_view(const struct hostd_view *v, size_t *len)
{
	json_t *vms = json_array(), *ret;

	for (size_t i = 0; vms && i < v->n; i++) {
		const struct hostd_vm_view *x = &v->vms[i];
		json_t *o = report_obj(&x->report);

		if (!o || json_object_update_new(o, json_pack("{s:s, s:s, s:i, s:o, s:o, s:o, s:o, s:o, "
							      "s:o, s:b, s:b}",
							      "name", x->info.name, "salt", x->info.salt,
							      "pid", (int)x->info.pid,
							      "size", u64(x->info.size),
							      "reservation", u64(x->info.reservation),
							      "limit", u64(x->info.limit),
							      "shares", u64(x->info.shares),
							      "overhead", u64(x->info.overhead),
							      "target", u64(x->target),
							      "lagging", x->lagging,
							      "reported", x->reported)) < 0 ||
		    json_array_append_new(vms, o) < 0) {
			json_decref(vms);
			return NULL;
		}
	}
	if (!vms)
		return NULL;
	ret = json_pack("{s:{s:{s:o, s:o, s:o, s:o, s:i, s:o, s:s}, s:o}}", "return", "host",
			"capacity", u64(v->host.capacity), "total", u64(v->host.total),
			"free", u64(v->host.free), "minfree", u64(v->host.minfree),
			"tax", (int)v->host.tax_pct, "techniques", tech_array(v->host.techniques),
			"state", policy_state_name(v->host.state), "vms", vms);
	return dump(ret, len);
}

/* ---- framing ---------------------------------------------------------------------------- */

int hostd_lines_init(struct hostd_lines *l, size_t cap)
{
	*l = (struct hostd_lines){ .cap = cap };
	l->buf = malloc(cap + 1);
	return l->buf ? 0 : -ENOMEM;
}

void hostd_lines_destroy(struct hostd_lines *l)
{
	free(l->buf);
	l->buf = NULL;
}

void hostd_lines_feed(struct hostd_lines *l, const char *data, size_t n, hostd_line_fn fn,
		      void *opaque)
{
	for (size_t i = 0; i < n; i++) {
		char c = data[i];

		if (c == '\n') {
			if (!l->skipping) {
				size_t len = l->len;

				if (len && l->buf[len - 1] == '\r')
					len--;
				l->buf[len] = '\0';
				if (len)
					fn(opaque, l->buf, len);
			}
			l->len = 0;
			l->skipping = false;
			continue;
		}
		if (l->skipping)
			continue;
		if (l->len >= l->cap) {
			l->skipping = true;
			l->len = 0;
			fn(opaque, NULL, 0);
			continue;
		}
		l->buf[l->len++] = c;
	}
}
