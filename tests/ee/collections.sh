#!/usr/bin/env bash
# Collect the collection tarballs the execution environment installs (offline, no Galaxy) into
# $EE_DIR/collections and write $EE_DIR/requirements.yml listing them:
# - theprotocol.operator: `ansible-galaxy collection build` of this repository;
# - community.docker, community.crypto, community.general (galaxy.yml's dependencies): rebuilt
#   from their copies in the pinned `ansible` package in .venv (same versions as the tests use),
#   with their own dependencies.
# Usage: bash tests/ee/collections.sh  (EE_DIR defaults to .build/ee)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EE_DIR="${EE_DIR:-$ROOT/.build/ee}"
OUT="$EE_DIR/collections"
PY="$ROOT/.venv/bin/python"
SITE="$("$PY" -c 'import ansible_collections; print(list(ansible_collections.__path__)[0])')"
mkdir -p "$OUT"
rm -f "$OUT"/theprotocol-operator-*.tar.gz
"$ROOT/.venv/bin/ansible-galaxy" collection build --output-path "$OUT" "$ROOT" >/dev/null
# galaxy.yml's dependencies and theirs (community.docker needs community.library_inventory_filtering_v1).
deps="$("$PY" - "$ROOT/galaxy.yml" "$SITE" <<'PYEOF'
import json, os, sys, yaml
todo, seen = list(yaml.safe_load(open(sys.argv[1]))["dependencies"]), []
while todo:
    fqcn = todo.pop(0)
    if fqcn in seen:
        continue
    seen.append(fqcn)
    manifest = os.path.join(sys.argv[2], *fqcn.split("."), "MANIFEST.json")
    todo += list(json.load(open(manifest))["collection_info"]["dependencies"] or {})
print(" ".join(seen))
PYEOF
)"
for fqcn in $deps; do
  src="$SITE/${fqcn/.//}"
  version="$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["collection_info"]["version"])' "$src/MANIFEST.json")"
  base="${fqcn/./-}"
  [[ -s "$OUT/$base-$version.tar.gz" ]] && continue
  rm -f "$OUT/$base-"*.tar.gz
  # The `ansible` package ships each collection without its tests and CI files, so its FILES.json
  # no longer matches: rebuild the tarball from the installed files with galaxy.yml = MANIFEST.json's
  # collection_info (same name, version, dependencies).
  tmp="$(mktemp -d)"
  cp -a "$src" "$tmp/src" && rm -rf "$tmp/src/MANIFEST.json" "$tmp/src/FILES.json"
  find "$tmp/src" -name __pycache__ -prune -exec rm -rf {} +
  "$PY" - "$src/MANIFEST.json" "$tmp/src/galaxy.yml" <<'PYEOF'
import json, sys, yaml
info = {k: v for k, v in json.load(open(sys.argv[1]))["collection_info"].items() if v not in (None, [], {}, "")}
info.setdefault("readme", "README.md")
yaml.safe_dump(info, open(sys.argv[2], "w"))
PYEOF
  "$ROOT/.venv/bin/ansible-galaxy" collection build --output-path "$OUT" "$tmp/src" >/dev/null
  rm -rf "$tmp"
done
{
  echo "---"
  echo "# Written by tests/ee/collections.sh: local tarballs only, installed with --offline."
  echo "collections:"
  for t in "$OUT"/*.tar.gz; do
    printf '  - name: collections/%s\n    type: file\n' "$(basename "$t")"
  done
} >"$EE_DIR/requirements.yml"
echo "ee: collections: $(find "$OUT" -maxdepth 1 -name '*.tar.gz' -printf '%f ' | tr ' ' '\n' | sort | tr '\n' ' ')"
