#!/usr/bin/env bash
# The whole test suite, as `make test` runs it (after scripts/deps.sh and the build):
#   1. unit tests (Criterion, ASan/UBSan build) on this machine, through ctest;
#   2. scripts/testhost's own checks (they boot the test host a few times);
#   3. the integration tests in two boots of the test host at once (or directly on a native KVM): most
#      of them on two CPUs, those marked "# kvmm-test-host: one-cpu" on one (docs/testing.md, "Guest
#      memory corruption under multi-threaded TCG").
# Every phase runs even when an earlier one failed; the last line sums them up.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"
passed=0 failed=0 phases_failed=()
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT

# phase NAME COMMAND...: runs it with its output shown, then adds its "X: N passed, M failed" line.
phase() {
	local name=$1 rc=0 line p f
	shift
	echo "=== $name"
	"$@" 2>&1 | tee "$summary"
	rc=${PIPESTATUS[0]}
	line=$(grep -aE '^[a-z]+: [0-9]+ passed, [0-9]+ failed' "$summary" | tail -n 1)
	if [ -n "$line" ]; then
		p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
		f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
	else
		p=0 f=0
	fi
	[ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$rc" = 0 ] || phases_failed+=("$name (exit $rc)")
}

# ctest runs one Criterion binary per test file; the counts come from Criterion's own synthesis.
unit() {
	local log rc=0 p=0 f=0 tp tf tc
	log=$(mktemp)
	(cd build/debug && ctest -V --timeout 300) >"$log" 2>&1 || rc=$?
	grep -aE 'Test +#|tests passed|\[FAIL\]' "$log"
	while read -r tp tf tc; do
		p=$((p + tp))
		f=$((f + tf + tc))
	done < <(sed -nE 's/.*Synthesis: Tested: [0-9]+ \| Passing: ([0-9]+) \| Failing: ([0-9]+) \| Crashing: ([0-9]+).*/\1 \2 \3/p' "$log")
	if [ "$rc" != 0 ]; then
		echo "unit: ctest failed; its whole output:"
		cat "$log"
		[ "$f" = 0 ] && f=1
	fi
	rm -f "$log"
	echo "unit: $p passed, $f failed"
	return "$rc"
}

phase unit unit
phase testhost tests/testhost/selftest.sh
# The one-CPU boot runs beside the two-CPU one (three emulated CPUs on two cores: slower each, but
# the suite ends sooner); its output is shown when it is done.
one_cpu_log=$(mktemp)
trap 'rm -f "$summary" "$one_cpu_log" "$one_cpu_log.rc"' EXIT
(
	rc=0
	scripts/testhost run --cpus 1 --timeout 3000 -- env KVMM_TEST_GROUP=one-cpu tests/integration/run.sh \
		>"$one_cpu_log" 2>&1 || rc=$?
	echo "$rc" >"$one_cpu_log.rc"
) &
one_cpu_pid=$!
phase integration scripts/testhost run --timeout 3000 -- env KVMM_TEST_GROUP=main tests/integration/run.sh
wait "$one_cpu_pid"
one_cpu_result() {
	cat "$one_cpu_log"
	return "$(cat "$one_cpu_log.rc" 2>/dev/null || echo 1)"
}
phase integration-one-cpu one_cpu_result

echo "==="
for p in "${phases_failed[@]}"; do echo "failed phase: $p"; done
echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ ${#phases_failed[@]} = 0 ]
