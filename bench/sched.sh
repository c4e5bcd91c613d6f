#!/usr/bin/env bash
# Host memory scheduler (issue 8): three test guests, one active and two idle, under `kvmm hostd`
# with a capacity of half their RAM (2x overcommitted), against the active guest alone and the three
# without hostd. Prints the time until the active guest holds what it needs and its wss throughput
# relative to running alone, and writes the sched section of docs/benchmarks.md with docs/sched.png
# (each VM's consumed memory and hostd's target over time). QEMU has no host memory scheduler: no
# peer runs. CONFIGS=alone,alone-hostd,idle-free,hostd; RAM_MB (512) per guest, IDLE_SIZE (448M), ACTIVE_SIZE
# (384M), WSS_STEPS (4) x WSS_SECONDS (30), CAPACITY_MB (3 x RAM_MB / 2), SETTLE_MAX (240 s),
# TIMEOUT_RUN (900 s per configuration), SWAPDIR (default /var/tmp in the test host if three swap
# files fit, else build/bench/swap); TESTHOST_MEM (4G); TESTHOST_CPUS (default 1: guests under
# reclaim corrupt on a two-CPU test host, docs/testing.md). Samples: build/bench/sched.dat.csv.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build/bench
mkdir -p "$OUT"
cd "$REPO"
CONFIGS=${CONFIGS:-alone,alone-hostd,idle-free,hostd}
nconf=$(echo "$CONFIGS" | tr ',' '\n' | grep -c .)
others() { pgrep -c -f '^qemu-system-x86_64 -name kvmm-testhost' || true; }
before="$(cut -d' ' -f1-3 /proc/loadavg) $(others)"
TIMEOUT_RUN=${TIMEOUT_RUN:-900}
scripts/testhost run --mem "${TESTHOST_MEM:-4G}" --cpus "${TESTHOST_CPUS:-1}" --timeout "${TIMEOUT:-$((300 + nconf * (TIMEOUT_RUN + 60)))}" -- \
	env CONFIGS="$CONFIGS" TIMEOUT_RUN="$TIMEOUT_RUN" ${RAM_MB:+RAM_MB="$RAM_MB"} ${IDLE_SIZE:+IDLE_SIZE="$IDLE_SIZE"} \
	${ACTIVE_SIZE:+ACTIVE_SIZE="$ACTIVE_SIZE"} ${WSS_STEPS:+WSS_STEPS="$WSS_STEPS"} ${WSS_SECONDS:+WSS_SECONDS="$WSS_SECONDS"} \
	${CAPACITY_MB:+CAPACITY_MB="$CAPACITY_MB"} ${SETTLE_MAX:+SETTLE_MAX="$SETTLE_MAX"} ${SWAPDIR:+SWAPDIR="$SWAPDIR"} \
	${PATTERN:+PATTERN="$PATTERN"} \
	python3 bench/sched.py "$OUT/sched.dat"
read -r l1 l5 l15 n <<<"$before"
echo "{\"host\": {\"load_before\": \"$l1 $l5 $l15\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"testhosts_before\": $n, \"cpus\": $(nproc)}}" >>"$OUT/sched.dat"
python3 bench/report_sched.py "$OUT/sched.dat" "$OUT" "$REPO/docs/benchmarks.md"
