"""backup.* settings: every mistake rejected with its dotted path, defaults resolved."""

from __future__ import annotations

from typing import Any

import pytest

from pgha.settings import SettingsError, load
from tests.unit.test_settings import with_

pytestmark = pytest.mark.unit

ON = {"backup.enabled": True, "backup.bucket": "pgha-dev-backups-1a2b"}

BAD: list[tuple[str, dict[str, Any], set[str]]] = [
    ("enabled without bucket", {"backup.enabled": True}, {"backup.bucket"}),
    ("bucket uppercase", {**ON, "backup.bucket": "PGHA-backups"}, {"backup.bucket"}),
    ("bucket too short", {**ON, "backup.bucket": "pg"}, {"backup.bucket"}),
    ("bucket too long", {**ON, "backup.bucket": "p" * 64}, {"backup.bucket"}),
    ("bucket with dots", {**ON, "backup.bucket": "pgha.backups"}, {"backup.bucket"}),
    ("bucket ends with dash", {**ON, "backup.bucket": "pgha-backups-"}, {"backup.bucket"}),
    ("bucket underscore", {**ON, "backup.bucket": "pgha_backups"}, {"backup.bucket"}),
    ("bucket xn-- prefix", {**ON, "backup.bucket": "xn--pgha"}, {"backup.bucket"}),
    ("bucket -s3alias suffix", {**ON, "backup.bucket": "pgha-s3alias"}, {"backup.bucket"}),
    ("bucket not a string", {**ON, "backup.bucket": 42}, {"backup.bucket"}),
    ("region uppercase", {**ON, "backup.region": "GRA"}, {"backup.region"}),
    ("region with digits", {**ON, "backup.region": "gra11"}, {"backup.region"}),
    ("full calendar invalid", {**ON, "backup.full_calendar": "Funday 25:00"}, {"backup.full_calendar"}),
    ("diff calendar invalid", {**ON, "backup.diff_calendar": "every day"}, {"backup.diff_calendar"}),
    ("calendar invalid while disabled", {"backup.full_calendar": "never"}, {"backup.full_calendar"}),
    ("retention full 0", {**ON, "backup.retention_full": 0}, {"backup.retention_full"}),
    ("retention diff 0", {**ON, "backup.retention_diff": 0}, {"backup.retention_diff"}),
    ("retention not int", {**ON, "backup.retention_full": "2"}, {"backup.retention_full"}),
    ("archive timeout too small", {**ON, "backup.archive_timeout": 5}, {"backup.archive_timeout"}),
    ("archive timeout too large", {**ON, "backup.archive_timeout": 7200}, {"backup.archive_timeout"}),
    ("process max 0", {**ON, "backup.process_max": 0}, {"backup.process_max"}),
    ("enabled not bool", {"backup.enabled": "yes"}, {"backup.enabled"}),
    ("unknown backup key", {**ON, "backup.retention": 3}, {"backup.retention"}),
    ("backup not a mapping", {"backup": "on"}, {"backup"}),
]


@pytest.mark.parametrize("changes,paths", [pytest.param(c, p, id=i) for i, c, p in BAD])
def test_bad_backup_config_is_rejected_with_its_paths(changes: dict[str, Any], paths: set[str]) -> None:
    with pytest.raises(SettingsError) as e:
        load("dev", with_(changes))
    assert e.value.paths == paths, str(e.value)


def test_every_backup_problem_at_once() -> None:
    raw = with_({"backup.enabled": True, "backup.retention_full": 0, "backup.diff_calendar": "nope"})
    with pytest.raises(SettingsError) as e:
        load("dev", raw)
    assert e.value.paths == {"backup.bucket", "backup.retention_full", "backup.diff_calendar"}
    assert "systemd calendar" in str(e.value)
    assert "required when backup.enabled" in str(e.value)


def test_backup_defaults() -> None:
    s = load("dev", with_({}))
    b = s.backup
    assert (b.enabled, b.bucket, b.archive_timeout, b.retention_full, b.retention_diff) == (False, "", 60, 2, 7)
    assert b.region == "gra"  # GRA11's letters: the Object Storage region beside the cluster


def test_backup_region_derived_from_network_region_or_explicit() -> None:
    assert load("dev", with_({**ON, "network.region": "WAW1"})).backup.region == "waw"
    assert load("dev", with_({**ON, "backup.region": "sbg"})).backup.region == "sbg"


@pytest.mark.parametrize("expr", ["daily", "Sun *-*-* 01:00:00", "*-*-* 00/6:00:00", "Mon..Fri 02:30"])
def test_valid_calendars_pass(expr: str) -> None:
    assert load("dev", with_({**ON, "backup.full_calendar": expr})).backup.full_calendar == expr
