#!/usr/bin/env bash
# Page-out micro-benchmark: the compression cache (src/mem/zcache.c) against raw LZ4 on the test
# guest's text pages and on a dup/zero/random mix, natively on this machine (no VM, no KVM). Builds
# bench/pageout.c against build/release's libkvmm_core.a, runs it RUNS times (default 3), prints
# the medians and the ratios zcache / raw LZ4, plots them (gnuplot) and rewrites the pageout
# section of docs/benchmarks.md. PAGES=N pages per workload (default 16384, 64 MiB).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build/bench
BUILD=$REPO/build/release
mkdir -p "$OUT"
cd "$REPO"
RUNS=${RUNS:-3}
PAGES=${PAGES:-16384}

[ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target kvmm_core -j "$(nproc)" -- --no-print-directory >/dev/null
# The release build's flags; the test guest's page generator (tests/guest/pattern.c) builds on the
# host as it is.
cc -O2 -g -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -fno-strict-aliasing \
	-Iinclude -I"$BUILD/include" -Isrc/mem -Itests/guest \
	bench/pageout.c tests/guest/pattern.c "$BUILD/libkvmm_core.a" \
	$(pkg-config --libs liblz4) -o "$OUT/pageout"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$OUT/pageout.dat"
for run in $(seq 0 $((RUNS - 1))); do
	"$OUT/pageout" "$PAGES" "$run" >>"$OUT/pageout.dat"
done
echo "{\"host\": {\"cpu\": \"$cpu\", \"cpus\": $(nproc), \"kernel\": \"$(uname -r)\", \"lz4\": \"$(pkg-config --modversion liblz4)\", \"load_before\": \"$before\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}}" >>"$OUT/pageout.dat"
python3 bench/report_pageout.py "$OUT/pageout.dat" "$OUT" "$REPO/docs/benchmarks.md"
