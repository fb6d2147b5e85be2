"""The lab's topology: a stack's settings on a loopback address plan, and THE list of
differences between a lab node and a VM (see :func:`lab_layout`).

Node files come from ``cloud_init.render`` exactly as for a VM; only the Layout and
the AddressPlan differ.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets as pysecrets
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cloud_init.layout import Layout
from cloud_init.render import RenderedNode, libpq_dsn, render_cluster, render_haproxy
from cloud_init.secrets import EtcdNodeSecrets, OvhApiCredentials, Passwords, PatroniNodeSecrets
from cloud_init.settings import AddressPlan, Settings, load_stack_file

from .pki import LabCA

ROOT = Path(__file__).resolve().parent.parent
PATRONI_VENV = Path(os.environ.get("PGHA_PATRONI_VENV", "/opt/pgha/patroni"))
LOOPBACK_SOURCE = "127.0.0.1"
LAB_USER = os.environ.get("PGHA_LAB_USER", "pgha")

#: Small memory settings for three PostgreSQL servers on one machine.
LAB_PG_PARAMETERS: dict[str, Any] = {
    "shared_buffers": "32MB",
    "effective_cache_size": "128MB",
    "max_connections": 60,
    "work_mem": "4MB",
    "maintenance_work_mem": "16MB",
    "wal_keep_size": "64MB",
}


def scratch_dir(name: str) -> Path:
    """Where labs, lab tests and benchmarks run: under the system temp directory
    ($TMPDIR, else /tmp). It must be traversable by LAB_USER."""
    return Path(tempfile.gettempdir()) / name


def default_run_dir(stack: str) -> Path:
    env = os.environ.get("PGHA_LAB_DIR")
    return Path(env) if env else scratch_dir("pgha-lab") / stack


def default_prefix() -> str:
    return os.environ.get("PGHA_LAB_PREFIX", "127.0")


def lab_plan(settings: Settings, prefix: str) -> AddressPlan:
    """etcd on <prefix>.1.N, PostgreSQL/Patroni on <prefix>.2.N, HAProxy on <prefix>.3.1.

    The "subnet" is all of 127.0.0.0/8: the kernel sources loopback connections from
    127.0.0.1, so that is where pg_hba sees peers and clients come from."""
    return AddressPlan(
        cidr="127.0.0.0/8",  # contains 127.0.0.1, the source address of loopback connections
        gateway_ip=f"{prefix}.0.1",
        etcd=tuple(f"{prefix}.1.{i + 1}" for i in range(settings.etcd.members)),
        patroni=tuple(f"{prefix}.2.{i + 1}" for i in range(settings.patroni.nodes)),
        bastion=f"{prefix}.4.1",
        lb=f"{prefix}.3.1",
        dhcp_start=f"{prefix}.5.1",
        dhcp_end=f"{prefix}.5.254",
    )


def run_user() -> str:
    """PostgreSQL refuses root: when started as root, daemons run as LAB_USER."""
    return LAB_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def lab_layout(run_dir: Path, node: str, pg_bin_dir: str) -> Layout:
    """THE differences between a lab node and a VM:

    - paths live under the run directory, one tree per node (one socket dir each);
    - no systemd: lab/supervisor.py starts the same commands the units run;
    - no watchdog device (softdog needs a kernel module): watchdog mode off;
    - small memory parameters (LAB_PG_PARAMETERS), three servers share one machine;
    - daemons run as the invoking user, or LAB_USER when started as root;
    - host firewall (nftables) and the data volume are rendered but not applied;
    - certificates also carry 127.0.0.1 as IP SAN (lab/topology.py render_lab): on
      loopback the kernel sources connections from 127.0.0.1, and etcd checks a
      peer's client certificate against the connection's source address.
    """
    d = run_dir / node
    user = run_user()
    return Layout(
        kind="lab",
        etc_dir=str(d / "etc"),
        bin_dir=str(d / "bin"),
        etcd_data_dir=str(d / "data"),
        pg_data_dir=str(d / "data"),
        pg_bin_dir=pg_bin_dir,
        socket_dir=str(d / "sock"),
        patroni_venv=str(PATRONI_VENV),
        python="/usr/bin/python3",
        pg_os_user=user,
        pgpass=str(d / "pgpass"),
        etcd_os_user=user,
        watchdog=False,
        pg_parameters=dict(LAB_PG_PARAMETERS),
        data_mount=str(d),
    )


def pg_bin_dir(version: int) -> str:
    return f"/usr/lib/postgresql/{version}/bin"


@dataclass
class Topology:
    stack: str
    run_dir: Path
    settings: Settings
    plan: AddressPlan
    #: OVH API credentials for the DNS primary-record callback (endpoint.dns.primary_record);
    #: in tests they point at a local double of the OVH API.
    dns_api: OvhApiCredentials | None = None

    @property
    def etcd_names(self) -> list[str]:
        return [self.plan.etcd_name(i) for i in range(len(self.plan.etcd))]

    @property
    def pg_names(self) -> list[str]:
        return [self.plan.patroni_name(i) for i in range(len(self.plan.patroni))]

    def address(self, node: str) -> str:
        if node in self.etcd_names:
            return self.plan.etcd[self.etcd_names.index(node)]
        return self.plan.patroni[self.pg_names.index(node)]

    def layout(self, node: str) -> Layout:
        return lab_layout(self.run_dir, node, pg_bin_dir(self.settings.patroni.postgres_version))

    @property
    def haproxy_addr(self) -> str:
        return self.plan.lb

    def rest_url(self, node: str) -> str:
        return f"https://{self.address(node)}:{self.settings.patroni.rest_port}"

    @property
    def ca_file(self) -> Path:
        return self.run_dir / "ca.crt"

    @property
    def secrets_file(self) -> Path:
        return self.run_dir / "secrets.json"

    def passwords(self) -> Passwords:
        return Passwords(**json.loads(self.secrets_file.read_text()))

    def dsn(self, read_only: bool = False) -> str:
        return libpq_dsn(self.settings, self.plan, read_only=read_only, sslrootcert=str(self.ca_file))

    def _single_host_dsn(self, host: str, port: int, sslmode: str, connect_timeout: int) -> str:
        pg = self.settings.patroni
        return f"host={host} port={port} dbname={pg.app_database} user={pg.app_user} sslmode={sslmode} sslrootcert={self.ca_file} connect_timeout={connect_timeout}"

    def node_dsn(self, node: str, connect_timeout: int = 2) -> str:
        """One node directly, as the application user (no password)."""
        return self._single_host_dsn(self.address(node), self.settings.patroni.port, "verify-full", connect_timeout)

    def haproxy_dsn(self, replica: bool = False) -> str:
        ep = self.settings.endpoint
        port = ep.haproxy_replica_port if replica else ep.haproxy_primary_port
        # HAProxy forwards TCP: TLS is end to end, verify-ca (the server cert names the node, not HAProxy).
        return self._single_host_dsn(self.haproxy_addr, port, "verify-ca", 2)


def load_topology(stack: str, run_dir: Path | None = None, prefix: str | None = None, root: Path = ROOT, overrides: dict[str, Any] | None = None) -> Topology:
    settings = load_stack_file(stack, root)
    if overrides:
        settings = replace(settings, patroni=replace(settings.patroni, **overrides))
    run_dir = run_dir or default_run_dir(stack)
    return Topology(stack=stack, run_dir=run_dir, settings=settings, plan=lab_plan(settings, prefix or default_prefix()))


def new_passwords() -> Passwords:
    return Passwords(**{k: pysecrets.token_urlsafe(24) for k in ("superuser", "replication", "rewind", "rest_api", "app")})


def render_lab(topo: Topology, passwords: Passwords, ca: LabCA) -> list[RenderedNode]:
    """Render every node with the lab CA, real throwaway secrets and lab layouts."""
    plan = topo.plan
    src = LOOPBACK_SOURCE
    etcd = [EtcdNodeSecrets(ca.pem, ca.issue(n, [plan.etcd[i], src])) for i, n in enumerate(topo.etcd_names)]
    pg = [
        PatroniNodeSecrets(ca.pem, ca.issue(n, [plan.patroni[i], src]), ca.issue(f"{n}-etcd-client", [src], server=False), passwords, dns_api=topo.dns_api)
        for i, n in enumerate(topo.pg_names)
    ]
    layouts = {n: topo.layout(n) for n in topo.etcd_names + topo.pg_names}
    return render_cluster(topo.settings, etcd, pg, plan, layouts)


def haproxy_config(topo: Topology) -> str:
    return render_haproxy(topo.settings, topo.plan, ca_file=str(topo.ca_file), bind=topo.haproxy_addr)
