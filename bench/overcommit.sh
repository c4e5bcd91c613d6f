#!/usr/bin/env bash
# Overcommit: two 2 GiB test guests whose hot sets fit, first unconstrained, then under a combined
# 2 GiB limit (each kvmm `--mem-limit 1G --mem-swap FILE`), running test=fill,wss,verify at once;
# QEMU and kvmtool unconstrained for reference. Prints each guest's wss throughput, the ratio
# constrained / unconstrained (target >= 0.9), verify mismatches (must be 0), and writes the overcommit
# section of docs/benchmarks.md with docs/overcommit.png (PSS and swap / compression traffic over
# time). RUNS=N (default 1); CONFIGS=kvmm-free,kvmm-limit,qemu-free,kvmtool-free; WSS_SECONDS (60)
# per wss step, WSS_STEPS (8; the last is the steady state); TIMEOUT_RUN (3000 s per configuration);
# SHARE=--mem-share for both kvmm configurations (default off); SWAPDIR in the test host (default
# /var/tmp, the test host's ext4 root file system on virtio-blk; /tmp there is tmpfs); SWAPSIZE=SIZE
# gives --mem-swap FILE,size=SIZE; RAM_MB (2048), SIZE (1800M), LIMIT (1G), HOT (20, percent) scale the
# guests; TESTHOST_MEM (default 6G); TESTHOST_CPUS (default 1: guests under
# reclaim corrupt on a two-CPU test host, docs/testing.md).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build/bench
mkdir -p "$OUT"
cd "$REPO"
RUNS=${RUNS:-1}
CONFIGS=${CONFIGS:-kvmm-free,kvmm-limit,qemu-free,kvmtool-free}
nconf=$(echo "$CONFIGS" | tr ',' '\n' | grep -c .)
others() { pgrep -c -f '^qemu-system-x86_64 -name kvmm-testhost' || true; }
before="$(cut -d' ' -f1-3 /proc/loadavg) $(others)"
TIMEOUT_RUN=${TIMEOUT_RUN:-3000}
scripts/testhost run --mem "${TESTHOST_MEM:-6G}" --cpus "${TESTHOST_CPUS:-1}" --timeout "${TIMEOUT:-$((300 + RUNS * nconf * (TIMEOUT_RUN + 60)))}" -- \
	env RUNS="$RUNS" CONFIGS="$CONFIGS" TIMEOUT_RUN="$TIMEOUT_RUN" ${WSS_SECONDS:+WSS_SECONDS="$WSS_SECONDS"} \
	${WSS_STEPS:+WSS_STEPS="$WSS_STEPS"} ${SHARE:+SHARE="$SHARE"} \
	${SWAPDIR:+SWAPDIR="$SWAPDIR"} ${SWAPSIZE:+SWAPSIZE="$SWAPSIZE"} ${SIZE:+SIZE="$SIZE"} \
	${RAM_MB:+RAM_MB="$RAM_MB"} ${LIMIT:+LIMIT="$LIMIT"} ${HOT:+HOT="$HOT"} \
	python3 bench/overcommit.py "$OUT/overcommit.dat"
read -r l1 l5 l15 n <<<"$before"
echo "{\"host\": {\"load_before\": \"$l1 $l5 $l15\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"testhosts_before\": $n, \"cpus\": $(nproc)}}" >>"$OUT/overcommit.dat"
python3 bench/report_overcommit.py "$OUT/overcommit.dat" "$OUT" "$REPO/docs/benchmarks.md"
