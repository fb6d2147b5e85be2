"""Looking at a lab without changing it: Patroni's REST API, etcd health and status,
the certificates each endpoint serves, which ports still answer, the nodes' own
validation scripts, the status table, and waiting until the cluster is healthy."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from . import monitoring
from .errors import LabError
from .topology import Topology, run_user


def ssl_context(topo: Topology, client: bool = False) -> ssl.SSLContext:
    """Trusts the lab CA; with ``client``, presents a Patroni node's etcd client certificate."""
    ctx = ssl.create_default_context(cafile=str(topo.ca_file))
    if client:
        lay = topo.layout(topo.pg_names[0])
        ctx.load_cert_chain(f"{lay.etc_dir}/tls/etcd-client.crt", f"{lay.etc_dir}/tls/etcd-client.key")
    return ctx


# ------------------------------------------------------------------ Patroni REST


def rest(topo: Topology, node: str, path: str, timeout: float = 1.0) -> tuple[int, Any]:
    """GET a Patroni REST endpoint; (status, parsed body or None)."""
    try:
        with urllib.request.urlopen(topo.rest_url(node) + path, context=ssl_context(topo), timeout=timeout) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return 0, None


def rest_post(
    topo: Topology,
    node: str,
    path: str,
    body: dict[str, Any] | None,
    auth: bool = True,
    method: str = "POST",
    timeout: float = 30,
) -> tuple[int, str]:
    """POST (or ``method``) to a Patroni REST endpoint, authenticated; (status, body text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        topo.rest_url(node) + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    if auth:
        token = base64.b64encode(f"patroni:{topo.passwords().rest_api}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, context=ssl_context(topo), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def cluster(topo: Topology) -> dict[str, Any] | None:
    """Patroni's /cluster from the first node that answers."""
    for n in topo.pg_names:
        code, body = rest(topo, n, "/cluster")
        if code == 200 and isinstance(body, dict):
            return body
    return None


def leader(topo: Topology) -> str | None:
    c = cluster(topo)
    if not c:
        return None
    leaders = [m["name"] for m in c.get("members", []) if m.get("role") == "leader"]
    return leaders[0] if len(leaders) == 1 else None


def switchover_candidate(topo: Topology, leader_name: str) -> str:
    """A healthy replica Patroni will accept: the sync standby in synchronous mode."""
    ms = (cluster(topo) or {}).get("members", [])
    sync = [m["name"] for m in ms if m.get("role") == "sync_standby" and m.get("state") == "streaming"]
    streaming = [m["name"] for m in ms if m["name"] != leader_name and m.get("state") == "streaming"]
    if sync:
        return str(sync[0])
    if streaming:
        return str(streaming[0])
    raise LabError("no streaming replica to switch over to")


def sync_standbys(topo: Topology) -> list[str]:
    """Streaming sync standbys as the DCS says (/cluster). A node's own /patroni flag can
    lag by up to loop_wait: it is refreshed by that node's HA loop."""
    ms = (cluster(topo) or {}).get("members", [])
    return sorted(m["name"] for m in ms if m.get("role") == "sync_standby" and m.get("state") == "streaming")


# ------------------------------------------------------------------ etcd


def etcd_health(topo: Topology) -> dict[str, bool]:
    out = {}
    ctx = ssl_context(topo, client=True)
    for n, ip in zip(topo.etcd_names, topo.plan.addresses("etcd"), strict=True):
        try:
            with urllib.request.urlopen(
                f"https://{ip}:{topo.settings.etcd.client_port}/health", context=ctx, timeout=1
            ) as r:
                out[n] = json.loads(r.read()).get("health") in ("true", True)
        except (OSError, ValueError):
            out[n] = False
    return out


def etcd_status(topo: Topology) -> dict[str, dict[str, Any]]:
    """etcd's maintenance status per member that answers (member_id, leader)."""
    ctx = ssl_context(topo, client=True)
    out = {}
    for n, ip in zip(topo.etcd_names, topo.plan.addresses("etcd"), strict=True):
        req = urllib.request.Request(
            f"https://{ip}:{topo.settings.etcd.client_port}/v3/maintenance/status", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=1) as r:
                body = json.loads(r.read())
            out[n] = {"member_id": body["header"]["member_id"], "leader": body.get("leader")}
        except (OSError, ValueError, KeyError):
            continue
    return out


def etcd_leader(topo: Topology) -> str | None:
    for n, s in etcd_status(topo).items():
        if s["member_id"] == s["leader"]:
            return n
    return None


# ------------------------------------------------------------------ TLS and ports


def served_serials(topo: Topology) -> dict[str, int]:
    """Serial number of the certificate each TLS endpoint presents right now."""
    s = topo.settings
    targets = {
        f"{n}:client": (ip, s.etcd.client_port)
        for n, ip in zip(topo.etcd_names, topo.plan.addresses("etcd"), strict=True)
    }
    targets.update(
        {
            f"{n}:peer": (ip, s.etcd.peer_port)
            for n, ip in zip(topo.etcd_names, topo.plan.addresses("etcd"), strict=True)
        }
    )
    targets.update(
        {
            f"{n}:rest": (ip, s.patroni.rest_port)
            for n, ip in zip(topo.pg_names, topo.plan.addresses("patroni"), strict=True)
        }
    )
    ctx = ssl_context(topo, client=True)
    out = {}
    for k, (ip, port) in targets.items():
        try:
            with (
                socket.create_connection((ip, port), timeout=2) as raw,
                ctx.wrap_socket(raw, server_hostname=ip) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
                out[k] = x509.load_der_x509_certificate(der).serial_number if der else 0
        except OSError:
            out[k] = 0
    for n in topo.pg_names:
        out[f"{n}:postgres"] = _pg_serial(topo, n)
    return out


def _pg_serial(topo: Topology, node: str) -> int:
    """The server certificate PostgreSQL presents: SSLRequest, then a TLS handshake."""
    ctx = ssl.create_default_context(cafile=str(topo.ca_file))
    ip = topo.address(node)
    try:
        with socket.create_connection((ip, topo.settings.patroni.port), timeout=2) as raw:
            raw.sendall(struct.pack("!II", 8, 80877103))
            if raw.recv(1) != b"S":
                return 0
            with ctx.wrap_socket(raw, server_hostname=ip) as tls:
                der = tls.getpeercert(binary_form=True)
                return x509.load_der_x509_certificate(der).serial_number if der else 0
    except OSError:
        return 0


def bound_ports(topo: Topology) -> list[str]:
    """Lab addresses:ports that still accept connections."""
    s = topo.settings
    targets = [(ip, s.etcd.client_port) for ip in topo.plan.addresses("etcd")] + [
        (ip, s.etcd.peer_port) for ip in topo.plan.addresses("etcd")
    ]
    targets += [(ip, s.patroni.port) for ip in topo.plan.addresses("patroni")] + [
        (ip, s.patroni.rest_port) for ip in topo.plan.addresses("patroni")
    ]
    targets += [
        (topo.haproxy_addr, s.endpoint.haproxy_primary_port),
        (topo.haproxy_addr, s.endpoint.haproxy_replica_port),
    ]
    targets += monitoring.ports(topo)
    out = []
    for ip, port in targets:
        with socket.socket() as sock:
            sock.settimeout(0.3)
            if sock.connect_ex((ip, port)) == 0:
                out.append(f"{ip}:{port}")
    return out


# ------------------------------------------------------------------ logs


def log_size(topo: Topology, name: str) -> int:
    try:
        return (topo.run_dir / "logs" / f"{name}.log").stat().st_size
    except OSError:
        return 0


def log_since(topo: Topology, name: str, offset: int) -> str:
    """A daemon's log from byte ``offset`` (a :func:`log_size` taken earlier)."""
    try:
        with open(topo.run_dir / "logs" / f"{name}.log", "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# ------------------------------------------------------------------ health


@dataclass
class Progress:
    etcd_healthy: int
    etcd_total: int
    leader: str | None
    streaming: int
    replicas: int
    sync: bool

    def line(self) -> str:
        lead = self.leader or "none yet"
        sync = " sync standby ok" if self.sync else ""
        return f"etcd {self.etcd_healthy}/{self.etcd_total} healthy | leader: {lead} | replicas streaming {self.streaming}/{self.replicas}{sync}"


def replica_streams(topo: Topology, name: str) -> bool:
    """The node's own REST API says its server runs and streams from the primary."""
    code, body = rest(topo, name, "/patroni")
    return (
        code == 200
        and isinstance(body, dict)
        and body.get("state") == "running"
        and body.get("replication_state") == "streaming"
    )


def progress(topo: Topology) -> Progress:
    health = etcd_health(topo)
    c = cluster(topo) or {}
    members = c.get("members", [])
    lead = [m["name"] for m in members if m.get("role") == "leader"]
    # The member list comes from the DCS and can lag a node by a loop: a replica that was just
    # rebuilt may still be listed as streaming while its server is starting. Count it only when
    # the node itself says so.
    streaming = [
        m
        for m in members
        if m.get("role") != "leader" and m.get("state") == "streaming" and replica_streams(topo, m["name"])
    ]
    sync = any(m.get("role") in ("sync_standby", "quorum_standby") for m in members)
    return Progress(
        sum(health.values()),
        len(health),
        lead[0] if len(lead) == 1 else None,
        len(streaming),
        len(topo.pg_names) - 1,
        sync,
    )


def wait_healthy(topo: Topology, timeout: float = 120, show: bool = False) -> float:
    """Wait until etcd is healthy and every replica streams; returns seconds waited."""
    t0 = time.monotonic()
    last = ""
    tty = show and sys.stdout.isatty()
    while True:
        p = progress(topo)
        line = p.line()
        if show and line != last:
            print(
                ("\r\033[K" if tty else "") + f"[{time.monotonic() - t0:5.1f}s] {line}",
                end="" if tty else "\n",
                flush=True,
            )
            last = line
        need_sync = topo.settings.patroni.synchronous_mode
        if p.etcd_healthy == p.etcd_total and p.leader and p.streaming == p.replicas and (p.sync or not need_sync):
            if tty:
                print()
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            if tty:
                print()
            raise LabError(f"lab not healthy after {timeout:.0f}s: {line}; logs in {topo.run_dir}/logs")
        time.sleep(0.2)


# ------------------------------------------------------------------ validation


def run_as_user(cmd: list[str], timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    kw: dict[str, Any] = {}
    if os.geteuid() == 0:
        user = run_user()
        kw = {"user": user, "group": user, "extra_groups": []}
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "ETCDCTL_API": "3",
        "HOME": tempfile.gettempdir(),
    }
    return subprocess.run(
        check=False, args=cmd, capture_output=True, text=True, timeout=timeout, env=env, input=stdin, **kw
    )


@dataclass
class CheckResult:
    node: str
    check: str
    ok: bool
    output: str


def validate(topo: Topology, wait: float = 30) -> list[CheckResult]:
    """The same validation scripts the deploy-time remote commands run, plus
    ``patroni --validate-config`` on every rendered patroni.yml."""
    results = []
    for n in topo.etcd_names:
        lay = topo.layout(n)
        p = run_as_user(
            [lay.python, f"{lay.bin_dir}/pgha-check-etcd", "--config", f"{lay.etc_dir}/check.json", "--wait", str(wait)]
        )
        results.append(
            CheckResult(
                n,
                "pgha-check-etcd",
                p.returncode == 0,
                (p.stdout + p.stderr).strip().splitlines()[-1:][0] if (p.stdout + p.stderr).strip() else "",
            )
        )
    for n in topo.pg_names:
        lay = topo.layout(n)
        p = run_as_user(
            [
                lay.python,
                f"{lay.bin_dir}/pgha-check-patroni",
                "--config",
                f"{lay.etc_dir}/check.json",
                "--wait",
                str(wait),
            ]
        )
        out = (p.stdout + p.stderr).strip().splitlines()
        results.append(CheckResult(n, "pgha-check-patroni", p.returncode == 0, out[-1] if out else ""))
        # Run by the supervisor before Patroni started (it needs etcd up and free ports).
        try:
            v = json.loads((topo.run_dir / "validate-config" / f"{n}.json").read_text())
            results.append(
                CheckResult(n, "patroni --validate-config", v["rc"] == 0, v["output"].replace("\n", "; ") or "OK")
            )
        except (OSError, ValueError):
            results.append(CheckResult(n, "patroni --validate-config", False, "no result (supervisor did not run it)"))
    return results


def status_table(topo: Topology) -> str:
    c = cluster(topo) or {"members": []}
    rows = [("node", "address", "role", "state", "timeline", "lag")]
    members = {m["name"]: m for m in c.get("members", [])}
    for n in topo.pg_names:
        m = members.get(n, {})
        lag = m.get("lag", "")
        if isinstance(lag, dict):  # Patroni 4 may report receive/replay lag
            lag = lag.get("replay", "")
        rows.append(
            (
                n,
                topo.address(n),
                m.get("role", "down"),
                m.get("state", "unreachable"),
                str(m.get("timeline", "")),
                "" if m.get("role") == "leader" else str(lag),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["PostgreSQL / Patroni"] + [
        "  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows
    ]
    health = etcd_health(topo)
    out.append("etcd")
    for n, ip in zip(topo.etcd_names, topo.plan.addresses("etcd"), strict=True):
        out.append(
            f"  {n}  https://{ip}:{topo.settings.etcd.client_port}  {'healthy' if health.get(n) else 'UNHEALTHY'}"
        )
    ep = topo.settings.endpoint
    out.append("endpoints")
    out.append(f"  HAProxy primary   {topo.haproxy_addr}:{ep.haproxy_primary_port}  (checked on Patroni /primary)")
    out.append(f"  HAProxy replicas  {topo.haproxy_addr}:{ep.haproxy_replica_port}  (checked on Patroni /replica)")
    for n in topo.pg_names:
        out.append(f"  Patroni REST      {topo.rest_url(n)}")
    out += monitoring.status_lines(topo)
    out.append("DSN (password in the lab's pgpass):")
    out.append(f'  PGPASSFILE={topo.run_dir}/pgpass psql "{topo.dsn()}"')
    return "\n".join(out)
