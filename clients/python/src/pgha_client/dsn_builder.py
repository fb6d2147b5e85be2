"""Builds the libpq multi-host conninfo (Python twin of ``DsnBuilder.php``).

Every host and its port, in order; ``target_session_attrs`` read-write for the primary
(prefer-standby for read-only work); the per-host ``connect_timeout``. No user, no
password: they go to ``connect()`` as keywords and never appear in a logged DSN.
"""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo

from .config import Config
from .defaults import PREFER_STANDBY, READ_WRITE


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
