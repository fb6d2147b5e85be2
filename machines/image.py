"""The base Debian 12 rootfs every node boots from, built once with mmdebstrap and cached.

It resembles OVHcloud's "Debian 12" image: systemd + udev, cloud-init (NoCloud is
among its datasources), openssh-server, sudo, ifupdown (cloud-init renders
/etc/network/interfaces.d/50-cloud-init from network-config, as on OVH), iproute2,
ca-certificates and python3. Nothing of the stack is baked in: a node is this rootfs
plus its NoCloud seed.

Two things belong to THIS machine, not to OVH, and so to the image, never to the
rendered user-data: the host's CA bundle is trusted (HTTPS leaving this machine is
re-signed by a CA the host trusts) and pip is told to use it (/etc/pip.conf).

The cache directory name carries a hash of the package list, the apt sources and this
module's version, so a change rebuilds; an unchanged list reuses the rootfs. Downloaded
.deb files are kept in ``<cache>/apt`` (synced in and out of mmdebstrap; hard-linked
into each node's own /var/cache/apt/archives, so nodes share no apt lock, and the ones
nodes download are linked back by ``up``), so a rebuild or a node's ``packages:`` does
not download them again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CACHE = Path(os.environ.get("PGHA_MACHINES_CACHE", "/var/cache/pgha-machines"))
IMAGE_VERSION = "5"  #: bump when the build steps below change
SUITE = "bookworm"
MIRRORS = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]
PACKAGES = [
    "systemd", "systemd-sysv", "udev", "dbus", "libpam-systemd",
    "cloud-init", "cloud-guest-utils", "openssh-server", "openssh-client", "sudo",
    "ifupdown", "isc-dhcp-client", "iproute2", "iputils-ping", "netbase",
    "ca-certificates", "curl", "gnupg", "python3", "procps", "less", "vim-tiny",
    "e2fsprogs", "util-linux", "locales", "apt-utils", "lsb-release",
]  # fmt: skip
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Read by the nodes' apt: keep what it downloads (the archive dir is the shared cache).
APT_KEEP = 'Binary::apt::APT::Keep-Downloaded-Packages "true";\nAPT::Keep-Downloaded-Packages "true";\n'
PIP_CONF = "[global]\n# pgha machines: HTTPS from this build host is re-signed by the host's CA (image, not user-data)\ncert = /etc/ssl/certs/ca-certificates.crt\n"


def image_key(packages: list[str] | None = None) -> str:
    h = hashlib.sha256()
    for part in [IMAGE_VERSION, SUITE, *MIRRORS, *sorted(packages or PACKAGES)]:
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:12]


def apt_cache_dir() -> Path:
    return CACHE / "apt"


def image_dir(packages: list[str] | None = None, flavor: str = "debian12") -> Path:
    """``flavor``: the cache name's prefix; each flavor (``debian12`` for containers,
    ``debian12vm`` with a kernel for qemu) keeps its newest build (see :func:`prune`)."""
    return CACHE / f"{flavor}-{image_key(packages)}"


def rootfs(packages: list[str] | None = None, flavor: str = "debian12") -> Path:
    return image_dir(packages, flavor) / "rootfs"


def ready(packages: list[str] | None = None, flavor: str = "debian12") -> bool:
    return (image_dir(packages, flavor) / "ok").exists()


def _pems(path: Path) -> list[str]:
    text = path.read_text() if path.exists() else ""
    end = "-----END CERTIFICATE-----"
    return [
        b.split("-----BEGIN CERTIFICATE-----", 1)[1].strip()
        for b in text.split(end)
        if "-----BEGIN CERTIFICATE-----" in b
    ]


def extra_host_cas(host_bundle: Path, shipped_dir: Path) -> list[str]:
    """The host's trusted CAs that Debian's ca-certificates does not ship (the one that
    re-signs HTTPS here), as PEM: only those are added to the image."""
    known = {"".join(b.split()) for f in shipped_dir.rglob("*.crt") for b in _pems(f)}
    return [
        f"-----BEGIN CERTIFICATE-----\n{b}\n-----END CERTIFICATE-----\n"
        for b in _pems(host_bundle)
        if "".join(b.split()) not in known
    ]


def _customize(root: Path) -> None:
    """Steps run on the finished rootfs: what OVH's image has and this machine needs."""
    ca_dir = root / "usr/local/share/ca-certificates"
    ca_dir.mkdir(parents=True, exist_ok=True)
    for i, pem in enumerate(extra_host_cas(HOST_CA_BUNDLE, root / "usr/share/ca-certificates")):
        (ca_dir / f"pgha-build-host-{i}.crt").write_text(pem)
    (root / "etc/pip.conf").write_text(PIP_CONF)
    (root / "etc/apt/apt.conf.d/10pgha-keep-debs").write_text(APT_KEEP)
    # A docker-clean-like hook would empty the archive dir after installs; make sure there is none.
    (root / "etc/apt/apt.conf.d/docker-clean").unlink(missing_ok=True)
    # The NoCloud seed directory is the only datasource here (OVH uses OpenStack's; same modules).
    (root / "etc/cloud/cloud.cfg.d/90-pgha-machines.cfg").write_text(
        "# pgha machines: nodes boot from a NoCloud seed in /var/lib/cloud/seed/nocloud\ndatasource_list: [ NoCloud, None ]\n"
    )
    (root / "etc/machine-id").write_text("")  # each node gets its own at first boot
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # cloud-init generates host keys per instance (ssh_deletekeys)
    subprocess.run(
        ["chroot", str(root), "update-ca-certificates"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # cloud-init's locale module sets en_US.UTF-8 (Debian's default); OVH's image has it generated.
    gen = root / "etc/locale.gen"
    gen.write_text(gen.read_text() + "en_US.UTF-8 UTF-8\n")
    subprocess.run(["chroot", str(root), "locale-gen"], check=True, stdout=subprocess.DEVNULL)
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)  # persistent journal, readable from the host
    # A container has no serial console getty to spare; keep boot quiet and fast.
    for unit in (
        "systemd-timesyncd.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
        "fstrim.timer",
        "man-db.timer",
    ):
        subprocess.run(
            check=False,
            args=["chroot", str(root), "systemctl", "mask", unit],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def build(packages: list[str] | None = None, log: Callable[[str], None] = print, flavor: str = "debian12") -> Path:
    """The cached rootfs for ``packages``, built (~2-5 min cold) when missing."""
    packages = packages or PACKAGES
    d = image_dir(packages, flavor)
    if (d / "ok").exists():
        return d / "rootfs"
    if not shutil.which("mmdebstrap"):
        raise RuntimeError("mmdebstrap is missing: run scripts/setup-machines.sh")
    apt = apt_cache_dir()
    apt.mkdir(parents=True, exist_ok=True)
    tmp = d.with_name(d.name + ".tmp")
    if tmp.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(tmp)], check=True)
    tmp.mkdir(parents=True)
    log(f"image: building Debian 12 rootfs {d.name} with mmdebstrap ({len(packages)} packages; apt cache {apt})")
    t0 = time.monotonic()
    cmd = [
        "mmdebstrap", "--mode=root", "--variant=important", "--format=directory",
        f"--include={','.join(packages)}",
        "--aptopt=APT::Keep-Downloaded-Packages \"true\"",
        f"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/ && cp -al {apt}/. \"$1\"/var/cache/apt/archives/ 2>/dev/null || true",
        f"--customize-hook=cp -ru \"$1\"/var/cache/apt/archives/*.deb {apt}/ 2>/dev/null || true",
        "--skip=cleanup/apt/cache",
        # Keep the package lists: a node's `package_update` then finds them current (~10 s less per boot).
        "--skip=cleanup/apt/lists",
        "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
        SUITE, str(tmp / "rootfs"), *MIRRORS,
    ]  # fmt: skip
    with open(tmp / "build.log", "w") as out:
        r = subprocess.run(check=False, args=cmd, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed ({r.returncode}); see {tmp / 'build.log'}")
    _customize(tmp / "rootfs")
    (tmp / "packages").write_text("\n".join(packages) + "\n")
    (tmp / "ok").write_text(f"{time.time():.0f}\n")
    if d.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=True)
    tmp.rename(d)
    log(f"image: built in {time.monotonic() - t0:.0f}s -> {d}")
    for old in prune(keep=d):
        log(f"image: removed unused {old}")
    return d / "rootfs"


def prune(keep: Path) -> list[Path]:
    """Remove other cached rootfs builds of the same flavor that no overlay mount uses
    (another stack's running nodes keep theirs; the other flavor's build stays)."""
    with open("/proc/self/mountinfo") as f:
        in_use = f.read()
    removed = []
    for old in CACHE.glob(f"{keep.name.rsplit('-', 1)[0]}-*"):
        if old == keep or not old.is_dir() or str(old) in in_use:
            continue
        subprocess.run(["rm", "-rf", "--one-file-system", str(old)], check=False)
        removed.append(old)
    return removed


if __name__ == "__main__":
    print(build())
    sys.exit(0)
