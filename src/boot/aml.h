/* Private to src/boot/: a bounded byte builder for ACPI tables, and the few AML encoders (ACPI 6.4
 * §20.2) and resource descriptors (§6.4) kvmm's DSDT needs. Errors are sticky: once something does
 * not fit, `overflow` is set and every later call is a no-op, so callers check once at the end. */
#ifndef KVMM_BOOT_AML_H
#define KVMM_BOOT_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Opcodes acpi.c composes method bodies from (ACPI 6.4 §20.2.5). */
#define AML_ZERO_OP 0x00  /* also NullName, an absent Target */
#define AML_LOCAL0_OP 0x60
#define AML_STORE_OP 0x70
#define AML_AND_OP 0x7b
#define AML_NOTIFY_OP 0x86

/* OperationRegion spaces and Field flags (§19.6.100, §19.6.48). */
#define AML_REGION_SYSTEM_IO 0x01
#define AML_FIELD_DWORD_ACC 0x03
#define AML_FIELD_WRITE_AS_ZEROS 0x40 /* UpdateRule 2 in bits 6:5; LockRule NoLock (bit 4 clear) */

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
/* A String ("ACPI0013"): printable ASCII, NUL-terminated. */
void aml_string(struct abuf *a, const char *s);
/* Method (name, nargs, Serialized or NotSerialized): returns a mark for aml_close; the body
 * follows. */
size_t aml_method(struct abuf *a, const char *name, unsigned nargs, bool serialized);
/* If (predicate) { ... }: returns a mark for aml_close; the predicate, then the body, follow. */
size_t aml_if(struct abuf *a);
/* OperationRegion (name, space, offset, len). */
void aml_opregion(struct abuf *a, const char *name, uint8_t space, uint64_t offset, uint64_t len);
/* Field (region, flags) { field, bits }: one named field at the start of the region. */
void aml_field(struct abuf *a, const char *region, uint8_t flags, const char *field, unsigned bits);

/* Resource descriptors for a _CRS ResourceTemplate; res_end closes the template. */
void res_io(struct abuf *r, uint16_t base, uint8_t len);
void res_irq(struct abuf *r, unsigned irq);
/* Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi }: any GSI (§6.4.3.6). */
void res_ext_irq_edge(struct abuf *r, uint32_t gsi);
void res_word_bus(struct abuf *r, uint16_t min, uint16_t max);
void res_word_io(struct abuf *r, uint16_t min, uint16_t max);
void res_dword_mem(struct abuf *r, uint32_t min, uint32_t max);
void res_end(struct abuf *r);

#endif
