#!/usr/bin/env bash
# `make test`: the suite as two pytest runs side by side, each one test after another.
# The end-to-end and integration tests bind the demo's loopback addresses and ports, so
# they share one run; the lab (its own network namespaces) and the unit tests are the
# other, with the scale runs (their own ports and broker node), whose minutes then overlap
# the first's. Arguments go to both runs. Each run's
# output is printed whole when both have ended; the exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
pytest=${PYTEST:-.venv/bin/pytest}
out=$(mktemp -d "${TMPDIR:-/tmp}/lambda-tests.XXXXXX")
trap 'rm -rf "$out"' EXIT

"$pytest" --basetemp="$out/loopback-tmp" "$@" tests/e2e tests/integration \
  >"$out/loopback.log" 2>&1 &
loopback=$!
"$pytest" --basetemp="$out/lab-unit-tmp" "$@" tests/lab tests/unit tests/scale \
  >"$out/lab-unit.log" 2>&1 &
lab_unit=$!

wait "$lab_unit"; lab_unit_status=$?
echo "== tests/lab tests/unit tests/scale (exit $lab_unit_status)"; cat "$out/lab-unit.log"
wait "$loopback"; loopback_status=$?
echo "== tests/e2e tests/integration (exit $loopback_status)"; cat "$out/loopback.log"
if [ "$lab_unit_status" -ne 0 ]; then exit "$lab_unit_status"; fi
exit "$loopback_status"
