"""pgha_client: application-side failover for the pgha PostgreSQL cluster, with psycopg 3.

The Python twin of the PHP connector in ``clients/php`` (its README is the reference for
the semantics; this package keeps them, names follow Python conventions, and it has one
module per PHP class: config, host, dsn_builder, error_classifier, backoff, connector,
errors; defaults reads the ``defaults.json`` both clients share):

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

from .backoff import Backoff
from .config import KEYS, SSLMODES, Config, has_unsafe_chars, is_valid_host
from .connector import Connector, io_guard
from .dsn_builder import conninfo
from .error_classifier import (
    CONNECTION_LOST_PATTERNS,
    FAILOVER_SQLSTATES,
    PERMANENT_CONNECT_PATTERNS,
    is_failover,
    is_permanent_connect_failure,
)
from .errors import FailoverTimeout, InvalidConfig, IoTimeout, sqlstate
from .host import Host

__all__ = [
    "CONNECTION_LOST_PATTERNS",
    "FAILOVER_SQLSTATES",
    "KEYS",
    "PERMANENT_CONNECT_PATTERNS",
    "SSLMODES",
    "Backoff",
    "Config",
    "Connector",
    "FailoverTimeout",
    "Host",
    "InvalidConfig",
    "IoTimeout",
    "conninfo",
    "has_unsafe_chars",
    "io_guard",
    "is_failover",
    "is_permanent_connect_failure",
    "is_valid_host",
    "sqlstate",
]
