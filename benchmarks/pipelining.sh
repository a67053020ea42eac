#!/usr/bin/env bash
# site.yml on a converged lab host, alternately without and with Ansible pipelining (ansible.cfg
# sets it on): wall time of each run and the median of each side.
#   bash benchmarks/pipelining.sh [HOST] [RUNS]      (default host1, 2 runs each; make lab first)
set -euo pipefail
cd "$(dirname "$0")/.."
host=${1:-host1}
runs=${2:-2}
export ANSIBLE_CONFIG=$PWD/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$PWD/.build/collections
declare -A times=([False]="" [True]="")
for _ in $(seq "$runs"); do
  for pipelining in False True; do
    start=$(date +%s.%N)
    ANSIBLE_PIPELINING=$pipelining .venv/bin/ansible-playbook -i lab/state/inventory.yml playbooks/site.yml \
      -l "frame,$host" >/dev/null
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    printf 'pipelining=%-5s %6.1f s\n' "$pipelining" "$seconds"
    times[$pipelining]+="$seconds "
  done
done
for pipelining in False True; do
  median=$(printf '%s\n' ${times[$pipelining]} | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  printf 'median pipelining=%-5s %6.1f s over %d runs\n' "$pipelining" "$median" "$runs"
done
