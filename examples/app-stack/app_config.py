"""Pure: pgha's stack outputs -> this application's database settings.

Kept free of pulumi so it is tested with plain dicts; ``__main__.py`` feeds it the
outputs of a ``pulumi.StackReference``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: pgha stack outputs this application needs.
REQUIRED = ("libpq_dsn", "patroni_addresses", "app_user", "app_password", "ca_certificate")
#: Present only when the pgha stack enables them.
OPTIONAL = ("dns_name", "lb_address")


def parse_conninfo(dsn: str) -> dict[str, str]:
    """``key=value key=value`` (pgha's DSN never quotes values) -> dict, order kept."""
    out: dict[str, str] = {}
    for part in dsn.split():
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"not a key=value conninfo item: {part!r}")
        out[key] = value
    return out


def app_dsn(libpq_dsn: str, ca_path: str) -> str:
    """pgha's multi-host DSN with the CA file where this application stores it (no password)."""
    params = parse_conninfo(libpq_dsn)
    params["sslrootcert"] = ca_path
    return " ".join(f"{k}={v}" for k, v in params.items())


def db_config(outputs: Mapping[str, Any], ca_path: str = "/etc/app/pgha-ca.crt") -> dict[str, Any]:
    """The application's database settings. Holds the password: treat the result as a secret."""
    missing = [name for name in REQUIRED if outputs.get(name) in (None, "", [])]
    if missing:
        raise KeyError(f"the pgha stack has no output(s) {', '.join(missing)}; is it deployed?")
    params = parse_conninfo(outputs["libpq_dsn"])
    if params.get("user") != outputs["app_user"]:
        raise ValueError(f"libpq_dsn is for user {params.get('user')!r}, app_user is {outputs['app_user']!r}")
    if "target_session_attrs" not in params:  # pgha always sets it; no second default here
        raise ValueError("libpq_dsn has no target_session_attrs")
    return {
        "dsn": app_dsn(outputs["libpq_dsn"], ca_path),
        "user": outputs["app_user"],
        "password": outputs["app_password"],
        "dbname": params["dbname"],
        "hosts": list(outputs["patroni_addresses"]),
        "target_session_attrs": params["target_session_attrs"],
        "ca_path": ca_path,
        "ca_certificate": outputs["ca_certificate"],
        # A single name for humans and tools that cannot do multi-host (None if neither is enabled).
        "endpoint": outputs.get("dns_name") or outputs.get("lb_address"),
    }
