"""``patroni.parameters`` checked against PostgreSQL's own description of its settings.

The description is data, generated from the installed server by
``scripts/pg_settings_data.py`` into ``pgha/data/postgres-<major>-settings.json`` (name,
type, context, unit, min, max, enum values; a tools test fails when it goes stale).
A value is parsed the way PostgreSQL 15 parses it (``guc.c``: ``parse_int``,
``parse_real``, ``parse_bool``, enum lookup, memory and time units), so what passes here is
what the server accepts at start, and what fails is reported at ``pulumi preview``
with its path instead of a node whose PostgreSQL refuses to start.

Refused as well: parameters fixed at build or initdb time (context ``internal``), the
parameters Patroni sets itself (its ``ConfigHandler.CMDLINE_OPTIONS`` with a ``_false``
validator, the recovery parameters it writes on each node) and values below the
minimum Patroni silently replaces by its default. Names with a dot
(``pg_stat_statements.max``) belong to extensions and are passed through unchecked.
Never imports pulumi.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"

#: Set by Patroni on every node from its own config, whatever postgresql.parameters says
#: (patroni/postgresql/config.py, Patroni 4.1: CMDLINE_OPTIONS with _false_validator,
#: hot_standby forced on, synchronous_standby_names driven by synchronous_mode).
PATRONI_MANAGED = {
    "listen_addresses": "Patroni sets it from postgresql.listen (the node's vRack address)",
    "port": "Patroni sets it from postgresql.listen: use patroni.port",
    "cluster_name": "Patroni sets it to the cluster's scope: use patroni.scope",
    "hot_standby": "Patroni keeps it on (replicas must accept reads to be checked)",
    "synchronous_standby_names": "Patroni manages it: use patroni.synchronous_mode",
}
#: Recovery parameters: Patroni writes them per node (which primary to follow, from
#: where to restore), so one cluster-wide value would be wrong or ignored
#: (patroni/postgresql/available_parameters/0_postgres.yml, recovery_parameters).
PATRONI_RECOVERY = frozenset(
    {
        "archive_cleanup_command",
        "primary_conninfo",
        "primary_slot_name",
        "promote_trigger_file",
        "recovery_end_command",
        "recovery_min_apply_delay",
        "recovery_target",
        "recovery_target_action",
        "recovery_target_inclusive",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_time",
        "recovery_target_timeline",
        "recovery_target_xid",
        "restore_command",
    }
)
#: Lowest values Patroni accepts; below them it logs a warning and uses its default
#: instead (ConfigHandler.CMDLINE_OPTIONS IntValidator(min=...)), in the setting's unit.
PATRONI_MINIMUMS = {
    "max_connections": 25,
    "max_wal_senders": 3,
    "max_locks_per_transaction": 32,
    "max_replication_slots": 4,
    "max_worker_processes": 2,
}

#: Bytes per memory unit and milliseconds per time unit, as PostgreSQL spells them
#: (case-sensitive: "1gb" is refused by the server).
MEMORY_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "min": 60000.0, "h": 3600000.0, "d": 86400000.0}
#: A setting's base unit (pg_settings.unit) in bytes or milliseconds.
MEMORY_BASE = {"B": 1, "kB": 1024, "8kB": 8192, "MB": 1024**2}
TIME_BASE = {"ms": 1.0, "s": 1000.0, "min": 60000.0}

_NUMBER = re.compile(
    r"^\s*(?P<num>[+-]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))\s*(?P<unit>[A-Za-z]+)?\s*$"
)
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@functools.cache
def catalog(major: int) -> dict[str, dict[str, Any]]:
    """name -> {type, context, unit?, min?, max?, enum?} for PostgreSQL ``major``."""
    path = DATA_DIR / f"postgres-{major}-settings.json"
    doc = json.loads(path.read_text())
    settings: dict[str, dict[str, Any]] = doc["settings"]
    return settings


def _unit_table(base: str | None) -> tuple[dict[str, float], float] | None:
    """(unit -> size, size of the base unit) for a memory or time setting; None when unitless."""
    if base in MEMORY_BASE:
        return {k: float(v) for k, v in MEMORY_UNITS.items()}, float(MEMORY_BASE[base])
    if base in TIME_BASE:
        return TIME_UNITS, TIME_BASE[base]
    return None


def _units_hint(base: str | None) -> str:
    if base in MEMORY_BASE:
        return f"a size such as 2GB (units B, kB, MB, GB, TB; a bare number counts {base})"
    if base in TIME_BASE:
        return f"a duration such as 30s (units us, ms, s, min, h, d; a bare number counts {base})"
    return "a plain number (this setting has no unit)"


def _number(value: Any, base: str | None) -> float | str:
    """The value in the setting's base unit, or why it is not a valid number for it."""
    if isinstance(value, bool):
        return f"must be {_units_hint(base)}, got {value!r}"
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return f"must be {_units_hint(base)}, got {type(value).__name__}"
    m = _NUMBER.match(value)
    if not m:
        return f"{value!r} is not a number: must be {_units_hint(base)}"
    text = m["num"]
    digits = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if digits[:2].lower() == "0x":
        number = float(sign * int(digits, 16))
    elif re.fullmatch(r"0[0-7]+", digits):  # strtol base 0: a leading zero is octal
        number = float(sign * int(digits, 8))
    else:
        number = float(text)
    unit = m["unit"]
    if unit is None:
        return number
    table = _unit_table(base)
    if table is None:
        return f"{value!r}: this setting takes no unit, write a plain number"
    units, base_size = table
    if unit not in units:
        names = ", ".join(units)
        return f"{value!r}: unknown unit {unit!r} (PostgreSQL's units are case-sensitive: {names})"
    return number * units[unit] / base_size


def _show(amount: float, base: str | None) -> str:
    """A base-unit amount in the largest unit that keeps it whole, e.g. 16 x 8kB -> 128kB."""
    table = _unit_table(base)
    if table is None or amount <= 0:
        return f"{amount:g}"
    units, base_size = table
    total = amount * base_size
    for unit, size in sorted(units.items(), key=lambda kv: -kv[1]):
        if size <= total and (total / size).is_integer():
            return f"{int(total / size)}{unit}"
    return f"{amount:g}{base or ''}"


def _check_value(name: str, spec: dict[str, Any], value: Any) -> str | None:
    kind = spec["type"]
    if isinstance(value, (dict, list)) or value is None:
        return f"must be a scalar, got {type(value).__name__}"
    if kind == "bool":
        if isinstance(value, bool) or value in (0, 1):
            return None
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE or (len(word) >= 2 and any(w.startswith(word) for w in _TRUE + _FALSE)):
            return None
        return f"must be on or off (true/false), got {value!r}"
    if kind == "enum":
        choices: list[str] = spec["enum"]
        word = ("on" if value else "off") if isinstance(value, bool) else str(value).strip().lower()
        lowered = [c.lower() for c in choices]  # PostgreSQL looks enum values up case-insensitively
        if word in lowered:
            return None
        if ("on" in lowered and word in _TRUE) or ("off" in lowered and word in _FALSE):
            return None  # PostgreSQL's hidden boolean spellings of on/off
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"must be one of {', '.join(choices)}, got {value!r}{hint}"
    if kind in ("integer", "real"):
        base = spec.get("unit")
        number = _number(value, base)
        if isinstance(number, str):
            return number
        if kind == "integer":
            number = float(round(number)) if math.isfinite(number) else number  # rint, as parse_int
        low, high = spec["min"], spec["max"]
        if not low <= number <= high:
            return f"{value!r} is out of range: must be between {_show(low, base)} and {_show(high, base)}"
        floor = PATRONI_MINIMUMS.get(name)
        if floor is not None and number < floor:
            return f"must be >= {floor}: below that Patroni ignores it and uses its own default"
        return None
    return None  # string: any text


def parameter_problems(
    parameters: Mapping[str, Any], major: int, managed: Collection[str], path: str = "patroni.parameters"
) -> list[tuple[str, str]]:
    """Every problem of ``parameters`` for PostgreSQL ``major``, each with its dotted path."""
    known = catalog(major)
    problems: list[tuple[str, str]] = []
    for name, value in sorted(parameters.items()):
        p = f"{path}.{name}"
        if name in PATRONI_MANAGED:
            problems.append((p, f"is managed by Patroni ({PATRONI_MANAGED[name]}); remove it"))
            continue
        if name in managed:
            problems.append((p, "is managed by pgha's templates; remove it"))
            continue
        if name in PATRONI_RECOVERY:
            problems.append((p, "is a recovery parameter Patroni writes on each node; remove it"))
            continue
        if "." in name:  # an extension's setting (pg_stat_statements.max): unknown to the core server
            if isinstance(value, (dict, list)) or value is None:
                problems.append((p, f"must be a scalar, got {type(value).__name__}"))
            continue
        spec = known.get(name)
        if spec is None:
            close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append((p, f"is not a PostgreSQL {major} parameter{hint}"))
            continue
        if spec["context"] == "internal":
            problems.append((p, "is fixed when PostgreSQL is built or the cluster initialised (read-only); remove it"))
            continue
        msg = _check_value(name, spec, value)
        if msg:
            problems.append((p, msg))
    return problems


def replication_problems(parameters: Mapping[str, Any], nodes: int | None) -> list[tuple[str, str]]:
    """Replication settings too small for ``nodes`` (``patroni.nodes``): a replica that finds
    no free WAL sender or slot does not stream, silently, until a failover needs it.

    Each replica holds one WAL sender and one slot on the primary (Patroni's
    ``use_slots``); rebuilding a replica runs ``pg_basebackup -X stream``, two more senders.
    Only values set in ``patroni.parameters`` are checked (the templates' own are 10).
    """
    if nodes is None:
        return []
    needs = {"max_wal_senders": (nodes - 1) + 2, "max_replication_slots": nodes - 1}
    why = {
        "max_wal_senders": f"{nodes - 1} replicas + 2 for pg_basebackup rebuilding one",
        "max_replication_slots": f"one slot per replica ({nodes - 1})",
    }
    problems: list[tuple[str, str]] = []
    for name, need in needs.items():
        value = parameters.get(name)
        if value is None or isinstance(value, bool):
            continue
        try:
            number = int(str(value).strip())
        except ValueError:
            continue  # reported by parameter_problems
        if number < need:
            problems.append(
                (
                    f"patroni.parameters.{name}",
                    f"must be >= {need} with patroni.nodes {nodes} ({why[name]}), got {number}",
                )
            )
    return problems


def parameter_bytes(name: str, value: Any, major: int) -> int | None:
    """A memory setting's value in bytes (None: not a memory setting, or not a valid value)."""
    spec = catalog(major).get(name)
    if spec is None or spec.get("unit") not in MEMORY_BASE:
        return None
    number = _number(value, spec["unit"])
    if isinstance(number, str):
        return None
    return int(round(number) * MEMORY_BASE[spec["unit"]])
