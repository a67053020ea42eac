#!/usr/bin/env bash
# Download, with this machine's pip, every Python package the execution-environment build installs
# into $EE_DIR/wheelhouse (pip inside the build has no index: execution-environment.yml):
# ansible-core and ansible-runner at the pins of requirements-dev.txt, what ansible-builder itself
# installs (bindep, pyyaml, packaging, dumb-init), and the Python requirements of the collections
# in $EE_DIR/requirements.yml as ansible-builder introspects them (ours: requirements.txt).
# Skips the download when that list has not changed. Run tests/ee/collections.sh first.
# Usage: bash tests/ee/wheelhouse.sh  (EE_DIR defaults to .build/ee)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EE_DIR="${EE_DIR:-$ROOT/.build/ee}"
VENV="$ROOT/.venv/bin"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

(cd "$EE_DIR" && env -u ANSIBLE_CONFIG -u ANSIBLE_COLLECTIONS_PATH ANSIBLE_GALAXY_DISABLE_GPG_VERIFY=1 \
  "$VENV/ansible-galaxy" collection install --offline --force -r requirements.yml -p "$tmp/collections" >/dev/null 2>&1) \
  || { echo "ee: cannot install $EE_DIR/requirements.yml offline (run tests/ee/collections.sh)" >&2; exit 1; }
"$VENV/ansible-builder" introspect --sanitize --write-pip "$tmp/collections.txt" "$tmp/collections" >/dev/null
pin() { grep -E "^$1==" "$ROOT/requirements-dev.txt" || { echo "ee: no $1 pin in requirements-dev.txt" >&2; exit 1; }; }
{
  pin ansible-core
  pin ansible-runner
  echo "bindep"
  echo "pyyaml"
  echo "packaging"
  echo "dumb-init==1.2.5"
  sed -e 's/[[:space:]]*#.*//' "$tmp/collections.txt"
} | grep -v '^$' >"$tmp/wheelhouse.txt"

# Versions: requirements-dev.txt's pins where it has one (the versions the tests run), else the newest.
grep -E '^[A-Za-z0-9_.-]+(\[[^]]*\])?==' "$ROOT/requirements-dev.txt" | sed 's/\[[^]]*\]//' >"$tmp/constraints.txt"
want="$(cat "$tmp/wheelhouse.txt" "$tmp/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [[ -f "$EE_DIR/wheelhouse/.stamp" && "$(cat "$EE_DIR/wheelhouse/.stamp")" == "$want" ]]; then
  echo "ee: wheelhouse up to date ($(find "$EE_DIR/wheelhouse" -name '*.whl' | wc -l) wheels)"
  exit 0
fi
rm -rf "$EE_DIR/wheelhouse" && mkdir -p "$EE_DIR/wheelhouse"
cp "$tmp/wheelhouse.txt" "$EE_DIR/wheelhouse/requirements.txt"
# The image's Python is Debian bookworm's 3.11, as is this machine's: wheels for it, no sdists.
"$VENV/pip" download -q --disable-pip-version-check --only-binary=:all: -c "$tmp/constraints.txt" \
  --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  -d "$EE_DIR/wheelhouse" -r "$EE_DIR/wheelhouse/requirements.txt"
echo "$want" >"$EE_DIR/wheelhouse/.stamp"
echo "ee: wheelhouse: $(find "$EE_DIR/wheelhouse" -name '*.whl' | wc -l) wheels for: $(tr '\n' ' ' <"$EE_DIR/wheelhouse/requirements.txt")"
