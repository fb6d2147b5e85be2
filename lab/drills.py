"""Failover drills on a running lab: break something real, measure what clients saw,
check what was kept, put the cluster back to healthy.

    python -m lab --stack prod drill node-death        # or a number: drill 1
    python -m lab --stack prod drill --all

While a drill runs, lab/drill_load.py records every write attempt of two clients (libpq
multi-host DSN and HAProxy, both through clients/python/pgha_client) and of a probe
writing to each node directly, plus every role change Patroni reports. Afterwards the
acknowledged rows are looked up (RPO), and lab/drill_report.py computes the figures and
writes a table, JSON and a PNG timeline per scenario under <run dir>/drills/<stamp>/.

Scenarios (numbers as in issue 5); each ends with every daemon running and the cluster
healthy (etcd 3/3, a leader, replicas streaming, a sync standby in synchronous mode):

1 node-death      SIGKILL the primary's Patroni, postmaster and backends; restart it
2 frozen-primary  SIGSTOP them for longer than ttl, then SIGCONT
3 partition       cut the primary off from etcd and its peers (nftables matching the
                  node's cgroup, lab/netcut.py; clients still reach it), then heal
4 switchover      planned switchover through Patroni's REST API
5 etcd-loss-1     SIGKILL the etcd leader for ttl + loop_wait; restart it
6 etcd-loss-2     SIGKILL 2 of 3 etcd members (quorum lost: failsafe mode keeps the
                  primary, no promotion) for ttl + retry_timeout + loop_wait; restart
7 replica-loss    SIGKILL the synchronous standby (any replica when asynchronous);
                  writes must go on with the other replica; restart it
8 postgres-crash  SIGKILL the primary's postmaster only; Patroni restarts it
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_init.settings import TIMING_PROFILES

from . import control, errors, netcut, observe
from .drill_load import LoadSettings, Recorder, ensure_tables, present_seqs
from .drill_report import client_summary, dual_primaries, leadership, plot, table
from .topology import Topology


class DrillError(errors.LabError):
    pass


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    ttl: int
    loop_wait: int
    retry_timeout: int


def current_timing(topo: Topology) -> Timing:
    """The timing in force: Patroni's dynamic configuration (DCS), from any node."""
    for n in topo.pg_names:
        code, body = observe.rest(topo, n, "/config")
        if code == 200 and isinstance(body, dict):
            return Timing(int(body["ttl"]), int(body["loop_wait"]), int(body["retry_timeout"]))
    raise DrillError("no Patroni node answered GET /config")


def apply_timing(topo: Topology, profile: str) -> Timing:
    """Set a timing profile for the whole cluster at runtime (PATCH /config), as an
    operator does; returns it once every node reports it."""
    want = Timing(**TIMING_PROFILES[profile])
    before = current_timing(topo)
    if before == want:
        return want
    lead = observe.leader(topo) or topo.pg_names[0]
    code, body = observe.rest_post(topo, lead, "/config", {"ttl": want.ttl, "loop_wait": want.loop_wait, "retry_timeout": want.retry_timeout}, method="PATCH")
    if code != 200:
        raise DrillError(f"PATCH /config on {lead}: HTTP {code} {body.strip()}")
    # Every node picks the new values up at its next HA loop (at most the old loop_wait).
    deadline = time.monotonic() + before.loop_wait + want.loop_wait + 30
    while time.monotonic() < deadline:
        views = [observe.rest(topo, n, "/config")[1] for n in topo.pg_names]
        if all(isinstance(v, dict) and Timing(v["ttl"], v["loop_wait"], v["retry_timeout"]) == want for v in views):
            break
        time.sleep(0.5)
    time.sleep(before.loop_wait + 1)
    observe.wait_healthy(topo, timeout=120)
    return want


# ---------------------------------------------------------------- processes


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


def _kill(pids: list[int], sig: int) -> list[int]:
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
    return _kill([p for p in (patroni, pm) if p] + backends, signal.SIGKILL)


def freeze_node(topo: Topology, node: str) -> list[int]:
    """SIGSTOP Patroni, the postmaster and every backend (postmaster first, so it forks
    nothing new while its children are being stopped)."""
    patroni, pm = control.pid_of(topo, node), control.postmaster_of(topo, node)
    stopped = _kill([pm] if pm else [], signal.SIGSTOP)
    if pm:
        stopped += _kill(children(pm), signal.SIGSTOP)
    stopped += _kill([patroni] if patroni else [], signal.SIGSTOP)
    return stopped


def etcd_status(topo: Topology) -> dict[str, dict[str, Any]]:
    """etcd's maintenance status per member that answers (member_id, leader)."""
    ctx = observe.ssl_context(topo, client=True)
    out = {}
    for n, ip in zip(topo.etcd_names, topo.plan.etcd, strict=True):
        req = urllib.request.Request(f"https://{ip}:{topo.settings.etcd.client_port}/v3/maintenance/status", data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=1) as r:
                body = json.loads(r.read())
            out[n] = {"member_id": body["header"]["member_id"], "leader": body.get("leader")}
        except (OSError, ValueError, KeyError):
            continue
    return out


def etcd_leader(topo: Topology) -> str | None:
    st = etcd_status(topo)
    for n, s in st.items():
        if s["member_id"] == s["leader"]:
            return n
    return None


def log_size(topo: Topology, name: str) -> int:
    try:
        return (topo.run_dir / "logs" / f"{name}.log").stat().st_size
    except OSError:
        return 0


def log_since(topo: Topology, name: str, offset: int) -> str:
    try:
        with open(topo.run_dir / "logs" / f"{name}.log", "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------- a drill


@dataclass
class Drill:
    topo: Topology
    rec: Recorder
    timing: Timing
    old_leader: str
    marks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fault_t: float | None = None
    rejoin_node: str | None = None
    rejoin_s: float | None = None
    frozen: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sync(self) -> bool:
        return self.topo.settings.patroni.synchronous_mode

    def mark(self, kind: str, label: str) -> float:
        t = self.rec.now()
        self.marks.append({"t": round(t, 3), "kind": kind, "label": label})
        if kind == "fault" and self.fault_t is None:
            self.fault_t = t
        return t

    def wait(self, pred: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> float:
        """Wait until pred() is true; returns the drill time it became true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return self.rec.now()
            time.sleep(interval)
        raise DrillError(f"timed out after {timeout:.0f}s waiting for {what}")

    def hold(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def promoted(self) -> str | None:
        """A node other than the old leader that reports itself a running primary."""
        others = [n for n in self.rec.monitor.primaries() if n != self.old_leader]
        return others[0] if others else None

    def recovered_after(self, t: float, timeout: float) -> float:
        return self.wait(lambda: self.rec.acked_since(t), timeout, "both writers to acknowledge a commit")

    def measure_rejoin(self, node: str, since: float, timeout: float = 120) -> None:
        self.rejoin_node = node
        t = self.wait(lambda: self.rec.monitor.streaming(node), timeout, f"{node} to stream from the new primary")
        self.rejoin_s = round(t - since, 3)


# ---------------------------------------------------------------- scenarios


def s_node_death(d: Drill) -> None:
    old = d.old_leader
    d.mark("fault", f"SIGKILL {old}")
    killed = kill_node(d.topo, old)
    d.notes.append(f"killed {len(killed)} processes of {old}")
    t = d.wait(d.promoted, d.timing.ttl + 60, "a replica to be promoted")
    d.recovered_after(t, 60)
    since = d.mark("restore", f"restart {old}")
    control.request_start(d.topo, old)
    d.measure_rejoin(old, since)


def s_frozen_primary(d: Drill) -> None:
    old = d.old_leader
    t_freeze = d.mark("fault", f"SIGSTOP {old}")
    d.frozen = freeze_node(d.topo, old)
    t = d.wait(d.promoted, d.timing.ttl + 60, "a replica to be promoted")
    d.recovered_after(t, 60)
    # Frozen for longer than ttl (and at least until the new primary took writes).
    d.hold(t_freeze + d.timing.ttl + d.timing.loop_wait - d.rec.now())
    since = d.mark("restore", f"SIGCONT {old}")
    _kill(d.frozen, signal.SIGCONT)
    d.frozen = []
    d.measure_rejoin(old, since)


def partition_unavailable(topo: Topology) -> str | None:
    return netcut.unavailable(topo)


def s_partition(d: Drill) -> None:
    """The primary loses etcd and its peers; clients still reach it. It must demote
    itself (failsafe cannot reach the peers either) before a replica is promoted."""
    old = d.old_leader
    d.mark("fault", f"partition {old}")
    d.extra["partitioned"] = old
    netcut.partition(d.topo, old)
    try:
        t = d.wait(d.promoted, d.timing.ttl + 60, "a replica to be promoted")
        d.recovered_after(t, 60)
        d.hold(2.0)
    finally:
        since = d.mark("restore", f"heal {old}")
        netcut.heal(d.topo)
    d.measure_rejoin(old, since)


def s_switchover(d: Drill) -> None:
    old = d.old_leader
    cand = observe.switchover_candidate(d.topo, old)
    since = d.mark("fault", f"switchover {old}->{cand}")
    code, body = observe.rest_post(d.topo, old, "/switchover", {"leader": old, "candidate": cand})
    if code != 200:
        raise DrillError(f"switchover refused: HTTP {code} {body.strip()}")
    t = d.wait(lambda: d.promoted() == cand, 60, f"{cand} to be promoted")
    d.recovered_after(t, 60)
    d.measure_rejoin(old, since)


def s_etcd_loss_1(d: Drill) -> None:
    victim = etcd_leader(d.topo) or d.topo.etcd_names[0]
    d.extra["etcd_killed"] = [victim]
    d.notes.append(f"killed the etcd leader {victim}")
    d.mark("fault", f"SIGKILL {victim} (etcd leader)")
    control.signal_node(d.topo, victim, signal.SIGKILL)
    d.hold(d.timing.ttl + d.timing.loop_wait)
    d.mark("restore", f"restart {victim}")
    control.request_start(d.topo, victim)
    d.wait(lambda: all(observe.etcd_health(d.topo).values()), 60, "etcd 3/3 healthy", interval=0.5)


def s_etcd_loss_2(d: Drill) -> None:
    lead = etcd_leader(d.topo) or d.topo.etcd_names[0]
    victims = [lead] + [n for n in d.topo.etcd_names if n != lead][:1]
    d.extra["etcd_killed"] = victims
    offset = log_size(d.topo, d.old_leader)
    d.mark("fault", f"SIGKILL {' '.join(victims)} (quorum lost)")
    for v in victims:
        control.signal_node(d.topo, v, signal.SIGKILL)
    d.hold(d.timing.ttl + d.timing.retry_timeout + d.timing.loop_wait)
    d.extra["primary_during_outage"] = d.rec.monitor.primaries()
    # Patroni's own word that failsafe mode kept the primary (all members answered /failsafe).
    kept = log_since(d.topo, d.old_leader, offset).count("continue to run as a leader because failsafe mode is enabled")
    d.extra["failsafe_confirmations"] = kept
    d.notes.append(
        f"{' '.join(victims)} killed; primary during the outage: {', '.join(d.extra['primary_during_outage']) or 'none'}; failsafe confirmations {kept}"
    )
    d.mark("restore", f"restart {' '.join(victims)}")
    for v in victims:
        control.request_start(d.topo, v)
    d.wait(lambda: all(observe.etcd_health(d.topo).values()), 60, "etcd 3/3 healthy", interval=0.5)
    d.wait(lambda: d.rec.monitor.leader_key is not None and d.rec.monitor.etcd_reachable, 60, "a leader key in etcd")


def sync_standbys(topo: Topology) -> list[str]:
    """Streaming sync standbys as the DCS says (/cluster). A node's own /patroni flag can
    lag by up to loop_wait: it is refreshed by that node's HA loop."""
    ms = (observe.cluster(topo) or {}).get("members", [])
    return sorted(m["name"] for m in ms if m.get("role") == "sync_standby" and m.get("state") == "streaming")


def s_replica_loss(d: Drill) -> None:
    replicas = [n for n in d.topo.pg_names if n != d.old_leader]
    syncs: list[str] = []
    if d.sync:
        d.wait(lambda: sync_standbys(d.topo), 30, "a sync standby", interval=0.2)
        syncs = sync_standbys(d.topo)
    victim = syncs[0] if syncs else replicas[0]
    d.extra["replica_killed"] = victim
    since = d.mark("fault", f"SIGKILL {victim}{' (sync standby)' if victim in syncs else ''}")
    kill_node(d.topo, victim)
    if d.sync:
        others = [n for n in replicas if n != victim]
        d.wait(lambda: any(n in sync_standbys(d.topo) for n in others), d.timing.ttl + 30, "another sync standby", interval=0.2)
        d.extra["new_sync_standby"] = sync_standbys(d.topo)
    d.recovered_after(since, 60)
    d.hold(1.0)
    since = d.mark("restore", f"restart {victim}")
    control.request_start(d.topo, victim)
    d.measure_rejoin(victim, since)
    d.extra["replica_rejoin_s"] = d.rejoin_s
    d.notes.append(
        f"killed {victim}; sync standby now {', '.join(d.extra.get('new_sync_standby', [])) or '-'}; {victim} streaming {d.rejoin_s} s after restart"
    )
    d.rejoin_s = None  # "rejoin" in the table is the old primary's: not applicable here
    d.rejoin_node = None


def s_postgres_crash(d: Drill) -> None:
    old = d.old_leader
    pm = control.postmaster_of(d.topo, old)
    if not pm:
        raise DrillError(f"no postmaster for {old}")
    since = d.mark("fault", f"SIGKILL postmaster of {old}")
    os.kill(pm, signal.SIGKILL)

    def restarted() -> bool:
        new = control.postmaster_of(d.topo, old)
        v = d.rec.monitor.view(old)
        return bool(new and new != pm and v and v.primary and v.t > since) or d.promoted() is not None

    t = d.wait(restarted, d.timing.ttl + 60, f"{old}'s PostgreSQL to run again (or a failover)")
    d.recovered_after(t, 60)
    d.extra["postgres_back_s"] = round(t - since, 3)
    d.notes.append(f"PostgreSQL on {old} running again {d.extra['postgres_back_s']} s after the crash" if not d.promoted() else f"failover to {d.promoted()}")


@dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    title: str
    run: Callable[[Drill], None]
    unavailable: Callable[[Topology], str | None] = lambda topo: None


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(1, "node-death", "SIGKILL the primary (Patroni + PostgreSQL), restart it", s_node_death),
        Scenario(2, "frozen-primary", "SIGSTOP the primary longer than ttl, then SIGCONT", s_frozen_primary),
        Scenario(3, "partition", "cut the primary off from etcd and its peers, then heal", s_partition, partition_unavailable),
        Scenario(4, "switchover", "planned switchover", s_switchover),
        Scenario(5, "etcd-loss-1", "lose 1 of 3 etcd members (the leader)", s_etcd_loss_1),
        Scenario(6, "etcd-loss-2", "lose 2 of 3 etcd members (failsafe mode)", s_etcd_loss_2),
        Scenario(7, "replica-loss", "lose a replica (the sync standby in synchronous mode)", s_replica_loss),
        Scenario(8, "postgres-crash", "SIGKILL the primary's postmaster, Patroni alive", s_postgres_crash),
    )
}


def resolve(names: list[str]) -> list[Scenario]:
    by_number = {str(s.number): s for s in SCENARIOS.values()}
    out = []
    for n in names:
        s = SCENARIOS.get(n) or by_number.get(n)
        if s is None:
            raise DrillError(f"unknown scenario {n!r}; known: {', '.join(f'{s.number} {s.name}' for s in SCENARIOS.values())}")
        out.append(s)
    return out


# ---------------------------------------------------------------- running


def restore(topo: Topology, frozen: list[int], timeout: float = 180) -> None:
    """Every daemon running again (frozen ones resumed, dead ones restarted, network
    healed), then healthy."""
    netcut.heal(topo)
    if frozen:
        _kill(frozen, signal.SIGCONT)
    for n in [*topo.etcd_names, *topo.pg_names, "haproxy"]:
        if control.pid_of(topo, n) is None:
            control.request_start(topo, n)
    observe.wait_healthy(topo, timeout=timeout)


def run_drill(
    topo: Topology, name: str, out_dir: Path | None = None, load: LoadSettings | None = None, png: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run one scenario on a running lab and return its result (also written as JSON,
    with the raw attempts and a PNG timeline, under ``out_dir``)."""
    sc = resolve([name])[0]
    started = datetime.now(UTC)
    out_dir = out_dir or default_out_dir(topo)
    result: dict[str, Any] = {
        "number": sc.number,
        "scenario": sc.name,
        "title": sc.title,
        "stack": topo.stack,
        "synchronous_mode": topo.settings.patroni.synchronous_mode,
        "started_at": started.isoformat(timespec="seconds"),
        "skipped": sc.unavailable(topo),
    }
    if result["skipped"]:
        log(f"[{sc.number} {sc.name}] skipped: {result['skipped']}")
        return result
    observe.wait_healthy(topo, timeout=180)
    timing = current_timing(topo)
    old = observe.leader(topo)
    if not old:
        raise DrillError("no leader before the drill")
    ensure_tables(topo)
    tag = f"{sc.name}-{started:%Y%m%dT%H%M%S%f}"
    rec = Recorder(topo, tag, load)
    d = Drill(topo, rec, timing, old)
    log(f"[{sc.number} {sc.name}] {sc.title}; leader {old}, ttl {timing.ttl} loop_wait {timing.loop_wait} retry_timeout {timing.retry_timeout}")
    error: str | None = None
    healthy = False
    present: dict[str, set[int]] | None = None
    t_start = time.monotonic()
    rec.start()
    try:
        try:
            d.wait(lambda: rec.acked_since(0.0) and old in rec.monitor.primaries(), 30, "both writers to write and the monitor to see the leader")
            d.hold(1.0)
            sc.run(d)
            settle = d.rec.now()
            d.recovered_after(settle, 60)
            d.hold(1.0)
        except Exception as e:  # noqa: BLE001 - the drill still restores and reports
            error = f"{type(e).__name__}: {e}"
            log(f"[{sc.number} {sc.name}] ERROR {error}")
        finally:
            rec.stop()
        try:
            restore(topo, d.frozen)
            healthy = True
        except errors.LabError as e:
            error = (error + "; " if error else "") + f"not healthy afterwards: {e}"
        present = {p: present_seqs(topo, cl) for p, cl in rec.clients.items()} if healthy else None
    finally:
        if d.frozen:  # never leave a node stopped, whatever happened
            _kill(d.frozen, signal.SIGCONT)
    attempts = rec.attempts()
    lead = leadership(rec.monitor_log(), old, d.fault_t)
    clients = {p: client_summary([a for a in attempts if a.source == p], d.fault_t, present[p] if present else None) for p in rec.clients}
    result.update(
        {
            "timing": timing.__dict__,
            "duration_s": round(time.monotonic() - t_start, 1),
            "old_leader": old,
            "new_leader": lead["new_leader"],
            "failover": lead["failover"],
            "promotions": lead["promotions"],
            "leader_key_changes": lead["leader_key_changes"],
            "fault_t": round(d.fault_t, 3) if d.fault_t is not None else None,
            "marks": d.marks,
            "clients": clients,
            "acked_missing": sum(len(v.get("acked_missing", [])) for v in clients.values()) if present else None,
            "dual_primary": dual_primaries(attempts),
            "rejoin_node": d.rejoin_node,
            "rejoin_s": d.rejoin_s,
            "healthy_after": healthy,
            "error": error,
            "notes": d.notes,
            **d.extra,
        }
    )
    if error:
        d.notes.append(f"ERROR: {error}")
    out_dir.mkdir(parents=True, exist_ok=True)
    events = out_dir / f"{sc.number}-{sc.name}.events.json"
    events.write_text(json.dumps({"clients": rec.clients, "attempts": [a.row() for a in attempts], "monitor": rec.monitor_log()}))
    result["events_file"] = str(events)
    if png:
        png_path = out_dir / f"{sc.number}-{sc.name}.png"
        plot(png_path, result, attempts, topo.pg_names)
        result["png"] = str(png_path)
    (out_dir / f"{sc.number}-{sc.name}.json").write_text(json.dumps(result, indent=2))
    cl = result["clients"]
    log(
        f"[{sc.number} {sc.name}] failover {'yes ' + str(old) + '->' + str(result['new_leader']) if result['failover'] else 'no'}; "
        f"RTO libpq {cl['libpq']['rto_s']} s, haproxy {cl['haproxy']['rto_s']} s; acked lost {result['acked_missing']}; "
        f"two primaries {len(result['dual_primary'])}; rejoin {result['rejoin_s']} s"
    )
    return result


def default_out_dir(topo: Topology) -> Path:
    return topo.run_dir / "drills" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_drills(
    topo: Topology, names: list[str], out_dir: Path | None = None, load: LoadSettings | None = None, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    out_dir = out_dir or default_out_dir(topo)
    results = [run_drill(topo, s.name, out_dir, load, log=log) for s in resolve(names)]
    write_summary(out_dir, results)
    return results


def write_summary(out_dir: Path, results: list[dict[str, Any]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "table.txt").write_text(table(results) + "\n")


def cli(topo: Topology, names: list[str], all_: bool, profile: str | None, out: str | None) -> int:
    """``python -m lab drill``: run scenarios on the running lab, print the table."""
    if not control.running(topo):
        print(f"lab {topo.stack} is not running ({topo.run_dir}); start it with: python -m lab --stack {topo.stack} up")
        return 3
    if all_:
        names = [s.name for s in SCENARIOS.values()]
    if not names:
        print("name a scenario or use --all:\n" + "\n".join(f"  {s.number} {s.name:15} {s.title}" for s in SCENARIOS.values()))
        return 2
    scenarios = resolve(names)
    if profile and profile not in TIMING_PROFILES:
        print(f"unknown timing profile {profile!r}; known: {', '.join(TIMING_PROFILES)}")
        return 2
    if profile:
        t = apply_timing(topo, profile)
        print(f"timing profile {profile}: ttl {t.ttl} loop_wait {t.loop_wait} retry_timeout {t.retry_timeout} (PATCH /config)")
    out_dir = Path(out) if out else default_out_dir(topo)
    results = run_drills(topo, [s.name for s in scenarios], out_dir)
    print()
    print(table(results))
    print(f"\nJSON, raw attempts and PNG timelines: {out_dir}")
    bad = [r for r in results if not r.get("skipped") and (r.get("error") or r.get("acked_missing") or r.get("dual_primary"))]
    return 1 if bad else 0
