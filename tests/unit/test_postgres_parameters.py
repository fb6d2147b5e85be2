"""patroni.parameters: names, types, units, ranges and enum values as PostgreSQL 15 defines them
(pgha/data/postgres-15-settings.json), every problem at once with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha.postgres_parameters import catalog, parameter_bytes, parameter_problems
from pgha.settings import MANAGED_PARAMETERS, SettingsError, load
from pgha.target import LAB_PG_PARAMETERS
from tests.unit.test_settings import with_

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

# (case id, parameters, failing names)
BAD: list[tuple[str, dict[str, Any], set[str]]] = [
    ("typo", {"shared_buffer": "2GB"}, {"shared_buffer"}),
    ("not a size", {"shared_buffers": "lots"}, {"shared_buffers"}),
    ("lowercase unit", {"work_mem": "8mb"}, {"work_mem"}),
    ("time unit on a size", {"work_mem": "8s"}, {"work_mem"}),
    ("unit on a unitless int", {"max_connections": "200MB"}, {"max_connections"}),
    ("below the server minimum", {"shared_buffers": "64kB"}, {"shared_buffers"}),
    ("above the server maximum", {"maintenance_work_mem": "3TB"}, {"maintenance_work_mem"}),
    ("real out of range", {"checkpoint_completion_target": 1.5}, {"checkpoint_completion_target"}),
    ("bad enum", {"huge_pages": "maybe"}, {"huge_pages"}),
    ("bool for a non-bool enum", {"wal_compression": "yes please"}, {"wal_compression"}),
    ("bad bool", {"jit": "sometimes"}, {"jit"}),
    ("bool for an int", {"work_mem": True}, {"work_mem"}),
    ("read-only setting", {"block_size": 8192}, {"block_size"}),
    ("patroni sets it", {"listen_addresses": "*"}, {"listen_addresses"}),
    ("patroni sets it too", {"cluster_name": "x"}, {"cluster_name"}),
    ("recovery parameter", {"primary_conninfo": "host=x"}, {"primary_conninfo"}),
    ("below patroni's minimum", {"max_connections": 10}, {"max_connections"}),
    ("pgha's template owns it", {"ssl": "off"}, {"ssl"}),
    ("non-scalar", {"work_mem": ["8MB"]}, {"work_mem"}),
    ("non-scalar extension setting", {"pg_stat_statements.max": {"a": 1}}, {"pg_stat_statements.max"}),
    ("case matters", {"Shared_Buffers": "1GB"}, {"Shared_Buffers"}),
    ("too few wal senders for 3 nodes", {"max_wal_senders": 3}, {"max_wal_senders"}),
    ("too few slots for 3 nodes", {"max_replication_slots": "1"}, {"max_replication_slots"}),
]


@pytest.mark.parametrize("params,names", [pytest.param(p, n, id=i) for i, p, n in BAD])
def test_bad_parameter_is_rejected_with_its_path(params: dict[str, Any], names: set[str]) -> None:
    with pytest.raises(SettingsError) as exc:
        load("test", with_({"patroni.parameters": {**params, "effective_cache_size": "4GB"}}))
    assert exc.value.paths == {f"patroni.parameters.{n}" for n in names}, str(exc.value)


GOOD: dict[str, Any] = {
    "shared_buffers": "2GB",
    "effective_cache_size": "6GB",
    "work_mem": 4096,  # a bare number counts the base unit (kB)
    "maintenance_work_mem": "512MB",
    "wal_buffers": -1,  # -1: auto, within the server's range
    "max_connections": 200,
    "checkpoint_timeout": "15min",
    "statement_timeout": "30s",
    "deadlock_timeout": 1000,
    "checkpoint_completion_target": 0.9,
    "random_page_cost": "1.1",
    "huge_pages": "try",
    "synchronous_commit": "remote_apply",
    "wal_compression": True,  # YAML true: PostgreSQL's hidden 'on'
    "jit": False,
    "autovacuum": "on",
    "log_min_duration_statement": "250ms",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.max": 10000,  # extension settings pass through
    "max_wal_size": "4GB",
    "vacuum_cost_delay": "2ms",
}


def test_valid_parameters_pass() -> None:
    s = load("test", with_({"patroni.parameters": GOOD}))
    assert s.patroni.parameters == GOOD


def test_every_problem_at_once_with_a_suggestion() -> None:
    with pytest.raises(SettingsError) as exc:
        load("test", with_({"patroni.parameters": {"shared_buffer": "2GB", "work_mem": "lots", "port": 5433}}))
    text = str(exc.value)
    assert exc.value.paths == {f"patroni.parameters.{n}" for n in ("shared_buffer", "work_mem", "port")}
    assert "did you mean 'shared_buffers'?" in text
    assert "units B, kB, MB, GB, TB" in text
    assert "use patroni.port" in text


def test_out_of_range_names_the_bounds_in_units() -> None:
    (problem,) = parameter_problems({"shared_buffers": "64kB"}, 15, ())
    assert "must be between 128kB and " in problem[1], problem


def test_rendered_parameters_are_valid_postgres_15_settings() -> None:
    """What the templates and the lab set themselves passes the same check (the managed
    names aside: they are what pgha and Patroni own)."""
    doc = yaml.safe_load((ROOT / "tests/golden/dev/patroni/pg1/files/etc/pgha/patroni.yml").read_text())
    rendered = {**doc["bootstrap"]["dcs"]["postgresql"]["parameters"], **doc["postgresql"]["parameters"]}
    rendered |= LAB_PG_PARAMETERS
    assert set(rendered) <= set(catalog(15))
    owned = MANAGED_PARAMETERS | {"hot_standby"}
    assert parameter_problems({k: v for k, v in rendered.items() if k not in owned}, 15, ()) == []


@pytest.mark.parametrize(
    "name,value,expected",
    [
        ("shared_buffers", "2GB", 2 * 1024**3),
        ("shared_buffers", 16, 16 * 8192),
        ("work_mem", "1.5MB", 1536 * 1024),
        ("max_connections", 100, None),
        ("shared_buffers", "lots", None),
    ],
)
def test_parameter_bytes(name: str, value: Any, expected: int | None) -> None:
    assert parameter_bytes(name, value, 15) == expected


def test_data_carries_units_enum_values_and_contexts() -> None:
    """What --describe-config alone would not give, and the checks rely on."""
    settings = catalog(15)
    assert settings["shared_buffers"]["unit"] == "8kB"
    assert settings["huge_pages"]["enum"] == ["off", "on", "try"]
    assert settings["block_size"]["context"] == "internal"
    assert len(settings) > 300


@pytest.mark.parametrize(
    "nodes, senders, slots, paths",
    [
        (3, 4, 4, set()),
        (5, 5, 4, {"patroni.parameters.max_wal_senders"}),
        (7, 8, 5, {"patroni.parameters.max_replication_slots"}),
        (9, 10, 8, set()),  # the templates' own 10 fits the largest cluster
    ],
)
def test_replication_settings_fit_the_cluster(nodes: int, senders: int, slots: int, paths: set[str]) -> None:
    raw = with_(
        {"patroni.nodes": nodes, "patroni.parameters": {"max_wal_senders": senders, "max_replication_slots": slots}}
    )
    if not paths:
        load("test", raw)
        return
    with pytest.raises(SettingsError) as exc:
        load("test", raw)
    assert exc.value.paths == paths, str(exc.value)
    assert f"patroni.nodes {nodes}" in str(exc.value)
