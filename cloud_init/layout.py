"""Where things live on a node. THE one place where the lab differs from a VM.

A VM gets :func:`vm_layout`: Debian paths, systemd, the postgres OS user, softdog.
The lab (``lab/``) builds its own :class:`Layout` with paths under its run directory,
its unprivileged OS user, no watchdog device and small memory settings. Everything
else (configs, certificates, scripts) is rendered by the same code from the same
templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Layout:
    kind: str  #: "vm" or "lab"
    etc_dir: str  #: pgha's config dir (patroni.yml, etcd.yml, check.json, tls/)
    bin_dir: str  #: where pgha's scripts are installed
    etcd_data_dir: str  #: etcd member data dir
    pg_data_dir: str  #: PostgreSQL data directory (on the data volume on VMs)
    pg_bin_dir: str  #: PostgreSQL binaries
    socket_dir: str  #: unix_socket_directories (one per node in the lab)
    patroni_venv: str  #: virtualenv with the pinned Patroni
    python: str  #: interpreter for pgha's scripts
    pg_os_user: str  #: OS user running PostgreSQL and Patroni
    pgpass: str  #: pgpass file Patroni writes (must be writable by pg_os_user)
    etcd_os_user: str  #: OS user running etcd
    watchdog: bool  #: False: no watchdog device (lab); True: use settings' mode
    pg_parameters: dict[str, Any] = field(default_factory=dict)  #: overrides (lab: small memory)
    data_device: str = "/dev/sdb"  #: block device of the data volume (VM only)
    data_mount: str = "/var/lib/postgresql"  #: where the data volume is mounted (VM only)


def vm_layout(postgres_version: int) -> Layout:
    return Layout(
        kind="vm",
        etc_dir="/etc/pgha",
        bin_dir="/usr/local/sbin",
        etcd_data_dir="/var/lib/etcd/pgha",
        pg_data_dir=f"/var/lib/postgresql/{postgres_version}/pgha",
        pg_bin_dir=f"/usr/lib/postgresql/{postgres_version}/bin",
        socket_dir="/var/run/postgresql",
        patroni_venv="/opt/patroni",
        python="/usr/bin/python3",
        pg_os_user="postgres",
        pgpass="/var/lib/postgresql/.pgpass_patroni",
        etcd_os_user="etcd",
        watchdog=True,
    )
