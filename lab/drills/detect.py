"""The detectors: pure functions from a drill's recorded timeline to its verdicts. No
process, no I/O; tests/unit/test_drill_detectors.py proves each one on synthetic
timelines, positive and negative.

Definitions (README "Failover drills"):

- RTO of a client path (:func:`rto`): the longest time between two consecutive
  acknowledged commits of that client, from its last ack before the fault to the end
  of the drill. None without an ack on both sides of the fault.
- RPO (:func:`lost_writes`): acknowledged commits (``committed``) whose row is missing
  afterwards. Unacknowledged attempts may be missing; ``not_committed`` ones must be.
- Two writable primaries (:func:`dual_primaries`): a commit acknowledged by node A
  while node B was inside a run of consecutive acknowledged commits from one source
  (writer or probe) with no failure in between, strictly after B's first ack of the
  run and before B's last write of it.
- Leadership (:func:`leadership`): promotions and moves of the etcd leader key seen by
  the monitor after the fault.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .events import COMMITTED, NOT_COMMITTED, UNKNOWN, Attempt

#: Evidence of two writable primaries closer than this (seconds) is one moment.
MOMENT_MERGE_S = 1.0


def rto(attempts: Iterable[Attempt], fault_t: float | None) -> float | None:
    """The longest gap between consecutive acks, from the last ack before ``fault_t``
    on (see module doc); None without a fault or without acks on both sides of it."""
    if fault_t is None:
        return None
    acks = sorted(a.t1 for a in attempts if a.outcome == COMMITTED)
    before = [t for t in acks if t <= fault_t]
    after = [t for t in acks if t > fault_t]
    if not (before and after):
        return None
    series = [before[-1], *after]
    return round(max(b - a for a, b in itertools.pairwise(series)), 3)


def lost_writes(attempts: Iterable[Attempt], present: set[int]) -> dict[str, Any]:
    """Compare one client's attempts with the sequence numbers found afterwards.

    ``acked_missing``: acknowledged but missing (lost writes, must be empty in
    synchronous mode); ``failed_present``: reported as not committed yet present (must
    be empty); ``unknown_present``: how many outcome-unknown attempts did commit."""
    atts = list(attempts)
    acked = {a.seq for a in atts if a.outcome == COMMITTED}
    failed = {a.seq for a in atts if a.outcome == NOT_COMMITTED}
    unknown = {a.seq for a in atts if a.outcome == UNKNOWN}
    return {
        "acked_missing": sorted(acked - present),
        "failed_present": sorted(failed & present),
        "unknown_present": len(unknown & present),
    }


def client_summary(attempts: list[Attempt], fault_t: float | None, present: set[int] | None) -> dict[str, Any]:
    """Counts, RTO and (when ``present`` is known) lost writes of one client path."""
    acks = sorted(a.t1 for a in attempts if a.outcome == COMMITTED)
    out: dict[str, Any] = {
        "attempts": len(attempts),
        "committed": sum(a.outcome == COMMITTED for a in attempts),
        "not_committed": sum(a.outcome == NOT_COMMITTED for a in attempts),
        "unknown": sum(a.outcome == UNKNOWN for a in attempts),
        "rto_s": rto(attempts, fault_t),
        "last_ack_before_fault": None,
        "first_ack_after_fault": None,
        "servers": sorted({a.node for a in attempts if a.outcome == COMMITTED and a.node}),
    }
    if fault_t is not None:
        before = [t for t in acks if t <= fault_t]
        after = [t for t in acks if t > fault_t]
        if before:
            out["last_ack_before_fault"] = round(before[-1], 3)
        if after:
            out["first_ack_after_fault"] = round(after[0], 3)
    if present is not None:
        out.update(lost_writes(attempts, present))
    return out


def runs(attempts: Iterable[Attempt]) -> list[tuple[str, float, float]]:
    """(node, first ack, last send) of every run of >= 2 consecutive acknowledged commits
    on one node from one source, with no failed attempt of that source in between."""
    by_source: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_source[a.source].append(a)
    out: list[tuple[str, float, float]] = []

    def close(run: list[Attempt]) -> None:
        if len(run) >= 2 and run[0].t1 < run[-1].t0 and run[0].node:
            out.append((run[0].node, run[0].t1, run[-1].t0))

    for atts in by_source.values():
        atts.sort(key=lambda a: a.t0)
        cur: list[Attempt] = []
        for a in atts:
            if a.outcome == COMMITTED and a.node and cur and cur[-1].node == a.node:
                cur.append(a)
            else:
                close(cur)
                cur = [a] if a.outcome == COMMITTED and a.node else []
        close(cur)
    return out


def dual_primaries(attempts: list[Attempt]) -> list[dict[str, Any]]:
    """Moments when two nodes acknowledged writes at the same time (see module doc)."""
    intervals = runs(attempts)
    evidence: list[tuple[float, float, str, str]] = []
    for a in attempts:
        if a.outcome != COMMITTED or not a.node:
            continue
        for node, start, end in intervals:
            if node != a.node and start < a.t0 and a.t1 < end:
                evidence.append((a.t0, a.t1, a.node, node))
    evidence.sort()
    moments: list[dict[str, Any]] = []
    for t0, t1, n1, n2 in evidence:
        if moments and t0 - moments[-1]["t_end"] <= MOMENT_MERGE_S:
            m = moments[-1]
            m["t_end"] = max(m["t_end"], round(t1, 3))
            m["nodes"] = sorted(set(m["nodes"]) | {n1, n2})
            m["evidence"] += 1
        else:
            moments.append({"t_start": round(t0, 3), "t_end": round(t1, 3), "nodes": sorted({n1, n2}), "evidence": 1})
    return moments


def leadership(monitor_log: dict[str, Any], old_leader: str | None, fault_t: float | None) -> dict[str, Any]:
    """Promotions (a node other than the old leader reporting role primary after the
    fault) and changes of the etcd leader key."""
    since = fault_t if fault_t is not None else 0.0
    promotions = []
    seen: set[str] = set()
    for v in monitor_log["views"]:
        if (
            v["t"] >= since
            and v["node"] != old_leader
            and v["reachable"]
            and v["role"] == "primary"
            and v["node"] not in seen
        ):
            promotions.append({"t": round(v["t"], 3), "node": v["node"]})
            seen.add(v["node"])
    changes = []
    prev: str | None = None
    for t, holder in monitor_log["leader_keys"]:
        if prev is not None and holder != prev:
            changes.append({"t": round(t, 3), "from": prev, "to": holder})
        prev = holder if holder is not None else prev
    key_moved = any(ch["to"] not in (None, old_leader) for ch in changes if ch["t"] >= since)
    new_leader = promotions[-1]["node"] if promotions else None
    if new_leader is None and key_moved:
        new_leader = [ch["to"] for ch in changes if ch["to"] not in (None, old_leader)][-1]
    return {
        "promotions": promotions,
        "leader_key_changes": changes,
        "failover": bool(promotions) or key_moved,
        "new_leader": new_leader,
    }
