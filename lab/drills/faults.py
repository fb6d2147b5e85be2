"""Process faults for the drills: kill or freeze a node as a dying or stalled machine
would (Patroni, the postmaster and every backend), and resume it. Network faults are
in lab/drills/netcut.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lab import control
from lab.topology import Topology


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and _ppid(int(p.name)) == pid:
            out.append(int(p.name))
    return out


def send(pids: list[int], sig: int) -> list[int]:
    """Send ``sig`` to each pid; returns those that still existed."""
    done = []
    for p in pids:
        try:
            os.kill(p, sig)
            done.append(p)
        except ProcessLookupError:
            pass
    return done


def kill_node(topo: Topology, node: str) -> list[int]:
    """SIGKILL a Patroni node entirely: Patroni, the postmaster and every backend, as if
    the machine died (a bare SIGKILL of the postmaster leaves backends to exit later)."""
    patroni, pm = control.pid_of(topo, node), control.postmaster_of(topo, node)
    backends = children(pm) if pm else []
    return send([p for p in (patroni, pm) if p] + backends, signal.SIGKILL)


def freeze_node(topo: Topology, node: str) -> list[int]:
    """SIGSTOP Patroni, the postmaster and every backend (postmaster first, so it forks
    nothing new while its children are being stopped). Returns what :func:`thaw` resumes."""
    patroni, pm = control.pid_of(topo, node), control.postmaster_of(topo, node)
    stopped = send([pm] if pm else [], signal.SIGSTOP)
    if pm:
        stopped += send(children(pm), signal.SIGSTOP)
    stopped += send([patroni] if patroni else [], signal.SIGSTOP)
    return stopped


def thaw(pids: list[int]) -> None:
    """SIGCONT what :func:`freeze_node` stopped."""
    send(pids, signal.SIGCONT)
