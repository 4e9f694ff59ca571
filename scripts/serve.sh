#!/usr/bin/env bash
# Run the whole service without Docker: listener, a realtime and a batch worker, the API.
# Uses the Redis at FOLLOWUP_REDIS_URL (default 127.0.0.1:6379), starting a local redis-server if
# none answers. Ctrl-C stops everything.
#   FOLLOWUP_ALLOW="PACS ORTHANC"  calling AE titles allowed to send
#   FOLLOWUP_DESTINATION=PACS@host:104   where SR/SEG/PDF go
#   FOLLOWUP_DICOM_PORT=11112  FOLLOWUP_API_PORT=8080  FOLLOWUP_API_TOKEN=...
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
: "${FOLLOWUP_API_TOKEN:?set FOLLOWUP_API_TOKEN (the API refuses to start without one)}"
export FOLLOWUP_DATA_DIR="${FOLLOWUP_DATA_DIR:-followup-data}"
export FOLLOWUP_REDIS_URL="${FOLLOWUP_REDIS_URL:-redis://127.0.0.1:6379/0}"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
hostport="${FOLLOWUP_REDIS_URL#redis://}"; hostport="${hostport%%/*}"; hostport="${hostport##*@}"
if ! redis-cli -h "${hostport%%:*}" -p "${hostport##*:}" ping >/dev/null 2>&1; then
  echo "no Redis at $FOLLOWUP_REDIS_URL: starting redis-server on ${hostport}" >&2
  redis-server --bind 127.0.0.1 --port "${hostport##*:}" --save "" --appendonly yes \
    --dir "$FOLLOWUP_DATA_DIR" >/dev/null & pids+=($!)
  sleep 1
fi
mkdir -p "$FOLLOWUP_DATA_DIR"
allow=()
for a in ${FOLLOWUP_ALLOW:-PACS ORTHANC}; do allow+=(--allow "$a"); done
dest=()
[ -n "${FOLLOWUP_DESTINATION:-}" ] && dest=(--destination "$FOLLOWUP_DESTINATION")
$BIN/followup --verbose serve-dicom --port "${FOLLOWUP_DICOM_PORT:-11112}" "${allow[@]}" "${dest[@]}" & pids+=($!)
$BIN/followup worker --queues realtime --hostname "realtime@%h" & pids+=($!)
$BIN/followup worker --queues batch --hostname "batch@%h" & pids+=($!)
$BIN/followup serve-api --port "${FOLLOWUP_API_PORT:-8080}" & pids+=($!)
echo "followup running: DICOM :${FOLLOWUP_DICOM_PORT:-11112}, API http://127.0.0.1:${FOLLOWUP_API_PORT:-8080}/ (Ctrl-C stops)" >&2
wait -n
