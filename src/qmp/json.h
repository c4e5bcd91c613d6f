/* QMP wire helpers shared by the server and the client (src/qmp/): the framer that cuts a byte
 * stream into JSON texts, parsing, and serialising one message per line. Pure logic, no
 * syscalls. */
#ifndef KVMM_QMP_JSON_H
#define KVMM_QMP_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* QEMU limits nesting to 1024 levels too (qobject/json-streamer.c's MAX_NESTING). */
#define QMP_MAX_DEPTH 1024

/* Called with each complete JSON text (msg, len), or with msg NULL and a ready-made error
 * description when the input was refused. Return false to stop feeding. msg is only valid
 * during the call. */
typedef bool (*qmp_frame_fn)(void *opaque, const char *msg, size_t len, const char *error);

/* Finds where JSON texts end without parsing them, the way QEMU's streamer does: by counting braces
 * and brackets outside strings. It keeps its state across reads, looks at each byte once, and keeps
 * at most limit bytes of an unfinished text. QEMU's 'single-quoted' strings and the \' escape are
 * rewritten to standard JSON on the way, since jansson knows neither. */
struct qmp_framer {
	char *buf;
	size_t len, cap, limit;
	int depth;
	char quote;     /* the open string's quote character, or 0 */
	bool esc;       /* the last byte in a string was a backslash */
	bool in_lit;    /* inside a top-level number or keyword, which ends at a delimiter */
	bool skipping;  /* dropping the rest of a refused text until it ends */
	const char *error;
	char errbuf[48];
};

void qmp_framer_init(struct qmp_framer *f, size_t limit);
void qmp_framer_destroy(struct qmp_framer *f);
/* 0 when all n bytes were consumed, 1 when fn asked to stop. */
int qmp_framer_feed(struct qmp_framer *f, const char *data, size_t n, qmp_frame_fn fn,
		    void *opaque);

/* Parses one text from the framer; NULL with err set to "JSON parse error, ..." on failure. */
json_t *qmp_parse(const char *msg, size_t len, char *err, size_t errlen);
/* Serialises j as ASCII followed by CRLF (qmp-spec: every message ends with CRLF); malloc'ed. */
char *qmp_dump_line(json_t *j, size_t *len);

#endif
