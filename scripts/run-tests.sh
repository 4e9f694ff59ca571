#!/usr/bin/env bash
# The test suite on 2 cores. The slow real-process tests (marked `slow`: worker kills, Redis
# restarts, Orthanc, load) spend most of their time waiting on other processes, and the 5-minute
# recovery variant (marked `long_wait`) mostly sleeps: each group runs in a pytest process of its
# own beside the rest. The slow group is itself spread over pytest-xdist workers
# (FOLLOWUP_SLOW_WORKERS, default 2; 0 runs it in one process): its tests wait far more than they
# compute, so several overlap well on 2 cores. Each worker starts its own servers on free ports;
# the tests of a module that share a service stack stay in one worker (--dist loadgroup, marks from
# tests/conftest.py). The side runs' output is printed after the main one's, each ending with its
# own summary line; the exit status is non-zero when any group fails.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
slow_log=$(mktemp "${TMPDIR:-/tmp}/followup-slow-tests.XXXXXX")
wait_log=$(mktemp "${TMPDIR:-/tmp}/followup-wait-tests.XXXXXX")
trap 'rm -f "$slow_log" "$wait_log"' EXIT
"$PY" -m pytest -q -p no:cacheprovider -m long_wait "$@" >"$wait_log" 2>&1 &
waiting=$!
workers=${FOLLOWUP_SLOW_WORKERS:-2}
spread=()
[ "$workers" -gt 0 ] && spread=(-n "$workers" --dist loadgroup)
"$PY" -m pytest -q -p no:cacheprovider "${spread[@]}" -m "slow and not long_wait" "$@" >"$slow_log" 2>&1 &
slow=$!
"$PY" -m pytest -q -m "not slow" "$@"
fast_rc=$?
wait "$slow"
slow_rc=$?
wait "$waiting"
wait_rc=$?
echo "--- slow tests (run beside the others) ---"
cat "$slow_log"
echo "--- long-wait tests (run beside the others) ---"
cat "$wait_log"
# pytest's 5 means "no test collected" (e.g. a -k filter that selects none in one group)
for rc in fast_rc slow_rc wait_rc; do [ "${!rc}" -eq 5 ] && printf -v "$rc" 0; done
[ "$fast_rc" -eq 0 ] && [ "$slow_rc" -eq 0 ] && [ "$wait_rc" -eq 0 ]
