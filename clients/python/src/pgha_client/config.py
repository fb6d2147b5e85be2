"""Validated, immutable connection settings (Python twin of ``Config.php``)."""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import defaults
from .errors import InvalidConfig
from .host import Host

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
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

_UNSAFE = re.compile(r"[;\x00-\x1f\x7f]")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"\A{_LABEL}(?:\.{_LABEL})*\.?\Z")


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
    sslmode: str = defaults.SSLMODE  #: libpq sslmode
    sslrootcert: str | None = None  #: CA file (must be readable), or libpq's "system"
    connect_timeout: int = defaults.CONNECT_TIMEOUT  #: seconds per host (libpq connect_timeout; psycopg enforces >= 2)
    deadline: float = defaults.DEADLINE  #: seconds, total budget of one connect()/run() call
    backoff_base: float = defaults.BACKOFF_BASE  #: seconds, upper bound of the first retry delay
    backoff_cap: float = defaults.BACKOFF_CAP  #: seconds, upper bound of any retry delay
    application_name: str | None = None  #: shown in pg_stat_activity
    io_timeout: float | None = None  #: seconds a ping or fn may go unanswered before the connection is abandoned

    def __post_init__(self) -> None:
        problems = _value_problems(self)
        if problems:
            raise InvalidConfig(problems)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], base_dir: str | Path | None = None, source: str | None = None
    ) -> Config:
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
                hosts.append(Host(entry.get("host"), entry.get("port", defaults.PORT)))  # type: ignore[arg-type]

        password: str | None = None
        sources = [k for k in ("password", "password_file", "password_env") if k in data]
        if len(sources) > 1:
            for k in sources:
                problems.append(
                    (k, f"only one of password, password_file, password_env may be set (found: {', '.join(sources)})")
                )
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
        for f in fields(cls):  # the remaining settings: the field's own default
            if f.name not in values:
                values[f.name] = data.get(f.name, f.default)
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
        out.append(
            ("connect_timeout", f"must be an integer number of seconds between 1 and 3600, got {c.connect_timeout!r}")
        )
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
