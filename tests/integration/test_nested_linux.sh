#!/usr/bin/env bash
# QEMU with -enable-kvm boots Debian's cloud kernel and the busybox initramfs to its /init, which
# reports what it sees and powers off. This is the baseline later benchmarks compare kvmm against.
set -euo pipefail

: "${KVMM_GUEST_KERNEL:?run through scripts/testhost}" "${KVMM_GUEST_INITRD:?}"
CPUS=2
out=$(mktemp)
trap 'rm -f "$out"' EXIT

rc=0
timeout 300 qemu-system-x86_64 -enable-kvm -cpu host -smp "$CPUS" -m 256 \
	-display none -nodefaults -no-user-config -no-reboot -serial stdio \
	-kernel "$KVMM_GUEST_KERNEL" -initrd "$KVMM_GUEST_INITRD" \
	-append "console=ttyS0 panic=-1 kvmm.poweroff" </dev/null >"$out" 2>&1 || rc=$?
cat "$out"

fail() { echo "FAILED: $*"; exit 1; }
[ "$rc" = 0 ] || fail "QEMU exited with $rc"
line=$(grep -a 'KVMM guest=linux event=init' "$out" | tr -d '\r') || fail "the guest never reached /init"
echo "init line: $line"
[[ $line == *" cpus=$CPUS "* ]] || fail "the guest sees a different number of CPUs than $CPUS"
grep -aq 'KVMM guest=linux event=poweroff' "$out" || fail "the guest did not power off"
echo "ok: nested Linux boots under QEMU+KVM to /init and powers off"
