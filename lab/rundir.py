"""A lab's run directory: the rendered node files, secrets, CA, HAProxy config, pgpass
and ``lab.json`` (the stack and prefix it was created with). Writing files only; no
process is started here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cloud_init.common import RenderedNode
from pgha.secrets import Passwords

from . import monitoring, s3
from .pki import LabCA
from .topology import Topology, haproxy_config, load_topology, new_passwords, render_lab, run_user


def lab_file(run_dir: Path) -> Path:
    return run_dir / "lab.json"


def lab_meta(run_dir: Path) -> dict[str, Any]:
    """``{"stack": ..., "prefix": ...}`` as recorded at ``up`` (and a lab's own settings
    ``overrides``, the ``storage_from`` run dir and prefix of a restored lab)."""
    meta: dict[str, Any] = json.loads(lab_file(run_dir).read_text())
    return meta


def open_lab(run_dir: Path) -> Topology:
    """The topology of an existing run directory (stack and prefix as at ``up``)."""
    meta = lab_meta(run_dir)
    src = meta.get("storage_from")
    storage_from = (Path(src[0]), src[1]) if src else None
    return load_topology(
        meta["stack"], run_dir, meta["prefix"], overrides=meta.get("overrides"), storage_from=storage_from
    )


def prefix_of(topo: Topology) -> str:
    """The loopback prefix the lab's target was built with (127.N)."""
    return topo.prefix


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user, user)


def _write_secret(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)


def write_node_files(topo: Topology, nodes: list[RenderedNode]) -> None:
    """Write every rendered file. Paths under the run dir are used by the daemons; VM-only
    paths (systemd units, nftables, modules-load) go under <node>/vm-only/ for reading."""
    user = run_user()
    run = str(topo.run_dir)
    for node in nodes:
        for d in ("", "etc", "etc/tls", "bin", "sock", "vm-only"):
            p = topo.run_dir / node.name / d
            p.mkdir(parents=True, exist_ok=True)
            _chown(p, user)
        for f in node.files:
            if f.path.startswith(run + "/"):
                dest = Path(f.path)
            else:
                dest = topo.run_dir / node.name / "vm-only" / f.path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
            # Atomic replace: a daemon reading a key while we rotate never sees half a file.
            tmp = dest.with_name(f".{dest.name}.tmp")
            tmp.write_text(f.content)
            os.chmod(tmp, int(f.mode, 8))
            _chown(tmp, user)
            tmp.replace(dest)
        (topo.run_dir / node.name / "user-data").write_text(node.user_data)
        os.chmod(topo.run_dir / node.name / "user-data", 0o600)


def prepare(topo: Topology) -> None:
    """Render and write the node files for a (re)start. Keeps passwords and data."""
    run = topo.run_dir
    run.mkdir(parents=True, exist_ok=True)
    os.chmod(run, 0o755)
    for d in ("logs", "ctl", "haproxy"):
        (run / d).mkdir(exist_ok=True)
    _chown(run / "logs", run_user())
    if topo.secrets_file.exists():
        passwords = topo.passwords()
    else:
        passwords = new_passwords()
        _write_secret(topo.secrets_file, json.dumps(passwords.__dict__))
    ca = LabCA(f"pgha-lab-{topo.stack} CA")
    topo.ca_file.write_text(ca.pem)
    _write_secret(topo.run_dir / "ca.key", ca.key_pem)
    if topo.settings.backup.enabled and not topo.backup_secrets_file.exists():
        _write_secret(topo.backup_secrets_file, json.dumps(s3.new_secrets().__dict__))
    if topo.owns_storage:
        pair = ca.issue("lab-s3", [], client=False, dns_names=(s3.HOST,))
        s3.write_files(run, topo.backup_secrets(), pair.cert, pair.key, run_user())
    write_node_files(topo, render_lab(topo, passwords, ca))
    if topo.settings.backup.enabled:  # what the pgbackrest package and runcmd make on a VM
        for n in topo.pg_names:
            lay = topo.layout(n)
            for d in (lay.pgbackrest_spool, lay.pgbackrest_log):
                Path(d).mkdir(parents=True, exist_ok=True)
                _chown(Path(d), run_user())
                _chown(Path(d).parent, run_user())
    monitoring.write_files(topo, ca.pem)
    (run / "haproxy" / "haproxy.cfg").write_text(haproxy_config(topo))
    meta: dict[str, Any] = {"stack": topo.stack, "prefix": prefix_of(topo)}
    if topo.overrides:
        meta["overrides"] = topo.overrides
    if topo.storage_from:
        meta["storage_from"] = [str(topo.storage_from[0]), topo.storage_from[1]]
    lab_file(run).write_text(json.dumps(meta))
    write_pgpass(topo, passwords)


def rewrite_certs(topo: Topology) -> None:
    """New certificates for every node under the existing lab CA, written atomically."""
    ca = LabCA("", existing=(topo.ca_file.read_text(), (topo.run_dir / "ca.key").read_text()))
    write_node_files(topo, render_lab(topo, topo.passwords(), ca))
    if monitoring.enabled(topo):
        monitoring.write_certificate_expiry(topo)


def write_pgpass(topo: Topology, passwords: Passwords) -> None:
    """A pgpass for the lab's client commands (psql, tests): app user only."""
    lines = [
        f"{ip}:{topo.settings.patroni.port}:*:{topo.settings.patroni.app_user}:{passwords.app}"
        for ip in topo.plan.addresses("patroni")
    ]
    lines.append(f"{topo.haproxy_addr}:*:*:{topo.settings.patroni.app_user}:{passwords.app}")
    _write_secret(topo.run_dir / "pgpass", "\n".join(lines) + "\n")
