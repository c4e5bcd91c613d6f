/* Port-IO and MMIO dispatch (src/bus/io.c). Devices register ranges at init; a range may also be
 * moved later (a guest reprogramming a PCI BAR), so lookups take a read lock. A handler runs on the
 * vCPU thread that made the access, outside that lock, and does its own locking. An access nobody
 * handles reads as all ones, writes are dropped, and it is logged once per address. */
#ifndef KVMM_BUS_H
#define KVMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* offset is relative to the range's base; len is 1, 2, 4 or 8; data is little-endian. */
typedef void (*bus_handler)(void *opaque, uint64_t offset, uint8_t *data, unsigned len, bool is_write);

struct bus_range {
	uint64_t base, len;
	bus_handler fn;
	void *opaque;
	const char *name;
};

#define BUS_UNHANDLED_LOGGED 64

struct bus {
	const char *name;          /* "pio" or "mmio", for messages */
	pthread_rwlock_t lock;     /* ranges; unhandled has its own mutex */
	pthread_mutex_t unhandled_lock;
	struct bus_range *ranges;  /* sorted by base, never overlapping */
	size_t nr, cap;
	/* Addresses already reported as unhandled (bounded; then reporting stops). */
	uint64_t unhandled[BUS_UNHANDLED_LOGGED];
	unsigned nr_unhandled;
};

void bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);

/* -EINVAL for len 0 or base + len overflowing, -EEXIST when it overlaps a registered range. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_handler fn, void *opaque,
		 const char *name);
/* Removes the range registered at exactly base; -ENOENT if none. */
int bus_unregister(struct bus *b, uint64_t base);

/* Calls the handler covering [addr, addr + len); true when one did. */
bool bus_dispatch(struct bus *b, uint64_t addr, uint8_t *data, unsigned len, bool is_write);

/* A bus access's data bytes as a little-endian value (len <= 4), and back. */
static inline uint32_t bus_data_get(const uint8_t *p, unsigned len)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < len; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static inline void bus_data_put(uint8_t *p, unsigned len, uint32_t v)
{
	for (unsigned i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

#endif
