"""pgha_client: application-side failover for the pgha PostgreSQL cluster, with psycopg 3.

The Python twin of the PHP connector in ``clients/php`` (its README is the reference for
the semantics; this module keeps them, names follow Python conventions):

* **Every node in one DSN.** libpq multi-host form, ``target_session_attrs=read-write``
  for the primary (``prefer-standby`` for read-only work), a low ``connect_timeout`` per
  host. A failover needs no DNS or configuration change.
* **Retry what is safe, nothing else.** Connection failures and the SQLSTATEs meaning
  "this server is gone or no longer the primary" (class 08, 57P01, 57P02, 57P03, 25006,
  and libpq's own "connection lost" messages, which carry no SQLSTATE) lead to a
  reconnect and a retry, with capped exponential backoff and full jitter, within a total
  deadline. Work that fails *after* its statement was sent is retried only when the
  caller says it is idempotent; otherwise the original error is re-raised (the outcome
  is unknown: the caller decides).

    from pgha_client import Config, Connector

    db = Connector(Config.from_json_file("/etc/app/pg.json"),
                   on_retry=lambda attempt, delay, err: log.warning("retry %d: %s", attempt, err))
    new_id = db.run(lambda conn: conn.execute(
        "INSERT INTO orders (ref) VALUES (%s) RETURNING id", (ref,)).fetchone()[0])
    n = db.run(lambda conn: conn.execute("SELECT count(*) FROM orders").fetchone()[0], idempotent=True)

Connections are opened with ``autocommit=True`` (like PDO): put a multi-statement
transaction inside ``with conn.transaction():`` in ``fn``. A retry calls ``fn`` again from
the start on a new connection.

Clock, sleep, jitter source and the connect function are constructor parameters, so the
retry logic is tested without a database or real time (tests/unit/test_python_client.py).

One addition to the PHP semantics: ``io_timeout`` (off by default). A server that is
frozen (SIGSTOP, a VM paused by its hypervisor) keeps its TCP connections open and never
answers, so a statement on it waits forever: neither libpq nor the server can end it.
With ``io_timeout`` set, a ping or ``fn`` that has not returned after that many seconds has
its socket shut down (the connection is abandoned) and :class:`IoTimeout` is raised, a
failover-class error like a lost connection. Standard library and psycopg only.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import random as _random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

__all__ = [
    "Backoff",
    "Config",
    "Connector",
    "FailoverTimeout",
    "Host",
    "InvalidConfig",
    "IoTimeout",
    "conninfo",
    "io_guard",
    "is_failover",
    "is_permanent_connect_failure",
    "sqlstate",
]

T = TypeVar("T")

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
READ_WRITE = "read-write"
PREFER_STANDBY = "prefer-standby"
DEFAULT_PORT = 5432
KEYS = (
    "hosts",
    "dbname",
    "user",
    "password",
    "password_file",
    "password_env",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "deadline",
    "backoff_base",
    "backoff_cap",
    "application_name",
    "io_timeout",
)
MAX_NAME_BYTES = 63  # PostgreSQL truncates identifiers and application_name to NAMEDATALEN - 1

#: SQLSTATEs (besides class 08) meaning "the server went away or is not the primary any more".
FAILOVER_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "25006"})

#: Lower-case fragments of libpq / psycopg / server messages meaning the connection is
#: unusable. Only consulted for errors without a SQLSTATE (libpq's own errors have none).
CONNECTION_LOST_PATTERNS = (
    "server closed the connection unexpectedly",
    "no connection to the server",
    "connection to server was lost",
    "could not receive data from server",
    "could not send data to server",
    "ssl syscall error",
    "ssl connection has been closed unexpectedly",
    "ssl error: unexpected eof",
    "eof detected",
    "connection not open",
    "the connection is closed",
    "the connection is lost",
    "connection reset by peer",
    "broken pipe",
    "connection refused",
    "connection timed out",
    "timeout expired",
    "terminating connection due to administrator command",
    "terminating connection because of crash of another server process",
    "terminating connection due to unexpected postmaster exit",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "session is read-only",
    "server is in hot standby mode",
)

#: Lower-case fragments of connection errors that retrying will not fix.
PERMANENT_CONNECT_PATTERNS = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "pg_hba.conf rejects connection",
    "fe_sendauth: no password supplied",
    "does not have connect privilege",
    "does not exist",  # database, role, root certificate file
    "root certificate file",
    "certificate verify failed",
    "does not match host name",
    "server does not support ssl",
    "ssl is not enabled on the server",
    "invalid connection option",
    "invalid sslmode value",
    "invalid target_session_attrs value",
    "invalid integer value",
    "invalid port number",
    'missing "=" after',
    "unterminated quoted string",
)

_UNSAFE = re.compile(r"[;\x00-\x1f\x7f]")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"\A{_LABEL}(?:\.{_LABEL})*\.?\Z")
_SECTION = re.compile(r"(?=connection to server (?:at|on) )", re.IGNORECASE)
_MAX_CHAIN = 10


# ---------------------------------------------------------------- configuration


class InvalidConfig(ValueError):
    """Every problem of a configuration, each with its key, raised once."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = list(problems)
        n = len(self.problems)
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {k}: {m}" for k, m in self.problems)
        super().__init__(f"Invalid pgha_client configuration{where}: {n} problem{'s' if n != 1 else ''}\n{lines}")

    @property
    def keys(self) -> set[str]:
        return {k for k, _ in self.problems}


@dataclass(frozen=True)
class Host:
    """One PostgreSQL node: a DNS name or IP literal, and a port."""

    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return len(host) <= 253 and bool(_HOSTNAME.match(host))


def has_unsafe_chars(value: str) -> bool:
    """';' or a control character (refused everywhere, as in the PHP connector)."""
    return bool(_UNSAFE.search(value))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_seconds(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(float(v)) and 0 < float(v) <= 86400  # type: ignore[arg-type]


@dataclass(frozen=True)
class Config:
    """Validated, immutable connection settings. Build it directly or with
    :meth:`from_dict` / :meth:`from_json_file` (which also read ``password_file`` and
    ``password_env`` and resolve relative paths). Every problem is reported at once."""

    hosts: tuple[Host, ...]  #: every node, in the order libpq tries them
    dbname: str  #: database
    user: str  #: role
    password: str | None = field(default=None, repr=False)  #: None: libpq uses PGPASSWORD / PGPASSFILE / ~/.pgpass
    sslmode: str = "verify-full"  #: libpq sslmode
    sslrootcert: str | None = None  #: CA file (must be readable), or libpq's "system"
    connect_timeout: int = 2  #: seconds per host (libpq connect_timeout; psycopg enforces >= 2)
    deadline: float = 15.0  #: seconds, total budget of one connect()/run() call
    backoff_base: float = 0.05  #: seconds, upper bound of the first retry delay
    backoff_cap: float = 1.0  #: seconds, upper bound of any retry delay
    application_name: str | None = None  #: shown in pg_stat_activity
    io_timeout: float | None = None  #: seconds a ping or fn may go unanswered before the connection is abandoned

    def __post_init__(self) -> None:
        problems = _value_problems(self)
        if problems:
            raise InvalidConfig(problems)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path | None = None, source: str | None = None) -> Config:
        """Keys as in the PHP connector's JSON (see KEYS); relative ``password_file`` and
        ``sslrootcert`` are resolved against ``base_dir``."""
        problems: list[tuple[str, str]] = []
        if not isinstance(data, Mapping):
            raise InvalidConfig([("(root)", "must be a mapping")], source)
        for key in data:
            if key not in KEYS:
                problems.append((str(key), f"unknown key (allowed: {', '.join(KEYS)})"))
        hosts: list[Host] = []
        raw_hosts = data.get("hosts")
        if "hosts" not in data:
            problems.append(("hosts", 'is required (a list of {"host": ..., "port": ...})'))
        elif not isinstance(raw_hosts, list) or not raw_hosts:
            problems.append(("hosts", 'must be a non-empty list of {"host": ..., "port": ...}'))
        else:
            for i, entry in enumerate(raw_hosts):
                if not isinstance(entry, Mapping):
                    problems.append((f"hosts[{i}]", 'must be an object {"host": ..., "port": ...}'))
                    continue
                for k in entry:
                    if k not in ("host", "port"):
                        problems.append((f"hosts[{i}].{k}", "unknown key (allowed: host, port)"))
                hosts.append(Host(entry.get("host"), entry.get("port", DEFAULT_PORT)))  # type: ignore[arg-type]

        password: str | None = None
        sources = [k for k in ("password", "password_file", "password_env") if k in data]
        if len(sources) > 1:
            for k in sources:
                problems.append((k, f"only one of password, password_file, password_env may be set (found: {', '.join(sources)})"))
        elif sources == ["password"]:
            password = data["password"]
        elif sources == ["password_file"]:
            f = data["password_file"]
            if not isinstance(f, str) or not f:
                problems.append(("password_file", "must be a non-empty path string"))
            else:
                path = _resolve(f, base_dir)
                try:
                    password = path.read_text().rstrip("\r\n")
                except OSError:
                    problems.append(("password_file", f"cannot read {path}"))
        elif sources == ["password_env"]:
            name = data["password_env"]
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                problems.append(("password_env", f"must be an environment variable name, got {name!r}"))
            elif name not in os.environ:
                problems.append(("password_env", f"environment variable {name} is not set"))
            else:
                password = os.environ[name]

        sslrootcert = data.get("sslrootcert")
        if isinstance(sslrootcert, str) and sslrootcert and sslrootcert != "system":
            sslrootcert = str(_resolve(sslrootcert, base_dir))
        values: dict[str, Any] = {
            "hosts": tuple(hosts),
            "dbname": data.get("dbname"),
            "user": data.get("user"),
            "password": password,
            "sslrootcert": sslrootcert,
        }
        for key, default in (
            ("sslmode", "verify-full"),
            ("connect_timeout", 2),
            ("deadline", 15.0),
            ("backoff_base", 0.05),
            ("backoff_cap", 1.0),
            ("application_name", None),
            ("io_timeout", None),
        ):
            values[key] = data.get(key, default)
        for key in ("dbname", "user"):
            if key not in data:
                problems.append((key, "is required"))
        # Value checks on what we have, minus keys already reported as missing.
        missing = {k for k, _ in problems}
        problems += [(k, m) for k, m in _value_problems(_Values(values)) if k not in missing]
        if problems:
            raise InvalidConfig(problems, source)
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | Path) -> Config:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except OSError:
            raise InvalidConfig([("(file)", f"cannot read {p}")], str(p)) from None
        except ValueError as e:
            raise InvalidConfig([("(json)", f"not valid JSON: {e}")], str(p)) from None
        if not isinstance(data, dict):
            raise InvalidConfig([("(root)", "must be a JSON object")], str(p))
        return cls.from_dict(data, base_dir=p.resolve().parent, source=str(p))


class _Values:
    """Attribute access to a dict, to check values before a Config exists."""

    def __init__(self, d: dict[str, Any]):
        self.__dict__.update(d)


def _resolve(path: str, base_dir: str | Path | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _value_problems(c: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    hosts = c.hosts
    if not isinstance(hosts, tuple) or not hosts:
        out.append(("hosts", "must be a non-empty tuple of Host"))
        hosts = ()
    seen: dict[tuple[str, int], int] = {}
    for i, h in enumerate(hosts):
        if not isinstance(h, Host):
            out.append((f"hosts[{i}]", "must be a Host"))
            continue
        ok = True
        if not isinstance(h.host, str) or not h.host:
            out.append((f"hosts[{i}].host", "is required and must be a non-empty string"))
            ok = False
        elif not is_valid_host(h.host):
            out.append((f"hosts[{i}].host", f"must be a DNS name or an IP address, got {h.host!r}"))
            ok = False
        if not _is_int(h.port) or not 1 <= h.port <= 65535:
            out.append((f"hosts[{i}].port", f"must be an integer between 1 and 65535, got {h.port!r}"))
            ok = False
        if ok:
            ident = (h.host.lower(), h.port)
            if ident in seen:
                out.append((f"hosts[{i}]", f"duplicate of hosts[{seen[ident]}] ({h})"))
            else:
                seen[ident] = i
    for key in ("dbname", "user"):
        v = getattr(c, key)
        if not isinstance(v, str) or not v:
            out.append((key, "must be a non-empty string"))
        elif has_unsafe_chars(v):
            out.append((key, f"must not contain ';' or control characters, got {v!r}"))
        elif len(v.encode()) > MAX_NAME_BYTES:
            out.append((key, f"must be at most {MAX_NAME_BYTES} bytes long"))
    if c.password is not None and (not isinstance(c.password, str) or not c.password or "\0" in c.password):
        out.append(("password", "must be a non-empty string without NUL bytes"))
    if c.sslmode not in SSLMODES:
        out.append(("sslmode", f"must be one of {', '.join(SSLMODES)}, got {c.sslmode!r}"))
    cert = c.sslrootcert
    if cert is not None:
        if not isinstance(cert, str) or not cert:
            out.append(("sslrootcert", "must be a non-empty path string"))
        elif has_unsafe_chars(cert):
            out.append(("sslrootcert", "must not contain ';' or control characters"))
        elif cert != "system" and not os.access(cert, os.R_OK):
            out.append(("sslrootcert", f"cannot read {cert}"))
    if not _is_int(c.connect_timeout) or not 1 <= c.connect_timeout <= 3600:
        out.append(("connect_timeout", f"must be an integer number of seconds between 1 and 3600, got {c.connect_timeout!r}"))
    for key in ("deadline", "backoff_base", "backoff_cap"):
        if not _is_seconds(getattr(c, key)):
            out.append((key, f"must be a number of seconds > 0 and <= 86400, got {getattr(c, key)!r}"))
    if _is_seconds(c.backoff_base) and _is_seconds(c.backoff_cap) and c.backoff_cap < c.backoff_base:
        out.append(("backoff_cap", f"must be >= backoff_base ({c.backoff_base}), got {c.backoff_cap}"))
    if c.io_timeout is not None and not _is_seconds(c.io_timeout):
        out.append(("io_timeout", f"must be a number of seconds > 0 and <= 86400, got {c.io_timeout!r}"))
    name = c.application_name
    if name is not None:
        if not isinstance(name, str) or not name:
            out.append(("application_name", "must be a non-empty string"))
        elif not re.fullmatch(r"[\x20-\x7e]+", name) or ";" in name:
            out.append(("application_name", f"must be printable ASCII without ';', got {name!r}"))
        elif len(name) > MAX_NAME_BYTES:
            out.append(("application_name", f"must be at most {MAX_NAME_BYTES} bytes long"))
    return out


def conninfo(config: Config, read_only: bool = False) -> str:
    """The libpq multi-host conninfo (no user, no password: they never appear in a logged DSN)."""
    params: dict[str, Any] = {
        "host": ",".join(h.host for h in config.hosts),
        "port": ",".join(str(h.port) for h in config.hosts),
        "dbname": config.dbname,
        "target_session_attrs": PREFER_STANDBY if read_only else READ_WRITE,
        "connect_timeout": str(config.connect_timeout),
        "sslmode": config.sslmode,
    }
    if config.sslrootcert is not None:
        params["sslrootcert"] = config.sslrootcert
    if config.application_name is not None:
        params["application_name"] = config.application_name
    return make_conninfo("", **params)


# ---------------------------------------------------------------- errors


class IoTimeout(psycopg.OperationalError):
    """A ping or ``fn`` got no answer within ``io_timeout``: the connection was abandoned
    (its socket shut down). A failover-class error; the statement may have been applied."""


class FailoverTimeout(Exception):
    """The deadline of a connect()/run() call passed while failover errors kept happening.
    ``__cause__`` (and :attr:`last_error`) is the last error seen."""

    def __init__(self, attempts: int, elapsed: float, deadline: float, last_error: BaseException):
        self.attempts = attempts
        self.elapsed = elapsed
        self.deadline = deadline
        self.last_error = last_error
        s = "" if attempts == 1 else "s"
        super().__init__(f"gave up after the {deadline:.3g}s failover deadline: {attempts} attempt{s} in {elapsed:.3f}s; last error: {last_error}")

    @property
    def sqlstate(self) -> str | None:
        return sqlstate(self.last_error)


def _find_psycopg_error(e: BaseException) -> psycopg.Error | None:
    """The first psycopg.Error in e's chain (e, then __cause__ / __context__)."""
    cur: BaseException | None = e
    for _ in range(_MAX_CHAIN):
        if cur is None:
            return None
        if isinstance(cur, psycopg.Error):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def sqlstate(e: BaseException) -> str | None:
    err = _find_psycopg_error(e)
    return err.sqlstate if err is not None else None


def _matches(text: str, patterns: tuple[str, ...]) -> bool:
    text = text.lower()
    return any(p in text for p in patterns)


def is_failover(e: BaseException) -> bool:
    """True if the error means the connection is lost or the server is not (any more) a
    writable primary, so reconnecting can help. Message patterns are only consulted when
    there is no SQLSTATE: a unique violation mentioning "connection refused" is not one."""
    err = _find_psycopg_error(e)
    if err is None:
        return False
    if isinstance(err, IoTimeout):
        return True
    state = err.sqlstate
    if state is not None:
        return state.startswith("08") or state in FAILOVER_SQLSTATES
    return _matches(str(err), CONNECTION_LOST_PATTERNS)


def is_permanent_connect_failure(e: BaseException) -> bool:
    """True if a failure to connect will not go away by retrying (authentication, pg_hba,
    unknown database, TLS verification, malformed parameters). With several hosts libpq /
    psycopg report one "connection to server at ..." section per host: the failure is
    permanent only if every section is, so one broken node does not cut short the wait
    for a new primary."""
    err = _find_psycopg_error(e)
    if err is None:
        return False
    text = str(err)
    sections = [s for s in _SECTION.split(text) if "connection to server" in s.lower()] or [text]
    sections = [s.strip() for s in sections if s.strip()]
    return bool(sections) and all(_matches(s, PERMANENT_CONNECT_PATTERNS) for s in sections)


# ---------------------------------------------------------------- backoff


class Backoff:
    """Capped exponential backoff with full jitter: the delay before retry n (n = 1, 2, ...)
    is uniform in [0, min(cap, base * 2^(n-1))], which spreads the reconnect storm of many
    clients after a failover."""

    def __init__(self, base: float, cap: float, random: Callable[[], float] | None = None):
        if not (base > 0) or not (cap >= base) or not math.isfinite(cap):
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self.random = random or _random.random

    def ceiling(self, retry: int) -> float:
        return min(self.cap, self.base * 2.0 ** max(0, min(retry - 1, 1023)))

    def delay(self, retry: int) -> float:
        r = float(self.random())
        r = 0.0 if math.isnan(r) else max(0.0, min(1.0, r))
        return r * self.ceiling(retry)


# ---------------------------------------------------------------- connector


class _Guard:
    """Shuts the connection's socket down if the guarded block outlives ``timeout``."""

    def __init__(self, conn: Any, timeout: float | None):
        self.fired = False
        self._conn = conn
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(timeout, self._fire) if timeout else None
        if self._timer:
            self._timer.daemon = True

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            try:
                fd = self._conn.fileno()
                # shutdown() acts on the socket, not on our dup'ed descriptor: the thread
                # blocked in libpq wakes up with EOF; the connection's fd stays valid.
                with socket.socket(fileno=os.dup(fd)) as s:
                    s.shutdown(socket.SHUT_RDWR)
            except (OSError, psycopg.Error, AttributeError):
                pass

    def start(self) -> None:
        if self._timer:
            self._timer.start()

    def stop(self) -> None:
        with self._lock:
            self._done = True
        if self._timer:
            self._timer.cancel()


@contextmanager
def io_guard(conn: Any, timeout: float | None) -> Iterator[None]:
    """Run the block; if it has not finished after ``timeout`` seconds, shut the
    connection's socket down (the blocked libpq call returns with "connection lost") and
    raise :class:`IoTimeout` from that error. ``timeout=None``: no guard."""
    guard = _Guard(conn, timeout)
    guard.start()
    try:
        yield
    except Exception as e:
        guard.stop()
        if guard.fired:
            raise IoTimeout(f"no answer within {timeout}s; connection abandoned ({e})") from e
        raise
    finally:
        guard.stop()


class Connector:
    """Failover-aware access to a Patroni cluster through psycopg.

    One call (connect(), run(), ...) makes attempts until it succeeds, hits an error that
    is not failover-related (re-raised as is), hits a failover error it may not retry
    (re-raised as is), or runs out of its total deadline (:class:`FailoverTimeout`). It
    never sleeps past the deadline and never starts an attempt after it; an attempt that
    is already running is not interrupted (except by ``io_timeout``). Not thread-safe:
    one Connector per thread.
    """

    def __init__(
        self,
        config: Config,
        *,
        on_retry: Callable[[int, float, BaseException], None] | None = None,
        connect: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] | None = None,
        ping_on_reuse: bool = True,
        connect_kwargs: Mapping[str, Any] | None = None,
    ):
        """
        on_retry: fn(attempt, delay, error), called before sleeping ``delay`` seconds after
            failed attempt number ``attempt`` (1-based); exceptions it raises propagate.
        connect: fn(conninfo, **kwargs) -> connection (default psycopg.connect).
        clock: monotonic seconds; sleep: fn(seconds); random: float in [0, 1) for the jitter.
        ping_on_reuse: run "SELECT 1" on a cached connection before reusing it and replace
            it silently if that fails; this turns "stale connection after a failover" into
            a connect-time failure, safe to retry even for non-idempotent work.
        connect_kwargs: extra keyword arguments for connect (autocommit defaults to True).
        """
        self.config = config
        self.backoff = Backoff(config.backoff_base, config.backoff_cap, random)
        self._on_retry = on_retry
        self._connect = connect or psycopg.connect
        self._clock = clock
        self._sleep = sleep
        self._ping_on_reuse = ping_on_reuse
        # user and password go to connect() as keywords, never into the logged conninfo.
        self._kwargs: dict[str, Any] = {"autocommit": True, **(connect_kwargs or {}), "user": config.user}
        if config.password is not None:
            self._kwargs["password"] = config.password
        self._primary: Any = None
        self._read_only: Any = None

    def dsn(self, read_only: bool = False) -> str:
        return conninfo(self.config, read_only)

    def connect(self) -> Any:
        """The connection to the primary, opened with retries within the deadline if there
        is none (or, with ping_on_reuse, if the cached one is dead)."""
        return self._execute(None, False, False)

    def connect_read_only(self) -> Any:
        """A connection with target_session_attrs=prefer-standby (a standby if one is up)."""
        return self._execute(None, False, True)

    def run(self, fn: Callable[[Any], T], idempotent: bool = False) -> T:
        """``fn(conn)`` on the primary; see the module docstring for the retry rules."""
        return self._execute(fn, idempotent, False)

    def run_read_only(self, fn: Callable[[Any], T], idempotent: bool = False) -> T:
        return self._execute(fn, idempotent, True)

    def close(self) -> None:
        for ro in (False, True):
            self._discard(ro, None)

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ internals

    def _execute(self, fn: Callable[[Any], Any] | None, idempotent: bool, read_only: bool) -> Any:
        start = self._clock()
        deadline = start + self.config.deadline
        attempt = 0
        while True:
            attempt += 1
            connecting = True
            conn = None
            try:
                conn = self._acquire(read_only)
                if fn is None:
                    return conn
                connecting = False
                with self._guarded(conn):
                    return fn(conn)
            except Exception as e:
                if connecting:
                    # Nothing was sent: any connection failure may be retried, unless
                    # retrying cannot help (authentication, TLS, unknown database...).
                    if not (isinstance(e, psycopg.OperationalError) or is_failover(e)) or is_permanent_connect_failure(e):
                        raise
                else:
                    if not is_failover(e):
                        self._clean_up_after_error(read_only, conn)
                        raise
                    self._discard(read_only, conn)
                    if not idempotent:
                        raise  # the statement may have been applied: the caller decides
                now = self._clock()
                delay = self.backoff.delay(attempt)
                if now + delay >= deadline:
                    raise FailoverTimeout(attempt, now - start, self.config.deadline, e) from e
                if self._on_retry is not None:
                    self._on_retry(attempt, delay, e)
                self._sleep(delay)

    def _guarded(self, conn: Any) -> Any:
        return io_guard(conn, self.config.io_timeout)

    def _acquire(self, read_only: bool) -> Any:
        conn = self._read_only if read_only else self._primary
        if conn is not None:
            if not self._ping_on_reuse:
                return conn
            try:
                with self._guarded(conn):
                    conn.execute("SELECT 1")
                return conn
            except Exception:
                self._discard(read_only, conn)  # stale (e.g. killed by a failover): replace it
        conn = self._connect(conninfo(self.config, read_only), **self._kwargs)
        if read_only:
            self._read_only = conn
        else:
            self._primary = conn
        return conn

    def _discard(self, read_only: bool, conn: Any) -> None:
        current = self._read_only if read_only else self._primary
        if conn is None or current is conn:
            if read_only:
                self._read_only = None
            else:
                self._primary = None
            conn = current
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _clean_up_after_error(self, read_only: bool, conn: Any) -> None:
        """After a non-failover error inside fn: never keep a connection with an open (and,
        in PostgreSQL, aborted) transaction. Roll it back, or drop the connection."""
        if conn is None:
            return
        try:
            if conn.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
                conn.rollback()
        except Exception:
            self._discard(read_only, conn)
