"""The lab's process supervisor: what systemd does on a VM.

Runs detached (``lab up`` spawns it), becomes a child subreaper so the postmasters
Patroni detaches stay its descendants and get reaped, starts every daemon with the
command its systemd unit runs, records pids in ``state.json``, and serves start
requests (``ctl/*.json``) so restarted daemons are its children too. On SIGTERM it
stops everything it started, by pid: TERM, then KILL after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import monitoring, s3
from .drills import netcut
from .topology import Topology, load_topology, run_user

PR_SET_CHILD_SUBREAPER = 36
STOP_GRACE = 20.0


def set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def live_children(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` and that are not zombies, from /proc."""
    kids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            kids.append(int(d.name))
    return kids


def _port_open(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((ip, port)) == 0


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def commands(topo: Topology) -> dict[str, list[str]]:
    """name -> argv, the same commands the systemd units run (ExecStartPre && ExecStart)."""
    out: dict[str, list[str]] = {}
    for n in topo.etcd_names:
        out[n] = ["/usr/bin/etcd", "--config-file", f"{topo.layout(n).etc_dir}/etcd.yml"]
    for n in topo.pg_names:
        lay = topo.layout(n)
        wait = f"{lay.python} {lay.bin_dir}/pgha-check-etcd --config {lay.etc_dir}/check.json --wait 0 --reachable"
        out[n] = ["/bin/sh", "-c", f"{wait} && exec {lay.patroni_venv}/bin/patroni {lay.etc_dir}/patroni.yml"]
    out["haproxy"] = ["/usr/sbin/haproxy", "-db", "-f", str(topo.run_dir / "haproxy" / "haproxy.cfg")]
    if topo.owns_storage:
        out["s3"] = s3.command(topo.run_dir, topo.prefix)
    out.update(monitoring.commands(topo))
    return out


class Supervisor:
    def __init__(self, topo: Topology):
        self.topo = topo
        self.run_dir = topo.run_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cmds = commands(topo)
        self.stopping = False
        self.user = run_user()

    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    def write_state(self) -> None:
        state = {"supervisor": os.getpid(), "procs": {n: p.pid for n, p in self.procs.items()}}
        tmp = self.state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path())

    def start(self, name: str) -> None:
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            return
        kw: dict[str, Any] = {}
        if os.geteuid() == 0:
            kw = {"user": self.user, "group": self.user, "extra_groups": []}
        env = {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.run_dir),
            "ETCDCTL_API": "3",
        }
        with open(self.run_dir / "logs" / f"{name}.log", "ab") as log:  # the daemon keeps its own descriptor
            log.write(f"--- pgha lab: starting {name} at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.procs[name] = subprocess.Popen(
                self.cmds[name],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.run_dir,
                env=env,
                **kw,
            )
        # Its own cgroup, so a drill can cut this node off the network (lab/drills/netcut.py).
        netcut.join(self.topo, name, self.procs[name].pid)
        self.write_state()

    def reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for p in self.procs.values():
                if p.pid == pid:
                    p.returncode = p.returncode if p.returncode is not None else -1

    def serve_requests(self) -> None:
        ctl = self.run_dir / "ctl"
        for req in sorted(ctl.glob("*.json")):
            try:
                data = json.loads(req.read_text())
            except (OSError, ValueError):
                continue
            req.unlink(missing_ok=True)
            if data.get("action") == "start" and data.get("node") in self.cmds:
                self.start(data["node"])

    def _pids_of_group(self, names: list[str]) -> list[int]:
        pids = [self.procs[n].pid for n in names if n in self.procs]
        for n in names:
            if n in self.topo.pg_names:
                pm = postmaster_pid(Path(self.topo.layout(n).pg_data_dir))
                if pm:
                    pids.append(pm)
        return [p for p in pids if alive(p)]

    def stop_group(self, names: list[str]) -> None:
        self.stop_pids(self._pids_of_group(names))

    def stop_pids(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            self.reap()
            time.sleep(0.1)
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        self.reap()

    def stop_all(self) -> None:
        # Monitoring first (it would only report the rest stopping), then Patroni (it stops
        # its PostgreSQL), then HAProxy, then etcd.
        self.stop_group(monitoring.names(self.topo))
        self.stop_group(self.topo.pg_names)
        self.stop_group(["haproxy"])
        self.stop_group(self.topo.etcd_names)
        self.stop_group(["s3"])
        # Anything else still our child: orphans reparented to us, the subreaper. Stopping a
        # Patroni node stops its `sh -c "pgha-check-etcd ... && exec patroni"`, not a check
        # still waiting for etcd, which would wait forever once etcd is gone.
        # Their own children come back to us when they die: a few rounds.
        for _ in range(3):
            kids = live_children(os.getpid())
            if not kids:
                break
            self.stop_pids(kids)

    def validate_configs(self) -> None:
        """``patroni --validate-config`` on each rendered patroni.yml. It needs etcd
        answering and the PostgreSQL/REST ports still free: after etcd, before Patroni."""
        deadline = time.monotonic() + 30
        s = self.topo.settings
        while time.monotonic() < deadline:
            if all(_port_open(ip, s.etcd.client_port) for ip in self.topo.plan.addresses("etcd")):
                break
            time.sleep(0.05)
        out_dir = self.run_dir / "validate-config"
        out_dir.mkdir(exist_ok=True)
        kw: dict[str, object] = {"user": self.user, "group": self.user, "extra_groups": []} if os.geteuid() == 0 else {}
        procs = {}
        for n in self.topo.pg_names:
            lay = self.topo.layout(n)
            cmd = [f"{lay.patroni_venv}/bin/patroni", "--validate-config", f"{lay.etc_dir}/patroni.yml"]
            procs[n] = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.run_dir, **kw
            )  # type: ignore[call-overload]
        for n, p in procs.items():
            out, _ = p.communicate(timeout=60)
            (out_dir / f"{n}.json").write_text(json.dumps({"rc": p.returncode, "output": out.strip()}))

    def run(self) -> int:
        set_subreaper()
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        (self.run_dir / "ctl").mkdir(exist_ok=True)
        try:
            self.start_all()
            while not self.stopping:
                self.reap()
                self.serve_requests()
                time.sleep(0.1)
        finally:  # also when a start fails: nothing started stays behind
            self.stop_all()
            netcut.heal(self.topo)
            netcut.cleanup(self.topo)
            self.state_path().unlink(missing_ok=True)
        return 0

    def start_all(self) -> None:
        for n in self.topo.etcd_names:
            self.start(n)
        if self.topo.owns_storage:
            # The repository must answer before a bootstrap creates the stanza (as Object Storage does on OVH).
            self.start("s3")
            storage = self.topo.target.object_storage
            assert storage is not None
            s3.wait_bucket(storage, self.topo.backup_secrets())
        self.validate_configs()
        for n in self.topo.pg_names:
            self.start(n)
        self.start("haproxy")
        for n in monitoring.names(self.topo):
            self.start(n)


def main(stack: str, run_dir: str, prefix: str) -> int:
    from .rundir import open_lab

    topo = (
        open_lab(Path(run_dir))
        if (Path(run_dir) / "lab.json").exists()
        else load_topology(stack, Path(run_dir), prefix)
    )
    sys.stdout.flush()
    return Supervisor(topo).run()
