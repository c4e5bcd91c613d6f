/* The host memory scheduler's policy (src/sched/policy.c): how much host memory each VM may hold, and
 * how hard the host reclaims. Pure arithmetic: no syscalls, no clocks, no allocation, so every rule
 * is unit-tested on worked examples. hostd (src/sched/hostd.c) feeds it the figures the VMs report
 * and pushes the targets it returns. The rules are ESXi's (ESX-FACTS.md): a VM's target lies between
 * its reservation and its limit; the rest of the host goes by min-funding revocation on shares per
 * page with the idle memory tax; free host memory selects a state that allows more costly reclaim
 * techniques as it falls, with hysteresis. */
#ifndef KVMM_POLICY_H
#define KVMM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POLICY_TAX_DEFAULT 75 /* Mem.IdleTax, percent */

/* One VM as the policy sees it. Bytes unless named otherwise. */
struct policy_vm {
	/* in */
	uint64_t size;        /* configured guest memory */
	uint64_t reservation; /* never reclaimed below; <= limit */
	uint64_t limit;       /* never granted above; <= size */
	uint64_t shares;      /* total shares (config.c resolves --mem-shares presets: 5/10/20 per MiB) */
	uint64_t overhead;    /* host memory the VMM process needs besides guest RAM (admission only) */
	uint64_t consumed;    /* host memory the guest's RAM holds now, as the VM reports it */
	uint64_t active;      /* the memory manager's active estimate */
	/* out */
	uint64_t target;      /* what the VM may hold: reservation <= target <= limit */
};

struct policy_host {
	uint64_t capacity; /* what hostd may hand out to guest RAM, all VMs together */
	unsigned tax_pct;  /* idle memory tax, 0..99 */
};

/* Shares per charged page (ESX's rho) of a VM holding alloc bytes: S / (P * (f + k (1 - f))) with
 * k = 1 / (1 - tax) and f the active fraction of alloc (active bytes capped at alloc). Larger is
 * better funded; memory is revoked from the smallest first. INFINITY for alloc 0; a tax above 99 is
 * taken as 99. */
double policy_rho(const struct policy_vm *vm, uint64_t alloc, unsigned tax_pct);

/* Sets every vms[i].target. Each VM gets at least its reservation and at most its limit; what is left
 * of host->capacity goes by min-funding revocation. A VM's demand is max(consumed, active) plus
 * headroom (max(64 MiB, size / 16)) within those bounds: if all demands fit, each VM gets its demand
 * and the rest is spread by shares up to the limits; if not, targets lie between reservation and
 * demand at equal rho. Targets are whole 4 KiB pages (a reservation that is not stays as it is) and
 * sum to at most the capacity. Returns 0, -EINVAL on inconsistent input (reservation > limit,
 * limit > size, tax >= 100, NULL; targets untouched), or -ENOSPC when the reservations alone exceed
 * the capacity (targets are then the reservations). */
int policy_allocate(const struct policy_host *host, struct policy_vm *vms, size_t n);

/* Admission control: true if cand's reservation + overhead fits beside the reservations and
 * overheads of the n running VMs in host->capacity. */
bool policy_admits(const struct policy_host *host, const struct policy_vm *vms, size_t n,
		   const struct policy_vm *cand);

/* Host free-memory states, best first (ESXi's; the high / soft / hard / low plus ESXi's clear). */
enum policy_state { POLICY_HIGH, POLICY_CLEAR, POLICY_SOFT, POLICY_HARD, POLICY_LOW, POLICY_NSTATES };

/* Reclaim techniques a state allows (bit mask). */
enum {
	POLICY_TECH_SHARE = 1 << 0,
	POLICY_TECH_BALLOON = 1 << 1,
	POLICY_TECH_COMPRESS = 1 << 2,
	POLICY_TECH_SWAP = 1 << 3,
	POLICY_TECH_BLOCK = 1 << 4, /* new allocations wait until memory is back */
	/* Every way of taking memory back (a VM on its own limit; hostd's hard state). */
	POLICY_TECH_ALL =
		POLICY_TECH_SHARE | POLICY_TECH_BALLOON | POLICY_TECH_COMPRESS | POLICY_TECH_SWAP,
};

/* Thresholds in percent of minFree: a state is entered when free memory falls below its line, and left
 * for a better one only when free memory rises above the better state's line plus hyst_pct. */
struct policy_thresholds {
	unsigned high_pct, clear_pct, soft_pct, hard_pct, low_pct; /* defaults 400, 100, 64, 32, 16 */
	unsigned hyst_pct;
};

void policy_thresholds_default(struct policy_thresholds *t);
/* -EINVAL unless high > clear > soft > hard > low > 0. */
int policy_thresholds_check(const struct policy_thresholds *t);

/* ESXi's minFree for a host with mem bytes: 899 MiB for the first 28 GiB plus 1% of the rest, scaled
 * down for hosts smaller than 28 GiB. */
uint64_t policy_minfree(uint64_t mem);

/* The state after cur with free bytes free: a worse state as soon as free falls below its line
 * (soft below 64%), a better one only once free reaches that better state's line plus hyst_pct of
 * minfree (clear at 100% + hyst); several states at once if need be. HIGH's line is only a way back
 * up. cur = POLICY_NSTATES (none yet) falls from HIGH. t NULL means the defaults. */
enum policy_state policy_state_next(enum policy_state cur, uint64_t free, uint64_t minfree,
				    const struct policy_thresholds *t);
/* POLICY_TECH_* mask; 0 for a state out of range. */
unsigned policy_techniques(enum policy_state s);
/* "high", "clear", "soft", "hard", "low"; "unknown" out of range. */
const char *policy_state_name(enum policy_state s);

#endif
