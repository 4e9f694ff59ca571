#!/usr/bin/env bash
# The test suite on 2 cores: the slow real-process tests (marked `slow`: worker kills, Redis
# restarts, Orthanc, load, the 5-minute recovery variant) spend most of their time waiting on
# other processes, so they run in a second pytest process beside the rest. The slow run's output
# is printed after the first one's, so each ends with its own summary line; the exit status is
# non-zero when either fails.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
log=$(mktemp "${TMPDIR:-/tmp}/followup-slow-tests.XXXXXX")
trap 'rm -f "$log"' EXIT
"$PY" -m pytest -q -p no:cacheprovider -m slow "$@" >"$log" 2>&1 &
slow=$!
"$PY" -m pytest -q -m "not slow" "$@"
fast_rc=$?
wait "$slow"
slow_rc=$?
echo "--- slow tests (run beside the others) ---"
cat "$log"
# pytest's 5 means "no test collected" (e.g. a -k filter that selects none in one half)
[ "$fast_rc" -eq 5 ] && fast_rc=0
[ "$slow_rc" -eq 5 ] && slow_rc=0
[ "$fast_rc" -eq 0 ] && [ "$slow_rc" -eq 0 ]
