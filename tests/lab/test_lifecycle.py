"""The README's main command end to end, as a user runs it (dev stack): up, status, psql
with psql's own arguments, up again, down (no process, no port left), up from existing
data, up with another prefix (refused), up --fresh (a new lab), down --clean; and a down that leaves no waiting node behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab import control, observe, rundir
from lab.errors import LabError
from lab.topology import Topology

from .conftest import PREFIXES, lab_fixture, wait_for

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]

#: A fresh run dir, nothing started: the test drives ``python -m lab`` itself.
cli_lab = lab_fixture("cli", "dev", scope="function", start=False)


def lab(topo: Topology, *args: str, prefix: str = PREFIXES["cli"]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        check=False,
        args=[sys.executable, "-m", "lab", "--stack", "dev", "--run-dir", str(topo.run_dir), "--prefix", prefix, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_up_status_down_cycle(cli_lab: Topology) -> None:
    topo = cli_lab
    p = lab(topo, "up")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "validation passed" in p.stdout
    checks = len(topo.etcd_names) + 2 * len(
        topo.pg_names
    )  # a check script per node, --validate-config per Patroni node
    assert p.stdout.count("\n  PASS  ") == checks
    assert "\n  FAIL  " not in p.stdout
    assert f"started {len(topo.etcd_names)} etcd, {len(topo.pg_names)} Patroni" in p.stdout
    secrets = topo.passwords()
    for pw in secrets.__dict__.values():
        assert pw not in p.stdout + p.stderr, "a password reached the lab's output"
    first_leader = observe.leader(topo)

    p = lab(topo, "status")
    assert p.returncode == 0, p.stdout + p.stderr
    p = lab(topo, "psql", "-X", "-tAc", "select 6 * 7")  # psql's options reach psql
    assert (p.returncode, p.stdout.strip()) == (0, "42"), p.stdout + p.stderr
    p = lab(topo, "up")  # on a running lab: safe, nothing restarted
    assert p.returncode == 0, p.stdout + p.stderr
    assert "already running" in p.stdout, p.stdout + p.stderr
    assert observe.leader(topo) == first_leader

    p = lab(topo, "down")
    assert p.returncode == 0, p.stdout + p.stderr
    assert control.leftover_pids(topo) == []
    assert observe.bound_ports(topo) == []

    p = lab(topo, "up")  # from the existing data and secrets
    assert p.returncode == 0, p.stdout + p.stderr
    assert topo.passwords() == secrets

    p = lab(topo, "up", prefix="127.76")  # another prefix on this run dir: refused, nothing touched
    assert p.returncode == 1, p.stdout + p.stderr
    assert "--prefix asks for prefix 127.76" in p.stderr, p.stderr
    assert "--fresh" in p.stderr, p.stderr
    assert control.running(topo)
    assert rundir.lab_meta(topo.run_dir)["prefix"] == PREFIXES["cli"]

    p = lab(topo, "up", "--fresh")  # stops the running lab, discards its run dir, starts a new one
    assert p.returncode == 0, p.stdout + p.stderr
    assert "discarding" in p.stdout
    assert topo.passwords() != secrets

    p = lab(topo, "down", "--clean")
    assert p.returncode == 0, p.stdout + p.stderr
    assert not topo.run_dir.exists()


def processes_naming(path: Path) -> list[str]:
    """Command lines of live processes that name ``path``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(f"{d.name}: {cmdline.strip()}")
    return found


def test_down_leaves_no_node_waiting_for_a_gone_etcd(cli_lab: Topology) -> None:
    """A Patroni node restarted while etcd is down sits in its pre-start check, which waits for
    etcd for ever; `down` must stop that check too, not only the shell that runs it."""
    topo = cli_lab
    p = lab(topo, "up")
    assert p.returncode == 0, p.stdout + p.stderr
    for n in topo.etcd_names:
        control.signal_node(topo, n, signal.SIGKILL)
    node = topo.pg_names[-1]
    control.signal_node(topo, node, signal.SIGKILL)
    control.request_start(topo, node)
    wait_for(
        lambda: any("pgha-check-etcd" in c for c in processes_naming(topo.run_dir)),
        timeout=30,
        what=f"{node}'s pre-start check waiting for etcd",
    )

    p = lab(topo, "down")
    assert p.returncode == 0, p.stdout + p.stderr
    assert processes_naming(topo.run_dir) == []


def test_a_supervisor_that_fails_while_starting_leaves_nothing(cli_lab: Topology) -> None:
    """A start that fails half-way (here HAProxy's log cannot be opened, after etcd and Patroni
    started) stops what was started, instead of leaving it running without a supervisor."""
    topo = cli_lab
    rundir.prepare(topo)
    (topo.run_dir / "logs" / "haproxy.log").mkdir(parents=True)
    with contextlib.suppress(LabError):  # it may be gone before it is seen running
        control.start_supervisor(topo)
    wait_for(lambda: processes_naming(topo.run_dir) == [], timeout=120, what="nothing of the lab left running")
    assert "IsADirectoryError" in (topo.run_dir / "logs" / "supervisor.log").read_text()
