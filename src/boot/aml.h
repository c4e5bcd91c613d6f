/* Private to src/boot/: a bounded byte builder for ACPI tables, and the few AML encoders (ACPI 6.4
 * §20.2) and resource descriptors (§6.4) kvmm's DSDT needs. Errors are sticky: once something does
 * not fit, `overflow` is set and every later call is a no-op, so callers check once at the end. */
#ifndef KVMM_BOOT_AML_H
#define KVMM_BOOT_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct abuf {
	uint8_t *b;
	size_t len, cap;
	bool overflow;
};

void abuf_init(struct abuf *a, uint8_t *mem, size_t cap);
void abuf_put(struct abuf *a, const void *p, size_t n);
void abuf_u8(struct abuf *a, uint8_t v);
void abuf_u16(struct abuf *a, uint16_t v);
void abuf_u32(struct abuf *a, uint32_t v);
void abuf_u64(struct abuf *a, uint64_t v);
/* Patches bytes already written (a table's length and checksum). */
void abuf_set(struct abuf *a, size_t at, const void *p, size_t n);

/* Objects with a PkgLength (Scope, Device, Package, Buffer): aml_open writes the opcode and
 * returns a mark; aml_close measures what was written since and inserts the PkgLength, in its
 * shortest encoding, in front of it. Opens and closes nest like brackets. */
size_t aml_open(struct abuf *a, const uint8_t *op, size_t oplen);
void aml_close(struct abuf *a, size_t mark);
size_t aml_scope(struct abuf *a, const char *name);
size_t aml_device(struct abuf *a, const char *name);
size_t aml_package(struct abuf *a, uint8_t nr_elements);

/* NameString: "\\_SB_" (root-relative) or one 4-character NameSeg such as "_HID". */
void aml_namestring(struct abuf *a, const char *name);
/* Name(name, ...): the object follows (an integer, a package, a buffer). */
void aml_name(struct abuf *a, const char *name);
/* An integer in its shortest encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordConst). */
void aml_int(struct abuf *a, uint64_t v);
/* A compressed EISA id ("PNP0A03") as a DWordConst, as ASL's EISAID() produces. */
void aml_eisaid(struct abuf *a, const char *id);
/* Buffer() holding n bytes. */
void aml_buffer(struct abuf *a, const uint8_t *data, size_t n);

/* Resource descriptors for a _CRS ResourceTemplate; res_end closes the template. */
void res_io(struct abuf *r, uint16_t base, uint8_t len);
void res_irq(struct abuf *r, unsigned irq);
void res_word_bus(struct abuf *r, uint16_t min, uint16_t max);
void res_word_io(struct abuf *r, uint16_t min, uint16_t max);
void res_dword_mem(struct abuf *r, uint32_t min, uint32_t max);
void res_end(struct abuf *r);

#endif
