"""The clients' defaults, read from ``defaults.json``: the one declaration shared with the
PHP connector (``clients/php/defaults.json``; this package's copy is a symlink to it,
which a wheel or sdist build turns into a regular file).

Loaded once, at import; a missing key, an unknown key or a value of the wrong type is an
error here rather than a silently different default in one of the clients.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any, Final

#: key -> the type its value must have ("$comment" is allowed and ignored).
_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "port": int,
    "sslmode": str,
    "connect_timeout": int,
    "deadline": (int, float),
    "backoff_base": (int, float),
    "backoff_cap": (int, float),
    "target_session_attrs": str,
    "read_only_target_session_attrs": str,
}


def load(text: str, source: str = "defaults.json") -> dict[str, Any]:
    """The defaults in ``text`` (JSON), checked: every key of ``_TYPES``, no other."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: must be a JSON object")
    data.pop("$comment", None)
    problems = [f"{k}: missing" for k in _TYPES if k not in data]
    problems += [f"{k}: unknown key" for k in data if k not in _TYPES]
    problems += [
        f"{k}: must be {_TYPES[k]}, got {v!r}"
        for k, v in data.items()
        if k in _TYPES and (isinstance(v, bool) or not isinstance(v, _TYPES[k]))
    ]
    if problems:
        raise ValueError(f"{source}: " + "; ".join(sorted(problems)))
    return data


DEFAULTS_FILE = files("pgha_client") / "defaults.json"
DEFAULTS: Final[dict[str, Any]] = load(DEFAULTS_FILE.read_text(), str(DEFAULTS_FILE))

PORT: Final[int] = DEFAULTS["port"]
SSLMODE: Final[str] = DEFAULTS["sslmode"]
CONNECT_TIMEOUT: Final[int] = DEFAULTS["connect_timeout"]
DEADLINE: Final[float] = float(DEFAULTS["deadline"])
BACKOFF_BASE: Final[float] = float(DEFAULTS["backoff_base"])
BACKOFF_CAP: Final[float] = float(DEFAULTS["backoff_cap"])
#: target_session_attrs of connect()/run() (the primary) and of the *_read_only calls.
READ_WRITE: Final[str] = DEFAULTS["target_session_attrs"]
PREFER_STANDBY: Final[str] = DEFAULTS["read_only_target_session_attrs"]
