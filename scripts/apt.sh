# Sourced by scripts/setup*.sh: install distribution packages that are missing, idempotently.
# apt_install LOG_PREFIX PACKAGE...   (uses $sudo: empty as root, "sudo" otherwise)
# The packages' own services (etcd, haproxy, postgresql) are kept from auto-starting.

apt_install() {
  local prefix="$1"; shift
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    printf '[%s] %s\n' "$prefix" "distribution packages already installed"
    return 0
  fi
  printf '[%s] %s\n' "$prefix" "installing distribution packages: ${missing[*]}"
  local policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$policy_created" = 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
}
