#!/usr/bin/env bash
# Checks scripts/testhost itself from outside: output and exit codes pass through (including a
# failing command), the repo is visible and writable at the same path, KVMM_* variables reach the
# command, a time-out has its own exit code and message, and bad options are refused.
# Last line: "testhost: N passed, M failed".
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
TH=$REPO/scripts/testhost
passed=0 failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

check() {  # check NAME CONDITION...
	local name=$1
	shift
	if "$@"; then
		echo "PASS testhost/$name"
		passed=$((passed + 1))
	else
		echo "FAIL testhost/$name; output was:"
		sed 's/^/  | /' "$out"
		failed=$((failed + 1))
	fi
}
has() { grep -aq -- "$1" "$out"; }

# One boot checks everything about a command that runs and fails.
stamp=$REPO/build/.testhost-selftest-$$
rm -f "$stamp"
rc=0
KVMM_TESTHOST=always KVMM_SELFTEST=value-$$ "$TH" run --timeout 600 -- bash -c '
	echo "stdout-line $KVMM_SELFTEST"
	echo "stderr-line" >&2
	echo "cwd=$PWD"
	[ -c /dev/kvm ] && echo "dev-kvm-present"
	echo written >"$1"
	exit 3' selftest "$stamp" >"$out" 2>&1 || rc=$?
check exit-code-passes-through test "$rc" = 3
check stdout-and-env has "stdout-line value-$$"
check stderr has "stderr-line"
check no-carriage-returns bash -c "! grep -q $'\r' '$out'"
check same-cwd has "cwd=$PWD"
check kvm-inside has "dev-kvm-present"
check writes-visible-outside grep -qx written "$stamp"
rm -f "$stamp"

rc=0
KVMM_TESTHOST=always "$TH" run --timeout 600 -- true >"$out" 2>&1 || rc=$?
check success-is-zero test "$rc" = 0

rc=0
KVMM_TESTHOST=always "$TH" run --timeout 45 -- sleep 1000 >"$out" 2>&1 || rc=$?
check timeout-exit-code test "$rc" = 124
check timeout-message has "timed out after 45s"

rc=0
"$TH" run --mem 4X -- true >"$out" 2>&1 || rc=$?
check bad-mem-refused test "$rc" = 2
check bad-mem-message has -- "--mem takes a size"

rc=0
KVMM_TESTHOST=sometimes "$TH" run -- true >"$out" 2>&1 || rc=$?
check bad-mode-refused test "$rc" = 2

rc=0
KVMM_TESTHOST=never "$TH" run -- sh -c 'exit 5' >"$out" 2>&1 || rc=$?
check direct-mode-exit-code test "$rc" = 5

echo "testhost: $passed passed, $failed failed"
[ "$failed" = 0 ]
