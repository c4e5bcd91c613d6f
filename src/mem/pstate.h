/* Per-page state (DESIGN.md section 4): one byte per 4 KiB guest page, indexed by the page's
 * offset in gmem's mapping. Pure: no syscalls, so every rule here is unit-tested. */
#ifndef KVMM_MEM_PSTATE_H
#define KVMM_MEM_PSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pstate {
	PS_PRESENT,    /* the kernel's: a host page, the zero page, or nothing yet (reads as zero) */
	PS_ZERO,       /* kvmm dropped it because it was zero; reads as zero */
	PS_SHARED,     /* maps a read-only pool page copy-on-write (side table: the slot) */
	PS_BALLOONED,  /* the guest gave it back; reads as zero */
	PS_COMPRESSED, /* in the LZ4 cache (side table: the cache handle) */
	PS_SWAPPED,    /* in the swap file (side table: the slot) */
	PS_NR,
};

#define PS_STATE_MASK 0x0f
/* The page lives in a file-backed VMA: a pool mapping that the guest has written (copy-on-write
 * gave it a private copy). It cannot be captured with UFFDIO_MOVE until it is made anonymous
 * again (balloon, reset). */
#define PS_FILE_VMA 0x10

/* What the fault handler does for a missing-page fault on a page in a state. */
enum fault_action {
	FA_ZERO_WINDOW, /* never captured: map the zero page over it and its untouched neighbours */
	FA_ZERO,        /* dropped (zero, ballooned): a zero page for this page only, a refault */
	FA_WAKE,        /* resolved already (shared, or present again): wake the faulting thread */
	FA_DECOMPRESS,  /* compressed: decompress into the page handed to UFFDIO_COPY */
	FA_SWAP_IN,     /* swapped: read and check the slot, then UFFDIO_COPY */
};

struct pstate_table {
	uint8_t *st;       /* one byte per page */
	uint32_t *slot;    /* SHARED: pool slot; COMPRESSED: cache handle; SWAPPED: swap slot */
	size_t pages;
	uint64_t count[PS_NR]; /* pages in each state */
};

int pstate_init(struct pstate_table *t, size_t pages);
void pstate_free(struct pstate_table *t);
/* Every page PRESENT, no slots (power-on, system reset). */
void pstate_reset(struct pstate_table *t);

static inline enum pstate pstate_get(const struct pstate_table *t, size_t i)
{
	return (enum pstate)(t->st[i] & PS_STATE_MASK);
}

static inline bool pstate_file_vma(const struct pstate_table *t, size_t i)
{
	return t->st[i] & PS_FILE_VMA;
}

/* Whether a page may go from one state to another (the memory manager's state machine). */
bool pstate_allowed(enum pstate from, enum pstate to);
/* Moves page i to state `to` (slot kept for SHARED, COMPRESSED and SWAPPED), keeping the counts; -EINVAL (and no
 * change) for a transition pstate_allowed refuses. file_vma sets or clears PS_FILE_VMA. */
int pstate_set(struct pstate_table *t, size_t i, enum pstate to, uint32_t slot, bool file_vma);

enum fault_action pstate_fault_action(enum pstate s);
/* Whether serving a missing fault the way `a` says takes a new host page: a write to a page that
 * reads as zero (now, or by the kernel's copy-on-write of the zero page just after), any fault-in
 * of compressed or swapped data, and every zero fill where the memory has no shared zero page
 * (memfd: UFFDIO_ZEROPAGE allocates). A read mapped to the zero page costs nothing. */
bool pstate_fault_allocates(enum fault_action a, bool write, bool zero_page);
const char *pstate_name(enum pstate s);

#endif
