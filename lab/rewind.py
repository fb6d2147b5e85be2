"""Rewind THIS lab's cluster to a point in time, in place: the runbook of docs/backups.md
("Rewinding THIS cluster"), step by step, with the same commands a node runs on a VM.

1. Check the target against the repository; refuse before anything changes.
2. A way back: a restore point of the present, archived, and a full backup.
3. Stop Patroni everywhere, replicas first, the leader last. Not paused: a paused Patroni
   leaves PostgreSQL running when it stops (Patroni's ``Ha.shutdown``), and a restore
   refuses a running server.
4. On the old leader: ``pgbackrest --delta --type=... restore``, then ``pg_ctl start``
   until PostgreSQL has replayed to the target and promoted onto a new timeline, then
   ``pg_ctl stop``.
5. Empty the other nodes' data directories: they hold history past the target.
6. ``patronictl remove <scope>``: the DCS still describes the old timeline.
7. Start Patroni on the restored node (it initialises the cluster from its data, starting
   PostgreSQL as a standby and promoting it: one more timeline), take a
   full backup on the new timeline, and only then start the others. A replica restores
   the repository's newest backup: before that backup, the newest was step 2's, from
   the old timeline past the fork, which no replica of the new timeline can start from.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from pgha.backup import RestoreSpec

from . import backup, control, observe
from .errors import LabError
from .supervisor import alive
from .topology import Topology


@dataclass(frozen=True)
class Rewound:
    restored_on: str  #: the node restored from the repository (the old leader)
    way_back: str  #: restore point of the present taken before anything changed
    timeline: int  #: the cluster's timeline after the rewind


def _run(topo: Topology, cmd: list[str], what: str, timeout: float = 900) -> str:
    p = observe.run_as_user(cmd, timeout=timeout)
    if p.returncode != 0:
        raise LabError(f"{what} failed (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-600:]}")
    return p.stdout


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    raise LabError(f"rewind: {what} not reached within {timeout:.0f}s")


def _promoted(topo: Topology, node: str) -> bool:
    try:
        return backup.superuser_sql(topo, node, "SELECT pg_is_in_recovery()") == "f"
    except LabError:  # not accepting connections yet
        return False


def stop_patroni(topo: Topology, node: str, timeout: float = 120) -> None:
    """``systemctl stop pgha-patroni``: SIGTERM to Patroni, which stops its PostgreSQL (fast)."""
    pids = control.signal_node(topo, node, signal.SIGTERM, postgres=False)
    _wait(
        lambda: not any(alive(p) for p in pids) and control.postmaster_of(topo, node) is None,
        timeout,
        f"{node} stopped",
    )


def rewind(topo: Topology, spec: RestoreSpec, timeout: float = 900) -> Rewound:
    backup.require(topo)
    lead = observe.leader(topo)
    if not lead:
        raise LabError("rewind refused, nothing changed: the cluster has no leader")
    problem = backup.target_problem(spec, backup.info(topo).get("backup") or [], backup.archive_end(topo))
    if problem:
        raise LabError(f"rewind refused, nothing changed: {problem}")
    others = [n for n in topo.pg_names if n != lead]

    way_back = f"before-rewind-{int(time.time())}"
    backup.superuser_sql(topo, lead, f"SELECT pg_create_restore_point('{way_back}')")
    backup.wait_archived(topo)
    backup.run_job(topo, "full")

    for n in [*others, lead]:
        stop_patroni(topo, n)

    lay = topo.layout(lead)
    p = backup.pgbackrest(topo, lead, "--delta", *spec.pgbackrest_options(), "restore", timeout=timeout)
    if p.returncode != 0:
        raise LabError(f"pgbackrest restore on {lead} failed: {(p.stderr or p.stdout).strip()[-600:]}")
    pg_ctl = [f"{lay.pg_bin_dir}/pg_ctl", "-D", lay.pg_data_dir]
    log = topo.run_dir / "logs" / f"{lead}-rewind.log"
    _run(topo, [*pg_ctl, "-l", str(log), "-w", "-t", str(int(timeout)), "start"], f"pg_ctl start on {lead}")
    try:
        _wait(lambda: _promoted(topo, lead), timeout, f"{lead} replayed to the target and promoted")
    finally:
        _run(topo, [*pg_ctl, "-m", "fast", "-w", "stop"], f"pg_ctl stop on {lead}")

    for n in others:
        _run(topo, ["find", topo.layout(n).pg_data_dir, "-mindepth", "1", "-delete"], f"emptying {n}'s data directory")

    scope = topo.settings.patroni.scope
    patronictl = [f"{lay.patroni_venv}/bin/patronictl", "-c", f"{lay.etc_dir}/patroni.yml"]
    p = observe.run_as_user([*patronictl, "remove", scope], timeout=60, stdin=f"{scope}\nYes I am aware\n")
    if p.returncode != 0:
        raise LabError(f"patronictl remove {scope} failed: {(p.stderr or p.stdout).strip()[-600:]}")

    control.request_start(topo, lead)
    _wait(lambda: observe.leader(topo) == lead, timeout, f"{lead} leading the rewound cluster")
    backup.run_job(topo, "full")  # before any replica: see the module's docstring, step 7
    # Patroni started the node as a standby and promoted it: one more timeline than pg_ctl's.
    timeline = int(backup.superuser_sql(topo, lead, "SELECT timeline_id FROM pg_control_checkpoint()"))
    for n in others:
        control.request_start(topo, n)
    observe.wait_healthy(topo, timeout=timeout)
    return Rewound(restored_on=lead, way_back=way_back, timeline=timeline)
