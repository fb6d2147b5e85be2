"""The committed description of PostgreSQL's settings (pgha/data/postgres-15-settings.json,
which patroni.parameters is checked against) is what the installed PostgreSQL 15 says:
``scripts/pg_settings_data.py --check`` runs a throwaway cluster, reads pg_settings and
compares; a minor release that changes a setting fails here until the file is regenerated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tools
ROOT = Path(__file__).resolve().parents[2]


PG_LIB = Path("/usr/lib/postgresql")


def test_committed_data_matches_the_installed_server() -> None:
    if not (PG_LIB / "15/bin/postgres").exists():
        others = sorted(d.name for d in PG_LIB.iterdir() if (d / "bin/postgres").exists()) if PG_LIB.is_dir() else []
        if not others:
            pytest.fail("PostgreSQL is not installed: run scripts/setup.sh")
        # Not a missing tool: another distribution (e.g. Ubuntu's 16) ships another major.
        pytest.skip(f"this host's distribution ships PostgreSQL {', '.join(others)}, not 15 (Debian 12's)")
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts/pg_settings_data.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "matches postgres (PostgreSQL) 15." in p.stdout
