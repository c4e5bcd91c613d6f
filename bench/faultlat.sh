#!/usr/bin/env bash
# Fault-in latency: one first touch of a page that kvmm's memory manager must bring back (a dropped
# zero page, a page in the LZ4 compression cache, a page in the swap file) against the bare
# userfaultfd round trip (the floor) and the kernel's own anonymous first touch, all measured in one
# run of bench/faultlat.c inside the test host. Builds bench/faultlat against
# build/release/libkvmm_core.a (run `make build` first), runs it, prints median / p90 / p99 and the
# ratios to the floor, writes the fault-in section of docs/benchmarks.md and docs/faultlat.png.
# PAGES=N pages per set (default 10000), ROUNDS=N interleaved rounds (default 2), SWAPDIR=DIR in the
# test host (default /var/tmp: the test host's root file system, ext4 on virtio-blk; /tmp there is
# tmpfs), PINS="same split": how the toucher and the handler threads are placed, one faultlat run each
# (same: both on CPU 0; split: toucher on CPU 0, handlers on CPU 1, so each fault wakes the other CPU).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build/bench/faultlat
mkdir -p "$OUT"
cd "$REPO"
PAGES=${PAGES:-10000}
PINS=${PINS:-same split}
ROUNDS=${ROUNDS:-2}
SWAPDIR=${SWAPDIR:-/var/tmp}
LIB=build/release/libkvmm_core.a
[ -f "$LIB" ] || { echo "faultlat: $LIB missing: run make build" >&2; exit 2; }

# What this tree's library offers (the memory manager's part 2 may not be there yet).
defs=()
nm "$LIB" 2>/dev/null | grep ' T mem_page_out$' >/dev/null && defs+=(-DHAVE_PAGE_OUT)  # not grep -q: pipefail + SIGPIPE
grep -Eq 'int gmem_init\([^)]*enum mem_backend' include/kvmm/gmem.h && defs+=(-DGMEM_INIT_HAS_BACKEND)
# --mem-swap FILE,size=SIZE (part 2): faultlat then sizes the file to what it swaps.
grep -q 'mem_swap_size' include/kvmm/config.h && defs+=(-DHAVE_SWAP_SIZE)
# shellcheck disable=SC2046
cc -O2 -g -Wall -Wextra -D_GNU_SOURCE -Iinclude -Ibuild/release/include "${defs[@]}" \
	bench/faultlat.c tests/guest/pattern.c "$LIB" \
	$(pkg-config --libs libxxhash liblz4 jansson inih libxml-2.0 libseccomp) -lpthread -o "$OUT/faultlat"
rm -rf "${OUT:?}"/same "${OUT:?}"/split "${OUT:?}"/none
for p in $PINS; do mkdir -p "$OUT/$p"; done
echo "faultlat: built with ${defs[*]:-no part-2 interfaces}"

others() { pgrep -c -f '^qemu-system-x86_64 -name kvmm-testhost' || true; }
before="$(cut -d' ' -f1-3 /proc/loadavg) $(others)"
# A cross-CPU fault costs milliseconds in the test host (waking an idle TCG vCPU), hence the time-out.
scripts/testhost run --timeout "${TIMEOUT:-$((600 + ROUNDS * PAGES / 4))}" -- bash -c \
	'set -e; out=$1 n=$2 r=$3 s=$4; shift 4; for p in "$@"; do "$out/faultlat" -n "$n" -r "$r" -o "$out/$p" -s "$s" -p "$p" -d; done' \
	faultlat "$OUT" "$PAGES" "$ROUNDS" "$SWAPDIR" $PINS  # PINS: one word per placement
read -r l1 l5 l15 n <<<"$before"
echo "{\"host\": {\"load_before\": \"$l1 $l5 $l15\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"testhosts_before\": $n, \"cpus\": $(nproc)}}" >"$OUT/host.json"
python3 bench/report_faultlat.py "$OUT" "$REPO/docs/benchmarks.md"
