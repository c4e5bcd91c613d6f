#!/usr/bin/env bash
# Runs the integration tests: every Criterion binary built from tests/integration/test_*.c and every
# executable tests/integration/test_*.sh and test_*.py. They need /dev/kvm, so `make test` runs this
# once inside the test host (scripts/testhost run -- tests/integration/run.sh). An argument keeps only
# tests whose name contains it. Each test's whole output is kept in $BUILD/tests/integration/logs/;
# a failing test's last lines are printed (the end is where a hang or a crash shows).
# Last line: "integration: N passed, M failed".
#
# KVMM_TEST_GROUP picks tests by the test host they need: a test with a line "# kvmm-test-host:
# one-cpu" in its first lines (guests whose memory kvmm takes away and gives back all the time) runs
# in a one-CPU test host (docs/testing.md, "Guest memory corruption under multi-threaded TCG"):
# `one-cpu` runs those, `main` the others, `all` (default) both.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
BUILD=${KVMM_BUILD:-$REPO/build/release}
FILTER=${1:-}
GROUP=${KVMM_TEST_GROUP:-all}
case $GROUP in all | main | one-cpu) ;; *) echo "integration: KVMM_TEST_GROUP is all, main or one-cpu"; exit 2 ;; esac
PER_TEST_TIMEOUT=${KVMM_TEST_TIMEOUT:-900}

tests=()
for t in "$BUILD"/tests/integration/test_* "$REPO"/tests/integration/test_*.sh "$REPO"/tests/integration/test_*.py; do
	[ -x "$t" ] && [ -f "$t" ] || continue
	case "${t##*/}" in *"$FILTER"*) ;; *) continue ;; esac
	g=main
	[ -n "$(sed -n '1,12{/^# kvmm-test-host: one-cpu$/p}' "$t" 2>/dev/null)" ] && g=one-cpu
	[ "$GROUP" = all ] || [ "$GROUP" = "$g" ] || continue
	[ "$g" = one-cpu ] && [ "$(nproc)" -gt 1 ] &&
		echo "integration: note: ${t##*/} wants a one-CPU test host and this one has $(nproc) CPUs"
	tests+=("$t")
done
if [ ${#tests[@]} -eq 0 ] && [ "$GROUP" != all ]; then
	echo "integration: no test in group $GROUP${FILTER:+ matches '$FILTER'}"
	echo "integration: 0 passed, 0 failed"
	exit 0
fi
if [ ${#tests[@]} -eq 0 ]; then
	echo "integration: no test matches '$FILTER' (built in $BUILD?)"
	echo "integration: 0 passed, 1 failed"
	exit 1
fi

passed=0 failed=0
LOGS=$BUILD/tests/integration/logs
TAIL_LINES=${KVMM_TEST_TAIL:-60}
mkdir -p "$LOGS"
for t in "${tests[@]}"; do
	name=${t##*/}
	log=$LOGS/$name.log
	start=$SECONDS
	rc=0
	# A test may ask for more time with a line "# kvmm-test-timeout: SECONDS" in its first lines.
	limit=$(sed -n '1,12s/^# kvmm-test-timeout: \([0-9][0-9]*\)$/\1/p' "$t" 2>/dev/null | head -n 1)
	timeout -k 10 "${limit:-$PER_TEST_TIMEOUT}" "$t" >"$log" 2>&1 </dev/null || rc=$?
	secs=$((SECONDS - start))
	# A Criterion binary counts its own tests; a script is one test.
	synth=$(sed -n 's/.*Synthesis: Tested: [0-9]* | Passing: \([0-9]*\) | Failing: \([0-9]*\) | Crashing: \([0-9]*\).*/\1 \2 \3/p' "$log" | tail -n 1)
	if [ -n "$synth" ]; then
		read -r p f c <<<"$synth"
		passed=$((passed + p))
		failed=$((failed + f + c))
		[ "$rc" != 0 ] && [ $((f + c)) = 0 ] && failed=$((failed + 1))
	elif [ "$rc" = 0 ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
	if [ "$rc" = 0 ]; then
		echo "PASS $name (${secs}s)"
	else
		[ "$rc" = 124 ] && why="timed out after ${limit:-$PER_TEST_TIMEOUT}s" || why="exit $rc"
		echo "FAIL $name ($why, ${secs}s); the last $TAIL_LINES lines of its output (all of it in $log):"
		tail -n "$TAIL_LINES" "$log" | sed 's/^/  | /'
		echo "FAIL $name (end of its output)"
	fi
done
echo "integration: $passed passed, $failed failed"
[ "$failed" = 0 ]
