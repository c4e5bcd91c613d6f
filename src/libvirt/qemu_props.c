/* Option values as property lists (qemu_props.h): QEMU's key=value syntax and JSON objects. */
#include "qemu_props.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int qprops_add(struct qprops *p, const char *key, size_t klen, const char *val, size_t vlen)
{
	struct qprop *nv = realloc(p->v, (p->n + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	p->v = nv;
	nv[p->n] = (struct qprop){ .key = strndup(key, klen), .val = strndup(val, vlen) };
	if (!nv[p->n].key || !nv[p->n].val) {
		free(nv[p->n].key);
		free(nv[p->n].val);
		return -ENOMEM;
	}
	p->n++;
	return 0;
}

void qprops_free(struct qprops *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].key);
		free(p->v[i].val);
	}
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

/* One element up to an unescaped comma, with ",," turned into ','. Returns its length in text. */
static size_t qprops_element(const char *text, char *out)
{
	size_t i = 0, o = 0;

	while (text[i]) {
		if (text[i] == ',') {
			if (text[i + 1] != ',')
				break;
			i++;
		}
		out[o++] = text[i++];
	}
	out[o] = '\0';
	return i;
}

static int qprops_parse_keyval(const char *text, const char *implied_key, struct qprops *out,
			       char *err, size_t errlen)
{
	char *elem = malloc(strlen(text) + 1);
	size_t pos = 0;
	bool first = true;
	int r = 0;

	if (!elem)
		return -ENOMEM;
	for (;;) {
		size_t len = qprops_element(text + pos, elem);
		char *eq = strchr(elem, '=');

		if (eq && eq != elem) {
			r = qprops_add(out, elem, (size_t)(eq - elem), eq + 1, strlen(eq + 1));
		} else if (eq || !elem[0]) {
			snprintf(err, errlen, "'%s': expected KEY=VALUE in '%s'", elem, text);
			r = -EINVAL;
		} else if (first && implied_key) {
			r = qprops_add(out, implied_key, strlen(implied_key), elem, strlen(elem));
		} else if (first) {
			snprintf(err, errlen, "'%s': expected KEY=VALUE", elem);
			r = -EINVAL;
		} else if (strncmp(elem, "no", 2) == 0 && elem[2]) {
			r = qprops_add(out, elem + 2, strlen(elem + 2), "off", 3);
		} else {
			r = qprops_add(out, elem, strlen(elem), "on", 2);
		}
		if (r < 0)
			break;
		first = false;
		pos += len;
		if (!text[pos])
			break;
		pos++; /* the comma */
		if (!text[pos]) {
			snprintf(err, errlen, "'%s': ends with a comma", text);
			r = -EINVAL;
			break;
		}
	}
	free(elem);
	return r;
}

static int qprops_parse_json(const char *text, struct qprops *out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *obj = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	const char *key;
	json_t *val;
	int r = 0;

	if (!obj) {
		snprintf(err, errlen, "invalid JSON: %s (at column %d)", jerr.text, jerr.column);
		return -EINVAL;
	}
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "expected a JSON object");
		json_decref(obj);
		return -EINVAL;
	}
	json_object_foreach(obj, key, val) {
		char num[32];
		const char *s;

		if (json_is_string(val)) {
			s = json_string_value(val);
		} else if (json_is_integer(val)) {
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(val));
			s = num;
		} else if (json_is_boolean(val)) {
			s = json_is_true(val) ? "on" : "off";
		} else {
			snprintf(err, errlen, "property '%s': only strings, integers and booleans are "
				 "supported", key);
			r = -EINVAL;
			break;
		}
		r = qprops_add(out, key, strlen(key), s, strlen(s));
		if (r < 0)
			break;
	}
	json_decref(obj);
	return r;
}

int qprops_parse(const char *text, const char *implied_key, struct qprops *out, char *err,
		 size_t errlen)
{
	int r;

	*out = (struct qprops){ 0 };
	if (text[0] == '{')
		r = qprops_parse_json(text, out, err, errlen);
	else
		r = qprops_parse_keyval(text, implied_key, out, err, errlen);
	if (r == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	if (r < 0)
		qprops_free(out);
	return r;
}

const char *qprops_get(struct qprops *p, const char *key)
{
	const char *val = NULL;

	for (size_t i = 0; i < p->n; i++) {
		if (strcmp(p->v[i].key, key) == 0) {
			p->v[i].used = true;
			val = p->v[i].val;
		}
	}
	return val;
}

const char *qprops_unused(const struct qprops *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (!p->v[i].used)
			return p->v[i].key;
	return NULL;
}

int qprop_bool(const char *text, bool *out)
{
	static const char *const yes[] = { "on", "yes", "true" };
	static const char *const no[] = { "off", "no", "false" };

	for (size_t i = 0; i < 3; i++) {
		if (strcmp(text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int qprop_uint(const char *text, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!text[0])
		return -EINVAL;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > max)
		return -EINVAL;
	*out = v;
	return 0;
}
