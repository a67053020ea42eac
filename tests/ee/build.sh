#!/usr/bin/env bash
# Build the execution-environment image of theprotocol.operator with ansible-builder, on this
# machine, pulling nothing: base image theprotocol-lab/base:bookworm (built here with debootstrap
# when missing), collections from local tarballs (collections.sh), Python from a local wheelhouse
# (wheelhouse.sh). Prints the image and the build time.
# Usage: bash tests/ee/build.sh   (make ee)   EE_IMAGE=name:tag to choose the image name;
# EE_NO_CACHE=1 builds without Docker's layer cache (a cold build: also rm -rf .build/ee).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export EE_DIR="${EE_DIR:-$ROOT/.build/ee}"
BASE_IMAGE=theprotocol-lab/base:bookworm
version="$(awk '$1 == "version:" {print $2; exit}' "$ROOT/galaxy.yml")"
EE_IMAGE="${EE_IMAGE:-theprotocol-operator-ee:$version}"
start=$SECONDS

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "ee: $BASE_IMAGE is missing: building it with debootstrap (lab/images/base/build.sh)"
  bash "$ROOT/lab/images/base/build.sh" "$BASE_IMAGE"
fi
mkdir -p "$EE_DIR"
cp "$ROOT/tests/ee/execution-environment.yml" "$EE_DIR/execution-environment.yml"
bash "$ROOT/tests/ee/collections.sh"
bash "$ROOT/tests/ee/wheelhouse.sh"
"$ROOT/.venv/bin/ansible-builder" build --container-runtime docker -v 2 ${EE_NO_CACHE:+--no-cache} \
  -f "$EE_DIR/execution-environment.yml" -c "$EE_DIR/context" -t "$EE_IMAGE" >"$EE_DIR/build.log" 2>&1 \
  || { tail -40 "$EE_DIR/build.log" >&2; echo "ee: ansible-builder build failed (log: $EE_DIR/build.log)" >&2; exit 1; }
docker run --rm "$EE_IMAGE" ansible-galaxy collection list 2>/dev/null | grep -E '^(theprotocol|community)\.' | sed 's/^/ee:   /'
echo "ee: built $EE_IMAGE in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$EE_IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
