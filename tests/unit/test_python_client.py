"""clients/python (pgha_client): DSN, config validation, error classification, backoff and
the retry rules of the Connector, with fakes (no database, no real time)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pe
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from pgha_client import (
    Backoff,
    Config,
    Connector,
    FailoverTimeout,
    Host,
    InvalidConfig,
    IoTimeout,
    conninfo,
    is_failover,
    is_permanent_connect_failure,
    sqlstate,
)

pytestmark = pytest.mark.unit

HOSTS = (Host("10.0.1.11"), Host("10.0.1.12", 5433), Host("db3.example.com"))


def cfg(**kw: Any) -> Config:
    base: dict[str, Any] = {"hosts": HOSTS, "dbname": "app", "user": "app_rw", "password": "s3cret"}
    base.update(kw)
    return Config(**base)


# ---------------------------------------------------------------- DSN


def test_conninfo_lists_every_host_and_port_in_order_read_write() -> None:
    d = conninfo_to_dict(conninfo(cfg(sslrootcert=None, application_name="w1")))
    assert d["host"] == "10.0.1.11,10.0.1.12,db3.example.com"
    assert d["port"] == "5432,5433,5432"
    assert d["target_session_attrs"] == "read-write"
    assert d["connect_timeout"] == "2"
    assert d["sslmode"] == "verify-full"
    assert d["application_name"] == "w1"
    assert "password" not in d
    assert "user" not in d


def test_conninfo_read_only_prefers_standby_and_quotes_values(tmp_path: Path) -> None:
    ca = tmp_path / "my ca.pem"
    ca.write_text("x")
    dsn = conninfo(cfg(dbname="my db", sslrootcert=str(ca)), read_only=True)
    d = conninfo_to_dict(dsn)
    assert d["target_session_attrs"] == "prefer-standby"
    assert d["dbname"] == "my db"
    assert d["sslrootcert"] == str(ca)
    assert "s3cret" not in dsn


def test_password_is_never_in_repr() -> None:
    assert "s3cret" not in repr(cfg())


# ---------------------------------------------------------------- config validation

BAD: list[tuple[str, dict[str, Any], set[str]]] = [
    ("no hosts", {"hosts": ()}, {"hosts"}),
    ("bad host", {"hosts": (Host("bad host!"),)}, {"hosts[0].host"}),
    ("bad port", {"hosts": (Host("h1", 0), Host("h2", 70000))}, {"hosts[0].port", "hosts[1].port"}),
    ("bool port", {"hosts": (Host("h1", True),)}, {"hosts[0].port"}),
    ("duplicate host", {"hosts": (Host("H1"), Host("h1"))}, {"hosts[1]"}),
    ("empty dbname", {"dbname": ""}, {"dbname"}),
    ("dsn injection", {"dbname": "app;sslmode=disable"}, {"dbname"}),
    ("long user", {"user": "u" * 64}, {"user"}),
    ("sslmode typo", {"sslmode": "verify_full"}, {"sslmode"}),
    ("missing ca", {"sslrootcert": "/nonexistent/ca.pem"}, {"sslrootcert"}),
    ("timeout zero", {"connect_timeout": 0}, {"connect_timeout"}),
    ("timeout float", {"connect_timeout": 1.5}, {"connect_timeout"}),
    ("deadline negative", {"deadline": -1}, {"deadline"}),
    ("cap below base", {"backoff_base": 0.5, "backoff_cap": 0.1}, {"backoff_cap"}),
    ("nan base", {"backoff_base": float("nan")}, {"backoff_base"}),
    ("app name non-ascii", {"application_name": "wrïter"}, {"application_name"}),
    ("io timeout zero", {"io_timeout": 0}, {"io_timeout"}),
    ("several at once", {"dbname": "", "sslmode": "x", "deadline": 0}, {"dbname", "sslmode", "deadline"}),
]


@pytest.mark.parametrize("changes,paths", [(c, p) for _, c, p in BAD], ids=[i for i, _, _ in BAD])
def test_invalid_config_reports_every_failing_key(changes: dict[str, Any], paths: set[str]) -> None:
    with pytest.raises(InvalidConfig) as exc:
        cfg(**changes)
    assert exc.value.keys == paths


def test_valid_config_passes() -> None:
    c = cfg(connect_timeout=3, deadline=5, backoff_base=0.1, backoff_cap=0.1, io_timeout=2.5, sslrootcert="system")
    assert c.deadline == 5
    assert c.io_timeout == 2.5


def test_from_dict_unknown_keys_missing_keys_and_password_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHA_TEST_PW", raising=False)
    with pytest.raises(InvalidConfig) as exc:
        Config.from_dict(
            {"hosts": [{"host": "h1", "prot": 1}], "conect_timeout": 2, "password": "a", "password_env": "X"}
        )
    assert exc.value.keys == {"hosts[0].prot", "conect_timeout", "password", "password_env", "dbname", "user"}
    with pytest.raises(InvalidConfig) as exc:
        Config.from_dict({"hosts": [{"host": "h1"}], "dbname": "d", "user": "u", "password_env": "PGHA_TEST_PW"})
    assert exc.value.keys == {"password_env"}
    monkeypatch.setenv("PGHA_TEST_PW", "from-env")
    c = Config.from_dict({"hosts": [{"host": "h1"}], "dbname": "d", "user": "u", "password_env": "PGHA_TEST_PW"})
    assert c.password == "from-env"
    assert c.hosts == (Host("h1", 5432),)


def test_from_json_file_resolves_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "pg.json").write_text(
        '{"hosts": [{"host": "10.0.1.11", "port": 5432}], "dbname": "app", "user": "u", "password_file": "pw", "sslrootcert": "ca.pem", "deadline": 3}'
    )
    c = Config.from_json_file(tmp_path / "pg.json")
    assert c.password == "from-file"
    assert c.sslrootcert == str(tmp_path / "ca.pem")
    assert c.deadline == 3
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidConfig) as exc:
        Config.from_json_file(tmp_path / "bad.json")
    assert exc.value.keys == {"(json)"}


# ---------------------------------------------------------------- classification


def op(msg: str) -> psycopg.OperationalError:
    return psycopg.OperationalError(msg)


FAILOVER: list[tuple[str, BaseException, bool]] = [
    ("08006 connection failure", pe.ConnectionFailure("x"), True),
    ("08001 cannot connect", pe.SqlclientUnableToEstablishSqlconnection("x"), True),
    ("57P01 admin shutdown", pe.AdminShutdown("terminating connection due to administrator command"), True),
    ("57P02 crash shutdown", pe.CrashShutdown("x"), True),
    ("57P03 cannot connect now", pe.CannotConnectNow("the database system is starting up"), True),
    ("25006 read only", pe.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), True),
    ("libpq connection lost", op("consuming input failed: server closed the connection unexpectedly"), True),
    ("psycopg closed", op("the connection is closed"), True),
    ("refused", op('connection failed: connection to server at "h", port 5432 failed: Connection refused'), True),
    ("io timeout", IoTimeout("no answer"), True),
    ("40001 serialization", pe.SerializationFailure("could not serialize access"), False),
    ("40P01 deadlock", pe.DeadlockDetected("deadlock detected"), False),
    ("57014 query canceled", pe.QueryCanceled("canceling statement due to statement timeout"), False),
    (
        "23505 whose text looks like a failover",
        pe.UniqueViolation("Key (v)=(server closed the connection unexpectedly) exists"),
        False,
    ),
    ("not a database error", RuntimeError("server closed the connection unexpectedly"), False),
]


@pytest.mark.parametrize("err,expected", [(e, x) for _, e, x in FAILOVER], ids=[i for i, _, _ in FAILOVER])
def test_failover_classification(err: BaseException, expected: bool) -> None:
    assert is_failover(err) is expected


def test_wrapped_errors_are_classified_through_the_chain() -> None:
    def framework_call() -> None:
        try:
            raise pe.AdminShutdown("bye")
        except psycopg.Error as inner:
            raise RuntimeError("framework wrapper") from inner

    with pytest.raises(RuntimeError) as outer:
        framework_call()
    assert is_failover(outer.value)
    assert sqlstate(outer.value) == "57P01"


def section(host: str, reason: str) -> str:
    return f'connection to server at "{host}", port 5432 failed: {reason}'


def multi(*reasons: str) -> psycopg.OperationalError:
    """psycopg's multi-host message: the last error, then one line per attempt."""
    lines = [
        f"connection failed: {section('h3', reasons[-1])}",
        "Multiple connection attempts failed. All failures were:",
    ]
    lines += [
        f"- host: 'h{i}', port: '5432', hostaddr: '': connection failed: {section(f'h{i}', r)}"
        for i, r in enumerate(reasons, 1)
    ]
    return op("\n".join(lines))


def test_permanent_only_if_every_host_section_is_permanent() -> None:
    auth = 'FATAL:  password authentication failed for user "app"'
    assert is_permanent_connect_failure(op(f"connection failed: {section('h1', auth)}"))
    assert is_permanent_connect_failure(multi(auth, auth, "FATAL:  no pg_hba.conf entry for host"))
    assert not is_permanent_connect_failure(multi(auth, "Connection refused", auth))
    assert not is_permanent_connect_failure(multi("session is read-only", "session is read-only"))
    assert not is_permanent_connect_failure(pe.UniqueViolation("x"))


# ---------------------------------------------------------------- backoff


def test_backoff_ceilings_are_capped_exponential() -> None:
    b = Backoff(0.05, 1.0, random=lambda: 1.0)
    assert [round(b.ceiling(n), 6) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.ceiling(10_000) == 1.0


def test_backoff_full_jitter_and_clamping() -> None:
    values = iter([0.5, 0.0, 7.0, -3.0, float("nan")])
    b = Backoff(0.1, 0.4, random=lambda: next(values))
    assert [b.delay(n) for n in (3, 3, 3, 3, 3)] == [0.2, 0.0, 0.4, 0.0, 0.0]
    with pytest.raises(ValueError, match="backoff needs 0 < base <= cap"):
        Backoff(0.5, 0.1)


# ---------------------------------------------------------------- connector fakes


class FakeInfo:
    def __init__(self) -> None:
        self.transaction_status = pq.TransactionStatus.IDLE


class FakeConn:
    def __init__(self, name: str, ping_error: BaseException | None = None):
        self.name = name
        self.ping_error = ping_error
        self.closed = False
        self.pings = 0
        self.rollbacks = 0
        self.info = FakeInfo()

    def execute(self, sql: str, *args: Any) -> None:
        assert sql == "SELECT 1"
        self.pings += 1
        if self.ping_error:
            raise self.ping_error

    def rollback(self) -> None:
        self.rollbacks += 1
        self.info.transaction_status = pq.TransactionStatus.IDLE

    def close(self) -> None:
        self.closed = True


class World:
    """A fake clock, sleeper and connect function with a script of outcomes."""

    def __init__(self, script: list[BaseException | FakeConn], connect_cost: float = 0.0):
        self.now = 100.0
        self.sleeps: list[float] = []
        self.script = list(script)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.connect_cost = connect_cost
        self.retries: list[tuple[int, float, str]] = []
        self.starts: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def connect(self, dsn: str, **kw: Any) -> FakeConn:
        self.calls.append((dsn, kw))
        self.starts.append(self.now)
        self.now += self.connect_cost
        item = self.script.pop(0) if self.script else FakeConn(f"c{len(self.calls)}")
        if isinstance(item, BaseException):
            raise item
        return item

    def connector(self, config: Config | None = None, **kw: Any) -> Connector:
        return Connector(
            config or cfg(),
            connect=self.connect,
            clock=self.clock,
            sleep=self.sleep,
            random=lambda: 0.5,
            on_retry=lambda a, d, e: self.retries.append((a, d, type(e).__name__)),
            **kw,
        )


REFUSED = 'connection failed: connection to server at "10.0.1.11", port 5432 failed: Connection refused'
LOST = "consuming input failed: server closed the connection unexpectedly"


def test_connect_failures_are_retried_with_backoff_and_hook() -> None:
    w = World([op(REFUSED), op(REFUSED), op(REFUSED)])
    conn = w.connector().connect()
    assert isinstance(conn, FakeConn)
    assert len(w.calls) == 4
    assert w.sleeps == [0.025, 0.05, 0.1]  # random 0.5 x ceilings 0.05, 0.1, 0.2
    assert w.retries == [(1, 0.025, "OperationalError"), (2, 0.05, "OperationalError"), (3, 0.1, "OperationalError")]
    dsn, kw = w.calls[0]
    assert conninfo_to_dict(dsn)["target_session_attrs"] == "read-write"
    assert kw == {"autocommit": True, "user": "app_rw", "password": "s3cret"}


def test_read_only_connections_prefer_standby_and_are_cached_separately() -> None:
    w = World([])
    db = w.connector()
    ro = db.connect_read_only()
    rw = db.connect()
    assert ro is not rw
    assert conninfo_to_dict(w.calls[0][0])["target_session_attrs"] == "prefer-standby"
    assert db.connect_read_only() is ro
    assert ro.pings == 1


def test_non_idempotent_work_is_not_replayed_after_it_was_sent() -> None:
    w = World([])
    db = w.connector()
    calls: list[str] = []

    def insert(conn: FakeConn) -> None:
        calls.append(conn.name)
        raise op(LOST)

    with pytest.raises(psycopg.OperationalError, match="server closed"):
        db.run(insert)
    assert calls == ["c1"]
    assert w.sleeps == []
    assert w.calls
    assert w.script == []
    # the broken connection was dropped: the next call opens a new one
    assert db.run(lambda conn: conn.name, idempotent=True) == "c2"


def test_idempotent_work_is_retried_on_a_new_connection() -> None:
    w = World([])
    db = w.connector()
    seen: list[str] = []

    def read(conn: FakeConn) -> str:
        seen.append(conn.name)
        if len(seen) == 1:
            raise pe.AdminShutdown("terminating connection due to administrator command")
        return f"ok on {conn.name}"

    assert db.run(read, idempotent=True) == "ok on c2"
    assert seen == ["c1", "c2"]
    assert len(w.sleeps) == 1
    assert w.retries[0][0] == 1


def test_other_errors_are_raised_at_once_and_roll_back_an_open_transaction() -> None:
    w = World([])
    db = w.connector()

    def fail(conn: FakeConn) -> None:
        conn.info.transaction_status = pq.TransactionStatus.INERROR
        raise pe.UniqueViolation("duplicate key value violates unique constraint")

    with pytest.raises(pe.UniqueViolation):
        db.run(fail, idempotent=True)
    conn = db.connect()
    assert conn.name == "c1"
    assert conn.rollbacks == 1
    assert not conn.closed
    assert w.sleeps == []


def test_permanent_connect_failure_is_not_retried() -> None:
    w = World([op(f"connection failed: {section('h1', 'FATAL:  password authentication failed for user')}")])
    with pytest.raises(psycopg.OperationalError, match="password authentication"):
        w.connector().connect()
    assert len(w.calls) == 1
    assert w.sleeps == []


def test_non_database_errors_while_connecting_are_not_retried() -> None:
    w = World([TypeError("bug")])
    with pytest.raises(TypeError):
        w.connector().connect()
    assert len(w.calls) == 1


def test_deadline_raises_failover_timeout_and_never_sleeps_past_it() -> None:
    w = World([op(REFUSED)] * 100, connect_cost=0.3)
    db = w.connector(cfg(deadline=2.0, backoff_base=0.2, backoff_cap=0.8))
    with pytest.raises(FailoverTimeout) as exc:
        db.connect()
    t = exc.value
    assert t.attempts == len(w.calls)
    assert t.attempts >= 2
    assert isinstance(t.__cause__, psycopg.OperationalError)
    assert t.last_error is t.__cause__
    # Every attempt started before the deadline; after the 4th (ending at 101.9) the next
    # delay (0.4) would end past it, so it gives up instead of sleeping.
    assert w.starts == pytest.approx([100.0, 100.4, 100.9, 101.6])
    assert w.sleeps == pytest.approx([0.1, 0.2, 0.4])
    assert w.now == pytest.approx(101.9)
    assert t.deadline == 2.0
    assert "2s failover deadline" in str(t)
    assert t.elapsed == pytest.approx(1.9)


def test_a_running_attempt_is_not_interrupted_by_the_deadline() -> None:
    w = World([op(REFUSED)] * 100, connect_cost=2.5)
    with pytest.raises(FailoverTimeout) as exc:
        w.connector(cfg(deadline=2.0)).connect()
    assert exc.value.attempts == 1
    assert w.sleeps == []
    assert exc.value.elapsed == pytest.approx(2.5)


def test_stale_cached_connection_is_replaced_before_non_idempotent_work() -> None:
    stale = FakeConn("stale")
    w = World([stale])
    db = w.connector()
    assert db.connect() is stale
    stale.ping_error = op(LOST)
    ran_on: list[str] = []
    db.run(lambda conn: ran_on.append(conn.name))
    assert ran_on == ["c2"]
    assert stale.closed
    assert w.sleeps == []


def test_without_ping_a_stale_connection_fails_the_non_idempotent_call() -> None:
    stale = FakeConn("stale", ping_error=op(LOST))
    w = World([stale])
    db = w.connector(ping_on_reuse=False)
    db.connect()

    def insert(conn: FakeConn) -> None:
        raise op(LOST)

    with pytest.raises(psycopg.OperationalError):
        db.run(insert)
    assert stale.pings == 0
    assert stale.closed


def test_io_timeout_abandons_a_silent_connection() -> None:
    a, b = socket.socketpair()
    a.settimeout(5)  # if the guard never fires, fail instead of hanging
    try:

        class SilentConn(FakeConn):
            def fileno(self) -> int:
                return a.fileno()

        w = World([SilentConn("frozen")])
        db = w.connector(cfg(io_timeout=0.05))

        def wait_for_answer(conn: FakeConn) -> None:
            if a.recv(1) == b"":  # what libpq sees when the socket is shut down
                raise op(LOST)

        with pytest.raises(IoTimeout) as exc:
            db.run(wait_for_answer)
        assert is_failover(exc.value)
        assert b.recv(1) == b""  # the peer saw the shutdown too
    finally:
        a.close()
        b.close()


def test_io_timeout_does_not_fire_on_quick_work() -> None:
    w = World([])
    db = w.connector(cfg(io_timeout=0.05))
    assert db.run(lambda conn: 42) == 42
