"""The qemu backend: the dev stack with pg1 as a full VM (its own kernel, udev, softdog),
the other nodes as containers on the same vRack bridge; the deploy's validation with the
stack's ``watchdog: required`` on the VM; the data volume's by-id link made by the guest's
udev; the frozen-primary drill (the softdog resets the frozen VM before a replica is
promoted, no acknowledged write lost); ``down`` leaves nothing.

Opt-in: TCG (software emulation, no hardware virtualization here) makes this ~20-30 min
on 2 cores, so it runs only with PGHA_MACHINES_QEMU=1 and says so when it skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from machines import cluster as c
from machines import qemu
from machines.net import netns_exists
from machines.nodes import volume_id

pytestmark = pytest.mark.machines
ROOT = Path(__file__).resolve().parents[2]
STACK = "dev"
NAME = "qemutest"  #: its own namespaces and hostnames: runs beside a dev stack that is up
ENV = "PGHA_MACHINES_QEMU"


def _problems() -> str | None:
    """Why the opted-in test cannot run here: a failure, not a skip (setup-machines.sh installs it all)."""
    problems = c.prerequisites() + qemu.prerequisites()
    if netns_exists(f"pgha-{NAME}"):
        problems.append(f"machines {NAME} already up (python -m machines --stack {STACK} --name {NAME} down)")
    return "; ".join(problems) or None


def _cli(run_dir: Path, *args: str, timeout: float = 4000) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "machines", "--stack", STACK, "--name", NAME, "--run-dir", str(run_dir), *args]
    return subprocess.run(check=False, args=cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_vm_watchdog_by_id_volume_and_frozen_primary() -> None:
    if os.environ.get(ENV) != "1":
        pytest.skip(f"opt-in: qemu VMs boot under TCG here (~13 min for this test on 2 cores); set {ENV}=1 to run it")
    problem = _problems()
    if problem:
        pytest.fail(problem)
    run_dir = Path(tempfile.mkdtemp(prefix="pgha-machines-qemu-test-"))
    m = c.open_machines(STACK, run_dir, NAME)
    try:
        up = _cli(run_dir, "up", "--vms", "pg1")
        assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
        assert "accel" in up.stdout
        for node in ("etcd1", "etcd2", "etcd3", "pg1", "pg2", "pg3"):
            assert f"PASS  {node}" in up.stdout, up.stdout
        # The guest's udev made OVH's by-id name of the data volume, and it is mounted.
        serial = volume_id("pg1", NAME)[:20]
        probe = _cli(
            run_dir,
            "ssh",
            "pg1",
            "--",
            f"readlink -f /dev/disk/by-id/virtio-{serial}; findmnt -n -o SOURCE /var/lib/postgresql;"
            " stat -c %U /dev/watchdog; cat /sys/class/watchdog/watchdog0/identity",
            timeout=120,
        )
        lines = probe.stdout.split()
        assert lines[:2] == ["/dev/vdb", "/dev/vdb"], probe.stdout + probe.stderr
        assert lines[2] == "postgres", probe.stdout
        assert "Software Watchdog" in probe.stdout, probe.stdout
        drill = _cli(run_dir, "drill", "frozen-primary", timeout=2400)
        assert drill.returncode == 0, drill.stdout + drill.stderr
        assert "reset" in drill.stdout, drill.stdout
    finally:
        down = _cli(run_dir, "down", timeout=600)
        m = c.open_machines(STACK, run_dir, NAME)
        left = c.leftovers(m)
        if down.returncode == 0 and not left:
            shutil.rmtree(run_dir, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert left == [], left
    assert not netns_exists(f"pgha-{NAME}")
