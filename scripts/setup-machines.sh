#!/usr/bin/env bash
# Installs what `python -m machines` needs, idempotently (Debian/Ubuntu, as root or with sudo):
#   systemd-container (systemd-nspawn), mmdebstrap (the Debian 12 rootfs), openssh-client,
#   iproute2 + nftables (namespaces, bridge, NAT), util-linux (losetup, nsenter), curl.
# Kept out of scripts/setup.sh: systemd-container pulls in systemd pieces the lab does not need.
# `python -m machines up` checks these and points here when one is missing.
set -euo pipefail
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
log() { printf '[setup-machines] %s\n' "$*"; }

apt_packages=(systemd-container mmdebstrap openssh-client iproute2 nftables util-linux curl ca-certificates)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing distribution packages: ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "distribution packages already installed"
fi
$sudo mkdir -p /var/cache/pgha-machines /var/lib/pgha-machines
log "done"
