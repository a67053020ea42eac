#!/usr/bin/env bash
# Build the lab base image (Debian bookworm minbase) with debootstrap from the apt
# mirror this machine is already configured with, then `docker import` it.
# Usage: build.sh IMAGE_TAG
set -euo pipefail
tag=${1:?usage: build.sh IMAGE_TAG}

# The mirror is read from the machine's own apt sources, never written into the repo.
mirror=""
if [ -d /etc/apt/sources.list.d ]; then
  mirror=$(awk '
    /^Types:/ {deb = ($0 ~ /(^|[ \t])deb([ \t]|$)/)}
    /^URIs:/ && deb && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
  echo "lab: no Debian mirror found in /etc/apt/sources.list(.d); configure apt first" >&2
  exit 2
fi

root=$(mktemp -d /var/tmp/theprotocol-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=ca-certificates \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"

# Same apt sources as this machine (so security updates come from where the host gets them).
rm -f "$root/etc/apt/sources.list"
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  for f in /etc/apt/sources.list.d/*.sources; do cp "$f" "$root/etc/apt/sources.list.d/"; done
elif [ -f /etc/apt/sources.list ]; then
  cp /etc/apt/sources.list "$root/etc/apt/sources.list"
fi
# Small images: no docs, no recommends, clean apt lists.
cat >"$root/etc/apt/apt.conf.d/90theprotocol-lab" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
CONF
cat >"$root/etc/dpkg/dpkg.cfg.d/90theprotocol-lab-nodoc" <<'CONF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
path-include /usr/share/doc/*/copyright
CONF
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" -c . | docker import \
  --change 'ENV DEBIAN_FRONTEND=noninteractive' \
  --change 'CMD ["/bin/bash"]' \
  - "$tag" >/dev/null
echo "lab: built base image $tag from $(echo "$mirror" | sed -E 's#^(https?://)[^/]+#\1<apt mirror>#')"
