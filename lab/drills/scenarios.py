"""The drill scenarios: what each breaks, what it waits for, how it puts things back.
lab/drills/run.py runs them with the load and writes the report; the numbers are
issue 5's. Each ends with every daemon running and the cluster healthy (every etcd
member healthy, a leader, replicas streaming, a sync standby in synchronous mode):

1 node-death      SIGKILL the primary's Patroni, postmaster and backends; restart it
2 frozen-primary  SIGSTOP them for longer than ttl, then SIGCONT
3 partition       cut the primary off from etcd and its peers (nftables matching the
                  node's cgroup, lab/drills/netcut.py; clients still reach it), then heal
4 switchover      planned switchover through Patroni's REST API
5 etcd-loss-1     SIGKILL the etcd leader for ttl + loop_wait; restart it
6 etcd-loss-2     SIGKILL a majority of the etcd members, the leader first (2 of 3,
                  3 of 5: quorum lost; failsafe mode keeps the primary, no
                  promotion) for ttl + retry_timeout + loop_wait; restart them
7 replica-loss    SIGKILL the synchronous standby (any replica when asynchronous);
                  writes must go on with the other replica; restart it
8 postgres-crash  SIGKILL the primary's postmaster only; Patroni restarts it
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab import control, observe
from lab.errors import DrillError
from lab.topology import Topology

from . import netcut
from .faults import freeze_node, kill_node, thaw
from .load import Recorder
from .timing import Timing

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
    thaw(d.frozen)
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
    victim = observe.etcd_leader(d.topo) or d.topo.etcd_names[0]
    d.extra["etcd_killed"] = [victim]
    d.notes.append(f"killed the etcd leader {victim}")
    d.mark("fault", f"SIGKILL {victim} (etcd leader)")
    control.signal_node(d.topo, victim, signal.SIGKILL)
    d.hold(d.timing.ttl + d.timing.loop_wait)
    d.mark("restore", f"restart {victim}")
    control.request_start(d.topo, victim)
    wait_etcd_healthy(d)


def quorum_loss(members: int) -> int:
    """How many of ``members`` etcd members must be lost for quorum to be lost: a majority."""
    return members // 2 + 1


def wait_etcd_healthy(d: Drill) -> None:
    n = len(d.topo.etcd_names)
    d.wait(lambda: all(observe.etcd_health(d.topo).values()), 60, f"etcd {n}/{n} healthy", interval=0.5)


def s_etcd_loss_2(d: Drill) -> None:
    lead = observe.etcd_leader(d.topo) or d.topo.etcd_names[0]
    victims = [lead, *[n for n in d.topo.etcd_names if n != lead][: quorum_loss(len(d.topo.etcd_names)) - 1]]
    d.extra["etcd_killed"] = victims
    offset = observe.log_size(d.topo, d.old_leader)
    d.mark("fault", f"SIGKILL {' '.join(victims)} (quorum lost)")
    for v in victims:
        control.signal_node(d.topo, v, signal.SIGKILL)
    d.hold(d.timing.ttl + d.timing.retry_timeout + d.timing.loop_wait)
    d.extra["primary_during_outage"] = d.rec.monitor.primaries()
    # Patroni's own word that failsafe mode kept the primary (all members answered /failsafe).
    kept = observe.log_since(d.topo, d.old_leader, offset).count(
        "continue to run as a leader because failsafe mode is enabled"
    )
    d.extra["failsafe_confirmations"] = kept
    d.notes.append(
        f"{' '.join(victims)} killed; primary during the outage: {', '.join(d.extra['primary_during_outage']) or 'none'}; failsafe confirmations {kept}"
    )
    d.mark("restore", f"restart {' '.join(victims)}")
    for v in victims:
        control.request_start(d.topo, v)
    wait_etcd_healthy(d)
    d.wait(lambda: d.rec.monitor.leader_key is not None and d.rec.monitor.etcd_reachable, 60, "a leader key in etcd")


def s_replica_loss(d: Drill) -> None:
    replicas = [n for n in d.topo.pg_names if n != d.old_leader]
    syncs: list[str] = []
    if d.sync:
        d.wait(lambda: observe.sync_standbys(d.topo), 30, "a sync standby", interval=0.2)
        syncs = observe.sync_standbys(d.topo)
    victim = syncs[0] if syncs else replicas[0]
    d.extra["replica_killed"] = victim
    since = d.mark("fault", f"SIGKILL {victim}{' (sync standby)' if victim in syncs else ''}")
    kill_node(d.topo, victim)
    if d.sync:
        others = [n for n in replicas if n != victim]
        d.wait(
            lambda: any(n in observe.sync_standbys(d.topo) for n in others),
            d.timing.ttl + 30,
            "another sync standby",
            interval=0.2,
        )
        d.extra["new_sync_standby"] = observe.sync_standbys(d.topo)
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
    d.notes.append(
        f"PostgreSQL on {old} running again {d.extra['postgres_back_s']} s after the crash"
        if not d.promoted()
        else f"failover to {d.promoted()}"
    )


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
        Scenario(
            3, "partition", "cut the primary off from etcd and its peers, then heal", s_partition, partition_unavailable
        ),
        Scenario(4, "switchover", "planned switchover", s_switchover),
        Scenario(5, "etcd-loss-1", "lose 1 etcd member (the leader)", s_etcd_loss_1),
        Scenario(6, "etcd-loss-2", "lose a majority of the etcd members (failsafe mode)", s_etcd_loss_2),
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
            raise DrillError(
                f"unknown scenario {n!r}; known: {', '.join(f'{s.number} {s.name}' for s in SCENARIOS.values())}"
            )
        out.append(s)
    return out
