#!/usr/bin/env bash
# Page-sharing benchmark: a 1 GiB test guest with 50% duplicate and 30% zero pages in kvmm
# (--mem-share tps), kvmm (--mem-share ksm) and QEMU with KSM at the kernel's defaults, in one test
# host run. Prints time to 90% of the possible saving, sharing CPU-seconds and final saving per VMM
# and the ratios, plots saved MiB against time (gnuplot) and rewrites the dedup section of
# docs/benchmarks.md. RUNS=N runs per VMM (default 1); VMMS=kvmm-tps,kvmm-ksm,qemu picks VMMs;
# TIMEOUT_RUN=S gives up on 90% S seconds after the fill (default 300).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build/bench
mkdir -p "$OUT"
cd "$REPO"
RUNS=${RUNS:-1}
VMMS=${VMMS:-kvmm-tps,kvmm-ksm,qemu}
TIMEOUT_RUN=${TIMEOUT_RUN:-300}
nvmm=$(echo "$VMMS" | tr ',' '\n' | grep -c .)
# Other test hosts on this machine slow everything in this one (TCG), KSM most (its merges interrupt the
# CPU running the guest, probably). Their number and the load are recorded with the figures.
others() { pgrep -c -f '^qemu-system-x86_64 -name kvmm-testhost' || true; }
before="$(cut -d' ' -f1-3 /proc/loadavg) $(others)"
scripts/testhost run --timeout "${TIMEOUT:-$((120 + RUNS * nvmm * (TIMEOUT_RUN + 90)))}" -- \
	env RUNS="$RUNS" VMMS="$VMMS" TIMEOUT_RUN="$TIMEOUT_RUN" python3 bench/dedup.py "$OUT/dedup.dat"
read -r l1 l5 l15 n <<<"$before"
echo "{\"host\": {\"load_before\": \"$l1 $l5 $l15\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"testhosts_before\": $n, \"cpus\": $(nproc)}}" >>"$OUT/dedup.dat"
python3 bench/report_dedup.py "$OUT/dedup.dat" "$OUT" "$REPO/docs/benchmarks.md"
