#!/usr/bin/env bash
# Build the lab cert-writer as a static binary.
# Usage: build.sh OUTPUT_PATH
# Needs Go >= 1.24; modules come from the local module cache or the configured
# Go module proxy (GOPROXY), checked against go.sum.
set -euo pipefail
out=${1:?usage: build.sh OUTPUT_PATH}

go=$(command -v go || true)
if [ -z "$go" ] && [ -x /usr/local/go/bin/go ]; then
  go=/usr/local/go/bin/go
fi
if [ -z "$go" ]; then
  echo "cert-writer build: go not found (install Go >= 1.24 or put it on PATH)" >&2
  exit 1
fi

# OUTPUT_PATH is relative to the caller's directory, the build runs in the module.
case $out in
  /*) ;;
  *) out="$PWD/$out" ;;
esac
mkdir -p "$(dirname "$out")"
cd "$(dirname "${BASH_SOURCE[0]}")"

export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
"$go" mod download
"$go" build -trimpath -ldflags='-s -w' -o "$out" .
echo "cert-writer build: $out ($("$go" env GOVERSION), $(du -h "$out" | cut -f1))"
