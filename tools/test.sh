#!/usr/bin/env bash
# Installs what is missing, builds, runs every test suite and ends with one
# line: `N passed, N failed` (test cases of all suites). Exits non-zero if any
# test failed or any suite crashed, timed out or printed no summary (such a
# suite counts as at least one failure).
#
#   tools/test.sh            from any directory; CI runs it through .ci/run
#
# Suites: build/tests/rg-unit and build/tests/rg-sim (doctest), then the
# integration tests (tests/integration/run.py, real processes in a private
# network namespace), then the Spin model (tests/model/run.sh), then the
# chaos scenarios and soaks (tools/rolegrid-chaos suite).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

total_passed=0
total_failed=0
logdir=$(mktemp -d "${TMPDIR:-/tmp}/rolegrid-test.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

finish() {
  echo "${total_passed} passed, ${total_failed} failed"
  if ((total_failed > 0)); then exit 1; fi
  exit 0
}

# record NAME PASSED FAILED RC SECONDS LOG: adds a suite's result to the totals.
record() {
  local name=$1 passed=$2 failed=$3 rc=$4 secs=$5 log=$6 note=""
  if [[ -z "$passed" || -z "$failed" ]]; then
    passed=${passed:-0}
    failed=$(( ${failed:-0} > 0 ? ${failed:-0} : 1 ))
    note=" (no summary: crashed or timed out, exit code $rc)"
  elif ((rc != 0 && failed == 0)); then
    failed=1
    note=" (exit code $rc although no test failed)"
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  echo "== ${name}: ${passed} passed, ${failed} failed${note} (${secs} s)"
  if ((failed > 0)) && [[ -n "$log" ]]; then
    echo "-- output of ${name} (last 200 lines):"
    tail -n 200 "$log" | sed 's/^/   /'
  fi
}

elapsed() {
  local start=$1
  echo $(( $(date +%s) - start ))
}

echo "== setup"
if ! tools/setup.sh; then
  echo "== setup failed: nothing was tested"
  total_failed=$((total_failed + 1))
  finish
fi

run_doctest() {
  local name=$1 bin=$2 limit=$3
  local log="$logdir/$name.log" start rc line passed="" failed=""
  start=$(date +%s)
  if [[ ! -x "$bin" ]]; then
    echo "$bin is missing" >"$log"
    rc=127
  else
    timeout --kill-after=10 "$limit" "$bin" </dev/null >"$log" 2>&1
    rc=$?
  fi
  # [doctest] test cases:  56 |  56 passed | 0 failed | 0 skipped
  line=$(grep -E '^\[doctest\] test cases:' "$log" | tail -n 1 || true)
  if [[ "$line" =~ test\ cases:\ *([0-9]+)\ *\|\ *([0-9]+)\ passed\ *\|\ *([0-9]+)\ failed ]]; then
    passed=${BASH_REMATCH[2]}
    failed=${BASH_REMATCH[3]}
  fi
  record "$name" "$passed" "$failed" "$rc" "$(elapsed "$start")" "$log"
}

run_doctest rg-unit build/tests/rg-unit 600
run_doctest rg-sim build/tests/rg-sim 900

# run_plain NAME LIMIT COMMAND...: a runner that prints its own failures and
# ends with 'N passed, N failed'.
run_plain() {
  local name=$1 limit=$2 log start rc line passed="" failed=""
  shift 2
  log="$logdir/$name.log"
  echo "== $name"
  start=$(date +%s)
  timeout --kill-after=15 "$limit" "$@" </dev/null 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
  if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=${BASH_REMATCH[1]}
    failed=${BASH_REMATCH[2]}
  fi
  record "$name" "$passed" "$failed" "$rc" "$(elapsed "$start")" ""
}

run_plain integration 900 python3 tests/integration/run.py

# ---- the Spin model of the register: safe configurations searched to the
# end, planted bugs that must be caught (tests/model/README.md).
run_plain model 900 tests/model/run.sh

# ---- chaos: every tests/chaos/*.chaos scenario, then two short soaks (seed 1
# and a random seed, printed with its replay command), each one test; real
# processes in private namespaces created by tools/rolegrid-chaos.
run_plain chaos 900 python3 tools/rolegrid-chaos suite --soak-seed 1 --soak-seed random --soak-rounds 8
# ---- end of chaos

finish
