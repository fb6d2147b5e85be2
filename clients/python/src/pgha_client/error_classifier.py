"""Which errors mean "this server is gone or no longer the primary" (Python twin of
``ErrorClassifier.php``; the module docstring of :mod:`pgha_client` has the rules)."""

from __future__ import annotations

import re

from .errors import IoTimeout, find_psycopg_error, sqlstate

__all__ = [
    "CONNECTION_LOST_PATTERNS",
    "FAILOVER_SQLSTATES",
    "PERMANENT_CONNECT_PATTERNS",
    "is_failover",
    "is_permanent_connect_failure",
    "sqlstate",
]

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


_SECTION = re.compile(r"(?=connection to server (?:at|on) )", re.IGNORECASE)


def _matches(text: str, patterns: tuple[str, ...]) -> bool:
    text = text.lower()
    return any(p in text for p in patterns)


def is_failover(e: BaseException) -> bool:
    """True if the error means the connection is lost or the server is not (any more) a
    writable primary, so reconnecting can help. Message patterns are only consulted when
    there is no SQLSTATE: a unique violation mentioning "connection refused" is not one."""
    err = find_psycopg_error(e)
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
    err = find_psycopg_error(e)
    if err is None:
        return False
    text = str(err)
    sections = [s for s in _SECTION.split(text) if "connection to server" in s.lower()] or [text]
    sections = [s.strip() for s in sections if s.strip()]
    return bool(sections) and all(_matches(s, PERMANENT_CONNECT_PATTERNS) for s in sections)
