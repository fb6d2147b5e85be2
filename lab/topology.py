"""The lab's topology: a stack's settings on a loopback target.

Node files come from ``cloud_init`` exactly as for a VM; every difference between a lab
node and a VM is in :meth:`pgha.target.Target.lab`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pwd
import secrets as pysecrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_init.common import RenderedNode
from cloud_init.endpoint import libpq_dsn, render_haproxy
from cloud_init.render import render_cluster
from pgha.backup import RestoreSpec
from pgha.plan import AddressPlan, Node
from pgha.secrets import BackupSecrets, EtcdNodeSecrets, OvhApiCredentials, Passwords, PatroniNodeSecrets
from pgha.settings import ROOT, Settings, load, load_stack_file, sections_from_stack_yaml
from pgha.target import Layout, Target

from . import s3
from .pki import LabCA

PATRONI_VENV = Path(os.environ.get("PGHA_PATRONI_VENV", "/opt/pgha/patroni"))
LAB_USER = os.environ.get("PGHA_LAB_USER", "pgha")


def scratch_dir(name: str) -> Path:
    """Where labs, lab tests and benchmarks run: under the system temp directory
    ($TMPDIR, else /tmp). It must be traversable by LAB_USER."""
    return Path(tempfile.gettempdir()) / name


def default_run_dir(stack: str) -> Path:
    env = os.environ.get("PGHA_LAB_DIR")
    return Path(env) if env else scratch_dir("pgha-lab") / stack


def default_prefix() -> str:
    return os.environ.get("PGHA_LAB_PREFIX", "127.0")


def run_user() -> str:
    """PostgreSQL refuses root: when started as root, daemons run as LAB_USER."""
    return LAB_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


@dataclass
class Topology:
    stack: str
    run_dir: Path
    settings: Settings
    target: Target
    #: OVH API credentials for the DNS primary-record callback (endpoint.dns.primary_record);
    #: in tests they point at a local double of the OVH API.
    dns_api: OvhApiCredentials | None = None
    #: settings changed for this lab only, over the stack file (``lab up --backup``), kept in lab.json
    overrides: dict[str, Any] | None = None
    #: the lab whose S3 server holds the backup repository (run dir, prefix); None: its own
    storage_from: tuple[Path, str] | None = None
    #: set by ``lab restore``: the new cluster bootstraps from the repository
    restore: RestoreSpec | None = None

    @property
    def plan(self) -> AddressPlan:
        return self.target.plan

    @property
    def prefix(self) -> str:
        return self.target.prefix

    @property
    def etcd_names(self) -> list[str]:
        return [n.name for n in self.plan.etcd]

    @property
    def pg_names(self) -> list[str]:
        return [n.name for n in self.plan.patroni]

    def node(self, name: str) -> Node:
        return self.plan.node(name)

    def address(self, node: str) -> str:
        return self.plan.node(node).address

    def layout(self, node: str) -> Layout:
        return self.target.layout(self.plan.node(node))

    @property
    def haproxy_addr(self) -> str:
        return self.target.haproxy_bind

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

    @property
    def backup_secrets_file(self) -> Path:
        return self.run_dir / "backup-secrets.json"

    def backup_secrets(self) -> BackupSecrets:
        return BackupSecrets(**json.loads(self.backup_secrets_file.read_text()))

    @property
    def owns_storage(self) -> bool:
        """This lab runs the S3 server (backup.enabled, not a restored lab reading another's)."""
        return self.settings.backup.enabled and self.storage_from is None

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


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def load_topology(
    stack: str,
    run_dir: Path | None = None,
    prefix: str | None = None,
    root: Path = ROOT,
    overrides: dict[str, Any] | None = None,
    storage_from: tuple[Path, str] | None = None,
) -> Topology:
    if overrides:
        import yaml

        path = root / f"Pulumi.{stack}.yaml"
        raw = sections_from_stack_yaml(yaml.safe_load(path.read_text())) if path.exists() else {}
        settings = load(stack, _merge(raw, overrides)) if path.exists() else load_stack_file(stack, root)
    else:
        settings = load_stack_file(stack, root)
    run_dir = run_dir or default_run_dir(stack)
    prefix = prefix or default_prefix()
    target = Target.lab(settings, run_dir, prefix, run_user(), str(PATRONI_VENV))
    if settings.backup.enabled:
        owner_dir, owner_prefix = storage_from or (run_dir, prefix)
        storage = s3.object_storage(
            owner_dir, owner_prefix, repo_path=f"/{run_dir.name}", bucket=settings.backup.bucket
        )
        target = dataclasses.replace(target, object_storage=storage)
    return Topology(
        stack=stack,
        run_dir=run_dir,
        settings=settings,
        target=target,
        overrides=overrides,
        storage_from=storage_from,
    )


def new_passwords() -> Passwords:
    return Passwords(
        **{k: pysecrets.token_urlsafe(24) for k in ("superuser", "replication", "rewind", "rest_api", "app")}
    )


def render_lab(topo: Topology, passwords: Passwords, ca: LabCA) -> list[RenderedNode]:
    """Render every node with the lab CA, real throwaway secrets and the lab target."""
    t = topo.target
    etcd = {n.name: EtcdNodeSecrets(ca.pem, ca.issue(n.name, t.cert_sans(n))) for n in t.plan.etcd}
    pg = {
        n.name: PatroniNodeSecrets(
            ca.pem,
            ca.issue(n.name, t.cert_sans(n)),
            ca.issue(f"{n.name}-etcd-client", list(t.extra_sans), server=False),
            passwords,
            dns_api=topo.dns_api,
            backup=topo.backup_secrets() if topo.settings.backup.enabled else None,
        )
        for n in t.plan.patroni
    }
    return render_cluster(topo.settings, t, etcd, pg, topo.restore)


def haproxy_config(topo: Topology) -> str:
    return render_haproxy(topo.settings, topo.target)
