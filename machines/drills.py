"""Failover drills on booted nodes: ``python -m machines [--stack S] drill node-death|switchover``.

On machines that are up and validated (``python -m machines up``):

- the load runs INSIDE the vRack namespace (the host has no route to the plan's
  addresses): ``ip netns exec pgha-<stack> python -m machines.drills load ...`` runs the
  lab's writer (lab/drills/load.py ``Writer``: one INSERT every 20 ms through
  pgha_client on the libpq multi-host DSN, ``target_session_attrs=read-write``, the
  stack's CA, the app user and the password kept in ``<run>/secrets.json``) and the
  lab's per-node dual-primary ``Probe``; every attempt is appended as one JSON line to a
  timeline file the host reads. Times are CLOCK_MONOTONIC (one clock for every network
  namespace) minus the drill's origin. When asked to stop, the load process reads back
  every row of its writer through the read-write DSN (the new primary) and writes them
  as a last ``present`` line.
- ``node-death``: SIGKILL of every process of the primary's container at once (its
  cgroup's ``cgroup.kill``: nspawn, the container's init, PostgreSQL, Patroni; a VM
  losing power), wait for a new primary and for acknowledged writes from it, then boot
  the node again with the same nspawn command ``up`` used and wait until it streams as
  a replica.
- ``switchover``: ``POST /switchover`` on the leader's Patroni REST API (TLS, verified
  with the stack's CA, the REST credentials of the rendered patroni.yml).
- ``frozen-primary`` (the primary must be a qemu VM: ``up --vms pg1`` or ``--backend
  qemu``; a switchover to a VM comes first when the primary is a container): inside the
  VM, SIGSTOP the postmaster, then every process of Patroni's service (Patroni, every
  backend), as lab/drills/faults.py freezes a node on loopback. Nothing resumes them:
  the kernel's softdog, armed by Patroni (``watchdog: required``, timeout ttl -
  safety_margin) and no longer fed, must reset the VM before the leader key expires and
  a replica is promoted. Measured: freeze -> reset (the softdog's line or the next boot's
  banner on the VM's console), freeze -> promotion, the writer's RTO; then the VM boots
  again (udev, the data volume's fstab mount) and must rejoin as a streaming replica.

The verdicts are the lab's (lab/drills/detect.py): RTO, acknowledged-but-lost writes,
two writable primaries; the table is lab/drills/report.py's. Exit 1 if a safety
invariant broke (a lost acknowledged write, a failed write present, two primaries) or
the drill did not happen (no new primary, node did not rejoin).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from cloud_init.common import REST_USER
from cloud_init.endpoint import libpq_dsn
from lab.drills import detect, report
from lab.drills.events import COMMITTED, Attempt
from pgha.secrets import Passwords
from pgha.settings import ROOT, Settings

from . import cluster as c
from . import nodes, ssh

SCENARIOS = ("node-death", "switchover", "frozen-primary")
WRITER = "libpq"


class NodesTopology:
    """The part of lab.topology.Topology that lab/drills/load.py's Writer, Probe,
    ensure_tables and present_seqs use, for booted nodes (VM plan addresses, run dir CA)."""

    def __init__(self, settings: Settings, run_dir: Path, passwords: Passwords) -> None:
        self.settings = settings
        self.plan = settings.plan
        self.run_dir = run_dir
        self._passwords = passwords

    @property
    def pg_names(self) -> list[str]:
        return [n.name for n in self.plan.patroni]

    def address(self, node: str) -> str:
        return self.plan.node(node).address

    @property
    def ca_file(self) -> Path:
        return self.run_dir / "ca.crt"

    def passwords(self) -> Passwords:
        return self._passwords

    def dsn(self, read_only: bool = False) -> str:
        return libpq_dsn(self.settings, self.plan, read_only=read_only, sslrootcert=str(self.ca_file))

    def node_dsn(self, node: str, connect_timeout: int = 2) -> str:
        pg = self.settings.patroni
        return (
            f"host={self.address(node)} port={pg.port} dbname={pg.app_database} user={pg.app_user}"
            f" sslmode=verify-full sslrootcert={self.ca_file} connect_timeout={connect_timeout}"
        )


# ------------------------------------------------------------------ pure logic (tests/unit)


def attempt_from_json(d: dict[str, Any]) -> Attempt:
    return Attempt(d["source"], d["seq"], d["t0"], d["t1"], d["outcome"], d.get("node"), d.get("error"))


def read_timeline(lines: Iterable[str]) -> tuple[list[Attempt], set[int] | None]:
    """(attempts, present writer seqs or None) from the load's JSON lines; a torn last
    line (the file read while it is written) is skipped."""
    attempts: list[Attempt] = []
    present: set[int] | None = None
    for line in lines:
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if "present" in d:
            present = set(d["present"])
        elif "source" in d:
            attempts.append(attempt_from_json(d))
    return attempts, present


def acks_after(attempts: Iterable[Attempt], t: float, source: str = WRITER, exclude: str | None = None) -> int:
    """Acknowledged writes of ``source`` answered after ``t`` by a node other than ``exclude``."""
    return sum(1 for a in attempts if a.source == source and a.outcome == COMMITTED and a.t1 > t and a.node != exclude)


def leader_of(docs: dict[str, dict[str, Any] | None]) -> list[str]:
    """Nodes whose Patroni /patroni says running primary (``master`` before Patroni 3)."""
    return sorted(
        n for n, d in docs.items() if d and d.get("role") in ("primary", "master") and d.get("state") == "running"
    )


def is_streaming_replica(doc: dict[str, Any] | None) -> bool:
    if not doc or doc.get("role") not in ("replica", "standby_leader") or doc.get("state") != "running":
        return False
    # Patroni >= 3.0.4 says whether the WAL receiver streams; older ones do not.
    return bool(doc.get("replication_state", "streaming") == "streaming")


def lost_around_freeze(writer: Iterable[Attempt], acked_missing: list[int], frozen_t: float) -> dict[str, list[int]]:
    """Lost acknowledged writes, split at the moment the freeze command returned (every
    process stopped): acknowledged before (the primary acknowledged them, then froze
    before its WAL sender shipped them: asynchronous replication's RPO) or after (a frozen
    or resumed primary acknowledging: the window the watchdog must close)."""
    t1 = {a.seq: a.t1 for a in writer if a.outcome == COMMITTED}
    lost = sorted(acked_missing)
    return {
        "acked_lost_before_freeze": [s for s in lost if t1.get(s, frozen_t + 1) <= frozen_t],
        "acked_lost_after_freeze": [s for s in lost if t1.get(s, frozen_t + 1) > frozen_t],
    }


def breaches(result: dict[str, Any]) -> list[str]:
    """Why the drill failed ([] = passed): the safety invariants first, then whether the
    drill did what it was meant to (a new primary, writes resumed, the node back).
    frozen-primary on an asynchronous stack: writes acknowledged before the freeze and
    never replicated are the stack's RPO (reported in notes); any other lost write fails."""
    out = []
    cl = result["clients"][WRITER]
    async_rpo_only = (
        result["scenario"] == "frozen-primary"
        and result.get("synchronous_mode") is False
        and "acked_lost_after_freeze" in result
        and not result["acked_lost_after_freeze"]
    )
    if cl.get("acked_missing") is None:
        out.append("acknowledged writes not verified (no read-back from the new primary)")
    elif cl["acked_missing"] and not async_rpo_only:
        out.append(f"{len(cl['acked_missing'])} acknowledged write(s) lost: {cl['acked_missing'][:10]}")
    if cl.get("failed_present"):
        out.append(f"{len(cl['failed_present'])} write(s) reported not committed are present")
    if result["dual_primary"]:
        out.append(f"two writable primaries {len(result['dual_primary'])} time(s): {result['dual_primary'][:3]}")
    if not result["failover"]:
        out.append(f"no new primary (still {result['old_leader']})")
    if cl.get("rto_s") is None:
        out.append("writes did not resume after the fault")
    if result["scenario"] in ("node-death", "frozen-primary") and result.get("rejoin_s") is None:
        out.append(f"{result['old_leader']} did not rejoin as a streaming replica")
    if result["scenario"] == "frozen-primary":
        if result.get("reset_s") is None:
            out.append(f"the watchdog did not reset the frozen primary {result['old_leader']}")
        elif result.get("promoted_s") is not None and result["reset_s"] >= result["promoted_s"]:
            out.append(
                f"{result['old_leader']} was reset {result['reset_s']} s after the freeze, not before the"
                f" promotion ({result['promoted_s']} s): the leader key expired first"
            )
    return out


#: What resets a VM: the softdog's own line, else the next boot's kernel banner.
RESET_MARKERS = ("softdog: Initiating system reboot", "Linux version ")


def _kernel_time(line: str) -> float | None:
    m = re.match(r"\s*\[\s*(\d+\.\d+)\]", line)
    return float(m.group(1)) if m else None


def guest_freeze_to_reset(console_tail: str) -> float | None:
    """Seconds from the freeze to the softdog's reboot, on the VM's own kernel clock (both
    lines carry its timestamp): exact, whatever the host's polling and SSH latency."""
    frozen = reset = None
    for line in console_tail.splitlines():
        if frozen is None and FROZEN_MARK in line:
            frozen = _kernel_time(line[line.find("[") :]) if "[" in line else None
        elif frozen is not None and RESET_MARKERS[0] in line:
            reset = _kernel_time(line[line.find("[") :]) if "[" in line else None
            break
    return round(reset - frozen, 2) if frozen is not None and reset is not None else None


def reset_seen(console_tail: str) -> str | None:
    """The first reset marker in the console text written since the freeze."""
    hits = [(console_tail.find(mk), mk) for mk in RESET_MARKERS if mk in console_tail]
    return min(hits)[1] if hits else None


# ------------------------------------------------------------------ the load (inside the vRack namespace)


def run_load(stack: str, run_dir: Path, origin: float, out: Path, stop_file: Path) -> int:
    from lab.drills import load as lab_load

    m = c.open_machines(stack, run_dir)
    topo = cast(Any, NodesTopology(m.settings, m.run_dir, c.load_passwords(m.run_dir)))
    lab_load.ensure_tables(topo)
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(topo.dsn(), password=topo.passwords().app, autocommit=True) as conn:
            conn.execute(f"DELETE FROM {lab_load.DRILL_TABLE} WHERE client = %s", (f"machines-{stack}",))
    clock = lab_load.Clock()
    clock.origin = origin  # the host's drill origin: CLOCK_MONOTONIC is the same in every netns
    stop = threading.Event()
    settings = lab_load.LoadSettings()
    client = f"machines-{stack}"
    threads: list[Any] = [lab_load.Writer(topo, WRITER, client, clock, stop, settings)]
    threads += [lab_load.Probe(topo, n, clock, stop, settings) for n in topo.pg_names]
    for t in threads:
        t.start()
    done = [0] * len(threads)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def flush(f: Any) -> None:
        for i, t in enumerate(threads):
            new = t.attempts[done[i] :]
            done[i] += len(new)
            for a in new:
                f.write(
                    json.dumps(
                        dict(zip(("source", "seq", "t0", "t1", "outcome", "node", "error"), a.row(), strict=True))
                    )
                    + "\n"
                )
        f.flush()

    with open(out, "a") as f:
        while not stop.is_set() and not stop_file.exists():
            time.sleep(0.2)
            flush(f)
        stop.set()
        for t in threads:
            t.join(timeout=15)
        flush(f)
        present: list[int] | None = None
        for _ in range(30):
            try:
                present = sorted(lab_load.present_seqs(topo, client))
                break
            except Exception as e:  # noqa: BLE001 - retried: the primary may still be settling
                f.write(json.dumps({"read_back_error": str(e)[:200]}) + "\n")
                time.sleep(1)
        if present is not None:
            f.write(json.dumps({"present": present}) + "\n")
        f.flush()
    return 0 if present is not None else 1


# ------------------------------------------------------------------ the host side


def rest_call(
    m: c.Machines, node: str, path: str, max_time: int, *curl_args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """curl to a node's Patroni REST API from inside the vRack namespace (the host has no
    route to the plan's addresses), TLS verified with the run's CA."""
    spec = next(s for s in m.specs if s.name == node)
    url = f"https://{spec.address}:{m.settings.patroni.rest_port}/{path}"
    args = ["ip", "netns", "exec", m.net.netns, "curl", "-s", "--max-time", str(max_time)]
    args += ["--cacert", str(m.run_dir / "ca.crt"), *curl_args, url]
    return subprocess.run(args, check=False, input=stdin, capture_output=True, text=True)


def patroni_doc(m: c.Machines, node: str, path: str = "patroni") -> dict[str, Any] | None:
    try:
        doc = json.loads(rest_call(m, node, path, 2).stdout)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def pg_nodes(m: c.Machines) -> list[str]:
    return [s.name for s in m.specs if s.role == "patroni"]


def docs(m: c.Machines, names: list[str]) -> dict[str, dict[str, Any] | None]:
    return {n: patroni_doc(m, n) for n in names}


def switchover(m: c.Machines, leader: str, candidate: str | None = None) -> str:
    pw = c.load_passwords(m.run_dir).rest_api
    body = json.dumps({"leader": leader, **({"candidate": candidate} if candidate else {})})
    headers = ["-H", "Content-Type: application/json"]
    r = rest_call(
        m,
        leader,
        "switchover",
        30,
        *["-w", " HTTP %{http_code}", "-K", "-", "-X", "POST", *headers, "-d", body],
        stdin=f'user = "{REST_USER}:{pw}"\n',  # on stdin: never in a process list
    )
    return (r.stdout + r.stderr).strip()


def kill_container(m: c.Machines, node: str) -> str:
    """Power loss: SIGKILL to every process of the container at once (a VM: its qemu)."""
    pid = m.pid(node)
    machine = m.machine(node)
    if m.backend(node) == "qemu":
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while m.is_up(node) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid or 0, os.WNOHANG)
            time.sleep(0.05)
        return f"SIGKILL qemu {pid}"
    killed = ""
    for d in nodes.cgroup_dirs(machine):
        if (d / "cgroup.kill").exists():
            (d / "cgroup.kill").write_text("1\n")
            killed = f"cgroup.kill {d}"
    if not killed:  # no cgroup v2 kill: nspawn and the container's init (its PID namespace dies with it)
        for p in [*nodes._children(pid or 0), pid]:
            if p:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        killed = f"SIGKILL nspawn {pid} and its init"
    deadline = time.monotonic() + 10
    while nodes.alive(pid, machine) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid or 0, os.WNOHANG)
        time.sleep(0.05)
    return killed


def restart_node(m: c.Machines, node: str) -> int:
    """Boot the node again as ``up`` does: same overlay (still mounted), same data disk
    (still attached), same nspawn command; cloud-init sees the same instance-id."""
    spec = next(s for s in m.specs if s.name == node)
    pid = c.start_node(m, spec)
    m.state["nodes"][node]["pid"] = pid
    m.save()
    return pid


#: Written to the VM's kernel log (so to its console, with the kernel's timestamp) once frozen.
FROZEN_MARK = "pgha-drill: patroni and postgres frozen"
#: Run as root in the VM: SIGSTOP the postmaster first (it forks nothing new), then every
#: process of Patroni's service (Patroni and every backend: KillMode=process keeps them in
#: its cgroup). Prints how many processes are stopped.
FREEZE = (
    "set -eu; cg=/sys/fs/cgroup/system.slice/pgha-patroni.service;"
    " pm=$(pgrep -o -x -u postgres postgres); kill -STOP $pm; kill -STOP $(cat $cg/cgroup.procs);"
    f" echo {FROZEN_MARK} > /dev/kmsg;"
    " grep -l '^State:.*stopped' $(sed 's,.*,/proc/&/status,' $cg/cgroup.procs) | wc -l"
)
#: The watchdog Patroni armed: state (active), timeout (s), identity (softdog).
WATCHDOG = "cd /sys/class/watchdog/watchdog0 && echo $(cat identity) $(cat state) $(cat timeout)"


def ssh_master(m: c.Machines, node: str) -> list[str]:
    """ssh options reusing one connection (opened here): the freeze lands within
    milliseconds of the command, not after a handshake with a slow (TCG) sshd."""
    path = m.run_dir / f"ssh-{node}.ctl"
    # A TCG VM's sshd can take longer than the config's 5 s to send its banner.
    opts = ["-o", f"ControlPath={path}", "-o", "ControlMaster=auto", "-o", "ControlPersist=300"]
    opts += ["-o", "ConnectTimeout=30"]
    deadline = time.monotonic() + 120
    while True:
        r = subprocess.run(
            ["ssh", "-F", str(m.ssh_config), *opts, node, "true"],
            check=False,
            capture_output=True,
            text=True,
            timeout=90,
        )
        if r.returncode == 0:
            return opts
        if time.monotonic() > deadline:
            raise c.MachinesError(f"ssh to {node} failed: {r.stderr.strip()}")
        time.sleep(2)


def vm_leader(m: c.Machines, leader: str, log: c.Log) -> str:
    """The frozen-primary drill needs the primary on a VM: switch over to one if needed."""
    if m.backend(leader) == "qemu":
        return leader
    vms = [n for n in pg_nodes(m) if m.backend(n) == "qemu"]
    if not vms:
        raise c.MachinesError("frozen-primary needs a Patroni node on a VM: up --vms pg1 (or --backend qemu)")
    log(f"switchover {leader} -> {vms[0]} (the frozen primary must be a VM: a container has no kernel watchdog)")
    log(f"  {switchover(m, leader, vms[0])}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if leader_of(docs(m, pg_nodes(m))) == [vms[0]] and all(
            is_streaming_replica(patroni_doc(m, n)) for n in pg_nodes(m) if n != vms[0]
        ):
            return vms[0]
        time.sleep(1)
    raise c.MachinesError(f"switchover to {vms[0]} did not complete in 120 s")


def remount_data(m: c.Machines, node: str) -> str | None:
    """Container-only step after a reboot: no udev, so systemd never sees the data disk's
    device and skips the fstab mount (``nofail``); mount it as cloud-init did at first boot
    (``mount -a``) and start Patroni again. A VM's udev does this by itself. Returns an
    error, or None."""
    err = ssh.wait_reachable(m.ssh_config, node, timeout=120)
    if err:
        return f"ssh to {node} failed: {err}"
    r = ssh.run(
        m.ssh_config,
        node,
        "sudo mount -a && findmnt -n /var/lib/postgresql >/dev/null"
        " && sudo systemctl reset-failed pgha-patroni.service && sudo systemctl restart pgha-patroni.service",
        timeout=120,
    )
    return None if r.returncode == 0 else f"remount on {node} failed: {(r.stdout + r.stderr).strip()}"


class Timeline:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[list[Attempt], set[int] | None]:
        if not self.path.exists():
            return [], None
        return read_timeline(self.path.read_text().splitlines())


def run_drill(m: c.Machines, scenario: str, out_dir: Path, settle: float = 5.0, log: c.Log = print) -> dict[str, Any]:
    pgs = pg_nodes(m)
    leaders = leader_of(docs(m, pgs))
    if len(leaders) != 1:
        raise c.MachinesError(f"need exactly one running primary before the drill, found {leaders or 'none'}")
    old = leaders[0]
    c.load_passwords(m.run_dir)  # fail early, before the load
    frozen = scenario == "frozen-primary"
    ssh_opts: list[str] = []
    watchdog = ""
    if frozen:
        old = vm_leader(m, old, log)
        ssh_opts = ssh_master(m, old)
        r = subprocess.run(
            ["ssh", "-F", str(m.ssh_config), *ssh_opts, old, f"sudo sh -c {shlex.quote(WATCHDOG)}"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        watchdog = r.stdout.strip()
        if "active" not in watchdog.split():
            raise c.MachinesError(f"{old}: no active watchdog ({watchdog or r.stderr.strip()}): Patroni did not arm it")
        log(f"{old}: watchdog {watchdog} (identity, state, timeout s)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tl = Timeline(out_dir / "timeline.jsonl")
    stop_file = out_dir / "stop"
    for f in (tl.path, stop_file):
        f.unlink(missing_ok=True)
    origin = time.monotonic()

    def now() -> float:
        return time.monotonic() - origin

    marks: list[dict[str, Any]] = []
    notes: list[str] = []
    load = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            m.net.netns,
            sys.executable,
            "-m",
            "machines.drills",
            "load",
            "--stack",
            m.stack,
            "--run-dir",
            str(m.run_dir),
            "--origin",
            repr(origin),
            "--out",
            str(tl.path),
            "--stop-file",
            str(stop_file),
        ],
        cwd=ROOT,
        stdout=open(out_dir / "load.log", "w"),  # noqa: SIM115 - the child keeps it
        stderr=subprocess.STDOUT,
    )
    result: dict[str, Any] = {"number": 1, "scenario": scenario, "stack": m.stack, "old_leader": old}
    if frozen:
        result["watchdog"] = watchdog
    console = m.vm_paths(old).console
    try:
        deadline = now() + 30
        while now() < deadline and acks_after(tl.read()[0], 0) < 20:
            if load.poll() is not None:
                raise c.MachinesError(f"the load stopped (exit {load.returncode}); see {out_dir}/load.log")
            time.sleep(0.2)
        if acks_after(tl.read()[0], 0) < 20:
            raise c.MachinesError(f"no steady writes after 30 s; see {out_dir}/load.log")
        time.sleep(settle)
        console_at = console.stat().st_size if frozen and console.exists() else 0
        fault_t = now()
        if scenario == "node-death":
            what = kill_container(m, old)
            marks.append({"t": fault_t, "kind": "fault", "label": f"{old} killed"})
        elif frozen:
            r = subprocess.run(
                ["ssh", "-F", str(m.ssh_config), *ssh_opts, old, f"sudo sh -c {shlex.quote(FREEZE)}"],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
            frozen_t = now()
            what = f"{r.stdout.strip() or '?'} processes stopped (SIGSTOP) in {frozen_t - fault_t:.2f} s"
            if r.returncode != 0:
                raise c.MachinesError(f"freeze on {old} failed: {(r.stdout + r.stderr).strip()}")
            result["freeze_ssh_s"] = round(frozen_t - fault_t, 3)
            marks.append({"t": fault_t, "kind": "fault", "label": f"{old} frozen (SIGSTOP)"})
        else:
            what = switchover(m, old)
            marks.append({"t": fault_t, "kind": "fault", "label": f"switchover from {old}"})
        log(f"[{fault_t:6.2f}s] {scenario}: {old}: {what}")
        new: str | None = None
        promoted_t = resumed_t = reset_t = None
        deadline = now() + 120
        while now() < deadline and (new is None or resumed_t is None or (frozen and reset_t is None)):
            if frozen and reset_t is None:
                with open(console, errors="replace") as cf:
                    cf.seek(console_at)
                    seen = reset_seen(cf.read())
                if seen:
                    reset_t = now()
                    result["reset_marker"] = seen.strip()
                    marks.append({"t": reset_t, "kind": "restore", "label": f"{old} reset by its watchdog"})
                    log(f"[{reset_t:6.2f}s] {old} reset ({seen.strip()!r} on its console)")
            if new is None:
                ls = leader_of(docs(m, [n for n in pgs if n != old]))
                if ls:
                    new, promoted_t = ls[0], now()
                    log(f"[{promoted_t:6.2f}s] new primary {new}")
            if resumed_t is None and acks_after(tl.read()[0], fault_t, exclude=old):
                resumed_t = now()
                log(f"[{resumed_t:6.2f}s] writes resumed")
            time.sleep(0.2)
        result.update(
            new_leader=new, failover=new is not None, promoted_s=promoted_t and round(promoted_t - fault_t, 2)
        )
        if frozen:
            result["reset_s"] = reset_t and round(reset_t - fault_t, 2)
            with open(console, errors="replace") as cf:
                cf.seek(console_at)
                result["guest_freeze_to_reset_s"] = guest_freeze_to_reset(cf.read())
        rejoin_s = None
        if scenario == "node-death":
            restart_t = now()
            pid = restart_node(m, old)
            marks.append({"t": restart_t, "kind": "restore", "label": f"{old} booted"})
            log(f"[{restart_t:6.2f}s] {old} booting again (nspawn pid {pid})")
            if m.backend(old) != "qemu":  # a VM's udev and fstab mount the data disk by themselves
                err = remount_data(m, old)
                marks.append({"t": now(), "kind": "restore", "label": f"{old}: data disk mounted (container: no udev)"})
                if err:
                    notes.append(err)
                log(f"[{now():6.2f}s] {old}: data disk mounted by hand (a container has no udev), Patroni restarted")
        restart_t = reset_t or now()
        deadline = now() + (900 if m.backend(old) == "qemu" else 240)  # a TCG VM reboots in minutes
        while now() < deadline:
            if is_streaming_replica(patroni_doc(m, old)):
                rejoin_s = round(now() - restart_t, 2)
                log(f"[{now():6.2f}s] {old} streams as a replica ({rejoin_s} s)")
                break
            if scenario == "node-death" and not m.is_up(old):
                notes.append(f"{old}'s container stopped again while booting")
                break
            time.sleep(1)
        result["rejoin_s"] = rejoin_s
        time.sleep(settle)
    finally:
        stop_file.touch()
        try:
            load.wait(timeout=90)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()
            notes.append("the load did not stop; killed")
    attempts, present = tl.read()
    writer = [a for a in attempts if a.source == WRITER]
    result["clients"] = {
        WRITER: detect.client_summary(writer, fault_t, present),
        "haproxy": {"rto_s": None},  # no HAProxy among the booted nodes
    }
    result["dual_primary"] = detect.dual_primaries(attempts)
    if frozen and "freeze_ssh_s" in result:
        split = lost_around_freeze(writer, result["clients"][WRITER]["acked_missing"], fault_t + result["freeze_ssh_s"])
        result.update(split, synchronous_mode=m.settings_for(old).patroni.synchronous_mode)
        if split["acked_lost_before_freeze"]:
            notes.append(
                f"{len(split['acked_lost_before_freeze'])} write(s) acknowledged by {old} before it was frozen"
                " and never replicated (asynchronous replication: the stack's RPO, not the watchdog's window)"
            )
    result["marks"] = marks
    result["notes"] = notes
    result["present_rows"] = None if present is None else len(present)
    result["breaches"] = breaches(result)
    (out_dir / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def cmd_drill(m: c.Machines, scenarios: list[str], log: c.Log = print) -> int:
    down = [s.name for s in m.specs if not m.is_up(s.name)]
    if not m.state or down:
        raise c.MachinesError(f"machines {m.stack} not up ({', '.join(down) or 'no state'}): python -m machines up")
    results = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i, scenario in enumerate(scenarios, 1):
        log(f"== drill {i}: {scenario} on {m.stack}")
        r = run_drill(m, scenario, m.run_dir / "drills" / f"{stamp}-{i}-{scenario}", log=log)
        r["number"] = i
        results.append(r)
        if i < len(scenarios):
            time.sleep(5)
    print()
    print(report.table(results))
    broken = [(r["scenario"], b) for r in results for b in r["breaches"]]
    for s, b in broken:
        print(f"FAIL {s}: {b}")
    cl = [r["clients"][WRITER] for r in results]
    print(
        f"\nwrites acknowledged {sum(x['committed'] for x in cl)}, present after {sum(r['present_rows'] or 0 for r in results)}"
        f" (rows of the writer, read back from the new primary); results in {m.run_dir / 'drills'}"
    )
    return 1 if broken else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m machines.drills", description="the drills' load (internal)")
    sub = ap.add_subparsers(dest="command", required=True)
    ld = sub.add_parser("load", help="run inside the vRack namespace: writer + probes -> JSON lines")
    ld.add_argument("--stack", required=True)
    ld.add_argument("--run-dir", type=Path, required=True)
    ld.add_argument("--origin", type=float, required=True)
    ld.add_argument("--out", type=Path, required=True)
    ld.add_argument("--stop-file", type=Path, required=True)
    a = ap.parse_args(argv)
    return run_load(a.stack, a.run_dir, a.origin, a.out, a.stop_file)


if __name__ == "__main__":
    sys.exit(main())
