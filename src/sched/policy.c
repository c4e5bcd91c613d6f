/* The host memory scheduler's policy (include/kvmm/policy.h): ESXi's allocation rules and host
 * free-memory states as pure arithmetic, so hostd only gathers figures and pushes results.
 *
 * Allocation works on a "level" that every VM is filled to at once, found by bisection:
 * - when every VM's demand fits, the level is extra bytes per share: VM i holds
 *   demand_i + min(limit_i - demand_i, level * shares_i);
 * - when it does not (min-funding revocation), the level is charged bytes per share, 1 / rho: VM i
 *   holds the allocation whose charge c_i(P) is level * shares_i, clamped to
 *   [reservation_i, demand_i]. Raising the level gives memory to whoever has the most shares per
 *   charged page, so lowering it takes memory first from whoever has the fewest: ESX's rule.
 * Each VM's holding is monotone and continuous in the level, so the sum is too and bisection finds
 * the level at which it equals what there is to hand out. Doubles carry the search (2^53 bytes is
 * 8 PiB, exact enough); the result is made whole pages and its sum made exact in integers. */
#include <kvmm/policy.h>

#include <errno.h>
#include <math.h>

#define POLICY_PAGE 4096ull

/* Demand headroom: a VM's demand is what it holds (or actively uses, if more) plus this much, so a
 * growing guest can fault memory in between two hostd ticks. Without it a target equal to what the
 * VM held at the last report pins it there: every new page it touches is reclaimed again, and the
 * next report shows no growth to grant. 1/16 of the guest scales with large guests; the 64 MiB
 * floor is for small ones. Starting values, not measured. */
#define POLICY_HEADROOM_MIN (64ull << 20)
#define POLICY_HEADROOM_SHIFT 4

/* Halvings of the level interval: each VM's holding is then exact to far below a byte. */
#define POLICY_BISECT_STEPS 128

/* Default hysteresis, percent of minFree: how far above a better state's line free memory must be
 * to go back to it. ESXi does not publish its own; 8% is half the narrowest band (low 16% to hard
 * 32%), about 100 MiB on a 64 GiB host. A starting value, not measured. */
#define POLICY_HYST_DEFAULT 8

/* ESXi's minFree: 899 MiB for the first 28 GiB of host memory, 1% of the rest. */
#define POLICY_MINFREE_BASE (899ull << 20)
#define POLICY_MINFREE_KNEE (28ull << 30)

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t page_down(uint64_t x)
{
	return x & ~(POLICY_PAGE - 1);
}

static uint64_t page_up(uint64_t x)
{
	if (x > UINT64_MAX - (POLICY_PAGE - 1))
		return page_down(UINT64_MAX);
	return page_down(x + POLICY_PAGE - 1);
}

static uint64_t clamp_u64(uint64_t x, uint64_t lo, uint64_t hi)
{
	return x < lo ? lo : x > hi ? hi : x;
}

/* An idle page is charged k = 1 / (1 - tax) active pages. */
static double tax_factor(unsigned tax_pct)
{
	if (tax_pct > 99)
		tax_pct = 99;
	return 100.0 / (double)(100 - tax_pct);
}

/* c(P) = min(P, A) + k * max(0, P - A): P * (f + k (1 - f)) with f = min(A, P) / P. */
static double charge(const struct policy_vm *vm, double alloc, double k)
{
	double act = (double)vm->active;

	return alloc <= act ? alloc : act + k * (alloc - act);
}

/* The allocation whose charge is c: c is linear with slope 1 up to A and slope k beyond. */
static double uncharge(const struct policy_vm *vm, double c, double k)
{
	double act = (double)vm->active;

	return c <= act ? c : act + (c - act) / k;
}

double policy_rho(const struct policy_vm *vm, uint64_t alloc, unsigned tax_pct)
{
	if (alloc == 0)
		return INFINITY;
	return (double)vm->shares / charge(vm, (double)alloc, tax_factor(tax_pct));
}

/* What the VM should be able to hold now (see POLICY_HEADROOM_MIN): whole pages, within its
 * bounds. */
static uint64_t vm_demand(const struct policy_vm *vm)
{
	uint64_t held = vm->consumed > vm->active ? vm->consumed : vm->active;
	uint64_t headroom = vm->size >> POLICY_HEADROOM_SHIFT;

	if (headroom < POLICY_HEADROOM_MIN)
		headroom = POLICY_HEADROOM_MIN;
	return clamp_u64(page_up(add_sat(held, headroom)), vm->reservation, vm->limit);
}

/* One fill: which bounds the VMs move between and which of them move.
 * Zero-share VMs are the least funded of all (rho = 0) but still need a place: pass 0 moves the
 * VMs with shares while zero-share ones stay at their lower bound; only when the others are all at
 * their upper bound does pass 1 move the zero-share ones, weighted equally among themselves. */
struct fill {
	const struct policy_vm *vms;
	size_t n;
	bool grow; /* everything fits: bounds [demand, limit]; else [reservation, demand] */
	double k;
	int pass;
	double level;
};

static void fill_bounds(const struct fill *f, size_t i, uint64_t *lo, uint64_t *hi)
{
	const struct policy_vm *vm = &f->vms[i];
	uint64_t d = vm_demand(vm);

	*lo = f->grow ? d : vm->reservation;
	*hi = f->grow ? vm->limit : d;
}

static bool fill_moves(const struct fill *f, size_t i)
{
	return (f->vms[i].shares != 0) == (f->pass == 0);
}

static double fill_weight(const struct fill *f, size_t i)
{
	return f->pass == 0 ? (double)f->vms[i].shares : 1.0;
}

/* VM i's holding at f->level, in bytes, between its bounds. */
static double fill_one(const struct fill *f, size_t i)
{
	const struct policy_vm *vm = &f->vms[i];
	uint64_t lo, hi;
	double x;

	fill_bounds(f, i, &lo, &hi);
	if (!fill_moves(f, i))
		return f->pass == 0 ? (double)lo : (double)hi;
	if (f->grow)
		x = (double)lo + f->level * fill_weight(f, i);
	else
		x = uncharge(vm, f->level * fill_weight(f, i), f->k);
	return x < (double)lo ? (double)lo : x > (double)hi ? (double)hi : x;
}

/* The level at which VM i reaches its upper bound. */
static double fill_full(const struct fill *f, size_t i)
{
	uint64_t lo, hi;

	fill_bounds(f, i, &lo, &hi);
	if (f->grow)
		return (double)(hi - lo) / fill_weight(f, i);
	return charge(&f->vms[i], (double)hi, f->k) / fill_weight(f, i);
}

static double fill_sum(const struct fill *f)
{
	double sum = 0;

	for (size_t i = 0; i < f->n; i++)
		sum += fill_one(f, i);
	return sum;
}

/* Sets f->pass and f->level so that the holdings sum to total (bytes, at most the sum of the upper
 * bounds). */
static void fill_solve(struct fill *f, uint64_t total)
{
	double lo = 0, hi = 0;

	f->pass = 0;
	f->level = INFINITY;
	if (fill_sum(f) < (double)total)
		f->pass = 1;
	for (size_t i = 0; i < f->n; i++)
		if (fill_moves(f, i) && fill_full(f, i) > hi)
			hi = fill_full(f, i);
	/* Ends on the lower end of the interval, whose sum is below total: fill_finish hands out the
	 * difference in whole pages, which is simpler than taking back an overshoot. */
	for (int step = 0; step < POLICY_BISECT_STEPS; step++) {
		f->level = lo + (hi - lo) / 2;
		if (fill_sum(f) < (double)total)
			lo = f->level;
		else
			hi = f->level;
	}
	f->level = lo;
}

/* A holding in bytes as an integer within [lo, hi], without converting a double >= 2^64. */
static uint64_t to_bytes(double x, uint64_t lo, uint64_t hi)
{
	if (!(x > (double)lo))
		return lo;
	if (x >= (double)hi)
		return hi;
	return clamp_u64((uint64_t)x, lo, hi);
}

/* Writes the targets: whole pages (rounded down, so never more than the fill gave), but never below
 * the reservation, which may itself not be a page multiple. Rounding loses less than a page per VM;
 * those pages are handed back, first to the VMs that lost them, so the targets sum to total. Should
 * floating-point error leave the sum a page over, that is taken back, never below a reservation. */
static void fill_finish(const struct fill *f, struct policy_vm *vms, uint64_t total)
{
	uint64_t sum = 0;
	bool progress = true;

	for (size_t i = 0; i < f->n; i++) {
		uint64_t lo, hi, x;

		fill_bounds(f, i, &lo, &hi);
		x = page_down(to_bytes(fill_one(f, i), lo, hi));
		vms[i].target = x > vms[i].reservation ? x : vms[i].reservation;
		sum = add_sat(sum, vms[i].target);
	}
	while (sum > total && progress) {
		progress = false;
		for (size_t i = f->n; sum > total && i-- > 0;) {
			uint64_t t = vms[i].target, prev = page_down(t - 1);

			if (t <= vms[i].reservation)
				continue;
			if (prev < vms[i].reservation)
				prev = vms[i].reservation;
			sum -= t - prev;
			vms[i].target = prev;
			progress = true;
		}
	}
	progress = true;
	for (int pass = 0; sum < total && progress; pass++) {
		progress = false;
		for (size_t i = 0; i < f->n && sum < total; i++) {
			uint64_t lo, hi, next = page_down(vms[i].target) + POLICY_PAGE;

			fill_bounds(f, i, &lo, &hi);
			if (pass == 0 && fill_one(f, i) <= (double)vms[i].target)
				continue;
			if (next > hi || next - vms[i].target > total - sum)
				continue;
			sum += next - vms[i].target;
			vms[i].target = next;
			progress = true;
		}
		if (pass == 0)
			progress = true;
	}
}

static int policy_validate(const struct policy_host *host, const struct policy_vm *vms, size_t n)
{
	if (!host || (n && !vms) || host->tax_pct >= 100)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (vms[i].reservation > vms[i].limit || vms[i].limit > vms[i].size)
			return -EINVAL;
	return 0;
}

int policy_allocate(const struct policy_host *host, struct policy_vm *vms, size_t n)
{
	uint64_t sum_res = 0, sum_demand = 0, sum_limit = 0, total;
	struct fill f = { .vms = vms, .n = n, .k = 1 };
	int err = policy_validate(host, vms, n);

	if (err)
		return err;
	for (size_t i = 0; i < n; i++) {
		sum_res = add_sat(sum_res, vms[i].reservation);
		sum_demand = add_sat(sum_demand, vm_demand(&vms[i]));
		sum_limit = add_sat(sum_limit, vms[i].limit);
	}
	if (sum_res > host->capacity) {
		for (size_t i = 0; i < n; i++)
			vms[i].target = vms[i].reservation;
		return -ENOSPC;
	}
	if (sum_demand <= host->capacity) {
		/* Everyone gets their demand; the rest goes by shares, up to the limits. */
		f.grow = true;
		total = host->capacity < sum_limit ? host->capacity : sum_limit;
	} else {
		f.grow = false;
		f.k = tax_factor(host->tax_pct);
		total = host->capacity;
	}
	fill_solve(&f, total);
	fill_finish(&f, vms, total);
	return 0;
}

bool policy_admits(const struct policy_host *host, const struct policy_vm *vms, size_t n,
		   const struct policy_vm *cand)
{
	uint64_t sum;

	if (!host || !cand || (n && !vms))
		return false;
	sum = add_sat(cand->reservation, cand->overhead);
	for (size_t i = 0; i < n; i++)
		sum = add_sat(sum, add_sat(vms[i].reservation, vms[i].overhead));
	return sum <= host->capacity;
}

void policy_thresholds_default(struct policy_thresholds *t)
{
	*t = (struct policy_thresholds){
		.high_pct = 400,
		.clear_pct = 100,
		.soft_pct = 64,
		.hard_pct = 32,
		.low_pct = 16,
		.hyst_pct = POLICY_HYST_DEFAULT,
	};
}

int policy_thresholds_check(const struct policy_thresholds *t)
{
	if (!t || !(t->high_pct > t->clear_pct && t->clear_pct > t->soft_pct &&
		    t->soft_pct > t->hard_pct && t->hard_pct > t->low_pct && t->low_pct > 0))
		return -EINVAL;
	return 0;
}

/* Scaled linearly below 28 GiB (mem * 899 MiB / 28 GiB, which cannot overflow there) so the
 * function is continuous at the knee; ESXi's documents do not say what it does on small hosts. */
uint64_t policy_minfree(uint64_t mem)
{
	if (mem < POLICY_MINFREE_KNEE)
		return mem * (POLICY_MINFREE_BASE >> 20) / (POLICY_MINFREE_KNEE >> 20);
	return POLICY_MINFREE_BASE + (mem - POLICY_MINFREE_KNEE) / 100;
}

/* pct percent of minfree, saturating (pct is at most UINT_MAX, minfree any 64-bit value). */
static uint64_t pct_of(uint64_t minfree, unsigned pct)
{
	uint64_t whole = minfree / 100, part = minfree % 100 * pct / 100;

	if (pct && whole > (UINT64_MAX - part) / pct)
		return UINT64_MAX;
	return whole * pct + part;
}

/* A state's line is where it is entered on the way down: ESXi's host is "soft" once free memory is
 * below 64% of minFree, "low" below 16% (Waldspurger 2002 section 6.2 and vSphere's documentation).
 * HIGH is never entered on the way down; its line is only the one to rise above to get back to it. */
static unsigned state_pct(const struct policy_thresholds *t, enum policy_state s)
{
	switch (s) {
	case POLICY_HIGH:
		return t->high_pct;
	case POLICY_CLEAR:
		return t->clear_pct;
	case POLICY_SOFT:
		return t->soft_pct;
	case POLICY_HARD:
		return t->hard_pct;
	default:
		return t->low_pct;
	}
}

/* Between a state's line and the next better state's line the host stays where it was: a host
 * that fell to soft below 64% goes back to clear only above 100% plus the hysteresis, as in the
 * paper ("only after significantly exceeding the higher threshold"), so reclaim that just freed
 * some memory does not flip the techniques off and on every tick. */
enum policy_state policy_state_next(enum policy_state cur, uint64_t free, uint64_t minfree,
				    const struct policy_thresholds *t)
{
	struct policy_thresholds def;
	enum policy_state s = cur;
	uint64_t hyst;

	if (!t) {
		policy_thresholds_default(&def);
		t = &def;
	}
	hyst = pct_of(minfree, t->hyst_pct);
	/* No current state yet (hostd's first tick): start from the best and fall to where free
	 * memory is. */
	if ((unsigned)s >= POLICY_NSTATES)
		s = POLICY_HIGH;
	/* Worse at once: the techniques of the worse state are what gets memory back. */
	while (s < POLICY_LOW && free < pct_of(minfree, state_pct(t, s + 1)))
		s++;
	if (s != cur)
		return s;
	while (s > POLICY_HIGH && free >= add_sat(pct_of(minfree, state_pct(t, s - 1)), hyst))
		s--;
	return s;
}

unsigned policy_techniques(enum policy_state s)
{
	switch (s) {
	case POLICY_HIGH:
	case POLICY_CLEAR:
		return POLICY_TECH_SHARE;
	case POLICY_SOFT:
		return POLICY_TECH_SHARE | POLICY_TECH_BALLOON;
	case POLICY_HARD:
		return POLICY_TECH_ALL;
	case POLICY_LOW:
		return POLICY_TECH_ALL | POLICY_TECH_BLOCK;
	default:
		return 0;
	}
}

const char *policy_state_name(enum policy_state s)
{
	static const char *const names[POLICY_NSTATES] = {
		[POLICY_HIGH] = "high", [POLICY_CLEAR] = "clear", [POLICY_SOFT] = "soft",
		[POLICY_HARD] = "hard", [POLICY_LOW] = "low",
	};

	return (unsigned)s < POLICY_NSTATES ? names[s] : "unknown";
}
