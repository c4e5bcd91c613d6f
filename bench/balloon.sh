#!/usr/bin/env bash
# Balloon benchmark: inflate a 2 GiB guest to 512 MiB and back in kvmm, QEMU (virtio-balloon-pci) and
# kvmtool, with the test guest and the Linux guest, in one test host run. Prints the reclaim rates,
# the ratios kvmm/QEMU and kvmm/kvmtool, plots them (gnuplot) and rewrites the balloon section of
# docs/benchmarks.md. RUNS=N sets runs per VMM and guest (default 3); GUESTS=test or linux picks one.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build/bench
mkdir -p "$OUT"
cd "$REPO"
scripts/testhost run --timeout "${TIMEOUT:-7000}" -- \
	env RUNS="${RUNS:-3}" GUESTS="${GUESTS:-test,linux}" python3 bench/balloon.py "$OUT/balloon.dat"
python3 bench/report_balloon.py "$OUT/balloon.dat" "$OUT" "$REPO/docs/benchmarks.md"
