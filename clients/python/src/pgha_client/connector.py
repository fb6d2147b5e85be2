"""Failover-aware access to a Patroni cluster through psycopg (Python twin of
``Connector.php``), and the ``io_timeout`` guard it puts around pings and work."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import psycopg
from psycopg import pq

from .backoff import Backoff
from .config import Config
from .dsn_builder import conninfo
from .error_classifier import is_failover, is_permanent_connect_failure
from .errors import FailoverTimeout, IoTimeout

T = TypeVar("T")


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
        result: T = self._execute(fn, idempotent, False)
        return result

    def run_read_only(self, fn: Callable[[Any], T], idempotent: bool = False) -> T:
        result: T = self._execute(fn, idempotent, True)
        return result

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
                    if not (isinstance(e, psycopg.OperationalError) or is_failover(e)) or is_permanent_connect_failure(
                        e
                    ):
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
            except Exception:  # noqa: BLE001 - any failure of the ping means: do not reuse it
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
            with suppress(Exception):  # closing a dead connection may raise anything
                conn.close()

    def _clean_up_after_error(self, read_only: bool, conn: Any) -> None:
        """After a non-failover error inside fn: never keep a connection with an open (and,
        in PostgreSQL, aborted) transaction. Roll it back, or drop the connection."""
        if conn is None:
            return
        try:
            if conn.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
                conn.rollback()
        except Exception:  # noqa: BLE001 - whatever went wrong, the connection is not reusable
            self._discard(read_only, conn)
