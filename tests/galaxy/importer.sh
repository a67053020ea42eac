#!/usr/bin/env bash
# Build the collection tarball and run galaxy-importer on it (what Galaxy / Automation Hub run on
# an upload), without ansible-test's container: exits non-zero on any importer error.
# Its own virtualenv: .build/galaxy-importer. Usage: bash tests/galaxy/importer.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/.build/galaxy"
VENV="$ROOT/.build/galaxy-importer"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check 'galaxy-importer>=0.4.44'
rm -rf "$OUT" && mkdir -p "$OUT"
"$ROOT/.venv/bin/ansible-galaxy" collection build --output-path "$OUT" "$ROOT" >/dev/null
cat >"$OUT/galaxy-importer.cfg" <<'CFG'
[galaxy-importer]
RUN_ANSIBLE_TEST = False
RUN_ANSIBLE_LINT = True
REQUIRE_V1_OR_GREATER = False
CFG
cd "$OUT"  # the importer writes importer_result.json into the current directory
PATH="$VENV/bin:$PATH" GALAXY_IMPORTER_CONFIG="$OUT/galaxy-importer.cfg" \
  "$VENV/bin/python" -m galaxy_importer.main "$OUT"/theprotocol-operator-*.tar.gz | tee "$OUT/importer.log"
grep -q 'Importer processing completed successfully' "$OUT/importer.log"
! grep -E '^ERROR' "$OUT/importer.log"
