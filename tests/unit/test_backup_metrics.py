"""pgha-backup's node-exporter textfile metrics (node_scripts/backup.py): the text for given
``pgbackrest info`` JSON, the atomic write, and where the render tells the script to write."""

from __future__ import annotations

import importlib.util
import json
import stat
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from cloud_init.common import NODE_SCRIPTS
from cloud_init.monitoring import TEXTFILE_METRICS
from pgha.target import Target
from tests.unit.test_backup_render import render, settings

pytestmark = pytest.mark.unit


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"pgha_node_{name}", NODE_SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


backup = load_script("backup")


def a_backup(label: str, kind: str, stop: int) -> dict[str, Any]:
    """One entry of ``pgbackrest info --output=json``'s backup list (the fields pgha reads)."""
    return {
        "label": label,
        "type": kind,
        "archive": {"start": "000000010000000000000004", "stop": "000000010000000000000004"},
        "timestamp": {"start": stop - 60, "stop": stop},
    }


STANZA_WITH_BACKUPS = {
    "name": "pgha",
    "status": {"code": 0, "message": "ok"},
    "backup": [
        a_backup("20261126-030000F", "full", 1795748460),
        a_backup("20261126-030000F_20261127-030000D", "diff", 1795834860),
    ],
}
STANZA_WITHOUT_BACKUP = {"name": "pgha", "status": {"code": 2, "message": "no valid backups"}, "backup": []}


def samples(text: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_metrics_report_the_last_backups_stop_time_and_type() -> None:
    text = backup.metrics_text(STANZA_WITH_BACKUPS, failing=False)
    assert samples(text) == {
        'pgha_backup_last_success_timestamp_seconds{type="diff"}': "1795834860",
        "pgha_archive_failing": "0",
    }
    assert "# TYPE pgha_backup_last_success_timestamp_seconds gauge\n" in text
    assert text.endswith("\n")


def test_no_backup_no_timestamp_sample_and_archiving_failing_reported() -> None:
    for stanza in (STANZA_WITHOUT_BACKUP, None):  # None: pgbackrest info failed
        assert samples(backup.metrics_text(stanza, failing=True)) == {"pgha_archive_failing": "1"}


def test_metric_names_are_those_monitoring_declares() -> None:
    text = backup.metrics_text(STANZA_WITH_BACKUPS, failing=False)
    names = {key.split("{")[0] for key in samples(text)}
    assert names == {n for n, (file, _, _) in TEXTFILE_METRICS.items() if file == "pgha-backup.prom"}


def test_archive_failing_is_the_node_checks_condition() -> None:
    check = load_script("check_patroni")
    assert backup.ARCHIVE_FAILING in check.ARCHIVER_SQL


def fake_pgbackrest(tmp_path: Path, stdout: str, rc: int = 0) -> str:
    exe = tmp_path / "pgbackrest"
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({stdout!r})\nsys.exit({rc})\n")
    exe.chmod(0o755)
    return str(exe)


def cfg(tmp_path: Path, pgbackrest: str) -> dict[str, Any]:
    return {
        "pgbackrest": pgbackrest,
        "pgbackrest_conf": str(tmp_path / "pgbackrest.conf"),
        "stanza": "pgha",
        "textfile": str(tmp_path / "textfile" / "pgha-backup.prom"),
    }


def test_replica_writes_the_textfile_atomically_and_world_readable(tmp_path: Path) -> None:
    (tmp_path / "textfile").mkdir()
    c = cfg(tmp_path, fake_pgbackrest(tmp_path, json.dumps([STANZA_WITH_BACKUPS])))
    backup.write_metrics(c, leader=False)
    out = Path(c["textfile"])
    assert samples(out.read_text()) == {
        'pgha_backup_last_success_timestamp_seconds{type="diff"}': "1795834860",
        "pgha_archive_failing": "0",
    }
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["pgha-backup.prom"]


def test_unreadable_repository_leaves_no_timestamp(tmp_path: Path) -> None:
    (tmp_path / "textfile").mkdir()
    c = cfg(tmp_path, fake_pgbackrest(tmp_path, "", rc=1))
    backup.write_metrics(c, leader=False)
    assert samples(Path(c["textfile"]).read_text()) == {"pgha_archive_failing": "0"}


def test_render_points_the_script_at_node_exporters_textfile_directory(tmp_path: Path) -> None:
    s = settings()
    node = render(s)
    cfg = json.loads(node.file("/backup.json").content)
    assert cfg["textfile"] == "/var/lib/prometheus/node-exporter/pgha-backup.prom"
    runcmd = yaml.safe_load(node.user_data)["runcmd"]
    assert ["chgrp", "postgres", "/var/lib/prometheus/node-exporter"] in runcmd
    assert ["chmod", "g+w,+t", "/var/lib/prometheus/node-exporter"] in runcmd
    lab = Target.lab(s, tmp_path, "127.90", "pgha", "/opt/pgha/patroni")
    lab_cfg = json.loads(render(s, lab).file("/backup.json").content)
    assert lab_cfg["textfile"] == f"{lab.monitoring.textfile_dir}/pgha-backup.prom"
