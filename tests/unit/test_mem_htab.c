/* The sharing pool's hash table (src/mem/pool.c): linear probing without tombstones, hints and
 * slots, the 3/4 load limit, and deletion with backward shift. */
#include "mem/pool.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

/* The home bucket, as pool.c's (static) htab_slot computes it; home_matches_table checks that
 * this copy agrees with the table. */
static size_t home(const struct htab *h, uint64_t hash)
{
	return (size_t)(hash ^ (hash >> 29)) & h->mask;
}

/* The n-th hash (n < 2^19) whose home is bucket b of a 1024-entry table: below 2^29 the home is
 * just the low bits. */
static uint64_t at_home(const struct htab *h, size_t b, uint64_t n)
{
	return (uint64_t)b + n * (h->mask + 1);
}

/* Linear probing invariant: from each entry's home to its bucket there is no empty bucket, every
 * entry is found where it is, and `used` counts the entries. */
static void check_table(struct htab *h)
{
	size_t used = 0;

	for (size_t i = 0; i <= h->mask; i++) {
		if (h->e[i].kind == HT_EMPTY)
			continue;
		used++;
		cr_assert(h->e[i].kind == HT_HINT || h->e[i].kind == HT_SLOT);
		for (size_t j = home(h, h->e[i].hash); j != i; j = (j + 1) & h->mask)
			cr_assert_neq(h->e[j].kind, HT_EMPTY, "hole at %zu between home %zu and entry at %zu",
				      j, home(h, h->e[i].hash), i);
		cr_assert_eq(htab_find(h, h->e[i].hash), &h->e[i]);
	}
	cr_assert_eq(h->used, used);
}

static size_t bucket_of(struct htab *h, uint64_t hash)
{
	struct htab_entry *e = htab_find(h, hash);

	cr_assert_not_null(e, "hash %#llx not found", (unsigned long long)hash);
	return (size_t)(e - h->e);
}

Test(htab, init_sizes, .timeout = 10)
{
	static const size_t mins[] = { 0, 1, 511, 512, 513, 5000, 100000 };
	struct htab h;

	for (size_t k = 0; k < sizeof(mins) / sizeof(mins[0]); k++) {
		cr_assert_eq(htab_init(&h, mins[k]), 0);
		size_t cap = h.mask + 1;

		cr_expect_eq(cap & h.mask, 0, "capacity %zu is a power of two", cap);
		cr_expect_geq(cap, 2 * mins[k], "room for %zu entries at half load", mins[k]);
		cr_expect_eq(h.used, 0);
		for (size_t i = 0; i < cap; i++)
			cr_assert_eq(h.e[i].kind, HT_EMPTY);
		cr_expect_null(htab_find(&h, 12345));
		htab_free(&h);
		cr_expect_null(h.e);
	}
}

Test(htab, home_matches_table, .timeout = 10)
{
	static const uint64_t hashes[] = { 0, 1, 1023, 1024, 0xdeadbeefcafef00dull, UINT64_MAX,
					   1ull << 29, (1ull << 29) | 5, 0x123456789abcdefull };
	struct htab h;

	cr_assert_eq(htab_init(&h, 0), 0);
	for (size_t k = 0; k < sizeof(hashes) / sizeof(hashes[0]); k++) {
		cr_assert_eq(htab_put(&h, hashes[k], HT_SLOT, (uint32_t)k), 0);
		cr_expect_eq(bucket_of(&h, hashes[k]), home(&h, hashes[k]), "alone, %#llx sits at home",
			     (unsigned long long)hashes[k]);
		htab_del(&h, hashes[k]);
		cr_expect_eq(h.used, 0);
	}
	htab_free(&h);
}

Test(htab, put_find_replace_kinds, .timeout = 10)
{
	struct htab h;
	struct htab_entry *e;

	cr_assert_eq(htab_init(&h, 16), 0);
	cr_expect_null(htab_find(&h, 0xabc));
	cr_expect_eq(htab_put(&h, 0xabc, HT_HINT, 17), 0);
	e = htab_find(&h, 0xabc);
	cr_assert_not_null(e);
	cr_expect_eq(e->kind, HT_HINT);
	cr_expect_eq(e->val, 17);
	cr_expect_eq(e->hash, 0xabc);
	cr_expect_eq(h.used, 1);

	/* The hint's page became a pool slot: same hash, replaced in place. */
	cr_expect_eq(htab_put(&h, 0xabc, HT_SLOT, 3), 0);
	cr_expect_eq(htab_find(&h, 0xabc), e);
	cr_expect_eq(e->kind, HT_SLOT);
	cr_expect_eq(e->val, 3);
	cr_expect_eq(h.used, 1, "a replacement is not a new entry");

	cr_expect_eq(htab_put(&h, 0, HT_HINT, 5), 0, "hash 0 is a key like any other");
	cr_assert_not_null(htab_find(&h, 0));
	cr_expect_eq(htab_find(&h, 0)->val, 5);
	cr_expect_eq(h.used, 2);

	htab_del(&h, 0xabc);
	cr_expect_null(htab_find(&h, 0xabc));
	htab_del(&h, 0xabc); /* absent: nothing happens */
	cr_expect_eq(h.used, 1);
	cr_expect_not_null(htab_find(&h, 0));
	check_table(&h);
	htab_free(&h);
}

/* A probe run of colliding keys, with other keys' runs merged into it; deleting from its middle
 * must shift back exactly the entries that may move. */
Test(htab, delete_shifts_back_in_a_run, .timeout = 10)
{
	enum { RUN = 12 };
	struct htab h;
	uint64_t a[RUN], b[3];

	cr_assert_eq(htab_init(&h, 0), 0);
	cr_assert_eq(h.mask, 1023, "at_home() assumes the smallest table");
	for (int k = 0; k < RUN; k++) {
		a[k] = at_home(&h, 100, (uint64_t)k + 1);
		cr_assert_eq(home(&h, a[k]), 100);
		cr_assert_eq(htab_put(&h, a[k], HT_SLOT, (uint32_t)k), 0);
		cr_assert_eq(bucket_of(&h, a[k]), 100 + (size_t)k, "run order");
	}
	/* Keys whose home lies inside the run: they land after it. */
	for (int k = 0; k < 3; k++) {
		b[k] = at_home(&h, 104 + (size_t)k, 1);
		cr_assert_eq(htab_put(&h, b[k], HT_HINT, 1000u + (uint32_t)k), 0);
		cr_assert_eq(bucket_of(&h, b[k]), 100 + RUN + (size_t)k);
	}
	check_table(&h);

	/* From the middle, then the head, then the one just before the b's. */
	htab_del(&h, a[5]);
	cr_expect_null(htab_find(&h, a[5]));
	check_table(&h);
	htab_del(&h, a[0]);
	check_table(&h);
	htab_del(&h, a[RUN - 1]);
	check_table(&h);
	for (int k = 0; k < RUN; k++) {
		if (k == 0 || k == 5 || k == RUN - 1)
			continue;
		cr_expect_eq(htab_find(&h, a[k])->val, (uint32_t)k);
	}
	for (int k = 0; k < 3; k++) {
		cr_assert_not_null(htab_find(&h, b[k]));
		cr_expect_eq(htab_find(&h, b[k])->val, 1000u + (uint32_t)k);
		cr_expect_geq(bucket_of(&h, b[k]), home(&h, b[k]), "never before its home");
	}
	/* The run shrank by three with no holes: 9 a's and 3 b's fill [100, 112). */
	for (size_t i = 100; i < 112; i++)
		cr_expect_neq(h.e[i].kind, HT_EMPTY, "bucket %zu", i);
	cr_expect_eq(h.e[112].kind, HT_EMPTY);
	cr_expect_eq(h.used, RUN - 3 + 3);

	/* Deleting the first key whose home is inside the run. */
	htab_del(&h, b[0]);
	check_table(&h);
	htab_free(&h);
}

/* A run that wraps from the last bucket to bucket 0, and keys whose home is 0 behind it. */
Test(htab, delete_wraps_around, .timeout = 10)
{
	enum { RUN = 8 };
	struct htab h;
	uint64_t a[RUN], z[4];
	size_t last;

	cr_assert_eq(htab_init(&h, 0), 0);
	last = h.mask;
	for (int k = 0; k < RUN; k++) {
		a[k] = at_home(&h, last - 2, (uint64_t)k + 1);
		cr_assert_eq(htab_put(&h, a[k], HT_SLOT, (uint32_t)k), 0);
		cr_assert_eq(bucket_of(&h, a[k]), (last - 2 + (size_t)k) & h.mask);
	}
	for (int k = 0; k < 4; k++) {
		z[k] = at_home(&h, (size_t)k % 2, (uint64_t)k + 1); /* homes 0 and 1 */
		cr_assert_eq(htab_put(&h, z[k], HT_HINT, 100u + (uint32_t)k), 0);
	}
	check_table(&h);
	cr_expect_eq(bucket_of(&h, z[0]), (size_t)RUN - 3, "behind the wrapped run");

	/* Before the wrap (i > j cyclically for the entries that move), at the last bucket, at 0. */
	htab_del(&h, a[1]);
	check_table(&h);
	htab_del(&h, a[2]);
	check_table(&h);
	htab_del(&h, a[4]);
	check_table(&h);
	for (int k = 0; k < RUN; k++)
		if (k != 1 && k != 2 && k != 4)
			cr_expect_eq(htab_find(&h, a[k])->val, (uint32_t)k);
	for (int k = 0; k < 4; k++)
		cr_expect_eq(htab_find(&h, z[k])->val, 100u + (uint32_t)k);
	/* A key at home 1 never moves to bucket 0 or into the tail of the table. */
	for (int k = 1; k < 4; k += 2)
		cr_expect_lt(bucket_of(&h, z[k]), (size_t)RUN, "z%d stays after its home", k);
	for (int k = 1; k < 4; k += 2)
		cr_expect_geq(bucket_of(&h, z[k]), 1);

	/* Empty it in an order that crosses the wrap every time. */
	for (int k = RUN - 1; k >= 0; k--) {
		htab_del(&h, a[k]);
		check_table(&h);
	}
	for (int k = 0; k < 4; k++) {
		htab_del(&h, z[k]);
		check_table(&h);
	}
	cr_expect_eq(h.used, 0);
	htab_free(&h);
}

Test(htab, full_at_three_quarters, .timeout = 10)
{
	struct htab h;
	size_t cap, n = 0;
	int r = 0;

	cr_assert_eq(htab_init(&h, 0), 0);
	cap = h.mask + 1;
	while ((r = htab_put(&h, 0x1000000000ull + n * 0x9e3779b97f4a7c15ull, HT_HINT, (uint32_t)n)) == 0)
		n++;
	cr_expect_eq(r, -ENOSPC);
	cr_expect_eq(n, cap / 4 * 3, "%zu entries fit in %zu buckets", n, cap);
	cr_expect_eq(h.used, n);
	check_table(&h);

	/* Replacing an entry still works when full. */
	cr_expect_eq(htab_put(&h, 0x1000000000ull, HT_SLOT, 7), 0);
	cr_expect_eq(htab_find(&h, 0x1000000000ull)->kind, HT_SLOT);
	cr_expect_eq(h.used, n);
	/* One deleted: one more fits, and no more. */
	htab_del(&h, 0x1000000000ull + 3 * 0x9e3779b97f4a7c15ull);
	cr_expect_eq(htab_put(&h, 42, HT_SLOT, 1), 0);
	cr_expect_eq(htab_put(&h, 43, HT_SLOT, 1), -ENOSPC);
	cr_expect_null(htab_find(&h, 43));
	check_table(&h);
	htab_free(&h);
}

Test(htab, drop_hints_keeps_slots, .timeout = 10)
{
	struct htab h;
	size_t slots = 0;

	cr_assert_eq(htab_init(&h, 0), 0);
	/* Interleaved in shared runs, so that slots sit behind hints before the drop. */
	for (uint64_t k = 0; k < 200; k++) {
		uint64_t hash = at_home(&h, ((size_t)(k % 10) * 7 + h.mask - 30) & h.mask, k + 1);

		cr_assert_eq(htab_put(&h, hash, k % 3 ? HT_HINT : HT_SLOT, (uint32_t)k), 0);
		slots += k % 3 == 0;
	}
	check_table(&h);
	htab_drop_hints(&h);
	check_table(&h);
	cr_expect_eq(h.used, slots);
	for (uint64_t k = 0; k < 200; k++) {
		uint64_t hash = at_home(&h, ((size_t)(k % 10) * 7 + h.mask - 30) & h.mask, k + 1);
		struct htab_entry *e = htab_find(&h, hash);

		if (k % 3) {
			cr_expect_null(e, "hint %llu dropped", (unsigned long long)k);
		} else {
			cr_assert_not_null(e, "slot %llu kept", (unsigned long long)k);
			cr_expect_eq(e->kind, HT_SLOT);
			cr_expect_eq(e->val, (uint32_t)k);
		}
	}
	htab_free(&h);
}

/* Random put/del/find/drop_hints against a plain array. Keys come from a small set crowded into a
 * few home buckets (some across the wrap), plus full 64-bit ones. */
Test(htab, random_against_reference, .timeout = 10)
{
	enum { NKEYS = 400, OPS = 20000 };
	struct ref { uint64_t hash; uint8_t kind; uint32_t val; } ref[NKEYS];
	struct htab h;
	uint64_t x = 0x2545f4914f6cdd1dull;
	size_t live = 0;

	cr_assert_eq(htab_init(&h, 0), 0);
	for (size_t k = 0; k < NKEYS; k++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (k % 4 == 3)
			ref[k].hash = x; /* anywhere */
		else /* odd k: homes mask-4 .. mask and 0 .. 9 (a wrapping run); even k: 500, 502 */
			ref[k].hash = at_home(&h, k % 2 ? (h.mask - 5 + k % 16) & h.mask : 500 + k % 4, k + 1);
		ref[k].kind = HT_EMPTY;
	}
	for (int op = 0; op < OPS; op++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		struct ref *r = &ref[x % NKEYS];
		unsigned what = (unsigned)(x >> 32) % 100;

		if (what < 50) {
			enum htab_kind kind = (x >> 40) & 1 ? HT_SLOT : HT_HINT;
			uint32_t val = (uint32_t)(x >> 20);

			cr_assert_eq(htab_put(&h, r->hash, kind, val), 0, "op %d", op);
			live += r->kind == HT_EMPTY;
			r->kind = (uint8_t)kind;
			r->val = val;
		} else if (what < 95) {
			htab_del(&h, r->hash);
			live -= r->kind != HT_EMPTY;
			r->kind = HT_EMPTY;
		} else if (what < 96) {
			htab_drop_hints(&h);
			for (size_t k = 0; k < NKEYS; k++)
				if (ref[k].kind == HT_HINT) {
					ref[k].kind = HT_EMPTY;
					live--;
				}
		}
		cr_assert_eq(h.used, live, "op %d", op);
		if (op % 50 == 0 || what >= 95) {
			for (size_t k = 0; k < NKEYS; k++) {
				struct htab_entry *e = htab_find(&h, ref[k].hash);

				if (ref[k].kind == HT_EMPTY) {
					cr_assert_null(e, "op %d: key %zu should be gone", op, k);
				} else {
					cr_assert_not_null(e, "op %d: key %zu lost", op, k);
					cr_assert_eq(e->kind, ref[k].kind);
					cr_assert_eq(e->val, ref[k].val);
				}
			}
			check_table(&h);
		}
	}
	htab_free(&h);
}
