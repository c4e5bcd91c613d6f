/* The memory manager's per-page state table (src/mem/pstate.c): counts, the transition table,
 * the PS_FILE_VMA flag, slots, reset and the fault actions. test_mem_htab.c covers the pool's hash
 * table; test_mem_pool.c the pool memfd, the VMA cap, feature detection and release/reset. */
#include "mem/pstate.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

/* ---- pstate ---- */

static void expect_counts_consistent(const struct pstate_table *t)
{
	uint64_t seen[PS_NR] = { 0 }, sum = 0;

	for (size_t i = 0; i < t->pages; i++) {
		cr_assert_lt(pstate_get(t, i), PS_NR, "page %zu has state %d", i, pstate_get(t, i));
		seen[pstate_get(t, i)]++;
	}
	for (int s = 0; s < PS_NR; s++) {
		cr_assert_eq(t->count[s], seen[s], "count[%s] = %llu, table holds %llu", pstate_name(s),
			     (unsigned long long)t->count[s], (unsigned long long)seen[s]);
		sum += t->count[s];
	}
	cr_assert_eq(sum, t->pages);
}

Test(pstate, init_every_page_present, .timeout = 10)
{
	struct pstate_table t;

	cr_assert_eq(pstate_init(&t, 100), 0);
	cr_expect_eq(t.pages, 100);
	cr_expect_eq(t.count[PS_PRESENT], 100);
	for (int s = PS_PRESENT + 1; s < PS_NR; s++)
		cr_expect_eq(t.count[s], 0, "count[%s]", pstate_name(s));
	for (size_t i = 0; i < t.pages; i++) {
		cr_expect_eq(pstate_get(&t, i), PS_PRESENT);
		cr_expect_not(pstate_file_vma(&t, i));
		cr_expect_eq(t.slot[i], 0);
	}
	pstate_free(&t);
	cr_expect_null(t.st);
	cr_expect_null(t.slot);

	cr_assert_eq(pstate_init(&t, 0), 0, "an empty table is valid");
	cr_expect_eq(t.count[PS_PRESENT], 0);
	cr_expect_eq(pstate_set(&t, 0, PS_ZERO, 0, false), -EINVAL, "no page 0 in an empty table");
	pstate_free(&t);
}

Test(pstate, allowed_transitions, .timeout = 10)
{
	/* The cases the manager relies on. */
	cr_expect(pstate_allowed(PS_PRESENT, PS_ZERO));
	cr_expect(pstate_allowed(PS_PRESENT, PS_SHARED));
	cr_expect(pstate_allowed(PS_PRESENT, PS_BALLOONED));
	cr_expect(pstate_allowed(PS_SHARED, PS_BALLOONED), "a shared page may be ballooned");
	cr_expect(pstate_allowed(PS_ZERO, PS_BALLOONED));
	cr_expect(pstate_allowed(PS_BALLOONED, PS_BALLOONED), "releasing a released page again");
	cr_expect(pstate_allowed(PS_COMPRESSED, PS_SWAPPED), "the cache evicts to swap");
	cr_expect(pstate_allowed(PS_ZERO, PS_ZERO));
	cr_expect(pstate_allowed(PS_SHARED, PS_SHARED));

	cr_expect_not(pstate_allowed(PS_ZERO, PS_SHARED));
	cr_expect_not(pstate_allowed(PS_SHARED, PS_ZERO));
	cr_expect_not(pstate_allowed(PS_BALLOONED, PS_ZERO));
	cr_expect_not(pstate_allowed(PS_BALLOONED, PS_SHARED));
	cr_expect_not(pstate_allowed(PS_SWAPPED, PS_COMPRESSED));
	cr_expect_not(pstate_allowed(PS_ZERO, PS_COMPRESSED));

	cr_expect_not(pstate_allowed(PS_NR, PS_PRESENT), "out-of-range from");
	cr_expect_not(pstate_allowed(PS_PRESENT, PS_NR), "out-of-range to");
	cr_expect_not(pstate_allowed((enum pstate)200, PS_PRESENT));
}

/* The rule pstate.c states for distinct states: anything may come back to PRESENT, a non-PRESENT
 * state is reached from PRESENT only, except BALLOONED (from anything) and COMPRESSED -> SWAPPED. */
Test(pstate, allowed_matches_stated_rule, .timeout = 10)
{
	for (int from = 0; from < PS_NR; from++) {
		for (int to = 0; to < PS_NR; to++) {
			bool want;

			if (from == to)
				continue;
			want = to == PS_PRESENT || from == PS_PRESENT || to == PS_BALLOONED ||
			       (from == PS_COMPRESSED && to == PS_SWAPPED);
			cr_expect_eq(pstate_allowed(from, to), want, "%s -> %s", pstate_name(from),
				     pstate_name(to));
		}
	}
}

Test(pstate, set_keeps_counts_and_refuses, .timeout = 10)
{
	struct pstate_table t;

	cr_assert_eq(pstate_init(&t, 16), 0);
	cr_expect_eq(pstate_set(&t, 3, PS_ZERO, 0, false), 0);
	cr_expect_eq(pstate_get(&t, 3), PS_ZERO);
	cr_expect_eq(t.count[PS_ZERO], 1);
	cr_expect_eq(t.count[PS_PRESENT], 15);

	/* Refused: nothing changes. */
	cr_expect_eq(pstate_set(&t, 3, PS_SHARED, 9, true), -EINVAL);
	cr_expect_eq(pstate_get(&t, 3), PS_ZERO);
	cr_expect_not(pstate_file_vma(&t, 3));
	cr_expect_eq(t.slot[3], 0);
	cr_expect_eq(t.count[PS_ZERO], 1);
	cr_expect_eq(t.count[PS_SHARED], 0);

	cr_expect_eq(pstate_set(&t, 3, PS_BALLOONED, 0, false), 0);
	cr_expect_eq(pstate_set(&t, 3, PS_ZERO, 0, false), -EINVAL, "ballooned -> zero is refused");
	cr_expect_eq(pstate_get(&t, 3), PS_BALLOONED);

	/* A transition to the same state keeps the counts. */
	cr_expect_eq(pstate_set(&t, 3, PS_BALLOONED, 0, false), 0);
	cr_expect_eq(t.count[PS_BALLOONED], 1);

	/* Out of range: refused without touching anything. */
	cr_expect_eq(pstate_set(&t, 16, PS_ZERO, 0, false), -EINVAL);
	cr_expect_eq(pstate_set(&t, SIZE_MAX, PS_ZERO, 0, false), -EINVAL);
	cr_expect_eq(pstate_set(&t, 0, PS_NR, 0, false), -EINVAL, "out-of-range state");
	cr_expect_eq(pstate_get(&t, 0), PS_PRESENT);
	expect_counts_consistent(&t);

	cr_expect_eq(pstate_set(&t, 4, PS_COMPRESSED, 0, false), 0);
	cr_expect_eq(pstate_set(&t, 4, PS_SWAPPED, 0, false), 0);
	cr_expect_eq(pstate_set(&t, 4, PS_PRESENT, 0, false), 0);
	expect_counts_consistent(&t);
	pstate_free(&t);
}

/* Random transitions: success exactly when pstate_allowed says so, and count[] always matches. */
Test(pstate, random_walk_counts, .timeout = 10)
{
	struct pstate_table t;
	uint64_t x = 0x9e3779b97f4a7c15ull;

	cr_assert_eq(pstate_init(&t, 64), 0);
	for (int k = 0; k < 20000; k++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t i = (size_t)(x % 70); /* some out of range */
		enum pstate to = (enum pstate)((x >> 8) % PS_NR);
		bool fv = (x >> 16) & 1;
		uint32_t slot = (uint32_t)(x >> 32);
		bool ok = i < t.pages && pstate_allowed(pstate_get(&t, i), to);
		int r = pstate_set(&t, i, to, slot, fv);

		cr_assert_eq(r, ok ? 0 : -EINVAL, "step %d: page %zu -> %s", k, i, pstate_name(to));
		if (ok) {
			cr_assert_eq(pstate_get(&t, i), to);
			cr_assert_eq(pstate_file_vma(&t, i), fv);
			cr_assert_eq(t.slot[i], to == PS_SHARED || to == PS_COMPRESSED || to == PS_SWAPPED ? slot : 0);
		}
		if (k % 97 == 0)
			expect_counts_consistent(&t);
	}
	expect_counts_consistent(&t);
	pstate_free(&t);
}

Test(pstate, file_vma_flag_and_slot, .timeout = 10)
{
	struct pstate_table t;

	cr_assert_eq(pstate_init(&t, 8), 0);
	cr_expect_eq(pstate_set(&t, 2, PS_SHARED, 42, true), 0);
	cr_expect_eq(pstate_get(&t, 2), PS_SHARED, "the flag does not leak into the state");
	cr_expect(pstate_file_vma(&t, 2));
	cr_expect_eq(t.slot[2], 42);
	cr_expect_not(pstate_file_vma(&t, 1));
	cr_expect_not(pstate_file_vma(&t, 3));

	/* Unshared (the guest wrote it): PRESENT but still in the file VMA, slot gone. */
	cr_expect_eq(pstate_set(&t, 2, PS_PRESENT, 42, true), 0);
	cr_expect_eq(pstate_get(&t, 2), PS_PRESENT);
	cr_expect(pstate_file_vma(&t, 2));
	cr_expect_eq(t.slot[2], 0, "a slot is kept only for SHARED, COMPRESSED and SWAPPED");

	cr_expect_eq(pstate_set(&t, 2, PS_PRESENT, 0, false), 0);
	cr_expect_not(pstate_file_vma(&t, 2), "cleared");

	cr_expect_eq(pstate_set(&t, 5, PS_ZERO, 77, false), 0);
	cr_expect_eq(t.slot[5], 0);
	cr_expect_eq(pstate_set(&t, 6, PS_BALLOONED, 77, true), 0);
	cr_expect_eq(t.slot[6], 0);
	cr_expect(pstate_file_vma(&t, 6));
	cr_expect_eq(pstate_set(&t, 7, PS_SHARED, UINT32_MAX - 1, false), 0);
	cr_expect_eq(t.slot[7], UINT32_MAX - 1);
	cr_expect_not(pstate_file_vma(&t, 7));
	expect_counts_consistent(&t);
	pstate_free(&t);
}

Test(pstate, reclaim_states_keep_their_handle, .timeout = 10)
{
	struct pstate_table t;

	cr_assert_eq(pstate_init(&t, 4), 0);
	/* Compressed (cache handle), evicted to swap (slot), faulted back in. */
	cr_expect_eq(pstate_set(&t, 1, PS_COMPRESSED, 9, false), 0);
	cr_expect_eq(t.slot[1], 9);
	cr_expect_eq(pstate_set(&t, 1, PS_SWAPPED, 1234, false), 0);
	cr_expect_eq(t.slot[1], 1234);
	cr_expect_eq(pstate_set(&t, 1, PS_COMPRESSED, 3, false), -EINVAL, "swap never goes back to the cache");
	cr_expect_eq(t.slot[1], 1234, "a refused transition changes nothing");
	cr_expect_eq(pstate_set(&t, 1, PS_PRESENT, 0, false), 0);
	cr_expect_eq(t.slot[1], 0);
	/* Straight to swap (did not fit in 2 KiB), then given up by the balloon. */
	cr_expect_eq(pstate_set(&t, 2, PS_SWAPPED, 0, false), 0, "slot 0 is a valid slot");
	cr_expect_eq(pstate_set(&t, 2, PS_BALLOONED, 0, false), 0);
	cr_expect_eq(pstate_set(&t, 3, PS_COMPRESSED, 0, false), 0);
	cr_expect_eq(pstate_set(&t, 3, PS_ZERO, 0, false), -EINVAL, "a compressed page is not dropped");
	cr_expect_eq(t.count[PS_COMPRESSED], 1);
	cr_expect_eq(t.count[PS_BALLOONED], 1);
	expect_counts_consistent(&t);
	pstate_free(&t);
}

Test(pstate, reset, .timeout = 10)
{
	struct pstate_table t;

	cr_assert_eq(pstate_init(&t, 32), 0);
	for (size_t i = 0; i < 32; i++) {
		enum pstate to = (enum pstate)(1 + i % (PS_NR - 1));

		cr_assert_eq(pstate_set(&t, i, to, (uint32_t)i + 1, i & 1), 0);
	}
	cr_expect_eq(t.count[PS_PRESENT], 0);
	pstate_reset(&t);
	cr_expect_eq(t.pages, 32);
	cr_expect_eq(t.count[PS_PRESENT], 32);
	for (size_t i = 0; i < 32; i++) {
		cr_expect_eq(pstate_get(&t, i), PS_PRESENT);
		cr_expect_not(pstate_file_vma(&t, i));
		cr_expect_eq(t.slot[i], 0);
	}
	expect_counts_consistent(&t);
	pstate_free(&t);
}

Test(pstate, fault_action_and_name, .timeout = 10)
{
	cr_expect_eq(pstate_fault_action(PS_PRESENT), FA_ZERO_WINDOW);
	cr_expect_eq(pstate_fault_action(PS_ZERO), FA_ZERO);
	cr_expect_eq(pstate_fault_action(PS_BALLOONED), FA_ZERO);
	cr_expect_eq(pstate_fault_action(PS_SHARED), FA_WAKE);
	cr_expect_eq(pstate_fault_action(PS_COMPRESSED), FA_DECOMPRESS);
	cr_expect_eq(pstate_fault_action(PS_SWAPPED), FA_SWAP_IN);
	cr_expect_eq(pstate_fault_action(PS_NR), FA_WAKE);

	cr_expect_str_eq(pstate_name(PS_PRESENT), "present");
	cr_expect_str_eq(pstate_name(PS_ZERO), "zero");
	cr_expect_str_eq(pstate_name(PS_SHARED), "shared");
	cr_expect_str_eq(pstate_name(PS_BALLOONED), "ballooned");
	cr_expect_str_eq(pstate_name(PS_COMPRESSED), "compressed");
	cr_expect_str_eq(pstate_name(PS_SWAPPED), "swapped");
	cr_expect_str_eq(pstate_name(PS_NR), "?");
	cr_expect_str_eq(pstate_name((enum pstate)255), "?");
}

/* What hostd's block (low state) holds: only faults that would take a new host page. */
Test(pstate, fault_allocates, .timeout = 10)
{
	cr_expect(!pstate_fault_allocates(FA_ZERO_WINDOW, false, true), "a read maps the zero page");
	cr_expect(pstate_fault_allocates(FA_ZERO_WINDOW, true, true), "a first write allocates");
	cr_expect(pstate_fault_allocates(FA_ZERO_WINDOW, false, false), "memfd: no zero page");
	cr_expect(!pstate_fault_allocates(FA_ZERO, false, true));
	cr_expect(pstate_fault_allocates(FA_ZERO, true, true));
	cr_expect(pstate_fault_allocates(FA_ZERO, false, false));
	cr_expect(pstate_fault_allocates(FA_DECOMPRESS, false, true));
	cr_expect(pstate_fault_allocates(FA_SWAP_IN, false, true));
	cr_expect(!pstate_fault_allocates(FA_WAKE, true, false), "nothing to fill");
}
