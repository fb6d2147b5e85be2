"""Rewind THIS lab's cluster to a point in time, in place: the runbook of docs/backups.md
("Rewinding THIS cluster"), step by step, with the same commands a node runs on a VM.

1. Check the target against the repository; refuse before anything changes.
2. A way back: a restore point of the present, a commit after it (a time target is
   reached at the first commit after it), archived, and a full backup.
3. Stop Patroni everywhere, replicas first, the leader last. Not paused: a paused Patroni
   leaves PostgreSQL running when it stops (Patroni's ``Ha.shutdown``), and a restore
   refuses a running server.
4. On the old leader: keep its configuration files (Patroni's, in the data directory: the
   backup holds those of the node that took it, another listen address), ``pgbackrest
   --delta --type=... restore``, put the files back, then ``pg_ctl start``
   until PostgreSQL has replayed to the target and promoted onto a new timeline, then
   ``pg_ctl stop``. If that fails (a restore point that does not exist, a transaction id
   never reached), the other nodes are untouched: they are started again and the
   half-restored node is re-created from them (:func:`roll_back`).
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
from pathlib import Path

from pgha.backup import RestoreSpec

from . import backup, control, observe
from .errors import LabError
from .supervisor import alive
from .topology import Topology

#: What Patroni writes into the data directory for THIS node (listen address, paths, access).
PATRONI_CONFIG_FILES = ("postgresql.conf", "postgresql.base.conf", "pg_hba.conf", "pg_ident.conf")


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
    # A time target is reached at the first commit after it: an idle cluster has none, and
    # PostgreSQL would stop with "recovery ended before configured recovery target".
    backup.superuser_sql(topo, lead, "SELECT pg_current_xact_id()")
    backup.wait_archived(topo)
    backup.run_job(topo, "full")

    for n in [*others, lead]:
        stop_patroni(topo, n)
    try:
        restore_and_promote(topo, lead, spec, timeout)
    except LabError as e:
        try:
            roll_back(topo, lead, others, timeout)
        except LabError as again:
            raise LabError(
                f"rewind failed on {lead} ({e}) and so did the roll-back ({again}); {', '.join(others)} "
                f"still hold the whole history: start them (python -m lab start NODE), then re-create {lead}"
            ) from e
        raise LabError(
            f"rewind failed on {lead} and was rolled back: the cluster runs as before, from the other "
            f"nodes' data; {lead} was re-created from them. Cause: {e}"
        ) from e

    for n in others:
        _run(topo, ["find", topo.layout(n).pg_data_dir, "-mindepth", "1", "-delete"], f"emptying {n}'s data directory")

    scope = topo.settings.patroni.scope
    lay = topo.layout(lead)
    patronictl = [f"{lay.patroni_venv}/bin/patronictl", "-c", f"{lay.etc_dir}/patroni.yml"]
    p = observe.run_as_user([*patronictl, "remove", scope], timeout=60, stdin=f"{scope}\nYes I am aware\n")
    if p.returncode != 0:
        raise LabError(f"patronictl remove {scope} failed: {(p.stderr or p.stdout).strip()[-600:]}")

    control.request_start(topo, lead)
    _wait(lambda: observe.leader(topo) == lead, timeout, f"{lead} leading the rewound cluster")
    # Before any replica (the module's docstring, step 7). The job acts only once the node
    # serves as primary (Patroni's /primary and out of recovery), a moment after Patroni
    # takes the leader key: until one run acted, nobody backed up, so run it again.
    _wait(lambda: backup.acted(backup.run_job(topo, "full")) == [lead], timeout, f"a full backup on {lead}")
    # Patroni started the node as a standby and promoted it: one more timeline than pg_ctl's.
    timeline = int(backup.superuser_sql(topo, lead, "SELECT timeline_id FROM pg_control_checkpoint()"))
    for n in others:
        control.request_start(topo, n)
    observe.wait_healthy(topo, timeout=timeout)
    return Rewound(restored_on=lead, way_back=way_back, timeline=timeline)


def restore_and_promote(topo: Topology, node: str, spec: RestoreSpec, timeout: float) -> None:
    """Step 4: restore ``node`` to the target, start PostgreSQL until it promotes, stop it."""
    lay = topo.layout(node)
    # The backup holds the configuration of the node that took it (its listen address, and in
    # the lab its paths): keep this node's own, as Patroni wrote it.
    kept = topo.run_dir / node / "rewind-config"
    _run(topo, ["mkdir", "-p", str(kept)], "keeping the node's configuration")
    _run(topo, ["cp", "-p", *(f"{lay.pg_data_dir}/{f}" for f in PATRONI_CONFIG_FILES), str(kept)], "keeping config")
    p = backup.pgbackrest(topo, node, "--delta", *spec.pgbackrest_options(), "restore", timeout=timeout)
    if p.returncode != 0:
        raise LabError(f"pgbackrest restore failed: {(p.stderr or p.stdout).strip()[-600:]}")
    _run(topo, ["cp", "-p", *(f"{kept}/{f}" for f in PATRONI_CONFIG_FILES), lay.pg_data_dir], "putting config back")
    pg_ctl = [f"{lay.pg_bin_dir}/pg_ctl", "-D", lay.pg_data_dir]
    log = topo.run_dir / "logs" / f"{node}-rewind.log"
    try:
        _run(topo, [*pg_ctl, "-l", str(log), "-w", "-t", str(int(timeout)), "start"], "pg_ctl start")

        def promoted() -> bool:
            if control.postmaster_of(topo, node) is None:
                raise LabError(f"PostgreSQL stopped during recovery: {_fatal(log)}")
            return _promoted(topo, node)

        _wait(promoted, timeout, f"{node} replayed to the target and promoted")
    except LabError as e:
        raise LabError(str(e) if "FATAL" in str(e) else f"{e}; {_fatal(log)}") from e
    finally:
        if control.postmaster_of(topo, node) is not None:
            _run(topo, [*pg_ctl, "-m", "fast", "-w", "stop"], "pg_ctl stop")


def _fatal(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "FATAL" in ln] if log.exists() else []
    return lines[-1].strip() if lines else f"see {log}"


def roll_back(topo: Topology, restored: str, others: list[str], timeout: float) -> None:
    """The other nodes still hold the whole history and the DCS still describes it: start
    them (one takes over), then re-create the half-restored node from them."""
    for n in others:
        control.request_start(topo, n)
    _wait(lambda: observe.leader(topo) in others, timeout, "a leader among the untouched nodes")
    _run(topo, ["find", topo.layout(restored).pg_data_dir, "-mindepth", "1", "-delete"], f"emptying {restored}")
    control.request_start(topo, restored)
    observe.wait_healthy(topo, timeout=timeout)
