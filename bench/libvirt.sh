#!/usr/bin/env bash
# libvirt benchmark: under one libvirtd in one test host run, `virsh start` to the guest's /init and
# `virsh setmem` to a settled balloon, for Debian's QEMU and kvmm's QEMU-compatible front
# (kvmm-qemu-system-x86_64), RUNS=N times each (default 3); ratios kvmm / QEMU, the libvirt section
# of docs/benchmarks.md and docs/libvirt.png. EMULATORS=qemu,kvmm (default; an emulator libvirt
# cannot start is reported with libvirt's error). TESTHOST_CPUS (default 1).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build/bench
mkdir -p "$OUT"
cd "$REPO"
RUNS=${RUNS:-3}
others() { pgrep -c -f '^qemu-system-x86_64 -name kvmm-testhost' || true; }
before="$(cut -d' ' -f1-3 /proc/loadavg) $(others)"
scripts/testhost run --cpus "${TESTHOST_CPUS:-1}" --timeout "${TIMEOUT:-$((600 + RUNS * 2 * 400))}" -- \
	env RUNS="$RUNS" KVMM_LIBVIRT_EMULATORS="${EMULATORS:-qemu,kvmm}" python3 bench/libvirt.py "$OUT/libvirt.dat"
read -r l1 l5 l15 n <<<"$before"
echo "{\"host\": {\"load_before\": \"$l1 $l5 $l15\", \"load_after\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"testhosts_before\": $n, \"cpus\": $(nproc)}}" >>"$OUT/libvirt.dat"
python3 bench/report_libvirt.py "$OUT/libvirt.dat" "$OUT" "$REPO/docs/benchmarks.md"
