"""The README's main command end to end, as a user runs it: up, status, up again,
down (no process, no port left), up from existing data, down --clean (dev stack)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import control, observe, rundir
from lab.topology import scratch_dir

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def lab(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "--stack", "dev", "--run-dir", str(run_dir), "--prefix", "127.78", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_up_status_down_cycle() -> None:
    run_dir = scratch_dir("pgha-lab-tests") / f"dev-cli-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        p = lab(run_dir, "up")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "validation passed" in p.stdout
        assert p.stdout.count("\n  PASS  ") == 9 and "\n  FAIL  " not in p.stdout
        secrets = rundir.open_lab(run_dir).passwords()
        for pw in secrets.__dict__.values():
            assert pw not in p.stdout + p.stderr, "a password reached the lab's output"
        topo = rundir.open_lab(run_dir)
        first_leader = observe.leader(topo)

        p = lab(run_dir, "status")
        assert p.returncode == 0, p.stdout + p.stderr
        p = lab(run_dir, "up")  # on a running lab: safe, nothing restarted
        assert p.returncode == 0 and "already running" in p.stdout, p.stdout + p.stderr
        assert observe.leader(topo) == first_leader

        p = lab(run_dir, "down")
        assert p.returncode == 0, p.stdout + p.stderr
        assert control.leftover_pids(topo) == [] and observe.bound_ports(topo) == []

        p = lab(run_dir, "up")  # from the existing data and secrets
        assert p.returncode == 0, p.stdout + p.stderr
        p = lab(run_dir, "down", "--clean")
        assert p.returncode == 0, p.stdout + p.stderr
        assert not run_dir.exists()
    finally:
        if run_dir.exists():
            lab(run_dir, "down")
