"""Driving a lab: prepare the run directory, start the supervisor, wait with progress,
validate with the nodes' own scripts, report status, stop. Used by the CLI, the tests,
the drills and the benchmarks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_init.common import RenderedNode
from pgha.secrets import Passwords

from .pki import LabCA
from .supervisor import alive, postmaster_pid
from .topology import ROOT, Topology, haproxy_config, load_topology, new_passwords, render_lab, run_user


class LabError(RuntimeError):
    pass


# ------------------------------------------------------------------ run dir


def lab_file(run_dir: Path) -> Path:
    return run_dir / "lab.json"


def open_lab(run_dir: Path) -> Topology:
    """The topology of an existing run directory (stack and prefix as at ``up``)."""
    meta = json.loads(lab_file(run_dir).read_text())
    return load_topology(meta["stack"], run_dir, meta["prefix"])


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user, user)


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
        fd = os.open(topo.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(passwords.__dict__, f)
    ca = LabCA(f"pgha-lab-{topo.stack} CA")
    topo.ca_file.write_text(ca.pem)
    _write_secret(topo.run_dir / "ca.key", ca.key_pem)
    nodes = render_lab(topo, passwords, ca)
    write_node_files(topo, nodes)
    (run / "haproxy" / "haproxy.cfg").write_text(haproxy_config(topo))
    lab_file(run).write_text(json.dumps({"stack": topo.stack, "prefix": topo.prefix}))
    write_pgpass(topo, passwords)


def _write_secret(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)


def rotate_certs(topo: Topology) -> dict[str, tuple[int, int]]:
    """Issue a new certificate for every node under the lab CA, replace the files
    atomically and reload every daemon in place (no restart):
    etcd reloads its key pair on each new TLS handshake, PostgreSQL on SIGHUP,
    Patroni's REST API on SIGHUP. Returns node -> (old serial, new serial) as served."""
    from .pki import LabCA

    if not running(topo):
        raise LabError("the lab is not running")
    before = served_serials(topo)
    ca = LabCA("", existing=(topo.ca_file.read_text(), (topo.run_dir / "ca.key").read_text()))
    write_node_files(topo, render_lab(topo, topo.passwords(), ca))
    for n in topo.pg_names:
        signal_node(topo, n, signal.SIGHUP)
    deadline = time.monotonic() + 30
    after = served_serials(topo)
    while any(after[k] in (before[k], 0) for k in before) and time.monotonic() < deadline:
        time.sleep(0.2)
        after = served_serials(topo)
    return {k: (before[k], after[k]) for k in before}


def served_serials(topo: Topology) -> dict[str, int]:
    """Serial number of the certificate each TLS endpoint presents right now."""
    from cryptography import x509

    s = topo.settings
    targets = {f"{n}:client": (ip, s.etcd.client_port) for n, ip in zip(topo.etcd_names, topo.plan.addresses("etcd"), strict=True)}
    targets.update({f"{n}:peer": (ip, s.etcd.peer_port) for n, ip in zip(topo.etcd_names, topo.plan.addresses("etcd"), strict=True)})
    targets.update({f"{n}:rest": (ip, s.patroni.rest_port) for n, ip in zip(topo.pg_names, topo.plan.addresses("patroni"), strict=True)})
    ctx = _ssl_ctx(topo, client=True)
    out = {}
    for k, (ip, port) in targets.items():
        try:
            with socket.create_connection((ip, port), timeout=2) as raw, ctx.wrap_socket(raw, server_hostname=ip) as tls:
                der = tls.getpeercert(binary_form=True)
                out[k] = x509.load_der_x509_certificate(der).serial_number if der else 0
        except OSError:
            out[k] = 0
    for n in topo.pg_names:
        out[f"{n}:postgres"] = _pg_serial(topo, n)
    return out


def _pg_serial(topo: Topology, node: str) -> int:
    """The server certificate PostgreSQL presents: SSLRequest, then a TLS handshake."""
    import struct

    from cryptography import x509

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


def write_pgpass(topo: Topology, passwords: Passwords) -> None:
    """A pgpass for the lab's client commands (psql, tests): app user only."""
    lines = [f"{ip}:{topo.settings.patroni.port}:*:{topo.settings.patroni.app_user}:{passwords.app}" for ip in topo.plan.addresses("patroni")]
    lines.append(f"{topo.haproxy_addr}:*:*:{topo.settings.patroni.app_user}:{passwords.app}")
    p = topo.run_dir / "pgpass"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


# ------------------------------------------------------------------ processes


def state(topo: Topology) -> dict[str, Any] | None:
    try:
        st = json.loads((topo.run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return st if alive(st.get("supervisor")) else None


def running(topo: Topology) -> bool:
    return state(topo) is not None


def pid_of(topo: Topology, name: str) -> int | None:
    st = state(topo)
    pid = (st or {}).get("procs", {}).get(name)
    return pid if alive(pid) else None


def postmaster_of(topo: Topology, name: str) -> int | None:
    pid = postmaster_pid(Path(topo.layout(name).pg_data_dir))
    return pid if alive(pid) else None


def start_supervisor(topo: Topology) -> None:
    log = open(topo.run_dir / "logs" / "supervisor.log", "ab")
    prefix = topo.prefix
    subprocess.Popen(
        [sys.executable, "-m", "lab", "_supervise", "--stack", topo.stack, "--run-dir", str(topo.run_dir), "--prefix", prefix],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not running(topo):
        if time.monotonic() > deadline:
            raise LabError(f"supervisor did not start; see {topo.run_dir}/logs/supervisor.log")
        time.sleep(0.05)


def request_start(topo: Topology, node: str, timeout: float = 10) -> int:
    """Ask the supervisor to (re)start a daemon; returns its pid."""
    if not running(topo):
        raise LabError("the lab is not running; run: python -m lab up")
    req = topo.run_dir / "ctl" / f"{uuid.uuid4().hex}.json"
    tmp = req.with_suffix(".tmp")
    tmp.write_text(json.dumps({"action": "start", "node": node}))
    tmp.replace(req)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not req.exists():
            pid = pid_of(topo, node)
            if pid:
                return pid
        time.sleep(0.05)
    raise LabError(f"supervisor did not start {node}")


def signal_node(topo: Topology, node: str, sig: int, postgres: bool = True) -> list[int]:
    """Send ``sig`` to a node's daemon (and, for a Patroni node, its postmaster)."""
    pids = [p for p in (pid_of(topo, node), postmaster_of(topo, node) if postgres and node in topo.pg_names else None) if p]
    for p in pids:
        os.kill(p, sig)
    return pids


def stop(topo: Topology, timeout: float = 60) -> None:
    """Stop everything the lab started, by pid (TERM, then KILL)."""
    st = state(topo)
    if st:
        os.kill(st["supervisor"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(st["supervisor"]) and time.monotonic() < deadline:
            time.sleep(0.1)
    # Whatever survived (supervisor crashed or timed out): recorded pids and postmasters.
    leftovers = leftover_pids(topo, st)
    for p in leftovers:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    (topo.run_dir / "state.json").unlink(missing_ok=True)


def leftover_pids(topo: Topology, st: dict[str, Any] | None = None) -> list[int]:
    st = st or {}
    pids = list(st.get("procs", {}).values()) + [st.get("supervisor")]
    pids += [postmaster_pid(Path(topo.layout(n).pg_data_dir)) for n in topo.pg_names]
    return [p for p in pids if p and alive(p) and p != os.getpid()]


def bound_ports(topo: Topology) -> list[str]:
    """Lab addresses:ports that still accept connections."""
    s = topo.settings
    targets = [(ip, s.etcd.client_port) for ip in topo.plan.addresses("etcd")] + [(ip, s.etcd.peer_port) for ip in topo.plan.addresses("etcd")]
    targets += [(ip, s.patroni.port) for ip in topo.plan.addresses("patroni")] + [(ip, s.patroni.rest_port) for ip in topo.plan.addresses("patroni")]
    targets += [(topo.haproxy_addr, s.endpoint.haproxy_primary_port), (topo.haproxy_addr, s.endpoint.haproxy_replica_port)]
    out = []
    for ip, port in targets:
        with socket.socket() as sock:
            sock.settimeout(0.3)
            if sock.connect_ex((ip, port)) == 0:
                out.append(f"{ip}:{port}")
    return out


# ------------------------------------------------------------------ observing


def _ssl_ctx(topo: Topology, client: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(topo.ca_file))
    if client:
        lay = topo.layout(topo.pg_names[0])
        ctx.load_cert_chain(f"{lay.etc_dir}/tls/etcd-client.crt", f"{lay.etc_dir}/tls/etcd-client.key")
    return ctx


def rest(topo: Topology, node: str, path: str, timeout: float = 1.0) -> tuple[int, Any]:
    """GET a Patroni REST endpoint; (status, parsed body or None)."""
    try:
        with urllib.request.urlopen(topo.rest_url(node) + path, context=_ssl_ctx(topo), timeout=timeout) as r:
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
    topo: Topology, node: str, path: str, body: dict[str, Any] | None, auth: bool = True, method: str = "POST", timeout: float = 30
) -> tuple[int, str]:
    import base64

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(topo.rest_url(node) + path, data=data, method=method, headers={"Content-Type": "application/json"})
    if auth:
        token = base64.b64encode(f"patroni:{topo.passwords().rest_api}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, context=_ssl_ctx(topo), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def cluster(topo: Topology) -> dict[str, Any] | None:
    """Patroni's /cluster from the first node that answers."""
    for n in topo.pg_names:
        code, body = rest(topo, n, "/cluster")
        if code == 200 and body:
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
        return sync[0]
    if streaming:
        return streaming[0]
    raise LabError("no streaming replica to switch over to")


def etcd_health(topo: Topology) -> dict[str, bool]:
    out = {}
    ctx = _ssl_ctx(topo, client=True)
    for n, ip in zip(topo.etcd_names, topo.plan.addresses("etcd"), strict=True):
        try:
            with urllib.request.urlopen(f"https://{ip}:{topo.settings.etcd.client_port}/health", context=ctx, timeout=1) as r:
                out[n] = json.loads(r.read()).get("health") in ("true", True)
        except (OSError, ValueError):
            out[n] = False
    return out


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


def progress(topo: Topology) -> Progress:
    health = etcd_health(topo)
    c = cluster(topo) or {}
    members = c.get("members", [])
    lead = [m["name"] for m in members if m.get("role") == "leader"]
    streaming = [m for m in members if m.get("role") != "leader" and m.get("state") == "streaming"]
    sync = any(m.get("role") in ("sync_standby", "quorum_standby") for m in members)
    return Progress(sum(health.values()), len(health), lead[0] if len(lead) == 1 else None, len(streaming), len(topo.pg_names) - 1, sync)


def wait_healthy(topo: Topology, timeout: float = 120, show: bool = False) -> float:
    """Wait until etcd is healthy and every replica streams; returns seconds waited."""
    t0 = time.monotonic()
    last = ""
    tty = show and sys.stdout.isatty()
    while True:
        p = progress(topo)
        line = p.line()
        if show and line != last:
            print(("\r\033[K" if tty else "") + f"[{time.monotonic() - t0:5.1f}s] {line}", end="" if tty else "\n", flush=True)
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


def run_as_user(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    kw: dict[str, Any] = {}
    if os.geteuid() == 0:
        user = run_user()
        kw = {"user": user, "group": user, "extra_groups": []}
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "ETCDCTL_API": "3", "HOME": tempfile.gettempdir()}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


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
        p = run_as_user([lay.python, f"{lay.bin_dir}/pgha-check-etcd", "--config", f"{lay.etc_dir}/check.json", "--wait", str(wait)])
        results.append(
            CheckResult(n, "pgha-check-etcd", p.returncode == 0, (p.stdout + p.stderr).strip().splitlines()[-1:][0] if (p.stdout + p.stderr).strip() else "")
        )
    for n in topo.pg_names:
        lay = topo.layout(n)
        p = run_as_user([lay.python, f"{lay.bin_dir}/pgha-check-patroni", "--config", f"{lay.etc_dir}/check.json", "--wait", str(wait)])
        out = (p.stdout + p.stderr).strip().splitlines()
        results.append(CheckResult(n, "pgha-check-patroni", p.returncode == 0, out[-1] if out else ""))
        # Run by the supervisor before Patroni started (it needs etcd up and free ports).
        try:
            v = json.loads((topo.run_dir / "validate-config" / f"{n}.json").read_text())
            results.append(CheckResult(n, "patroni --validate-config", v["rc"] == 0, v["output"].replace("\n", "; ") or "OK"))
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
    out = ["PostgreSQL / Patroni"] + ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    health = etcd_health(topo)
    out.append("etcd")
    for n, ip in zip(topo.etcd_names, topo.plan.addresses("etcd"), strict=True):
        out.append(f"  {n}  https://{ip}:{topo.settings.etcd.client_port}  {'healthy' if health.get(n) else 'UNHEALTHY'}")
    ep = topo.settings.endpoint
    out.append("endpoints")
    out.append(f"  HAProxy primary   {topo.haproxy_addr}:{ep.haproxy_primary_port}  (checked on Patroni /primary)")
    out.append(f"  HAProxy replicas  {topo.haproxy_addr}:{ep.haproxy_replica_port}  (checked on Patroni /replica)")
    for n in topo.pg_names:
        out.append(f"  Patroni REST      {topo.rest_url(n)}")
    out.append("DSN (password in the lab's pgpass):")
    out.append(f'  PGPASSFILE={topo.run_dir}/pgpass psql "{topo.dsn()}"')
    return "\n".join(out)
