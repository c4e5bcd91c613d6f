/* The host scheduler's policy on worked examples (figures in MiB unless said otherwise) and on
 * random inputs. Demand is max(consumed, active) + max(64 MiB, size / 16), rounded up to a page,
 * within [reservation, limit]. */
#include <kvmm/policy.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define PAGE 4096ull
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A VM that uses all it holds: no reservation, limit = size. */
static struct policy_vm vm_full(uint64_t size, uint64_t shares)
{
	return (struct policy_vm){ .size = size, .limit = size, .shares = shares, .consumed = size,
				   .active = size };
}

static int allocate(uint64_t capacity, unsigned tax, struct policy_vm *vms, size_t n)
{
	struct policy_host host = { .capacity = capacity, .tax_pct = tax };

	return policy_allocate(&host, vms, n);
}

Test(policy, rho_formula, .timeout = 10)
{
	struct policy_vm vm = vm_full(4 * GiB, 1000);

	/* Fully active: charged 1 GiB, rho = 1000 / 1 GiB whatever the tax. */
	cr_expect_float_eq(policy_rho(&vm, GiB, 75), 1000.0 / GiB, 1e-18);
	/* f = 0.25 of 1 GiB, k = 4: ESX's S / (P (f + k (1 - f))) = 1000 / (1 GiB * 3.25). */
	vm.active = 256 * MiB;
	cr_expect_float_eq(policy_rho(&vm, GiB, 75), 1000.0 / (GiB * 3.25), 1e-18);
	/* Tax 0: an idle page costs as much as an active one. */
	cr_expect_float_eq(policy_rho(&vm, GiB, 0), 1000.0 / GiB, 1e-18);
	/* Active beyond the allocation is capped at it: f = 1. */
	cr_expect_float_eq(policy_rho(&vm, 128 * MiB, 75), 1000.0 / (128 * MiB), 1e-18);
	cr_expect(isinf(policy_rho(&vm, 0, 75)));
}

/* ESX paper: two 4 GiB VMs, equal shares, both holding all of it, one idle (400 MiB active,
 * f about 0.1 of its memory), one busy (f = 1), on 5 GiB. Demand is 4 GiB each (4096 + 256,
 * capped at the limit), 8 GiB in all: revocation. */
static void esx_pair(struct policy_vm vms[2])
{
	vms[0] = vm_full(4 * GiB, 40960);
	vms[0].active = 400 * MiB;
	vms[1] = vm_full(4 * GiB, 40960);
}

Test(policy, esx_paper_no_tax_equal, .timeout = 10)
{
	struct policy_vm vms[2];

	esx_pair(vms);
	/* k = 1: c(P) = P, equal shares -> equal P: 5120 / 2 = 2560 each. */
	cr_assert_eq(allocate(5 * GiB, 0, vms, 2), 0);
	cr_expect_eq(vms[0].target, 2560 * MiB);
	cr_expect_eq(vms[1].target, 2560 * MiB);
}

Test(policy, esx_paper_idle_tax, .timeout = 10)
{
	struct policy_vm vms[2];
	double r0, r1;

	esx_pair(vms);
	/* k = 4. Equal shares, so equal rho means equal charge:
	 * idle: c = 400 + 4 (P0 - 400); busy: c = P1; P0 + P1 = 5120.
	 * 4 P0 - 1200 = 5120 - P0 -> P0 = 6320 / 5 = 1264, P1 = 3856 (under its 4096 demand). */
	cr_assert_eq(allocate(5 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 1264 * MiB);
	cr_expect_eq(vms[1].target, 3856 * MiB);
	cr_expect_lt(vms[0].target, vms[1].target);
	r0 = policy_rho(&vms[0], vms[0].target, 75);
	r1 = policy_rho(&vms[1], vms[1].target, 75);
	cr_expect_lt(fabs(r0 - r1), 0.01 * r1, "rho %g vs %g", r0, r1);
}

Test(policy, reservation_floor_beats_shares, .timeout = 10)
{
	struct policy_vm vms[2] = { vm_full(4 * GiB, 1), vm_full(4 * GiB, 1000000) };

	/* On shares alone vms[0] would keep a few KiB of the 3 GiB; its 2 GiB reservation stands and
	 * the well-funded one gets the other 1024. */
	vms[0].reservation = 2 * GiB;
	cr_assert_eq(allocate(3 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 2 * GiB);
	cr_expect_eq(vms[1].target, 1 * GiB);
}

Test(policy, limit_ceiling_beats_shares, .timeout = 10)
{
	struct policy_vm vms[2] = { vm_full(4 * GiB, 1000000000), vm_full(4 * GiB, 10) };

	/* Limit 1 GiB, holding all of it: demand is capped at 1024 whatever its shares. */
	vms[0].limit = vms[0].consumed = vms[0].active = 1 * GiB;
	cr_assert_eq(allocate(3 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 1 * GiB);
	cr_expect_eq(vms[1].target, 2 * GiB);
	/* With room for all: limit and size, 5 GiB of the 16. */
	cr_assert_eq(allocate(16 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 1 * GiB);
	cr_expect_eq(vms[1].target, 4 * GiB);
}

Test(policy, high_shares_get_twice_normal, .timeout = 10)
{
	/* 20 and 10 shares per MiB of 4096, both fully active (no tax applies): 3072 split 2:1. */
	struct policy_vm vms[2] = { vm_full(4 * GiB, 20 * 4096), vm_full(4 * GiB, 10 * 4096) };

	cr_assert_eq(allocate(3 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 2048 * MiB);
	cr_expect_eq(vms[1].target, 1024 * MiB);
}

Test(policy, demand_has_headroom, .timeout = 10)
{
	struct policy_vm vms[2] = { vm_full(512 * MiB, 10), vm_full(2 * GiB, 10) };

	/* 512 MiB guest holding 100: headroom max(64, 32) = 64 -> 164.
	 * 2 GiB guest holding 1024, idle: headroom max(64, 128) = 128 -> 1152.
	 * Capacity exactly 1316: each gets its demand, nothing is left to spread. */
	vms[0].consumed = vms[0].active = 100 * MiB;
	vms[1].consumed = 1 * GiB;
	vms[1].active = 0;
	cr_assert_eq(allocate(1316 * MiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 164 * MiB);
	cr_expect_eq(vms[1].target, 1152 * MiB);
}

/* Two 4 GiB VMs with shares 7:1. A holds 1024 (512 active): demand 1024 + 256 = 1280.
 * B holds 2048 but 2560 is active: demand 2560 + 256 = 2816. Demands sum to 4096. */
static void fit_pair(struct policy_vm vms[2])
{
	vms[0] = vm_full(4 * GiB, 7);
	vms[0].consumed = 1 * GiB;
	vms[0].active = 512 * MiB;
	vms[1] = vm_full(4 * GiB, 1);
	vms[1].consumed = 2 * GiB;
	vms[1].active = 2560 * MiB;
}

Test(policy, fits_demand_plus_leftover_by_shares, .timeout = 10)
{
	struct policy_vm vms[2];

	fit_pair(vms);
	/* 6144: leftover 2048 split 7:1 -> A 1280 + 1792 = 3072, B 2816 + 256 = 3072. */
	cr_assert_eq(allocate(6 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 3072 * MiB);
	cr_expect_eq(vms[1].target, 3072 * MiB);
	/* 7680: leftover 3584; 7/8 of it (3136) would take A past 4096, so A stops at 4096 (2816 of
	 * it) and B gets the other 768: 3584. */
	cr_assert_eq(allocate(7680 * MiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 4096 * MiB);
	cr_expect_eq(vms[1].target, 3584 * MiB);
	/* 9216 is more than both limits: each gets its limit. */
	cr_assert_eq(allocate(9 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 4 * GiB);
	cr_expect_eq(vms[1].target, 4 * GiB);
}

Test(policy, zero_shares_come_last, .timeout = 10)
{
	struct policy_vm vms[2] = { vm_full(4 * GiB, 0), vm_full(4 * GiB, 10) };

	/* Revocation: the zero-share VM keeps its 512 reservation; the other takes the rest (2560)... */
	vms[0].reservation = 512 * MiB;
	cr_assert_eq(allocate(3 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 512 * MiB);
	cr_expect_eq(vms[1].target, 2560 * MiB);
	/* ...and gets what is left once the other holds its whole 4096 demand. */
	cr_assert_eq(allocate(5 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 1 * GiB);
	cr_expect_eq(vms[1].target, 4 * GiB);
	/* Growth: both hold 1024 (demand 1280); of the 3584 left the share holder takes 2816 to its
	 * limit, the zero-share VM the last 768. */
	vms[0].reservation = 0;
	vms[0].consumed = vms[1].consumed = 1 * GiB;
	vms[0].active = vms[1].active = 0;
	cr_assert_eq(allocate(6 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 2 * GiB);
	cr_expect_eq(vms[1].target, 4 * GiB);
}

Test(policy, targets_are_whole_pages, .timeout = 10)
{
	struct policy_vm vms[3] = { vm_full(4 * GiB, 3), vm_full(4 * GiB, 5), vm_full(4 * GiB, 7) };
	uint64_t sum = 0;

	vms[0].consumed = 100 * MiB + 123;
	vms[1].active = 1 * GiB + 1;
	cr_assert_eq(allocate(7 * GiB + 4095, 75, vms, 3), 0);
	for (size_t i = 0; i < 3; i++) {
		cr_expect_eq(vms[i].target % PAGE, 0, "vm %zu target %llu", i,
			     (unsigned long long)vms[i].target);
		sum += vms[i].target;
	}
	cr_expect_eq(sum, 7 * GiB);
}

Test(policy, reservations_overcommitted, .timeout = 10)
{
	struct policy_vm vms[2] = { vm_full(4 * GiB, 10), vm_full(4 * GiB, 10) };

	vms[0].reservation = 3 * GiB;
	vms[1].reservation = 2 * GiB;
	cr_expect_eq(allocate(4 * GiB, 75, vms, 2), -ENOSPC);
	cr_expect_eq(vms[0].target, 3 * GiB);
	cr_expect_eq(vms[1].target, 2 * GiB);
	/* Exactly enough is not overcommitted. */
	cr_expect_eq(allocate(5 * GiB, 75, vms, 2), 0);
	cr_expect_eq(vms[0].target, 3 * GiB);
	cr_expect_eq(vms[1].target, 2 * GiB);
}

Test(policy, rejects_inconsistent_input, .timeout = 10)
{
	struct policy_host host = { .capacity = 8 * GiB, .tax_pct = 75 };
	struct policy_vm vm = vm_full(4 * GiB, 10);

	vm.target = 12345;
	vm.reservation = 4 * GiB + 1;
	vm.limit = 4 * GiB;
	cr_expect_eq(policy_allocate(&host, &vm, 1), -EINVAL);
	vm.reservation = 0;
	vm.limit = 4 * GiB + 1;
	cr_expect_eq(policy_allocate(&host, &vm, 1), -EINVAL);
	cr_expect_eq(vm.target, 12345, "target written on -EINVAL");
	vm.limit = 4 * GiB;
	host.tax_pct = 100;
	cr_expect_eq(policy_allocate(&host, &vm, 1), -EINVAL);
	host.tax_pct = 99;
	cr_expect_eq(policy_allocate(&host, &vm, 1), 0);
	cr_expect_eq(policy_allocate(&host, NULL, 1), -EINVAL);
	cr_expect_eq(policy_allocate(NULL, &vm, 1), -EINVAL);
	cr_expect_eq(policy_allocate(&host, NULL, 0), 0);
}

Test(policy, admission_at_the_boundary, .timeout = 10)
{
	struct policy_host host = { .capacity = 8 * GiB, .tax_pct = 75 };
	struct policy_vm run[2] = { { .reservation = 2 * GiB, .overhead = 100 * MiB },
				    { .reservation = 1 * GiB, .overhead = 50 * MiB } };
	/* 8192 - (2048 + 100) - (1024 + 50) - 200 overhead = 4770 MiB of reservation fits exactly. */
	struct policy_vm cand = { .reservation = 4770 * MiB, .overhead = 200 * MiB };

	cr_expect(policy_admits(&host, run, 2, &cand));
	cand.reservation += 1;
	cr_expect_not(policy_admits(&host, run, 2, &cand));
	cr_expect(policy_admits(&host, NULL, 0, &cand));
	cand.reservation = UINT64_MAX;
	cr_expect_not(policy_admits(&host, run, 2, &cand), "sum overflowed");
	cr_expect_not(policy_admits(&host, run, 2, NULL));
}

Test(policy, minfree, .timeout = 10)
{
	/* 24 GiB: 899 MiB * 24 / 28 = 24 GiB * 899 / 28672 = 808002706 bytes (770.6 MiB). */
	cr_expect_eq(policy_minfree(24 * GiB), 808002706ull);
	cr_expect_eq(policy_minfree(28 * GiB), 899 * MiB);
	/* 64 GiB: 899 MiB + 1% of 36 GiB (386547056 bytes) = 1329216880 bytes (1267.6 MiB). */
	cr_expect_eq(policy_minfree(64 * GiB), 1329216880ull);
	cr_expect_eq(policy_minfree(0), 0);
	cr_expect_gt(policy_minfree(UINT64_MAX), 899 * MiB);
}

Test(policy, thresholds, .timeout = 10)
{
	struct policy_thresholds t;

	policy_thresholds_default(&t);
	cr_expect_eq(t.high_pct, 400);
	cr_expect_eq(t.clear_pct, 100);
	cr_expect_eq(t.soft_pct, 64);
	cr_expect_eq(t.hard_pct, 32);
	cr_expect_eq(t.low_pct, 16);
	cr_expect_eq(t.hyst_pct, 8);
	cr_expect_eq(policy_thresholds_check(&t), 0);
	t.soft_pct = t.clear_pct;
	cr_expect_eq(policy_thresholds_check(&t), -EINVAL);
	policy_thresholds_default(&t);
	t.low_pct = 0;
	cr_expect_eq(policy_thresholds_check(&t), -EINVAL);
	cr_expect_eq(policy_thresholds_check(NULL), -EINVAL);
}

/* minFree 1000 MiB: lines high 4000, clear 1000, soft 640, hard 320, low 160; hysteresis 80.
 * A state is entered below its own line (soft below 640) and left upwards at the better state's
 * line plus 80 (soft to clear at 1080). */
#define MF (1000 * MiB)

static enum policy_state next(enum policy_state cur, uint64_t free_mib)
{
	struct policy_thresholds t;

	policy_thresholds_default(&t);
	return policy_state_next(cur, free_mib * MiB, MF, &t);
}

Test(policy, states_fall_at_once, .timeout = 10)
{
	cr_expect_eq(next(POLICY_HIGH, 1000), POLICY_HIGH);
	cr_expect_eq(next(POLICY_HIGH, 999), POLICY_CLEAR);
	cr_expect_eq(next(POLICY_CLEAR, 640), POLICY_CLEAR);
	cr_expect_eq(next(POLICY_CLEAR, 639), POLICY_SOFT);
	cr_expect_eq(next(POLICY_SOFT, 319), POLICY_HARD);
	cr_expect_eq(next(POLICY_HARD, 159), POLICY_LOW);
	cr_expect_eq(next(POLICY_LOW, 0), POLICY_LOW);
	/* Several states in one call. */
	cr_expect_eq(next(POLICY_HIGH, 500), POLICY_SOFT);
	cr_expect_eq(next(POLICY_HIGH, 300), POLICY_HARD);
	cr_expect_eq(next(POLICY_HIGH, 100), POLICY_LOW);
	cr_expect_eq(policy_state_next(POLICY_HIGH, 300 * MiB, MF, NULL), POLICY_HARD);
	/* No current state yet: fall from high to where free memory is. */
	cr_expect_eq(next(POLICY_NSTATES, 700), POLICY_CLEAR);
	cr_expect_eq(next(POLICY_NSTATES, 2000), POLICY_HIGH);
}

Test(policy, states_rise_with_hysteresis, .timeout = 10)
{
	struct policy_thresholds t;

	/* Back above its own 640 line, or even clear's 1000, but not 1080: stays soft. */
	cr_expect_eq(next(POLICY_SOFT, 900), POLICY_SOFT);
	cr_expect_eq(next(POLICY_SOFT, 1079), POLICY_SOFT);
	cr_expect_eq(next(POLICY_SOFT, 1080), POLICY_CLEAR);
	cr_expect_eq(next(POLICY_CLEAR, 4079), POLICY_CLEAR);
	cr_expect_eq(next(POLICY_CLEAR, 4080), POLICY_HIGH);
	/* Several states at once, each with its margin: 4050 < 4080 stops at clear. */
	cr_expect_eq(next(POLICY_LOW, 4050), POLICY_CLEAR);
	cr_expect_eq(next(POLICY_LOW, 4080), POLICY_HIGH);
	cr_expect_eq(next(POLICY_LOW, 400), POLICY_HARD);
	cr_expect_eq(next(POLICY_LOW, 399), POLICY_LOW);
	/* Without hysteresis the better state's line alone decides. */
	policy_thresholds_default(&t);
	t.hyst_pct = 0;
	cr_expect_eq(policy_state_next(POLICY_SOFT, 1000 * MiB, MF, &t), POLICY_CLEAR);
	cr_expect_eq(policy_state_next(POLICY_SOFT, 999 * MiB, MF, &t), POLICY_SOFT);
	cr_expect_eq(policy_state_next(POLICY_LOW, 320 * MiB, MF, &t), POLICY_HARD);
	cr_expect_eq(policy_state_next(POLICY_LOW, 319 * MiB, MF, &t), POLICY_LOW);
}

Test(policy, techniques_and_names, .timeout = 10)
{
	const unsigned all = POLICY_TECH_SHARE | POLICY_TECH_BALLOON | POLICY_TECH_COMPRESS |
			     POLICY_TECH_SWAP;

	cr_expect_eq(policy_techniques(POLICY_HIGH), POLICY_TECH_SHARE);
	cr_expect_eq(policy_techniques(POLICY_CLEAR), POLICY_TECH_SHARE);
	cr_expect_eq(policy_techniques(POLICY_SOFT), POLICY_TECH_SHARE | POLICY_TECH_BALLOON);
	cr_expect_eq(policy_techniques(POLICY_HARD), all);
	cr_expect_eq(policy_techniques(POLICY_LOW), all | POLICY_TECH_BLOCK);
	cr_expect_str_eq(policy_state_name(POLICY_HIGH), "high");
	cr_expect_str_eq(policy_state_name(POLICY_CLEAR), "clear");
	cr_expect_str_eq(policy_state_name(POLICY_SOFT), "soft");
	cr_expect_str_eq(policy_state_name(POLICY_HARD), "hard");
	cr_expect_str_eq(policy_state_name(POLICY_LOW), "low");
	cr_expect_str_eq(policy_state_name(POLICY_NSTATES), "unknown");
}

/* splitmix64: a fixed seed makes every run check the same cases. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, max], whole pages. */
static uint64_t rnd_pages(uint64_t *s, uint64_t max)
{
	return rnd(s) % (max / PAGE + 1) * PAGE;
}

/* The demand policy.c computes (see the comment at the top), rounded up to a whole page. */
static uint64_t demand(const struct policy_vm *vm)
{
	uint64_t d = (vm->consumed > vm->active ? vm->consumed : vm->active);
	uint64_t head = vm->size / 16 > 64 * MiB ? vm->size / 16 : 64 * MiB;

	d = (d + head + PAGE - 1) / PAGE * PAGE;
	return d < vm->reservation ? vm->reservation : d > vm->limit ? vm->limit : d;
}

Test(policy, random_inputs_keep_bounds_and_sum, .timeout = 10)
{
	uint64_t seed = 8;

	for (int iter = 0; iter < 3000; iter++) {
		struct policy_vm vms[8];
		size_t n = rnd(&seed) % (NELEM(vms) + 1);
		uint64_t sum_res = 0, sum_lim = 0, sum_size = 0, sum_dem = 0, sum = 0, cap;
		unsigned tax = rnd(&seed) % 100;
		uint64_t maxsize = rnd(&seed) % 2 ? 8 * GiB : 256 * MiB;
		int r;

		for (size_t i = 0; i < n; i++) {
			struct policy_vm *vm = &vms[i];

			vm->size = rnd_pages(&seed, maxsize - PAGE) + PAGE;
			vm->limit = rnd(&seed) % 2 ? vm->size : rnd_pages(&seed, vm->size);
			vm->reservation = rnd(&seed) % 3 ? 0 : rnd_pages(&seed, vm->limit);
			vm->shares = rnd(&seed) % 10 ? rnd(&seed) % 1000000 + 1 : 0;
			vm->consumed = rnd_pages(&seed, vm->size);
			vm->active = rnd_pages(&seed, vm->size);
			vm->target = 0;
			sum_res += vm->reservation;
			sum_lim += vm->limit;
			sum_size += vm->size;
			sum_dem += demand(vm);
		}
		cap = rnd_pages(&seed, sum_size + sum_size / 4);
		r = allocate(cap, tax, vms, n);
		if (sum_res > cap) {
			cr_assert_eq(r, -ENOSPC, "iter %d", iter);
			continue;
		}
		cr_assert_eq(r, 0, "iter %d", iter);
		for (size_t i = 0; i < n; i++) {
			cr_assert_geq(vms[i].target, vms[i].reservation, "iter %d vm %zu", iter, i);
			cr_assert_leq(vms[i].target, vms[i].limit, "iter %d vm %zu", iter, i);
			cr_assert_eq(vms[i].target % PAGE, 0, "iter %d vm %zu", iter, i);
			sum += vms[i].target;
		}
		cr_assert_eq(sum, cap < sum_lim ? cap : sum_lim, "iter %d: sum %llu cap %llu lim %llu",
			     iter, (unsigned long long)sum, (unsigned long long)cap,
			     (unsigned long long)sum_lim);
		if (sum_dem <= cap)
			continue;
		/* Revocation: no VM that could give memory (above its reservation) is worse funded
		 * than one that could take it (below its demand), up to a page of rounding each. */
		for (size_t i = 0; i < n; i++) {
			if (!vms[i].shares || vms[i].target == vms[i].reservation)
				continue;
			for (size_t j = 0; j < n; j++) {
				double gi, tj;

				if (!vms[j].shares || vms[j].target == demand(&vms[j]))
					continue;
				gi = policy_rho(&vms[i], vms[i].target - PAGE, tax);
				tj = policy_rho(&vms[j], vms[j].target + PAGE, tax);
				cr_assert_geq(gi * (1 + 1e-9), tj, "iter %d: vm %zu rho %g, vm %zu rho %g",
					      iter, i, gi, j, tj);
			}
		}
	}
}

/* Any byte values, up to the 64-bit range: targets stay in bounds and the sum within capacity, and
 * rounding to pages leaves less than a page per VM unhanded. */
Test(policy, random_bytes_stay_in_bounds, .timeout = 10)
{
	uint64_t seed = 16;

	for (int iter = 0; iter < 3000; iter++) {
		struct policy_vm vms[8];
		size_t n = rnd(&seed) % (NELEM(vms) + 1);
		uint64_t sum_lim = 0, sum_res = 0, sum = 0, cap, total;
		unsigned shift = rnd(&seed) % 4 ? 34 : 60; /* 16 GiB or 1 EiB guests */
		unsigned tax = rnd(&seed) % 100;
		int r;

		for (size_t i = 0; i < n; i++) {
			struct policy_vm *vm = &vms[i];

			vm->size = rnd(&seed) >> (64 - shift);
			vm->limit = rnd(&seed) % (vm->size + 1);
			vm->reservation = rnd(&seed) % 2 ? 0 : rnd(&seed) % (vm->limit + 1);
			vm->shares = rnd(&seed) % 8 ? rnd(&seed) >> (rnd(&seed) % 64) : 0;
			vm->consumed = rnd(&seed) % (vm->size + 1);
			vm->active = rnd(&seed) >> (64 - shift);
			sum_lim += vm->limit;
			sum_res += vm->reservation;
		}
		cap = rnd(&seed) % 4 ? rnd(&seed) % (sum_lim + sum_lim / 8 + 1) : sum_res;
		r = allocate(cap, tax, vms, n);
		if (sum_res > cap) {
			cr_assert_eq(r, -ENOSPC, "iter %d", iter);
			continue;
		}
		cr_assert_eq(r, 0, "iter %d", iter);
		for (size_t i = 0; i < n; i++) {
			cr_assert_geq(vms[i].target, vms[i].reservation, "iter %d vm %zu", iter, i);
			cr_assert_leq(vms[i].target, vms[i].limit, "iter %d vm %zu", iter, i);
			sum += vms[i].target;
		}
		total = cap < sum_lim ? cap : sum_lim;
		cr_assert_leq(sum, total, "iter %d", iter);
		cr_assert_geq(sum + n * PAGE, total, "iter %d: %llu of %llu", iter,
			      (unsigned long long)sum, (unsigned long long)total);
	}
}
