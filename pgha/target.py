"""Where the rendered files run: ONE value holding every difference between targets.

A :class:`Target` carries the address plan and, per node, the :class:`Layout` (paths,
OS users, watchdog, memory overrides), plus the few target-wide facts (HAProxy's bind
address and CA file, extra certificate SANs). The renderer takes a Target and nothing
else that varies by target; adding a target adds one constructor here.

- :meth:`Target.vm`: an OVH instance (Debian paths, systemd, the postgres OS user, softdog);
  also what the machines tier (``machines/``) boots on this host.
- :meth:`Target.lab`: the lab's loopback processes (``lab/``). THE differences from a VM:
  addresses on a loopback prefix; paths under the run directory, one tree per node (one
  socket dir each); no systemd (lab/supervisor.py starts the commands the units run); no
  watchdog device (softdog needs a kernel module); small memory parameters, since three
  servers share one machine; daemons run as one unprivileged user; the host firewall and
  the data volume are rendered but not applied; certificates also carry 127.0.0.1 (the
  kernel sources loopback connections from it, and etcd checks a peer's client
  certificate against the connection's source address).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backup import ObjectStorage
from .plan import AddressPlan, Node, nodes

if TYPE_CHECKING:
    from .settings import Settings


@dataclass(frozen=True)
class Layout:
    """Where things live on one node."""

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
    data_device: str | None = None  #: the data volume's stable device path; None: no separate volume (lab)
    data_mount: str = "/var/lib/postgresql"  #: where the data volume is mounted (must be a mount point on a VM)
    pgbackrest_conf: str = "/etc/pgbackrest/pgbackrest.conf"  #: pgBackRest config (0640 root:postgres on a VM)
    pgbackrest_spool: str = "/var/spool/pgbackrest"  #: asynchronous archiving queue
    pgbackrest_log: str = "/var/log/pgbackrest"
    pgbackrest_lock: str | None = None  #: None: pgBackRest's own default lock-path (the lab: in its run dir)
    exporter_os_user: str = "prometheus"  #: OS user running the exporters (Debian packages' user on a VM)


def pg_bin_dir(postgres_version: int) -> str:
    return f"/usr/lib/postgresql/{postgres_version}/bin"


def volume_device(volume_id: str) -> str:
    """The stable path of an attached Cinder volume: Nova sets the virtio disk's serial to
    the first 20 characters of the volume id, and udev links it under /dev/disk/by-id."""
    return f"/dev/disk/by-id/virtio-{volume_id[:20]}"


#: Stands for a volume id where none exists yet (render command, goldens).
PLACEHOLDER_VOLUME_ID = "VOLUME-ID-OF-{node}"


def vm_layout(postgres_version: int, data_device: str | None = None) -> Layout:
    return Layout(
        etc_dir="/etc/pgha",
        bin_dir="/usr/local/sbin",
        etcd_data_dir="/var/lib/etcd/pgha",
        pg_data_dir=f"/var/lib/postgresql/{postgres_version}/pgha",
        pg_bin_dir=pg_bin_dir(postgres_version),
        socket_dir="/var/run/postgresql",
        patroni_venv="/opt/patroni",
        python="/usr/bin/python3",
        pg_os_user="postgres",
        pgpass="/var/lib/postgresql/.pgpass_patroni",
        etcd_os_user="etcd",
        watchdog=True,
        data_device=data_device,
    )


#: Small memory settings for three PostgreSQL servers on one machine (lab).
LAB_PG_PARAMETERS: dict[str, Any] = {
    "shared_buffers": "32MB",
    "effective_cache_size": "128MB",
    "max_connections": 60,
    "work_mem": "4MB",
    "maintenance_work_mem": "16MB",
    "wal_keep_size": "64MB",
}


@dataclass(frozen=True)
class MonitoringPlace:
    """Where the monitoring host's files live and how fast it looks (lab: faster)."""

    etc_dir: str  #: prometheus.yml, alertmanager.yml, rules/, tls/
    data_dir: str  #: Prometheus TSDB
    alertmanager_data_dir: str  #: Alertmanager's silences and notification log
    textfile_dir: str  #: node-exporter textfile collector directory on every node (backup age, cert expiry)
    node_exporter_on: tuple[str, ...] | None = None  #: node names running node-exporter; None: every node
    scrape_interval_seconds: int | None = None  #: None: monitoring.scrape_interval_seconds
    evaluation_interval_seconds: int | None = None  #: None: monitoring.evaluation_interval_seconds
    failover_window_seconds: int | None = None  #: None: monitoring.failover_window_minutes


#: Debian's prometheus packages: config under /etc/prometheus, data under /var/lib/prometheus,
#: node-exporter's textfile directory as its /etc/default file sets it.
VM_MONITORING = MonitoringPlace(
    etc_dir="/etc/prometheus",
    data_dir="/var/lib/prometheus/metrics2",
    alertmanager_data_dir="/var/lib/prometheus/alertmanager",
    textfile_dir="/var/lib/prometheus/node-exporter",
)

#: The source address of loopback connections (a SAN of every lab certificate).
LOOPBACK_SOURCE = "127.0.0.1"


@dataclass(frozen=True)
class Target:
    name: str  #: vm or lab
    plan: AddressPlan  #: every node's address on this target
    layouts: Mapping[str, Layout]  #: node name -> layout
    haproxy_bind: str  #: address HAProxy listens on
    haproxy_ca_file: str  #: CA file HAProxy checks Patroni's REST API with
    extra_sans: tuple[str, ...] = ()  #: addresses every node certificate carries besides the node's own
    prefix: str = ""  #: the lab's loopback prefix (e.g. 127.0): decided here, never parsed back from an address
    object_storage: ObjectStorage | None = None  #: the backup repository's S3 server; None: OVH's (pgha/backup.py)
    monitoring: MonitoringPlace = VM_MONITORING  #: the monitoring host's paths and pace

    def layout(self, node: Node) -> Layout:
        return self.layouts[node.name]

    def cert_sans(self, node: Node) -> list[str]:
        return [node.address, *self.extra_sans]

    @classmethod
    def vm(cls, settings: Settings, volume_ids: Mapping[str, str] | None = None) -> Target:
        """An OVH instance (and a machine booted from the same user-data on this host).
        ``volume_ids``: each Patroni node's data volume id (placeholders when not known)."""
        plan = settings.plan
        version = settings.patroni.postgres_version
        ids = volume_ids or {}
        layouts = {n.name: vm_layout(version) for n in plan.etcd}
        for n in plan.patroni:
            volume_id = ids.get(n.name, PLACEHOLDER_VOLUME_ID.format(node=n.name))
            layouts[n.name] = vm_layout(version, volume_device(volume_id))
        return cls(
            name="vm",
            plan=plan,
            layouts=layouts,
            haproxy_bind="127.0.0.1",  # HAProxy on each application host
            haproxy_ca_file="/etc/haproxy/pgha-ca.crt",
        )

    @classmethod
    def lab(cls, settings: Settings, run_dir: Path, prefix: str, os_user: str, patroni_venv: str) -> Target:
        """The lab: etcd on <prefix>.1.N, Patroni on <prefix>.2.N, HAProxy on <prefix>.3.1.

        The "subnet" is all of 127.0.0.0/8: the kernel sources loopback connections from
        127.0.0.1, so that is where pg_hba sees peers and clients come from."""
        plan = AddressPlan(
            cidr="127.0.0.0/8",
            gateway_ip=f"{prefix}.0.1",
            etcd=nodes("etcd", (f"{prefix}.1.{i + 1}" for i in range(settings.etcd.members))),
            patroni=nodes("patroni", (f"{prefix}.2.{i + 1}" for i in range(settings.patroni.nodes))),
            bastion=Node("bastion", "bastion", f"{prefix}.4.1"),
            monitoring=Node("monitoring", "monitoring", f"{prefix}.6.1"),
            lb=f"{prefix}.3.1",
            dhcp_start=f"{prefix}.5.1",
            dhcp_end=f"{prefix}.5.254",
        )

        def layout(node: Node) -> Layout:
            d = run_dir / node.name
            return Layout(
                etc_dir=str(d / "etc"),
                bin_dir=str(d / "bin"),
                etcd_data_dir=str(d / "data"),
                pg_data_dir=str(d / "data"),
                pg_bin_dir=pg_bin_dir(settings.patroni.postgres_version),
                socket_dir=str(d / "sock"),
                patroni_venv=patroni_venv,
                python="/usr/bin/python3",
                pg_os_user=os_user,
                pgpass=str(d / "pgpass"),
                etcd_os_user=os_user,
                watchdog=False,
                pg_parameters=dict(LAB_PG_PARAMETERS),
                data_mount=str(d),
                pgbackrest_conf=str(d / "etc" / "pgbackrest.conf"),
                pgbackrest_spool=str(d / "pgbackrest" / "spool"),
                pgbackrest_log=str(d / "pgbackrest" / "log"),
                pgbackrest_lock=str(d / "pgbackrest" / "lock"),
                exporter_os_user=os_user,
            )

        return cls(
            name="lab",
            plan=plan,
            layouts={n.name: layout(n) for n in plan.cluster},
            haproxy_bind=plan.lb,
            haproxy_ca_file=str(run_dir / "ca.crt"),
            extra_sans=(LOOPBACK_SOURCE,),
            prefix=prefix,
            # One node-exporter (they would all see the same machine); a quick pace so the
            # lab's alert tests see a fault within seconds, a failover notice that resolves in one minute.
            monitoring=MonitoringPlace(
                etc_dir=str(run_dir / "monitoring" / "etc"),
                data_dir=str(run_dir / "monitoring" / "data" / "prometheus"),
                alertmanager_data_dir=str(run_dir / "monitoring" / "data" / "alertmanager"),
                textfile_dir=str(run_dir / "monitoring" / "textfile"),
                node_exporter_on=("monitoring",),
                scrape_interval_seconds=1,
                evaluation_interval_seconds=1,
                failover_window_seconds=60,
            ),
        )
