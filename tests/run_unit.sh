#!/usr/bin/env bash
# Unit tests: the collection's module_utils and modules, the lab registry app, the
# cert-writer (Go). No Docker needed. pytest's "no tests collected" (exit 5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
rc=0
.venv/bin/pytest -p no:cacheprovider -q tests/unit lab/images/registry/tests lab/tests || rc=$?
[ "$rc" = 5 ] && echo "unit: pytest collected no tests" >&2
if command -v go >/dev/null; then
  (cd lab/images/cert-writer && go vet ./... && go test -count=1 ./...) || rc=1
else
  echo "unit: Go toolchain missing, cannot test the cert-writer (install Go >= 1.24)" >&2; rc=1
fi
exit "$rc"
