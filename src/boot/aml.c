/* AML and resource-descriptor encoding (ACPI 6.4 §20.2 and §6.4): just enough for kvmm's DSDT. */
#include "aml.h"

#include <string.h>

#define AML_ONE_OP 0x01
#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_QWORD_PREFIX 0x0e
#define AML_STRING_PREFIX 0x0d
#define AML_SCOPE_OP 0x10
#define AML_METHOD_OP 0x14
#define AML_IF_OP 0xa0
#define AML_OPREGION_OP 0x80 /* after AML_EXT_OP_PREFIX */
#define AML_FIELD_OP 0x81    /* after AML_EXT_OP_PREFIX */
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP 0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR '\\'

#define PKGLEN_MAX (1u << 28) /* four bytes: 4 + 3 * 8 bits */

/* Resource descriptor tags (§6.4.2 small, §6.4.3 large). */
#define RES_IRQ_NO_FLAGS 0x22
#define RES_IO 0x47
#define RES_EXT_IRQ 0x89
#define RES_EXT_IRQ_CONSUMER 0x01
#define RES_EXT_IRQ_EDGE 0x02 /* bit 2 clear: active-high; bit 3 clear: exclusive */
#define RES_END 0x79
#define RES_DWORD_ADDR 0x87
#define RES_WORD_ADDR 0x88
#define RES_TYPE_MEM 0
#define RES_TYPE_IO 1
#define RES_TYPE_BUS 2
#define RES_FLAG_MIN_MAX_FIXED 0x0c /* _MIF | _MAF; positive decode; producer (bit 0 clear) */
#define RES_IO_ENTIRE_RANGE 0x03    /* _RNG: ISA and non-ISA ports */
#define RES_MEM_RW 0x01             /* _RW; _MEM = 0: non-cacheable */

void abuf_init(struct abuf *a, uint8_t *mem, size_t cap)
{
	a->b = mem;
	a->len = 0;
	a->cap = cap;
	a->overflow = false;
}

void abuf_put(struct abuf *a, const void *p, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memcpy(a->b + a->len, p, n);
	a->len += n;
}

void abuf_u8(struct abuf *a, uint8_t v) { abuf_put(a, &v, sizeof(v)); }
void abuf_u16(struct abuf *a, uint16_t v) { abuf_put(a, &v, sizeof(v)); }
void abuf_u32(struct abuf *a, uint32_t v) { abuf_put(a, &v, sizeof(v)); }
void abuf_u64(struct abuf *a, uint64_t v) { abuf_put(a, &v, sizeof(v)); }

void abuf_set(struct abuf *a, size_t at, const void *p, size_t n)
{
	if (a->overflow || at > a->len || n > a->len - at) {
		a->overflow = true;
		return;
	}
	memcpy(a->b + at, p, n);
}

size_t aml_open(struct abuf *a, const uint8_t *op, size_t oplen)
{
	abuf_put(a, op, oplen);
	return a->len;
}

void aml_close(struct abuf *a, size_t mark)
{
	size_t body, n;
	uint32_t len;

	if (a->overflow || mark > a->len)
		goto fail;
	body = a->len - mark;
	/* PkgLength counts its own bytes (§20.2.4): one byte holds up to 63, else the lead byte has
	 * the byte count in bits 7-6 and the low nibble, each following byte 8 more bits. */
	for (n = 1; n <= 4; n++) {
		uint64_t limit = n == 1 ? 64 : 1ull << (4 + 8 * (n - 1));

		if (body + n < limit)
			break;
	}
	if (n > 4 || body + n >= PKGLEN_MAX || n > a->cap - a->len)
		goto fail;
	len = (uint32_t)(body + n);
	memmove(a->b + mark + n, a->b + mark, body);
	if (n == 1) {
		a->b[mark] = (uint8_t)len;
	} else {
		a->b[mark] = (uint8_t)(((n - 1) << 6) | (len & 0xf));
		for (size_t i = 1; i < n; i++)
			a->b[mark + i] = (uint8_t)(len >> (4 + 8 * (i - 1)));
	}
	a->len += n;
	return;
fail:
	a->overflow = true;
}

void aml_namestring(struct abuf *a, const char *name)
{
	size_t n = strlen(name);

	if (name[0] == AML_ROOT_CHAR) {
		abuf_u8(a, AML_ROOT_CHAR);
		name++;
		n--;
	}
	/* One NameSeg: a lead character A-Z or '_', then three of A-Z, 0-9, '_'. */
	if (n != 4) {
		a->overflow = true;
		return;
	}
	abuf_put(a, name, 4);
}

size_t aml_scope(struct abuf *a, const char *name)
{
	size_t mark = aml_open(a, (const uint8_t[]){ AML_SCOPE_OP }, 1);

	aml_namestring(a, name);
	return mark;
}

size_t aml_device(struct abuf *a, const char *name)
{
	size_t mark = aml_open(a, (const uint8_t[]){ AML_EXT_OP_PREFIX, AML_DEVICE_OP }, 2);

	aml_namestring(a, name);
	return mark;
}

size_t aml_package(struct abuf *a, uint8_t nr_elements)
{
	size_t mark = aml_open(a, (const uint8_t[]){ AML_PACKAGE_OP }, 1);

	abuf_u8(a, nr_elements);
	return mark;
}

void aml_name(struct abuf *a, const char *name)
{
	abuf_u8(a, AML_NAME_OP);
	aml_namestring(a, name);
}

void aml_int(struct abuf *a, uint64_t v)
{
	if (v == 0) {
		abuf_u8(a, AML_ZERO_OP);
	} else if (v == 1) {
		abuf_u8(a, AML_ONE_OP);
	} else if (v <= UINT8_MAX) {
		abuf_u8(a, AML_BYTE_PREFIX);
		abuf_u8(a, (uint8_t)v);
	} else if (v <= UINT16_MAX) {
		abuf_u8(a, AML_WORD_PREFIX);
		abuf_u16(a, (uint16_t)v);
	} else if (v <= UINT32_MAX) {
		abuf_u8(a, AML_DWORD_PREFIX);
		abuf_u32(a, (uint32_t)v);
	} else {
		abuf_u8(a, AML_QWORD_PREFIX);
		abuf_u64(a, v);
	}
}

/* A compressed EISA id (ACPI 6.4 §6.1.5): three letters of 5 bits each (A = 1) and four hex
 * digits, stored big-endian in a DWord. */
void aml_eisaid(struct abuf *a, const char *id)
{
	uint32_t v = 0;

	if (strlen(id) != 7)
		goto bad;
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			goto bad;
		v |= (uint32_t)(id[i] - 'A' + 1) << (26 - 5 * i);
	}
	for (int i = 3; i < 7; i++) {
		unsigned d;

		if (id[i] >= '0' && id[i] <= '9')
			d = (unsigned)(id[i] - '0');
		else if (id[i] >= 'A' && id[i] <= 'F')
			d = (unsigned)(id[i] - 'A' + 10);
		else
			goto bad;
		v |= d << (4 * (6 - i));
	}
	abuf_u8(a, AML_DWORD_PREFIX);
	abuf_u32(a, __builtin_bswap32(v));
	return;
bad:
	a->overflow = true;
}

void aml_buffer(struct abuf *a, const uint8_t *data, size_t n)
{
	size_t mark = aml_open(a, (const uint8_t[]){ AML_BUFFER_OP }, 1);

	aml_int(a, n);
	abuf_put(a, data, n);
	aml_close(a, mark);
}

void aml_string(struct abuf *a, const char *s)
{
	for (const char *p = s; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			a->overflow = true;
	abuf_u8(a, AML_STRING_PREFIX);
	abuf_put(a, s, strlen(s) + 1);
}

size_t aml_method(struct abuf *a, const char *name, unsigned nargs, bool serialized)
{
	size_t mark = aml_open(a, (const uint8_t[]){ AML_METHOD_OP }, 1);

	if (nargs > 7)
		a->overflow = true;
	aml_namestring(a, name);
	/* MethodFlags: ArgCount in bits 2:0, SerializeFlag bit 3, SyncLevel 0. */
	abuf_u8(a, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
	return mark;
}

size_t aml_if(struct abuf *a)
{
	return aml_open(a, (const uint8_t[]){ AML_IF_OP }, 1);
}

void aml_opregion(struct abuf *a, const char *name, uint8_t space, uint64_t offset, uint64_t len)
{
	abuf_u8(a, AML_EXT_OP_PREFIX);
	abuf_u8(a, AML_OPREGION_OP);
	aml_namestring(a, name);
	abuf_u8(a, space);
	aml_int(a, offset);
	aml_int(a, len);
}

void aml_field(struct abuf *a, const char *region, uint8_t flags, const char *field, unsigned bits)
{
	size_t mark = aml_open(a, (const uint8_t[]){ AML_EXT_OP_PREFIX, AML_FIELD_OP }, 2);

	aml_namestring(a, region);
	abuf_u8(a, flags);
	/* NamedField: a NameSeg and its width in bits, encoded as a PkgLength (one byte < 64). */
	if (strlen(field) != 4 || bits == 0 || bits > 63)
		a->overflow = true;
	abuf_put(a, field, 4);
	abuf_u8(a, (uint8_t)bits);
	aml_close(a, mark);
}

void res_io(struct abuf *r, uint16_t base, uint8_t len)
{
	abuf_u8(r, RES_IO);
	abuf_u8(r, 0x01); /* 16-bit decode */
	abuf_u16(r, base); /* min */
	abuf_u16(r, base); /* max */
	abuf_u8(r, 1);     /* alignment */
	abuf_u8(r, len);
}

void res_irq(struct abuf *r, unsigned irq)
{
	/* Without the flags byte: edge-triggered, active-high, exclusive (ISA). */
	if (irq > 15) {
		r->overflow = true;
		return;
	}
	abuf_u8(r, RES_IRQ_NO_FLAGS);
	abuf_u16(r, (uint16_t)(1u << irq));
}

void res_ext_irq_edge(struct abuf *r, uint32_t gsi)
{
	abuf_u8(r, RES_EXT_IRQ);
	abuf_u16(r, 6);    /* flags, count, one DWord; no resource source */
	abuf_u8(r, RES_EXT_IRQ_CONSUMER | RES_EXT_IRQ_EDGE);
	abuf_u8(r, 1);
	abuf_u32(r, gsi);
}

static void res_word(struct abuf *r, uint8_t type, uint8_t type_flags, uint16_t min, uint16_t max)
{
	abuf_u8(r, RES_WORD_ADDR);
	abuf_u16(r, 13);   /* bytes that follow the length */
	abuf_u8(r, type);
	abuf_u8(r, RES_FLAG_MIN_MAX_FIXED);
	abuf_u8(r, type_flags);
	abuf_u16(r, 0);    /* granularity */
	abuf_u16(r, min);
	abuf_u16(r, max);
	abuf_u16(r, 0);    /* translation offset */
	abuf_u16(r, (uint16_t)(max - min + 1));
}

void res_word_bus(struct abuf *r, uint16_t min, uint16_t max)
{
	res_word(r, RES_TYPE_BUS, 0, min, max);
}

void res_word_io(struct abuf *r, uint16_t min, uint16_t max)
{
	res_word(r, RES_TYPE_IO, RES_IO_ENTIRE_RANGE, min, max);
}

void res_dword_mem(struct abuf *r, uint32_t min, uint32_t max)
{
	abuf_u8(r, RES_DWORD_ADDR);
	abuf_u16(r, 23);
	abuf_u8(r, RES_TYPE_MEM);
	abuf_u8(r, RES_FLAG_MIN_MAX_FIXED);
	abuf_u8(r, RES_MEM_RW);
	abuf_u32(r, 0);
	abuf_u32(r, min);
	abuf_u32(r, max);
	abuf_u32(r, 0);
	abuf_u32(r, max - min + 1);
}

void res_end(struct abuf *r)
{
	abuf_u8(r, RES_END);
	abuf_u8(r, 0); /* checksum 0: "treated as if the checksum operation succeeded" (§6.4.2.9) */
}
