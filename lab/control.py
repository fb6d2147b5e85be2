"""Controlling a lab's processes: start the supervisor, ask it to (re)start a daemon,
signal a node, stop everything by pid, rotate certificates in place. The supervisor
(lab/supervisor.py) owns the daemons; this module talks to it through ``state.json``
(its pids) and ``ctl/*.json`` (start requests)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pgha.settings import ROOT

from .errors import LabError
from .observe import served_serials
from .rundir import lab_file, open_lab, prefix_of, rewrite_certs
from .supervisor import alive, postmaster_pid
from .topology import Topology


def state(topo: Topology) -> dict[str, Any] | None:
    """The supervisor's ``state.json`` if the supervisor is alive."""
    try:
        st: dict[str, Any] = json.loads((topo.run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return st if alive(st.get("supervisor")) else None


def running(topo: Topology) -> bool:
    return state(topo) is not None


def pid_of(topo: Topology, name: str) -> int | None:
    st = state(topo)
    pid = (st or {}).get("procs", {}).get(name)
    return pid if alive(pid) else None


def postmaster_of(topo: Topology, name: str) -> int | None:
    pid = postmaster_pid(Path(topo.layout(name).pg_data_dir))
    return pid if alive(pid) else None


def start_supervisor(topo: Topology) -> None:
    with open(topo.run_dir / "logs" / "supervisor.log", "ab") as log:  # the child keeps its own descriptor
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab",
                "_supervise",
                "--stack",
                topo.stack,
                "--run-dir",
                str(topo.run_dir),
                "--prefix",
                prefix_of(topo),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while not running(topo):
        if time.monotonic() > deadline:
            raise LabError(f"supervisor did not start; see {topo.run_dir}/logs/supervisor.log")
        time.sleep(0.05)


def request_start(topo: Topology, node: str, timeout: float = 10) -> int:
    """Ask the supervisor to (re)start a daemon; returns its pid."""
    if not running(topo):
        raise LabError("the lab is not running; run: python -m lab up")
    req = topo.run_dir / "ctl" / f"{uuid.uuid4().hex}.json"
    tmp = req.with_suffix(".tmp")
    tmp.write_text(json.dumps({"action": "start", "node": node}))
    tmp.replace(req)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not req.exists():
            pid = pid_of(topo, node)
            if pid:
                return pid
        time.sleep(0.05)
    raise LabError(f"supervisor did not start {node}")


def signal_node(topo: Topology, node: str, sig: int, postgres: bool = True) -> list[int]:
    """Send ``sig`` to a node's daemon (and, for a Patroni node, its postmaster)."""
    pids = [
        p for p in (pid_of(topo, node), postmaster_of(topo, node) if postgres and node in topo.pg_names else None) if p
    ]
    for p in pids:
        os.kill(p, sig)
    return pids


def stop(topo: Topology, timeout: float = 60) -> None:
    """Stop everything the lab started, by pid (TERM, then KILL)."""
    st = state(topo)
    if st:
        os.kill(st["supervisor"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(st["supervisor"]) and time.monotonic() < deadline:
            time.sleep(0.1)
    # Whatever survived (supervisor crashed or timed out): recorded pids and postmasters.
    for p in leftover_pids(topo, st):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    (topo.run_dir / "state.json").unlink(missing_ok=True)


def leftover_pids(topo: Topology, st: dict[str, Any] | None = None) -> list[int]:
    st = st or {}
    pids = [*list(st.get("procs", {}).values()), st.get("supervisor")]
    pids += [postmaster_pid(Path(topo.layout(n).pg_data_dir)) for n in topo.pg_names]
    return [p for p in pids if p and alive(p) and p != os.getpid()]


def rotate_certs(topo: Topology) -> dict[str, tuple[int, int]]:
    """Issue a new certificate for every node under the lab CA, replace the files
    atomically and reload every daemon in place (no restart):
    etcd reloads its key pair on each new TLS handshake, PostgreSQL on SIGHUP,
    Patroni's REST API on SIGHUP. Returns node -> (old serial, new serial) as served."""
    if not running(topo):
        raise LabError("the lab is not running")
    before = served_serials(topo)
    rewrite_certs(topo)
    for n in topo.pg_names:
        signal_node(topo, n, signal.SIGHUP)
    deadline = time.monotonic() + 30
    after = served_serials(topo)
    while any(after[k] in (before[k], 0) for k in before) and time.monotonic() < deadline:
        time.sleep(0.2)
        after = served_serials(topo)
    return {k: (before[k], after[k]) for k in before}


def discard(run_dir: Path) -> None:
    """Stop the lab of ``run_dir`` and delete the directory (``up --fresh``). Refuses a
    non-empty directory that is not a lab run directory (no lab.json)."""
    if not run_dir.exists():
        return
    if not lab_file(run_dir).exists():
        if any(run_dir.iterdir()):
            raise LabError(f"{run_dir} is not a lab run directory (no lab.json); not deleting it")
        return
    old = open_lab(run_dir)
    stop(old)
    left = leftover_pids(old)
    if left:
        raise LabError(f"could not stop the lab in {run_dir}: pids {left} still running; not deleting it")
    shutil.rmtree(run_dir)
