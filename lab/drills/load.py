"""What runs during a failover drill: the writers, the dual-primary probe and the monitor.

- Two writers insert ``(client, seq)`` rows every ``interval`` seconds through
  ``clients/python/pgha_client`` (not idempotent: an INSERT is never replayed), one on
  the libpq multi-host DSN, one on HAProxy's primary port. Every attempt is recorded
  with its send and answer times and its outcome: ``committed`` (acknowledged: the row
  must exist afterwards), ``not_committed`` (certainly not applied) or ``unknown`` (the
  connection broke after the INSERT was sent).
- The probe keeps one plain connection per node (no target_session_attrs) and tries to
  write on each, every ``probe_interval``: a node that acknowledges a write is a writable
  primary at that moment. A commit that only succeeded locally because the wait for the
  synchronous standby was cancelled (statement_timeout) is ``local_only``, not an ack.
- The monitor polls each node's Patroni ``/patroni`` and the leader key in etcd, and
  records every change (role, state, replication state, sync standby, leader).

Every attempt is an :class:`lab.drills.events.Attempt`; all times are seconds on one
monotonic clock, relative to the recorder's start.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from lab import observe
from lab.topology import Topology
from pgha.settings import ROOT

from .events import COMMITTED, DOWN, LOCAL_ONLY, NOT_COMMITTED, READ_ONLY, UNKNOWN, Attempt

sys.path.insert(0, str(ROOT / "clients" / "python"))
import pgha_client

DRILL_TABLE = "pgha_drill"
PROBE_TABLE = "pgha_drill_probe"


@dataclass(frozen=True)
class LoadSettings:
    interval: float = 0.02  #: writers: seconds between two INSERTs
    probe_interval: float = 0.1  #: probe: seconds between two writes on each node
    connect_timeout: int = 2  #: libpq connect_timeout (psycopg enforces >= 2)
    deadline: float = 5.0  #: one INSERT call's failover budget (pgha_client deadline)
    backoff_base: float = 0.05
    backoff_cap: float = 0.5
    io_timeout: float = 5.0  #: writers abandon a connection silent for this long (frozen server)
    probe_io_timeout: float = 1.5
    probe_statement_timeout_ms: int = 1000


class Clock:
    def __init__(self) -> None:
        self.origin = time.monotonic()
        self.wall_origin = time.time()

    def now(self) -> float:
        return time.monotonic() - self.origin


def ensure_tables(topo: Topology) -> None:
    with psycopg.connect(topo.dsn(), password=topo.passwords().app, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {DRILL_TABLE} (client text NOT NULL, seq bigint NOT NULL, server text,"
            " created_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (client, seq))"
        )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (node text NOT NULL, seq bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        conn.execute(f"TRUNCATE {PROBE_TABLE}")
        # Writes only where it can: a standby answers false instead of logging an ERROR
        # every probe_interval (a primary demoted in between still raises 25006).
        conn.execute(
            f"CREATE OR REPLACE FUNCTION {PROBE_TABLE}_write(p_node text, p_seq bigint) RETURNS boolean LANGUAGE plpgsql AS $$"
            f" BEGIN IF pg_is_in_recovery() THEN RETURN false; END IF;"
            f" INSERT INTO {PROBE_TABLE} (node, seq) VALUES (p_node, p_seq); RETURN true; END $$"
        )


def present_seqs(topo: Topology, client: str) -> set[int]:
    with psycopg.connect(topo.dsn(), password=topo.passwords().app, autocommit=True, connect_timeout=5) as conn:
        return {r[0] for r in conn.execute(f"SELECT seq FROM {DRILL_TABLE} WHERE client = %s", (client,))}


def node_of(topo: Topology, server_addr: str | None) -> str | None:
    if not server_addr:
        return None
    ip = server_addr.split("/")[0]
    for n in topo.pg_names:
        if topo.address(n) == ip:
            return n
    return ip


def client_config(topo: Topology, path: str, load: LoadSettings) -> pgha_client.Config:
    """pgha_client settings for a writer on the multi-host DSN ("libpq") or HAProxy."""
    pg = topo.settings.patroni
    common: dict[str, Any] = {
        "dbname": pg.app_database,
        "user": pg.app_user,
        "password": topo.passwords().app,
        "sslrootcert": str(topo.ca_file),
        "connect_timeout": load.connect_timeout,
        "deadline": load.deadline,
        "backoff_base": load.backoff_base,
        "backoff_cap": load.backoff_cap,
        "io_timeout": load.io_timeout,
        "application_name": f"pgha-drill-{path}",
    }
    if path == "haproxy":
        # HAProxy forwards TCP: the certificate names the node, not HAProxy (verify-ca).
        ep = topo.settings.endpoint
        return pgha_client.Config(
            hosts=(pgha_client.Host(topo.haproxy_addr, ep.haproxy_primary_port),), sslmode="verify-ca", **common
        )
    return pgha_client.Config(
        hosts=tuple(pgha_client.Host(topo.address(n), pg.port) for n in topo.pg_names), sslmode="verify-full", **common
    )


class Writer(threading.Thread):
    """INSERTs one row per attempt through pgha_client; records every attempt."""

    def __init__(self, topo: Topology, path: str, client: str, clock: Clock, stop: threading.Event, load: LoadSettings):
        super().__init__(name=f"drill-writer-{path}", daemon=True)
        self.topo = topo
        self.path = path
        self.client = client
        self.clock = clock
        self.stop_event = stop
        self.load = load
        self.attempts: list[Attempt] = []
        self.last_ack: float | None = None
        self.connector = pgha_client.Connector(client_config(topo, path, load))

    def run(self) -> None:
        seq = 0
        sql = f"INSERT INTO {DRILL_TABLE} (client, seq) VALUES (%s, %s) RETURNING inet_server_addr()::text"
        while not self.stop_event.is_set():
            seq += 1
            t0 = self.clock.now()
            s = seq

            def insert(conn: Any, s: int = s) -> str:
                row = conn.execute(sql, (self.client, s)).fetchone()
                assert row is not None
                return str(row[0])

            outcome, node, error = COMMITTED, None, None
            try:
                node = node_of(self.topo, self.connector.run(insert))
            except pgha_client.FailoverTimeout as e:
                outcome, error = NOT_COMMITTED, _short(e)
            except Exception as e:  # noqa: BLE001 - every outcome is recorded
                error = _short(e)
                if pgha_client.sqlstate(e) == "25006":
                    outcome = NOT_COMMITTED  # a standby refused it: certainly not applied
                elif pgha_client.is_failover(e):
                    outcome = UNKNOWN  # sent, then the connection broke
                else:
                    outcome = NOT_COMMITTED
            t1 = self.clock.now()
            self.attempts.append(Attempt(self.path, s, t0, t1, outcome, node, error))
            if outcome == COMMITTED:
                self.last_ack = t1
            pause = t0 + self.load.interval - self.clock.now()
            if pause > 0:
                self.stop_event.wait(pause)
        self.connector.close()


class Probe(threading.Thread):
    """Tries to write on one node directly, every probe_interval."""

    def __init__(self, topo: Topology, node: str, clock: Clock, stop: threading.Event, load: LoadSettings):
        super().__init__(name=f"drill-probe-{node}", daemon=True)
        self.topo = topo
        self.node = node
        self.clock = clock
        self.stop_event = stop
        self.load = load
        self.attempts: list[Attempt] = []
        self.dsn = (
            f"{topo.node_dsn(node, connect_timeout=load.connect_timeout)} application_name=pgha-drill-probe"
            f" options='-c statement_timeout={load.probe_statement_timeout_ms}'"
        )

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        notices: list[str] = []
        seq = 0
        password = self.topo.passwords().app
        sql = f"SELECT {PROBE_TABLE}_write(%s, %s)"
        while not self.stop_event.is_set():
            seq += 1
            t0 = self.clock.now()
            outcome, error = COMMITTED, None
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, password=password, autocommit=True)
                    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
                notices.clear()
                with pgha_client.io_guard(conn, self.load.probe_io_timeout):
                    wrote = conn.execute(sql, (self.node, seq)).fetchone()
                if not (wrote and wrote[0]):
                    outcome = READ_ONLY
                elif any("synchronous replication" in n for n in notices):
                    outcome = LOCAL_ONLY
            except psycopg.errors.ReadOnlySqlTransaction:
                outcome = READ_ONLY
            except psycopg.Error as e:
                outcome, error = DOWN, _short(e)
                if conn is not None and (conn.closed or conn.broken or pgha_client.is_failover(e)):
                    conn.close()
                    conn = None
            self.attempts.append(Attempt(f"probe:{self.node}", seq, t0, self.clock.now(), outcome, self.node, error))
            pause = t0 + self.load.probe_interval - self.clock.now()
            if pause > 0:
                self.stop_event.wait(pause)
        if conn is not None:
            conn.close()


@dataclass
class NodeView:
    t: float
    node: str
    reachable: bool
    role: str | None = None  #: Patroni's role of the node itself: primary, replica, ...
    state: str | None = None  #: running, starting, stopped, ...
    replication_state: str | None = None  #: streaming (replicas)
    timeline: int | None = None
    sync_standby: bool = False

    def key(self) -> tuple[Any, ...]:
        return (self.reachable, self.role, self.state, self.replication_state, self.timeline, self.sync_standby)

    @property
    def primary(self) -> bool:
        return self.reachable and self.role == "primary" and self.state == "running"

    @property
    def streaming(self) -> bool:
        return (
            self.reachable
            and self.role == "replica"
            and self.state == "running"
            and self.replication_state == "streaming"
        )


class Monitor:
    """Polls every node's /patroni and the etcd leader key; keeps the changes."""

    def __init__(self, topo: Topology, clock: Clock, stop: threading.Event, interval: float = 0.25):
        self.topo = topo
        self.clock = clock
        self.stop_event = stop
        self.interval = interval
        self.views: list[NodeView] = []  # changes only
        self.current: dict[str, NodeView] = {}
        self.leader_keys: list[tuple[float, str | None]] = []  # (t, holder) changes; None: no key
        self.leader_key: str | None = None
        self.etcd_reachable = True
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._poll_node, args=(n,), name=f"drill-monitor-{n}", daemon=True)
            for n in topo.pg_names
        ]
        self.threads.append(threading.Thread(target=self._poll_leader_key, name="drill-monitor-etcd", daemon=True))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=5)

    def _poll_node(self, node: str) -> None:
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            code, body = observe.rest(self.topo, node, "/patroni", timeout=0.5)
            now = self.clock.now()
            if code == 200 and isinstance(body, dict):
                v = NodeView(
                    now,
                    node,
                    True,
                    body.get("role"),
                    body.get("state"),
                    body.get("replication_state"),
                    body.get("timeline"),
                    bool(body.get("sync_standby")),
                )
            else:
                v = NodeView(now, node, False)
            with self.lock:
                old = self.current.get(node)
                self.current[node] = v
                if old is None or old.key() != v.key():
                    self.views.append(v)
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def _poll_leader_key(self) -> None:
        key = f"/service/{self.topo.settings.patroni.scope}/leader"
        ctx = observe.ssl_context(self.topo, client=True)
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
        port = self.topo.settings.etcd.client_port
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            holder: str | None = None
            ok = False
            for ip in self.topo.plan.addresses("etcd"):
                req = urllib.request.Request(f"https://{ip}:{port}/v3/kv/range", data=body, method="POST")
                try:
                    with urllib.request.urlopen(req, context=ctx, timeout=0.3) as r:
                        kvs = json.loads(r.read()).get("kvs") or []
                    holder = base64.b64decode(kvs[0]["value"]).decode() if kvs else None
                    ok = True
                    break
                except (OSError, ValueError, KeyError):
                    continue
            with self.lock:
                self.etcd_reachable = ok
                if ok and (not self.leader_keys or self.leader_keys[-1][1] != holder):
                    self.leader_keys.append((self.clock.now(), holder))
                    self.leader_key = holder
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    # --------------------------------------------------------- queries (thread-safe)

    def view(self, node: str) -> NodeView | None:
        with self.lock:
            return self.current.get(node)

    def primaries(self) -> list[str]:
        with self.lock:
            return sorted(n for n, v in self.current.items() if v.primary)

    def streaming(self, node: str) -> bool:
        v = self.view(node)
        return bool(v and v.streaming)


class Recorder:
    """Writers on both client paths, the probe on every node, and the monitor."""

    def __init__(self, topo: Topology, tag: str, load: LoadSettings | None = None):
        self.topo = topo
        self.load = load or LoadSettings()
        self.clock = Clock()
        self.stop_event = threading.Event()
        self.clients = {p: f"{tag}-{p}" for p in ("libpq", "haproxy")}
        self.writers = {
            p: Writer(topo, p, cl, self.clock, self.stop_event, self.load) for p, cl in self.clients.items()
        }
        self.probes = [Probe(topo, n, self.clock, self.stop_event, self.load) for n in topo.pg_names]
        self.monitor = Monitor(topo, self.clock, self.stop_event)
        self.stopped_at: float | None = None

    def start(self) -> None:
        self.monitor.start()
        for w in self.writers.values():
            w.start()
        for p in self.probes:
            p.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in [*self.writers.values(), *self.probes]:
            t.join(timeout=max(15.0, self.load.deadline + self.load.io_timeout + 5))
        self.monitor.join()
        self.stopped_at = self.clock.now()

    def now(self) -> float:
        return self.clock.now()

    def acked_since(self, t: float) -> bool:
        """Every writer has an acknowledged commit answered after t."""
        return all(w.last_ack is not None and w.last_ack > t for w in self.writers.values())

    def attempts(self) -> list[Attempt]:
        out = [a for w in self.writers.values() for a in w.attempts] + [a for p in self.probes for a in p.attempts]
        return sorted(out, key=lambda a: a.t0)

    def monitor_log(self) -> dict[str, Any]:
        with self.monitor.lock:
            return {"views": [asdict(v) for v in self.monitor.views], "leader_keys": list(self.monitor.leader_keys)}


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"
