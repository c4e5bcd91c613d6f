/* Private to src/libvirt/qemu_args*.c: one option value as a list of properties, read from either
 * of the two forms QEMU accepts and libvirt generates: key=value lists (QemuOpts / keyval:
 * "memory-backend-ram,id=pc.ram,size=1G", ",," for a literal comma) and JSON objects
 * ('{"qom-type":"memory-backend-ram","id":"pc.ram","size":1073741824}'). Pure: no syscalls. */
#ifndef KVMM_LIBVIRT_QEMU_PROPS_H
#define KVMM_LIBVIRT_QEMU_PROPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qprop {
	char *key;
	char *val;  /* JSON numbers and booleans as text: "1073741824", "on" / "off" */
	bool used;  /* read by the option's handler; what is left is unsupported */
};

struct qprops {
	struct qprop *v;
	size_t n;
};

/*
 * Splits text into props. In key=value form, a first element without '=' is the value of
 * implied_key (NULL: an error), a later one "KEY" means KEY=on and "noKEY" KEY=off (QemuOpts'
 * legacy flags, e.g. -qmp's "server,nowait"). Text starting with '{' is a JSON object whose values
 * are strings, integers or booleans. 0, or -EINVAL with a message in err; -ENOMEM.
 */
int qprops_parse(const char *text, const char *implied_key, struct qprops *out, char *err,
		 size_t errlen);
void qprops_free(struct qprops *p);

/* The value of key (marked used), or NULL; a key given twice yields the last value, as in QEMU. */
const char *qprops_get(struct qprops *p, const char *key);
/* The first key not read by qprops_get, or NULL. */
const char *qprops_unused(const struct qprops *p);

/* on/off/yes/no/true/false. 0 or -EINVAL. */
int qprop_bool(const char *text, bool *out);
/* A decimal number (no sign, no suffix) up to max. 0 or -EINVAL. */
int qprop_uint(const char *text, uint64_t max, uint64_t *out);

#endif
