/* QMP framing, parsing, error classes and argument checks: the parts of the protocol that need no
 * socket (src/qmp/json.h, kvmm/qmp.h). */
#include "json.h"

#include <kvmm/qmp.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const qmp_class_names[] = {
	[QMP_ERR_GENERIC] = "GenericError",
	[QMP_ERR_COMMAND_NOT_FOUND] = "CommandNotFound",
	[QMP_ERR_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
	[QMP_ERR_DEVICE_NOT_FOUND] = "DeviceNotFound",
	[QMP_ERR_KVM_MISSING_CAP] = "KVMMissingCap",
};

const char *qmp_error_class_name(enum qmp_error_class cls)
{
	if ((unsigned)cls >= sizeof(qmp_class_names) / sizeof(qmp_class_names[0]))
		return "GenericError";
	return qmp_class_names[cls];
}

void qmp_error_set(struct qmp_error *err, enum qmp_error_class cls, const char *fmt, ...)
{
	va_list ap;

	if (!err || err->set)
		return;
	err->set = true;
	err->cls = cls;
	va_start(ap, fmt);
	vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
	va_end(ap);
}

/* The names QEMU's input visitor prints after "expected: ". */
static const char *const qmp_type_names[] = {
	[QMP_ANY] = "any", [QMP_INT] = "integer", [QMP_NUMBER] = "number", [QMP_BOOL] = "boolean",
	[QMP_STR] = "string", [QMP_OBJECT] = "object", [QMP_ARRAY] = "array",
};

static bool qmp_type_matches(const json_t *v, enum qmp_type t)
{
	switch (t) {
	case QMP_ANY:
		return true;
	case QMP_INT:
		return json_is_integer(v);
	case QMP_NUMBER:
		return json_is_number(v);
	case QMP_BOOL:
		return json_is_boolean(v);
	case QMP_STR:
		return json_is_string(v);
	case QMP_OBJECT:
		return json_is_object(v);
	case QMP_ARRAY:
		return json_is_array(v);
	}
	return false;
}

int qmp_args_check(json_t *args, const struct qmp_param *params, struct qmp_error *err)
{
	const char *key;
	json_t *v;

	for (const struct qmp_param *p = params; p && p->name; p++) {
		v = json_object_get(args, p->name);
		if (!v) {
			if (p->optional)
				continue;
			qmp_error_set(err, QMP_ERR_GENERIC, "Parameter '%s' is missing", p->name);
			return -EINVAL;
		}
		if (!qmp_type_matches(v, p->type)) {
			qmp_error_set(err, QMP_ERR_GENERIC,
				      "Invalid parameter type for '%s', expected: %s", p->name,
				      qmp_type_names[p->type]);
			return -EINVAL;
		}
	}
	json_object_foreach(args, key, v) {
		const struct qmp_param *p = params;

		while (p && p->name && strcmp(p->name, key))
			p++;
		if (!p || !p->name) {
			qmp_error_set(err, QMP_ERR_GENERIC, "Parameter '%s' is unexpected", key);
			return -EINVAL;
		}
	}
	return 0;
}

void qmp_framer_init(struct qmp_framer *f, size_t limit)
{
	*f = (struct qmp_framer){ .limit = limit };
}

void qmp_framer_destroy(struct qmp_framer *f)
{
	free(f->buf);
	f->buf = NULL;
	f->len = f->cap = 0;
}

static void framer_reset(struct qmp_framer *f)
{
	f->len = 0;
	f->depth = 0;
	f->quote = 0;
	f->esc = f->in_lit = f->skipping = false;
}

/* Starts dropping the current text: the error is reported once, then bytes are only counted until
 * the text ends, so the next message parses normally (QEMU reports and carries on likewise). */
static void framer_refuse(struct qmp_framer *f, const char *error)
{
	if (f->skipping)
		return;
	f->skipping = true;
	f->len = 0;
	f->error = error;
}

static void framer_put(struct qmp_framer *f, char c)
{
	if (f->skipping)
		return;
	if (f->len >= f->limit) {
		framer_refuse(f, "JSON token size limit exceeded");
		return;
	}
	if (f->len == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 256;
		char *nb;

		if (cap > f->limit)
			cap = f->limit;
		nb = realloc(f->buf, cap);
		if (!nb) {
			framer_refuse(f, "JSON parse error, out of memory");
			return;
		}
		f->buf = nb;
		f->cap = cap;
	}
	f->buf[f->len++] = c;
}

/* A text ended: hand it over, unless it was being dropped. */
static bool framer_emit(struct qmp_framer *f, qmp_frame_fn fn, void *opaque)
{
	size_t len = f->len;

	f->len = 0;
	if (f->skipping) {
		f->skipping = false;
		return true;
	}
	return fn(opaque, f->buf, len, NULL);
}

/* qmp-spec "Forcing the JSON parser into known-good state": an ASCII control character other than
 * tab, CR and LF, or 0xFF, is a lexical error that resets the parser. 0xFE is never UTF-8
 * either. */
static bool framer_is_reset_byte(unsigned char c)
{
	return c >= 0xfe || (c < 0x20 && c != '\t' && c != '\r' && c != '\n');
}

static bool framer_is_delimiter(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '{' || c == '}' || c == '[' ||
	       c == ']' || c == ',' || c == ':' || c == '"' || c == '\'';
}

/* Inside a string: copy it out as a standard double-quoted JSON string. */
static bool framer_string_byte(struct qmp_framer *f, char c, qmp_frame_fn fn, void *opaque)
{
	if (f->esc) {
		f->esc = false;
		if (c != '\'')
			framer_put(f, '\\');
		framer_put(f, c);
	} else if (c == '\\') {
		f->esc = true;
	} else if (c == f->quote) {
		f->quote = 0;
		framer_put(f, '"');
		if (f->depth == 0)
			return framer_emit(f, fn, opaque);
	} else {
		if (c == '"')
			framer_put(f, '\\');
		framer_put(f, c);
	}
	return true;
}

int qmp_framer_feed(struct qmp_framer *f, const char *data, size_t n, qmp_frame_fn fn, void *opaque)
{
	for (size_t i = 0; i < n; i++) {
		char c = data[i];
		bool go = true;

		if (framer_is_reset_byte((unsigned char)c)) {
			framer_reset(f);
			snprintf(f->errbuf, sizeof(f->errbuf), "JSON parse error, stray byte 0x%02x",
				 (unsigned char)c);
			if (!fn(opaque, NULL, 0, f->errbuf))
				return 1;
			continue;
		}
		if (f->in_lit) {
			if (!framer_is_delimiter((unsigned char)c)) {
				framer_put(f, c);
				goto next;
			}
			f->in_lit = false;
			if (!framer_emit(f, fn, opaque))
				return 1;
			/* c starts the next token. */
		}
		if (f->quote) {
			go = framer_string_byte(f, c, fn, opaque);
			goto next;
		}
		switch (c) {
		case ' ':
		case '\t':
		case '\r':
		case '\n':
			if (f->depth)
				framer_put(f, c);
			break;
		case '"':
		case '\'':
			f->quote = c;
			framer_put(f, '"');
			break;
		case '{':
		case '[':
			framer_put(f, c);
			if (++f->depth > QMP_MAX_DEPTH)
				framer_refuse(f, "JSON nesting depth limit exceeded");
			break;
		case '}':
		case ']':
			/* A stray closer at the top level is handed over alone, to fail parsing. */
			framer_put(f, c);
			if (f->depth > 0)
				f->depth--;
			if (f->depth == 0)
				go = framer_emit(f, fn, opaque);
			break;
		default:
			framer_put(f, c);
			if (f->depth == 0)
				f->in_lit = true;
			break;
		}
next:
		if (f->error) {
			const char *e = f->error;

			f->error = NULL;
			go = fn(opaque, NULL, 0, e) && go;
		}
		if (!go)
			return 1;
	}
	return 0;
}

json_t *qmp_parse(const char *msg, size_t len, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j = json_loadb(msg, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);

	if (!j)
		snprintf(err, errlen, "JSON parse error, %s", je.text);
	return j;
}

char *qmp_dump_line(json_t *j, size_t *len)
{
	char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
	char *line;
	size_t n;

	if (!s)
		return NULL;
	n = strlen(s);
	line = realloc(s, n + 3);
	if (!line) {
		free(s);
		return NULL;
	}
	memcpy(line + n, "\r\n", 3);
	*len = n + 2;
	return line;
}
