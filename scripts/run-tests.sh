#!/usr/bin/env bash
# `make test`: the suite as two pytest runs side by side, each one test after another.
# The end-to-end and integration tests on the demo's loopback addresses and ports take
# turns (tests/conftest.py), so they share one run, with the unit tests and the
# broken-service starts (127.44.x.y). The other run holds what has hosts of its own: the
# lab (its own network namespaces), the scale runs (their own ports and broker node), the
# playbooks' and stand-ins' tests (127.45.x.y); the split evens the two runs' minutes.
# Arguments go to both runs. Each run's output is printed whole when both have ended; the
# exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
pytest=${PYTEST:-.venv/bin/pytest}
out=$(mktemp -d "${TMPDIR:-/tmp}/lambda-tests.XXXXXX")
trap 'rm -rf "$out"' EXIT
apart=(tests/integration/test_playbooks.py tests/integration/test_standins.py)

"$pytest" --basetemp="$out/loopback-tmp" "$@" tests/e2e tests/integration tests/unit \
  "${apart[@]/#/--ignore=}" >"$out/loopback.log" 2>&1 &
loopback=$!
"$pytest" --basetemp="$out/apart-tmp" "$@" tests/lab tests/scale "${apart[@]}" \
  >"$out/apart.log" 2>&1 &
apart_run=$!

wait "$apart_run"; apart_status=$?
echo "== tests/lab tests/scale ${apart[*]} (exit $apart_status)"; cat "$out/apart.log"
wait "$loopback"; loopback_status=$?
echo "== tests/e2e tests/integration tests/unit (exit $loopback_status)"; cat "$out/loopback.log"
if [ "$apart_status" -ne 0 ]; then exit "$apart_status"; fi
exit "$loopback_status"
