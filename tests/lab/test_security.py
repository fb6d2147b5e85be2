"""Security, proven against the lab's real daemons: what an attacker or a careless
operator would try, and that it is refused. The README's Security table lists these."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from lab import control, observe
from lab.pki import LabCA
from lab.topology import Topology

from .conftest import connect

pytestmark = pytest.mark.lab


def tls_handshake(ip: str, port: int, ctx: ssl.SSLContext) -> str:
    """'ok', or the error class name of a refused handshake / first read."""
    try:
        with socket.create_connection((ip, port), timeout=3) as raw, ctx.wrap_socket(raw, server_hostname=ip) as tls:
            # TLS 1.3: a missing client certificate is reported on the first read.
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = tls.recv(1024)
            return "ok" if data.startswith(b"HTTP/1.1 200") else f"refused: {data[:40]!r}"
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return type(e).__name__


def foreign_client_ctx(topo: Topology, tmp: Path) -> ssl.SSLContext:
    """A client certificate from another CA (an attacker's own PKI)."""
    ca = LabCA("attacker CA")
    kp = ca.issue("attacker", ["127.0.0.1"])
    (tmp / "c.crt").write_text(kp.cert)
    (tmp / "c.key").write_text(kp.key)
    ctx = ssl.create_default_context(cafile=str(topo.ca_file))
    ctx.load_cert_chain(str(tmp / "c.crt"), str(tmp / "c.key"))
    return ctx


# ------------------------------------------------------------------ etcd


def test_etcd_accepts_a_valid_client_certificate(sync_lab: Topology) -> None:
    ip = sync_lab.plan.etcd[0].address
    assert tls_handshake(ip, sync_lab.settings.etcd.client_port, observe.ssl_context(sync_lab, client=True)) == "ok"


def test_etcd_rejects_client_without_certificate(sync_lab: Topology) -> None:
    ip = sync_lab.plan.etcd[0].address
    assert (
        tls_handshake(ip, sync_lab.settings.etcd.client_port, ssl.create_default_context(cafile=str(sync_lab.ca_file)))
        != "ok"
    )


def test_etcd_rejects_certificate_from_another_ca(sync_lab: Topology, tmp_path: Path) -> None:
    ip = sync_lab.plan.etcd[0].address
    assert tls_handshake(ip, sync_lab.settings.etcd.client_port, foreign_client_ctx(sync_lab, tmp_path)) != "ok"


def test_etcd_rejects_plaintext(sync_lab: Topology) -> None:
    ip = sync_lab.plan.etcd[0].address
    with socket.create_connection((ip, sync_lab.settings.etcd.client_port), timeout=3) as s:
        s.sendall(b"GET /v2/keys HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = s.recv(1024)
    assert not reply.startswith(b"HTTP/1.1 200")
    p = subprocess.run(
        check=False,
        args=["etcdctl", f"--endpoints=http://{ip}:2379", "--dial-timeout=2s", "member", "list"],
        capture_output=True,
        text=True,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        timeout=20,
    )
    assert p.returncode != 0


def test_etcd_peers_require_certificates(sync_lab: Topology, tmp_path: Path) -> None:
    ip, port = sync_lab.plan.etcd[1].address, sync_lab.settings.etcd.peer_port
    assert tls_handshake(ip, port, ssl.create_default_context(cafile=str(sync_lab.ca_file))) != "ok"
    assert tls_handshake(ip, port, foreign_client_ctx(sync_lab, tmp_path)) != "ok"


# ------------------------------------------------------------------ Patroni REST API


def test_rest_api_is_tls_only(sync_lab: Topology) -> None:
    ip = sync_lab.plan.patroni[0].address
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://{ip}:{sync_lab.settings.patroni.rest_port}/health", timeout=3).read()
    code, body = observe.rest(sync_lab, sync_lab.pg_names[0], "/patroni")
    assert code == 200
    assert body["state"] == "running"


def test_health_endpoints_work_without_authentication(sync_lab: Topology) -> None:
    leader = observe.leader(sync_lab)
    assert observe.rest(sync_lab, leader, "/primary")[0] == 200
    replica = next(n for n in sync_lab.pg_names if n != leader)
    assert observe.rest(sync_lab, replica, "/replica")[0] == 200
    assert observe.rest(sync_lab, replica, "/primary")[0] == 503
    assert observe.rest(sync_lab, leader, "/health")[0] == 200


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/switchover", {"leader": "pg1"}),
        ("POST", "/failover", {"candidate": "pg2"}),
        ("POST", "/restart", {}),
        ("POST", "/reinitialize", {}),
        ("PATCH", "/config", {"ttl": 999}),
        ("PUT", "/config", {"ttl": 999}),
        ("POST", "/reload", None),
    ],
)
def test_unsafe_endpoints_require_authentication(sync_lab: Topology, method: str, path: str, body: dict | None) -> None:
    node = sync_lab.pg_names[0]
    code, _ = observe.rest_post(sync_lab, node, path, body, auth=False, method=method, timeout=5)
    assert code == 401
    # A wrong password is refused too.
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sync_lab.rest_url(node) + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"patroni:wrong").decode())
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, context=observe.ssl_context(sync_lab), timeout=5)
    assert e.value.code == 401
    assert observe.rest(sync_lab, node, "/config")[1]["ttl"] != 999


# ------------------------------------------------------------------ PostgreSQL


def test_postgres_refuses_non_tls(sync_lab: Topology) -> None:
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|pg_hba\.conf rejects"):
        psycopg.connect(
            sync_lab.node_dsn(observe.leader(sync_lab) or sync_lab.pg_names[0]).replace(
                "sslmode=verify-full", "sslmode=disable"
            ),
            password=sync_lab.passwords().app,
        )


def test_postgres_auth_methods_are_scram_only(sync_lab: Topology) -> None:
    for n in sync_lab.pg_names:
        hba = (Path(sync_lab.layout(n).pg_data_dir) / "pg_hba.conf").read_text()
        rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
        methods = {r[4] if r[0] != "local" else r[3] for r in rules}
        assert methods <= {"scram-sha-256", "peer", "reject"}, methods
        assert {r[0] for r in rules} <= {"local", "hostssl", "host"}
        assert all(r[-1] == "reject" for r in rules if r[0] == "host")
    lay = sync_lab.layout(sync_lab.pg_names[0])
    p = observe.run_as_user(
        [
            f"{lay.pg_bin_dir}/psql",
            "-XAt",
            "-h",
            lay.socket_dir,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "select rolname, left(rolpassword, 14) from pg_authid where rolpassword is not null order by 1",
        ]
    )
    assert p.returncode == 0, p.stderr
    rows = dict(line.split("|") for line in p.stdout.splitlines())
    assert set(rows) >= {"app", "replicator", "rewind_user", "postgres"}
    assert all(v == "SCRAM-SHA-256$" for v in rows.values()), rows


def test_wrong_password_is_refused(sync_lab: Topology) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(sync_lab.dsn(), password="not-the-password")


def test_replication_role_cannot_connect_to_databases(sync_lab: Topology) -> None:
    dsn = sync_lab.node_dsn(observe.leader(sync_lab) or sync_lab.pg_names[0]).replace("user=app", "user=replicator")
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry|pg_hba\.conf rejects"):
        psycopg.connect(dsn, password=sync_lab.passwords().replication)


def test_superuser_cannot_log_in_over_the_network(sync_lab: Topology) -> None:
    for n in sync_lab.pg_names:
        dsn = sync_lab.node_dsn(n).replace("user=app", "user=postgres").replace("dbname=app", "dbname=postgres")
        with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry|pg_hba\.conf rejects"):
            psycopg.connect(dsn, password=sync_lab.passwords().superuser)


def test_application_role_is_least_privileged(sync_lab: Topology) -> None:
    with connect(sync_lab, sync_lab.dsn()) as conn:
        row = conn.execute(
            "select rolsuper, rolcreaterole, rolcreatedb, rolreplication from pg_roles where rolname = current_user"
        ).fetchone()
        assert row == (False, False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("create role intruder login")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("alter system set fsync = off")


# ------------------------------------------------------------------ logs and certificates


def test_logs_contain_no_password(sync_lab: Topology) -> None:
    passwords = list(sync_lab.passwords().__dict__.values())
    logs = list((sync_lab.run_dir / "logs").glob("*.log"))
    assert len(logs) >= 8
    for log in logs:
        text = log.read_text(errors="replace")
        for pw in passwords:
            assert pw not in text, f"a password appears in {log}"


def test_rotate_certs_with_no_failed_write(sync_lab: Topology) -> None:
    observe.wait_healthy(sync_lab, timeout=60)
    failures: list[str] = []
    acks: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        with connect(sync_lab, sync_lab.dsn()) as conn:
            conn.execute("create table if not exists t_rotate (id serial primary key)")
        i = 0
        while not stop.is_set():
            try:
                # A new connection each time: every handshake meets the current certificate.
                with connect(sync_lab, sync_lab.dsn()) as conn:
                    acks.append(conn.execute("insert into t_rotate default values returning id").fetchone()[0])
            except psycopg.Error as e:
                failures.append(str(e))
            i += 1
            time.sleep(0.05)

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.5)
        changed = control.rotate_certs(sync_lab)
        time.sleep(3)  # HAProxy checks and peers keep working after the reloads
    finally:
        stop.set()
        t.join()
    assert all(new and new != old for old, new in changed.values()), changed
    assert len(changed) == 2 * len(sync_lab.etcd_names) + 2 * len(
        sync_lab.pg_names
    )  # etcd client+peer, Patroni REST + PostgreSQL
    assert failures == []
    assert len(acks) > 10
    observe.wait_healthy(sync_lab, timeout=30)
    assert all(r.ok for r in observe.validate(sync_lab, wait=10) if r.check != "patroni --validate-config")
