#!/usr/bin/env bash
# generate-operator-env.sh -- the script the operator guide's "Secret Rotation" section tells
# operators to run. It does NOT only write new values into .env.operator: followed by the guide's
# "down" and "up -d", that locks the registry out of PostgreSQL (the postgres image applies
# POSTGRES_PASSWORD to an empty data directory only) and out of Redis (its ACL file wins).
# Instead it runs the rotation the guide meant (playbooks/rotate_secrets.yml): new values applied
# live, only the clients recreated, verified, rolled back on failure. No "down"/"up -d" afterwards.
#
# Usage: generate-operator-env.sh -i INVENTORY [-l LIMIT] [--check] [--secrets KEY[,KEY...]]
#        [--resume|--rollback|--repair] [-- extra ansible-playbook arguments]
#   --check    list what would rotate; change nothing
#   --secrets  POSTGRES_PASSWORD, REDIS_PASSWORD and/or INTERNAL_API_KEY (default: all)
#   --resume   only finish (new values live) or roll back (not live) a rotation that stopped in the
#              middle (every run does this first, from .env.operator.rotation.json on the host)
#   --rollback roll an unfinished rotation back to its backup
#   --repair   for a stack already broken by the guide's procedure: make the live credentials
#              match .env.operator again
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
playbook="$here/../playbooks/rotate_secrets.yml"
[[ -f "$playbook" ]] || playbook="$(dirname "$here")/playbooks/rotate_secrets.yml"
ansible_playbook="${ANSIBLE_PLAYBOOK:-ansible-playbook}"
if [[ -x "$here/../.venv/bin/ansible-playbook" && -z "${ANSIBLE_PLAYBOOK:-}" ]]; then
    ansible_playbook="$here/../.venv/bin/ansible-playbook"
fi

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

args=()
inventory=""
while (($#)); do
    case "$1" in
        -i|--inventory) inventory="${2:?-i needs an inventory}"; args+=(-i "$2"); shift 2 ;;
        -l|--limit) args+=(-l "${2:?-l needs a pattern}"); shift 2 ;;
        --check) args+=(--check); shift ;;
        --secrets) args+=(-e "{\"theprotocol_rotate_secrets\": [\"${2//,/\",\"}\"]}"); shift 2 ;;
        --repair|--resume|--rollback) args+=(-e "theprotocol_rotation_action=${1#--}"); shift ;;
        -h|--help) usage 0 ;;
        --) shift; args+=("$@"); break ;;
        *) echo "generate-operator-env.sh: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done
if [[ -z "$inventory" ]]; then
    echo "generate-operator-env.sh: give the inventory of your registry host(s) with -i" >&2
    exit 2
fi
exec "$ansible_playbook" "${args[@]}" "$playbook"
