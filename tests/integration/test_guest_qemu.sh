#!/usr/bin/env bash
# QEMU (-enable-kvm -cpu host, -kernel: SeaBIOS + linuxboot, the real-mode entry of the bzImage)
# boots the test guest (tests/guest/): banner and e820 map on COM1, every workload step runs, verify
# finds no mismatch, and the guest's status reaches isa-debug-exit (QEMU exits with (status<<1)|1).
# A bad command line gives status 2. The same image is what kvmm and kvmtool boot.
#
# The guest: $KVMM_TEST_GUEST if set, else built here when gcc and make are present, else the one
# CMake built in ${KVMM_BUILD:-build/release}/guest/ (the test host has no compiler).
set -uo pipefail

REPO=${KVMM_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}
BUILD=${KVMM_BUILD:-$REPO/build/release}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

failed=0
check() { # check CONDITION-STATUS DESCRIPTION
	if [ "$1" = 0 ]; then
		echo "ok: $2"
	else
		echo "FAILED: $2"
		failed=1
	fi
}

if [ -n "${KVMM_TEST_GUEST:-}" ]; then
	guest=$KVMM_TEST_GUEST
elif command -v gcc >/dev/null && command -v make >/dev/null; then
	make -s -C "$REPO/tests/guest" OUT="$TMP/guest" || { echo "FAILED: building the test guest"; exit 1; }
	guest=$TMP/guest/test-guest.bzImage
else
	guest=$BUILD/guest/test-guest.bzImage
fi
[ -f "$guest" ] || { echo "FAILED: no test guest at $guest (build it: make -C tests/guest)"; exit 1; }
echo "guest: $guest"

# boot MEM APPEND: runs QEMU, leaves the console in $TMP/out and QEMU's exit code in $rc.
boot() {
	rc=0
	timeout 600 qemu-system-x86_64 -enable-kvm -cpu host -m "$1" -smp 1 -display none -nodefaults \
		-no-reboot -serial "file:$TMP/out" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		-kernel "$guest" -append "$2" </dev/null || rc=$?
	sed 's/^/  | /' "$TMP/out"
}

has() { grep -qE "$1" "$TMP/out"; }

boot 256M "test=fill,verify,idle:1,wss,verify size=32M pattern=dup:40,zero:20,random:20,text:20 seed=3 hot=10% seconds=1"
has '^KVMM guest=test event=banner version=1 mem_mb=[0-9]+ cmdline="test=fill,verify'; check $? "banner with the command line"
n=$(grep -cE '^KVMM e820 addr=0x[0-9a-f]+ size=0x[0-9a-f]+ type=[0-9]+$' "$TMP/out")
[ "$n" -ge 2 ]; check $? "e820 lines ($n)"
has '^KVMM e820 addr=0x100000 size=0x[0-9a-f]+ type=1$'; check $? "RAM at 1 MiB in the e820 map"
has '^KVMM test=fill pages=8192 zero=[0-9]+ dup=[0-9]+ random=[0-9]+ text=[0-9]+$'; check $? "fill wrote 8192 pages"
sum=$(sed -n 's/^KVMM test=fill pages=[0-9]* zero=\([0-9]*\) dup=\([0-9]*\) random=\([0-9]*\) text=\([0-9]*\)$/\1+\2+\3+\4/p' "$TMP/out")
[ -n "$sum" ] && [ $((sum)) = 8192 ]; check $? "page kinds add up to the pages written"
[ "$(grep -c '^KVMM test=verify pages=8192 mismatches=0$' "$TMP/out")" = 2 ]; check $? "both verify passes: 0 mismatches"
has '^KVMM test=idle seconds=1$'; check $? "idle step"
has '^KVMM test=wss hot_pages=819 passes=[0-9]+ pages_per_sec=[1-9][0-9]*$'; check $? "wss step"
has '^KVMM guest=test event=exit status=0$'; check $? "exit status 0 printed"
[ "$rc" = 1 ]; check $? "QEMU exits with (0<<1)|1 = 1 (got $rc)"

boot 128M "test=fill,no-such-test size=4M"
has '^KVMM error=unknown-test'; check $? "an unknown test is reported"
has '^KVMM guest=test event=exit status=2$'; check $? "exit status 2 printed"
[ "$rc" = 5 ]; check $? "QEMU exits with (2<<1)|1 = 5 (got $rc)"

boot 128M "test=fill size=12Q"
has '^KVMM error=bad-value key=size value="12Q"$'; check $? "a malformed size is reported"
[ "$rc" = 5 ]; check $? "and gives status 2 (QEMU exit $rc)"

exit $failed
