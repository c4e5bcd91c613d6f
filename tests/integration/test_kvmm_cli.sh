#!/usr/bin/env bash
# Bad input to `kvmm run`: each case gets one clear message naming the problem and exit status 2
# (never a crash or a hang). Runs in the test host, where /dev/kvm works, so the failures seen are the
# input's; the no-/dev/kvm and no-permission cases hide or forbid it in a private mount namespace.
set -uo pipefail

REPO=${KVMM_REPO:-$(cd "$(dirname "$0")/../.." && pwd -P)}
KVMM=${KVMM_BUILD:-$REPO/build/release}/kvmm
GUEST=${KVMM_TEST_GUEST:-${KVMM_BUILD:-$REPO/build/release}/guest/test-guest.bzImage}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# expect STATUS PATTERN -- COMMAND...: the status, and PATTERN (grep -E) in its output.
expect() {
	local want=$1 pattern=$2 rc=0
	shift 3
	timeout 60 "$@" >"$tmp/out" 2>&1 </dev/null || rc=$?
	# One clear message, never a crash: a sanitizer report or a signal would show here.
	[ "$rc" -lt 128 ] || pattern="killed by a signal: never matches"
	if [ "$rc" = "$want" ] && grep -Eq -- "$pattern" "$tmp/out"; then
		echo "ok   [$rc] $*"
	else
		echo "FAIL $*: wanted status $want and /$pattern/, got $rc:"
		sed 's/^/     | /' "$tmp/out"
		failed=$((failed + 1))
	fi
}

echo 'not a kernel' >"$tmp/text"
head -c 600 "$GUEST" >"$tmp/truncated"

expect 2 'usage' -- "$KVMM"
expect 2 "unknown command 'frobnicate'" -- "$KVMM" frobnicate
expect 0 '(--mem-limit)' -- "$KVMM" run --help
expect 2 'kernel' -- "$KVMM" run -m 128M
expect 2 "/no/such/bzImage" -- "$KVMM" run --kernel /no/such/bzImage
expect 2 'bzImage|ELF' -- "$KVMM" run --kernel "$tmp/text"
expect 2 "$tmp/truncated" -- "$KVMM" run --kernel "$tmp/truncated"
expect 2 "$tmp/nothing-here" -- "$KVMM" run --kernel "$GUEST" --initrd "$tmp/nothing-here"
# Memory manager options: each names its flag and the valid values.
expect 2 "mem-share: 'dedup' is not valid" -- "$KVMM" run --kernel "$GUEST" --mem-share dedup
expect 2 "mem-share-rate: '0' is not valid" -- "$KVMM" run --kernel "$GUEST" --mem-share-rate 0
expect 2 "mem-share-rate: '99999999999' is not valid" -- "$KVMM" run --kernel "$GUEST" --mem-share-rate 99999999999
expect 2 "mem-share-cpu: '101' is not a valid percentage" -- "$KVMM" run --kernel "$GUEST" --mem-share-cpu 101
expect 2 "mem-share-cpu: '0%' is not a valid percentage" -- "$KVMM" run --kernel "$GUEST" --mem-share-cpu 0%
expect 2 "mem-capture: 'fast' is not valid" -- "$KVMM" run --kernel "$GUEST" --mem-capture fast
expect 2 "mem-stats-interval: '-1' is not valid" -- "$KVMM" run --kernel "$GUEST" --mem-stats-interval -1
expect 2 "mem-salt: 'a b' is not valid" -- "$KVMM" run --kernel "$GUEST" --mem-salt "a b"
expect 2 '(-m|--memory).*0' -- "$KVMM" run -m 0 --kernel "$GUEST"
expect 2 '(-m|--memory).*abc' -- "$KVMM" run -m abc --kernel "$GUEST"
expect 2 '(cannot map|memory)' -- "$KVMM" run -m 200T --kernel "$GUEST"
expect 2 '(--cpus).*0' -- "$KVMM" run --cpus 0 --kernel "$GUEST"
expect 2 '(--cpus).*100000' -- "$KVMM" run --cpus 100000 --kernel "$GUEST"
expect 2 '(--bogus)' -- "$KVMM" run --bogus --kernel "$GUEST"
expect 2 '(--serial).*tty' -- "$KVMM" run --serial tty --kernel "$GUEST"
expect 2 '(--qmp|qmp)' -- "$KVMM" run --qmp tcp:1234 --kernel "$GUEST"
expect 2 '/no/such/dir/q.sock' -- "$KVMM" run --qmp unix:/no/such/dir/q.sock --kernel "$GUEST"
echo 'not a socket' >"$tmp/plain"
expect 2 "$tmp/plain" -- "$KVMM" run --qmp "unix:$tmp/plain" --kernel "$GUEST"
expect 2 'usage' -- "$KVMM" qmp
expect 2 '/dev/kvm' -- unshare -m sh -c \
	'mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3 && exec "$0" run -m 64M --kernel "$1"' \
	"$KVMM" "$GUEST"
expect 2 'permission' -- setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$KVMM" run -m 64M --kernel "$GUEST"

echo "$failed failed"
[ "$failed" = 0 ]
