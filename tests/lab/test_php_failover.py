"""The PHP connector follows the primary, for real: clients/php/bin/pgha-writer.php (php
CLI, pdo_pgsql) with configs made by scripts/app_config.py from the lab, through the
multi-host DSN and through HAProxy's primary port, during a switchover and a node death
(prod stack: synchronous mode).

Asserted: the writers resume on the new primary without any action; every acknowledged
row was committed by the node that led at the time (never a replica) and exists on the
new primary; no row reported as not committed exists; with the generated config's deadline
(the stack's client_deadline) an idempotent writer surfaces no error at all, a plain one
at most the statement in flight (outcome unknown). Printed, not asserted: the time
from the new primary accepting writes to each writer's first write there, and the
errors each writer surfaced (plain and idempotent retries)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lab import control, observe
from lab.topology import Topology
from pgha.timing import client_deadline

from .conftest import connect, wait_for

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
WRITER = ROOT / "clients" / "php" / "bin" / "pgha-writer.php"
APP_CONFIG = ROOT / "scripts" / "app_config.py"
VIAS = ("nodes", "haproxy")
ROWS_BEFORE = ROWS_AFTER = 10


@pytest.fixture(scope="module")
def configs(sync_lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One connector config per way in, written by scripts/app_config.py from the lab."""
    d = tmp_path_factory.mktemp("php-configs")
    out = {}
    for via in VIAS:
        path = d / f"{via}.json"
        p = subprocess.run(
            check=False,
            args=[
                sys.executable,
                str(APP_CONFIG),
                "--lab",
                str(sync_lab.run_dir),
                "--out",
                str(path),
                "--via",
                via,
                "--application-name",
                f"pgha-writer-{via}",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        cfg = json.loads(path.read_text())
        assert cfg["password_file"] == f"{via}.password"
        assert "password" not in cfg
        assert sync_lab.passwords().app not in path.read_text()
        assert cfg["deadline"] == client_deadline(sync_lab.settings.patroni.ttl, sync_lab.settings.patroni.loop_wait)
        out[via] = path
    assert json.loads(out["haproxy"].read_text())["hosts"] == [
        {"host": sync_lab.haproxy_addr, "port": sync_lab.settings.endpoint.haproxy_primary_port}
    ]
    assert json.loads(out["haproxy"].read_text())["sslmode"] == "verify-ca"
    assert len(json.loads(out["nodes"].read_text())["hosts"]) == len(sync_lab.pg_names)
    return out


# ------------------------------------------------------------------ helpers


@dataclass
class Writer:
    """pgha-writer.php in the background; its JSON lines collected as they come."""

    name: str
    config: Path
    table: str
    idempotent: bool
    client: str = field(default_factory=lambda: f"w-{uuid.uuid4().hex[:10]}")
    rows: list[dict[str, Any]] = field(default_factory=list)
    deadline: float = field(init=False)
    events: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> Writer:
        self.deadline = json.loads(self.config.read_text())["deadline"]
        cmd = [
            "php",
            str(WRITER),
            str(self.config),
            "--table",
            self.table,
            "--client",
            self.client,
            "--interval-ms",
            "50",
        ]
        self.proc = subprocess.Popen(
            [*cmd, *(["--idempotent"] if self.idempotent else [])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.threads = [
            threading.Thread(target=self._read, args=(s, out), daemon=True)
            for s, out in ((self.proc.stdout, self.rows), (self.proc.stderr, self.events))
        ]
        for t in self.threads:
            t.start()
        return self

    @staticmethod
    def _read(stream: Any, out: list[dict[str, Any]]) -> None:
        for line in stream:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "raw", "line": line.rstrip()})

    def committed_on(self, addr: str, after: float = 0.0) -> list[dict[str, Any]]:
        return [r for r in list(self.rows) if r["ok"] and r["server"].split("/")[0] == addr and r["t"] >= after]

    def stop(self) -> dict[str, Any]:
        """SIGTERM: the writer finishes its attempt, prints its summary and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=40) == 0, self.events[-5:]
        for t in self.threads:
            t.join(timeout=5)
        summary = [e for e in self.events if e.get("event") == "summary"]
        assert len(summary) == 1, self.events[-5:]
        return summary[0]


class WriteProbe:
    """Inserts directly into each watched node every 20 ms; records when each first
    commits a write: the moment that node accepts writes (sync commit included)."""

    def __init__(self, topo: Topology, nodes: list[str]):
        self.topo, self.nodes = topo, nodes
        self.accepted: dict[str, float] = {}
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conns: dict[str, psycopg.Connection | None] = dict.fromkeys(self.nodes)
        while not self.stopping and len(self.accepted) < len(self.nodes):
            for n in self.nodes:
                if n in self.accepted:
                    continue
                try:
                    conn = conns[n]
                    if conn is None or conn.closed:
                        conn = conns[n] = connect(self.topo, self.topo.node_dsn(n, connect_timeout=1))
                    conn.execute("insert into t_probe (node) values (%s)", (n,))
                    self.accepted[n] = time.time()
                except psycopg.Error:
                    pass  # a replica: read-only (25006), or down
            time.sleep(0.02)
        for conn in conns.values():
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(timeout=10)


def member_state(topo: Topology, node: str) -> str | None:
    return {m["name"]: m for m in (observe.cluster(topo) or {}).get("members", [])}.get(node, {}).get("state")


def start_writers(topo: Topology, configs: dict[str, Path], table: str) -> list[Writer]:
    with connect(topo, topo.dsn()) as conn:
        conn.execute(
            f"create table if not exists {table} (seq bigint not null, client text not null, created_at timestamptz not null default clock_timestamp(), primary key (client, seq))"
        )
        conn.execute("create table if not exists t_probe (node text, at timestamptz default clock_timestamp())")
    return [
        Writer(f"{via}{'+idempotent' if idem else ''}", configs[via], table, idem).start()
        for via in VIAS
        for idem in (False, True)
    ]


def wait_rows(writers: list[Writer], addr: str, n: int, timeout: float, what: str, after: float = 0.0) -> None:
    wait_for(lambda: all(len(w.committed_on(addr, after)) >= n for w in writers), timeout, what)


def check_and_report(
    topo: Topology,
    writers: list[Writer],
    old: str,
    new: str,
    accepted_at: float,
    event_at: float,
    table: str,
    drill: str,
) -> None:
    """The invariants for every writer, then the figures (printed, not asserted)."""
    old_addr, new_addr = topo.address(old), topo.address(new)
    summaries = {w.name: w.stop() for w in writers}
    with connect(topo, topo.node_dsn(new)) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone() == (False,)
        present_by_client = {
            w.client: {r[0] for r in conn.execute(f"select seq from {table} where client = %s", (w.client,)).fetchall()}
            for w in writers
        }
    print(
        f"\n{drill}: {old} -> {new}; new primary accepted writes {accepted_at - event_at:.2f}s after the {drill} started"
    )
    for w in writers:
        summary = summaries[w.name]
        ok = [r for r in w.rows if r["ok"]]
        servers = [r["server"].split("/")[0] for r in ok]
        # Never a replica: acknowledged rows come from the old leader, then the new one,
        # in that order (seq order = time order), never back.
        assert set(servers) <= {old_addr, new_addr}, f"{w.name}: committed on {set(servers) - {old_addr, new_addr}}"
        first_new = servers.index(new_addr)
        assert set(servers[:first_new]) == {old_addr}, f"{w.name}: leaders interleaved: {servers}"
        assert set(servers[first_new:]) == {new_addr}, f"{w.name}: leaders interleaved: {servers}"
        # Resumed without manual action, on the new primary.
        assert len(servers) - first_new >= ROWS_AFTER, f"{w.name}: did not resume: {w.rows[-3:]}"
        assert w.rows[-1]["ok"], f"{w.name}: did not resume: {w.rows[-3:]}"
        # No acknowledged write lost (synchronous mode), no "not committed" write present.
        present = present_by_client[w.client]
        acked = {r["seq"] for r in ok}
        assert acked <= present, f"{w.name}: acknowledged but missing on {new}: {sorted(acked - present)}"
        not_committed = {r["seq"] for r in w.rows if r["outcome"] == "not_committed"}
        assert not (not_committed & present), (
            f"{w.name}: reported not committed but present: {sorted(not_committed & present)}"
        )
        # The generated config's deadline (the stack's client_deadline: ttl + loop_wait +
        # margin) rides through the election: an idempotent writer surfaces no error at
        # all; a plain one at most the statement in flight when the primary went away
        # (outcome unknown: it may have committed, no client may retry it blindly), never
        # a failover timeout or a "not committed".
        surfaced = [r for r in w.rows if not r["ok"]]
        if w.idempotent:
            assert not surfaced, f"{w.name}: errors surfaced with deadline {w.deadline}s: {surfaced}"
        else:
            assert len(surfaced) <= 1, f"{w.name}: errors surfaced with deadline {w.deadline}s: {surfaced}"
            assert all(r["outcome"] == "unknown" for r in surfaced), f"{w.name}: {surfaced}"
        # Figures.
        first = ok[first_new]
        resumed = first["t"] + first["latency_ms"] / 1000 - accepted_at
        failed = [r for r in w.rows if not r["ok"]]
        retries = sum(r["retries"] for r in w.rows)
        longest = max(r["latency_ms"] for r in w.rows) / 1000
        outcomes = {o: sum(1 for r in failed if r["outcome"] == o) for o in ("not_committed", "unknown")}
        print(
            f"  {w.name:20} first write on {new} {resumed * 1000:+7.0f} ms after it accepted writes; "
            f"errors surfaced {len(failed)} ({outcomes['not_committed']} not committed, {outcomes['unknown']} unknown); "
            f"reconnect retries {retries}; longest attempt {longest:.2f}s; attempts {summary['attempts']}"
        )


# ------------------------------------------------------------------ drills


def test_writers_follow_a_switchover(sync_lab: Topology, configs: dict[str, Path]) -> None:
    topo = sync_lab
    observe.wait_healthy(topo, timeout=60)
    old = observe.leader(topo)
    assert old
    table = f"t_php_switchover_{uuid.uuid4().hex[:6]}"
    writers = start_writers(topo, configs, table)
    try:
        wait_rows(writers, topo.address(old), ROWS_BEFORE, 30, f"every writer committing on {old}")
        new = observe.switchover_candidate(topo, old)
        probe = WriteProbe(topo, [new])
        event_at = time.time()
        code, body = observe.rest_post(topo, old, "/switchover", {"leader": old, "candidate": new})
        assert code == 200, body
        wait_for(lambda: observe.leader(topo) == new, 60, f"{new} to lead")
        wait_for(lambda: new in probe.accepted, 30, f"{new} accepting writes")
        probe.stop()
        wait_rows(
            writers, topo.address(new), ROWS_AFTER, 60, f"every writer committing on {new}", after=probe.accepted[new]
        )
        check_and_report(topo, writers, old, new, probe.accepted[new], event_at, table, "switchover")
    finally:
        for w in writers:
            if w.proc.poll() is None:
                w.proc.kill()
    observe.wait_healthy(topo, timeout=60)


def test_writers_follow_a_node_death(sync_lab: Topology, configs: dict[str, Path]) -> None:
    topo = sync_lab
    observe.wait_healthy(topo, timeout=60)
    old = observe.leader(topo)
    assert old
    table = f"t_php_death_{uuid.uuid4().hex[:6]}"
    writers = start_writers(topo, configs, table)
    try:
        wait_rows(writers, topo.address(old), ROWS_BEFORE, 30, f"every writer committing on {old}")
        others = [n for n in topo.pg_names if n != old]
        probe = WriteProbe(topo, others)
        event_at = time.time()
        assert len(control.signal_node(topo, old, signal.SIGKILL)) == 2, "expected Patroni and its postmaster"
        new = wait_for(
            lambda: (lambda ldr: ldr if ldr and ldr != old else None)(observe.leader(topo)), 90, "a new leader"
        )
        wait_for(lambda: new in probe.accepted, 30, f"{new} accepting writes")
        probe.stop()
        wait_rows(
            writers, topo.address(new), ROWS_AFTER, 60, f"every writer committing on {new}", after=probe.accepted[new]
        )
        # The old node comes back as systemd would restart it, and streams again.
        control.request_start(topo, old)
        wait_for(lambda: member_state(topo, old) == "streaming", 90, f"{old} streaming")
        assert observe.leader(topo) == new
        check_and_report(topo, writers, old, new, probe.accepted[new], event_at, table, "node death (SIGKILL)")
    finally:
        for w in writers:
            if w.proc.poll() is None:
                w.proc.kill()
    observe.wait_healthy(topo, timeout=60)
