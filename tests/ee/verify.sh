#!/usr/bin/env bash
# Run theprotocol.operator.verify INSIDE the execution-environment image against one lab host,
# the way AWX does: ansible-runner with container isolation (docker), the inventory and the SSH
# key in runner's private data directory (the key through ssh-agent, never on the command line),
# the container on the lab's Docker network. Exit status: the playbook's (0 = checklist passed).
# Reports (JSON, JUnit, Markdown) land in $EE_DIR/runner/reports on this machine.
# Usage: bash tests/ee/verify.sh [extra ansible-playbook args]   (make ee-verify)
# Env: EE_IMAGE (default theprotocol-operator-ee:<galaxy.yml version>), EE_HOST (default host8).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EE_DIR="${EE_DIR:-$ROOT/.build/ee}"
EE_HOST="${EE_HOST:-host8}"
version="$(awk '$1 == "version:" {print $2; exit}' "$ROOT/galaxy.yml")"
EE_IMAGE="${EE_IMAGE:-theprotocol-operator-ee:$version}"
LAB_NETWORK=theprotocol-lab   # lab/labctl.py NETWORK
PDD="$EE_DIR/runner"

docker image inspect "$EE_IMAGE" >/dev/null 2>&1 || { echo "ee: no image $EE_IMAGE: make ee" >&2; exit 2; }
docker network inspect "$LAB_NETWORK" >/dev/null 2>&1 || { echo "ee: no lab network: make lab-up LAB_HOSTS=8" >&2; exit 2; }
rm -rf "$PDD" && mkdir -p "$PDD/inventory" "$PDD/env" "$PDD/reports"
"$ROOT/.venv/bin/python" "$ROOT/tests/ee/inventory.py" "$ROOT/lab/state/inventory.yml" "$EE_HOST" "$PDD/inventory/hosts.yml"
install -m 0600 "$ROOT/lab/state/ssh/id_ed25519" "$PDD/env/ssh_key"
# The lab shortens the SVID TTL to 120 s: a 40 s EventStore window, as tests/integration/test_ssh_host.py.
cat >"$PDD/env/extravars" <<'YAML'
---
theprotocol_checklist_report_dir: /runner/reports
theprotocol_checklist_eventstore_window: 40
YAML
printf 'ANSIBLE_NOCOLOR: "1"\nANSIBLE_HOST_KEY_CHECKING: "False"\n' >"$PDD/env/envvars"

start=$SECONDS
rc=0
"$ROOT/.venv/bin/ansible-runner" run "$PDD" -p theprotocol.operator.verify --limit "$EE_HOST" \
  --process-isolation --process-isolation-executable docker --container-image "$EE_IMAGE" \
  --container-option="--network=$LAB_NETWORK" --ident verify ${1:+--cmdline "$*"} || rc=$?
rm -f "$PDD/env/ssh_key"
echo "ee: theprotocol.operator.verify in $EE_IMAGE against $EE_HOST: rc $rc in $((SECONDS - start))s (reports: $PDD/reports)"
exit "$rc"
