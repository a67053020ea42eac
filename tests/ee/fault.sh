#!/usr/bin/env bash
# A check that cannot fail is a defect: prove that verify.yml, run inside the execution
# environment (tests/ee/verify.sh), fails on a real fault and passes again once it is repaired.
# Fault: cert-writer stopped on the lab host (`docker stop <registry>-cert-writer` there); the
# checklist must fail with cert_writer_running FAIL. Repair: start it, wait for its next fetch.
# Usage: bash tests/ee/fault.sh   (make ee-verify runs it after a passing verify)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EE_DIR="${EE_DIR:-$ROOT/.build/ee}"
EE_HOST="${EE_HOST:-host8}"
N="${EE_HOST#host}"
CONTAINER="lab-$EE_HOST" REGISTRY="registry$N"   # lab/labctl.py naming
REPORT="$EE_DIR/runner/reports/$EE_HOST.json"
on_host() { docker exec "$CONTAINER" "$@"; }
status_of() { "$ROOT/.venv/bin/python" -c 'import json, sys
print(next(r["status"] for r in json.load(open(sys.argv[1]))["results"] if r["id"] == sys.argv[2]))' "$REPORT" "$1"; }

restore() { on_host docker start "$REGISTRY-cert-writer" >/dev/null; }
trap restore EXIT
echo "ee: fault: docker stop $REGISTRY-cert-writer on $EE_HOST"
on_host docker stop "$REGISTRY-cert-writer" >/dev/null
rc=0
bash "$ROOT/tests/ee/verify.sh" >"$EE_DIR/fault-verify.log" 2>&1 || rc=$?
grep -E '^ee: |FAIL|cert_writer_running' "$EE_DIR/fault-verify.log" | tail -8
status="$(status_of cert_writer_running)"
if [[ $rc -eq 0 || "$status" != fail ]]; then
  echo "ee: FAILED: with cert-writer stopped verify.yml gave rc $rc, cert_writer_running $status (log: $EE_DIR/fault-verify.log)" >&2
  exit 1
fi
echo "ee: fault seen: verify.yml rc $rc, cert_writer_running $status"

restore
trap - EXIT
echo "ee: repaired: docker start $REGISTRY-cert-writer; verify.yml until it passes (at most 180 s)"
deadline=$((SECONDS + 180))
until bash "$ROOT/tests/ee/verify.sh" >"$EE_DIR/repair-verify.log" 2>&1; do
  if ((SECONDS > deadline)); then
    tail -30 "$EE_DIR/repair-verify.log" >&2
    echo "ee: FAILED: verify.yml still fails 180 s after the repair" >&2
    exit 1
  fi
  sleep 10
done
grep -E '^ee: |\| '"$EE_HOST"' \|' "$EE_DIR/repair-verify.log" | tail -3
echo "ee: repaired and passing again: cert_writer_running $(status_of cert_writer_running)"
