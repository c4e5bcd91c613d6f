/* Private to src/libvirt/qemu_args*.c: what the option table (qemu_args.c) and the handlers of
 * -object, -device, -chardev, -add-fd (qemu_args_objects.c) share. */
#ifndef KVMM_LIBVIRT_QEMU_ARGS_INTERNAL_H
#define KVMM_LIBVIRT_QEMU_ARGS_INTERNAL_H

#include <kvmm/qemu_args.h>

#include "qemu_props.h"

/* Records the first error (qa->err) and returns -EINVAL, for `return qa_fail(...)`. */
int qa_fail(struct qemu_args *qa, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses value into props (implied key as in qprops_parse); an error names the option. */
int qa_props(struct qemu_args *qa, const char *opt, const char *value, const char *implied,
	     struct qprops *p);
/* After a handler read what it supports: the first property left is an error naming opt and what. */
int qa_props_done(struct qemu_args *qa, const char *opt, const char *what, struct qprops *p);
/* A boolean property: absent leaves *out, a bad value is an error. */
int qa_bool(struct qemu_args *qa, const char *opt, struct qprops *p, const char *key, bool *out);
/* Sizes as QEMU reads them: bytes, or with a K/M/G/T suffix; 0 and bad text are errors. */
int qa_size(struct qemu_args *qa, const char *opt, const char *text, uint64_t *out);

int qa_opt_object(struct qemu_args *qa, const char *value);
int qa_opt_device(struct qemu_args *qa, const char *value);
int qa_opt_chardev(struct qemu_args *qa, const char *value);
int qa_opt_add_fd(struct qemu_args *qa, const char *value);

/* Once every option is read: the memory backend -machine names, the monitor and serial chardevs,
 * /dev/fdset/N. 0 or -EINVAL. */
int qa_resolve_backend(struct qemu_args *qa);
int qa_resolve_chardevs(struct qemu_args *qa);

#endif
