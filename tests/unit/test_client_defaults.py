"""The failover clients' defaults are declared once, in clients/php/defaults.json: the
Python client reads that very file (its package copy is a symlink), its Config takes
its field defaults from it, and the file is checked when loaded.
(That PHP reads the same values: tests/tools/test_client_defaults.py.)"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgha_client import Config, Host, conninfo, defaults

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PHP_DEFAULTS = ROOT / "clients" / "php" / "defaults.json"


def test_the_python_package_reads_the_php_packages_file() -> None:
    """One file, not two copies kept in step: replacing the symlink by a copy fails here."""
    assert Path(str(defaults.DEFAULTS_FILE)).samefile(PHP_DEFAULTS)
    file = json.loads(PHP_DEFAULTS.read_text())
    file.pop("$comment")
    assert file == defaults.DEFAULTS


def test_config_fields_default_to_the_file() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Config)}
    for key in ("sslmode", "connect_timeout", "deadline", "backoff_base", "backoff_cap"):
        assert fields[key] == defaults.DEFAULTS[key], key
    assert Host("pg1").port == defaults.PORT
    c = Config.from_dict({"hosts": [{"host": "pg1"}], "dbname": "app", "user": "app"})
    assert (c.hosts[0].port, c.sslmode, c.connect_timeout, c.deadline, c.backoff_base, c.backoff_cap) == (
        defaults.PORT,
        defaults.SSLMODE,
        defaults.CONNECT_TIMEOUT,
        defaults.DEADLINE,
        defaults.BACKOFF_BASE,
        defaults.BACKOFF_CAP,
    )
    assert conninfo_to_dict(conninfo(c))["target_session_attrs"] == defaults.READ_WRITE
    assert conninfo_to_dict(conninfo(c, read_only=True))["target_session_attrs"] == defaults.PREFER_STANDBY


def test_the_defaults_are_valid_settings() -> None:
    """Config validates every value, defaults included: a bad default fails at construction."""
    Config(hosts=(Host("pg1"),), dbname="app", user="app")


GOOD: dict[str, Any] = json.loads(PHP_DEFAULTS.read_text())
BAD = [
    ("missing key", {k: v for k, v in GOOD.items() if k != "deadline"}, "deadline: missing"),
    ("unknown key", {**GOOD, "conect_timeout": 2}, "conect_timeout: unknown key"),
    ("string number", {**GOOD, "connect_timeout": "2"}, "connect_timeout: must be"),
    ("float for int", {**GOOD, "port": 5432.0}, "port: must be"),
    ("bool", {**GOOD, "backoff_cap": True}, "backoff_cap: must be"),
]


@pytest.mark.parametrize("data,message", [pytest.param(d, m, id=i) for i, d, m in BAD])
def test_a_broken_defaults_file_is_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        defaults.load(json.dumps(data))


def test_the_committed_file_loads() -> None:
    assert defaults.load(json.dumps(GOOD)) == defaults.DEFAULTS
