#!/usr/bin/env bash
# Boot benchmark: kvmm vs QEMU vs kvmtool on the test guest and the Linux guest, in one test host run.
# Prints medians and the ratios kvmm/QEMU and kvmm/kvmtool, plots them (gnuplot) and rewrites the
# boot section of docs/benchmarks.md. RUNS=N sets runs per VMM and guest (default 3).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build/bench
mkdir -p "$OUT"
cd "$REPO"
scripts/testhost run --timeout 3000 -- env RUNS="${RUNS:-3}" python3 bench/boot.py "$OUT/boot.dat"
python3 bench/report_boot.py "$OUT/boot.dat" "$OUT" "$REPO/docs/benchmarks.md"
