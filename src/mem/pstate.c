#include "pstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int pstate_init(struct pstate_table *t, size_t pages)
{
	memset(t, 0, sizeof(*t));
	t->st = calloc(pages ? pages : 1, 1);
	t->slot = calloc(pages ? pages : 1, sizeof(*t->slot));
	if (!t->st || !t->slot) {
		pstate_free(t);
		return -ENOMEM;
	}
	t->pages = pages;
	t->count[PS_PRESENT] = pages;
	return 0;
}

void pstate_free(struct pstate_table *t)
{
	free(t->st);
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

void pstate_reset(struct pstate_table *t)
{
	memset(t->st, PS_PRESENT, t->pages);
	memset(t->slot, 0, t->pages * sizeof(*t->slot));
	memset(t->count, 0, sizeof(t->count));
	t->count[PS_PRESENT] = t->pages;
}

/* Rows: from; columns: to. A page reaches a non-PRESENT state only from PRESENT, except that a
 * page given up in any state may be ballooned, and compressed pages may be swapped (the cache
 * evicts to swap). Everything may come back to PRESENT. */
static const bool allowed[PS_NR][PS_NR] = {
	[PS_PRESENT] = { [PS_PRESENT] = true, [PS_ZERO] = true, [PS_SHARED] = true,
			 [PS_BALLOONED] = true, [PS_COMPRESSED] = true, [PS_SWAPPED] = true },
	[PS_ZERO] = { [PS_PRESENT] = true, [PS_ZERO] = true, [PS_BALLOONED] = true },
	[PS_SHARED] = { [PS_PRESENT] = true, [PS_SHARED] = true, [PS_BALLOONED] = true },
	[PS_BALLOONED] = { [PS_PRESENT] = true, [PS_BALLOONED] = true },
	[PS_COMPRESSED] = { [PS_PRESENT] = true, [PS_BALLOONED] = true, [PS_SWAPPED] = true },
	[PS_SWAPPED] = { [PS_PRESENT] = true, [PS_BALLOONED] = true },
};

bool pstate_allowed(enum pstate from, enum pstate to)
{
	return from < PS_NR && to < PS_NR && allowed[from][to];
}

int pstate_set(struct pstate_table *t, size_t i, enum pstate to, uint32_t slot, bool file_vma)
{
	enum pstate from;

	if (i >= t->pages)
		return -EINVAL;
	from = pstate_get(t, i);
	if (!pstate_allowed(from, to))
		return -EINVAL;
	t->count[from]--;
	t->count[to]++;
	t->st[i] = (uint8_t)(to | (file_vma ? PS_FILE_VMA : 0));
	t->slot[i] = to == PS_SHARED || to == PS_COMPRESSED || to == PS_SWAPPED ? slot : 0;
	return 0;
}

enum fault_action pstate_fault_action(enum pstate s)
{
	switch (s) {
	case PS_PRESENT:
		return FA_ZERO_WINDOW;
	case PS_ZERO:
	case PS_BALLOONED:
		return FA_ZERO;
	case PS_SHARED:
		return FA_WAKE;
	case PS_COMPRESSED:
		return FA_DECOMPRESS;
	case PS_SWAPPED:
		return FA_SWAP_IN;
	default:
		return FA_WAKE;
	}
}

bool pstate_fault_allocates(enum fault_action a, bool write, bool zero_page)
{
	switch (a) {
	case FA_ZERO_WINDOW:
	case FA_ZERO:
		return write || !zero_page;
	case FA_DECOMPRESS:
	case FA_SWAP_IN:
		return true;
	default:
		return false;
	}
}

const char *pstate_name(enum pstate s)
{
	static const char *const names[PS_NR] = { "present", "zero", "shared", "ballooned",
						  "compressed", "swapped" };
	return s < PS_NR ? names[s] : "?";
}
