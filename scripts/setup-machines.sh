#!/usr/bin/env bash
# Installs what `python -m machines` needs, idempotently (Debian/Ubuntu, as root or with sudo):
#   systemd-container (systemd-nspawn), mmdebstrap (the Debian 12 rootfs), openssh-client,
#   iproute2 + nftables (namespaces, bridge, NAT), util-linux (losetup, nsenter), curl;
#   for the qemu backend (up --backend qemu|--vms): qemu-system-x86, qemu-utils (qemu-img),
#   genisoimage (the NoCloud cidata seed), e2fsprogs (mkfs.ext4 -d).
# Kept out of scripts/setup.sh: systemd-container pulls in systemd pieces the lab does not need.
# `python -m machines up` checks these and points here when one is missing.
set -euo pipefail
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
log() { printf '[setup-machines] %s\n' "$*"; }
# shellcheck source=scripts/apt.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.sh"

apt_packages=(systemd-container mmdebstrap openssh-client iproute2 nftables util-linux curl ca-certificates
  qemu-system-x86 qemu-utils genisoimage e2fsprogs)
apt_install setup-machines "${apt_packages[@]}"
$sudo mkdir -p /var/cache/pgha-machines /var/lib/pgha-machines
log "done"
