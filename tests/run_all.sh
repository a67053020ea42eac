#!/usr/bin/env bash
# make test: unit, lint and sanity in the foreground while the lab is prepared in the background
# (the lab images -- on a cold machine the SPIRE build alone takes 7.5 min --, the lab hosts of the
# integration run, the execution-environment image); then integration and ee-verify.
# The background log is .build/prepare.log; its tail is shown when it fails.
# Environment: INTEGRATION_HOSTS (from the Makefile).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
mkdir -p .build
log=.build/prepare.log
start=$SECONDS
set -m  # the preparation gets a process group of its own, so that a failure here stops all of it
(
  set -e
  labctl() { .venv/bin/python lab/labctl.py "$@"; }
  labctl build host  # the base image (debootstrap) first, once
  # The Go builds (SPIRE, cert-writer: CPU-bound) alongside the other images and the EE (mostly downloads).
  labctl build --go only &
  go=$!
  labctl build --go none
  make -s ee
  wait "$go"
  make -s lab-up LAB_HOSTS="${INTEGRATION_HOSTS:?}"
) >"$log" 2>&1 &
prepare=$!
set +m
trap 'kill -- -"$prepare" 2>/dev/null' EXIT

step() { echo "make test: $1 ($((SECONDS - start)) s)"; }
for suite in unit lint sanity; do
  make -s "$suite" || { echo "make test: $suite failed" >&2; exit 1; }
  step "$suite passed"
done
if ! wait "$prepare"; then
  tail -40 "$log" >&2
  echo "make test: preparing the lab failed (log: $log)" >&2
  exit 1
fi
trap - EXIT
step "lab and EE image ready"
for suite in integration ee-verify; do
  make -s "$suite" || { echo "make test: $suite failed" >&2; exit 1; }
  step "$suite passed"
done
