"""The drills' detectors (lab/drills/detect.py) on synthetic timelines: each verdict a
lab test relies on (two writable primaries, acknowledged writes lost, RTO, failover)
has a case where it must fire and a case where it must not."""

from __future__ import annotations

from typing import Any

import pytest

from lab.drills.detect import MOMENT_MERGE_S, client_summary, dual_primaries, leadership, lost_writes, rto
from lab.drills.events import COMMITTED, LOCAL_ONLY, NOT_COMMITTED, READ_ONLY, UNKNOWN, Attempt

pytestmark = pytest.mark.unit

LATENCY = 0.005  #: answer time of every synthetic attempt


def writes(
    source: str, node: str | None, start: float, end: float, outcome: str = COMMITTED, step: float = 0.1, seq0: int = 1
) -> list[Attempt]:
    """One attempt every ``step`` seconds from ``start`` up to ``end`` included."""
    n = round((end - start) / step) + 1
    return [Attempt(source, seq0 + i, start + i * step, start + i * step + LATENCY, outcome, node) for i in range(n)]


def one(source: str, node: str | None, t0: float, outcome: str = COMMITTED, seq: int = 1) -> Attempt:
    return Attempt(source, seq, t0, t0 + LATENCY, outcome, node)


def timeline(*parts: list[Attempt] | Attempt) -> list[Attempt]:
    out: list[Attempt] = []
    for p in parts:
        out += p if isinstance(p, list) else [p]
    return sorted(out, key=lambda a: a.t0)


# ------------------------------------------------------------------ two writable primaries


def nodes_of(moments: list[dict[str, Any]]) -> list[list[str]]:
    return [m["nodes"] for m in moments]


def test_overlapping_writable_primaries_are_found() -> None:
    # pg1 keeps acknowledging its probe while the libpq writer commits on pg2 for a second.
    atts = timeline(writes("probe:pg1", "pg1", 0.0, 5.0), writes("libpq", "pg2", 2.0, 3.0))
    moments = dual_primaries(atts)
    assert nodes_of(moments) == [["pg1", "pg2"]]
    assert 2.0 <= moments[0]["t_start"] <= moments[0]["t_end"] <= 3.1


def test_two_probes_overlapping_are_found() -> None:
    atts = timeline(writes("probe:pg1", "pg1", 0.0, 5.0), writes("probe:pg2", "pg2", 4.0, 8.0))
    assert nodes_of(dual_primaries(atts)) == [["pg1", "pg2"]]


def test_one_stray_ack_of_the_old_primary_inside_the_new_ones_run_is_found() -> None:
    atts = timeline(writes("libpq", "pg2", 3.0, 6.0), one("haproxy", "pg1", 4.5))
    assert nodes_of(dual_primaries(atts)) == [["pg1", "pg2"]]


def test_adjacent_primaries_are_not_two_at_once() -> None:
    # pg1 takes its last write at 5.0; pg2 takes its first at 5.1: a clean handover.
    atts = timeline(
        writes("probe:pg1", "pg1", 0.0, 5.0),
        writes("probe:pg2", "pg2", 5.1, 9.0),
        writes("libpq", "pg1", 0.05, 4.95),
        writes("libpq", "pg2", 5.15, 9.05),
    )
    assert dual_primaries(atts) == []


def test_an_ack_touching_the_end_of_a_run_is_not_inside_it() -> None:
    # Sent at pg1's last send of the run: not strictly inside the run.
    atts = timeline(writes("probe:pg1", "pg1", 0.0, 5.0), one("libpq", "pg2", 5.0))
    assert dual_primaries(atts) == []


def test_a_writer_failing_over_is_not_two_primaries() -> None:
    atts = timeline(
        writes("libpq", "pg1", 0.0, 2.0),
        writes("libpq", None, 2.1, 3.9, NOT_COMMITTED, seq0=100),
        writes("libpq", "pg2", 4.0, 6.0, seq0=200),
    )
    assert dual_primaries(atts) == []


def test_standbys_and_local_only_commits_are_not_primaries() -> None:
    atts = timeline(
        writes("probe:pg1", "pg1", 0.0, 5.0),
        writes("probe:pg2", "pg2", 0.0, 5.0, READ_ONLY),
        writes("probe:pg3", "pg3", 0.0, 5.0, LOCAL_ONLY),
    )
    assert dual_primaries(atts) == []


def test_evidence_close_together_is_one_moment_far_apart_two() -> None:
    base = writes("probe:pg1", "pg1", 0.0, 10.0)
    close = dual_primaries(
        timeline(base, one("libpq", "pg2", 2.0, seq=1), one("haproxy", "pg2", 2.0 + MOMENT_MERGE_S / 2))
    )
    assert len(close) == 1
    assert close[0]["evidence"] == 2
    far = dual_primaries(
        timeline(base, one("libpq", "pg2", 2.0, seq=1), one("haproxy", "pg2", 2.0 + 3 * MOMENT_MERGE_S))
    )
    assert len(far) == 2


# ------------------------------------------------------------------ acknowledged but lost


def test_acked_write_missing_after_failover_is_lost() -> None:
    atts = writes("libpq", "pg1", 0.0, 0.9)  # seq 1..10, all acknowledged
    r = lost_writes(atts, present=set(range(1, 11)) - {7})
    assert r["acked_missing"] == [7]


def test_acked_writes_all_present_lose_nothing() -> None:
    atts = writes("libpq", "pg1", 0.0, 0.9)
    assert lost_writes(atts, present=set(range(1, 11)))["acked_missing"] == []


def test_unacknowledged_writes_may_be_missing_or_present() -> None:
    atts = timeline(
        writes("libpq", "pg1", 0.0, 0.4),
        one("libpq", None, 0.5, UNKNOWN, seq=6),
        one("libpq", None, 0.6, UNKNOWN, seq=7),
    )
    r = lost_writes(atts, present={1, 2, 3, 4, 5, 7})
    assert r["acked_missing"] == []
    assert r["unknown_present"] == 1


def test_a_not_committed_write_that_exists_is_reported() -> None:
    atts = timeline(
        writes("libpq", "pg1", 0.0, 0.4),
        one("libpq", None, 0.5, NOT_COMMITTED, seq=6),
        one("libpq", None, 0.6, NOT_COMMITTED, seq=7),
    )
    r = lost_writes(atts, present={1, 2, 3, 4, 5, 6})
    assert r["failed_present"] == [6]
    assert r["acked_missing"] == []


def test_client_summary_reports_lost_writes_only_when_rows_were_read() -> None:
    atts = writes("libpq", "pg1", 0.0, 0.9)
    assert "acked_missing" not in client_summary(atts, 0.5, None)
    assert client_summary(atts, 0.5, {1, 2})["acked_missing"] == list(range(3, 11))


# ------------------------------------------------------------------ RTO


def outage(fault: float, back: float, end: float = 10.0) -> list[Attempt]:
    """A writer acknowledging every 0.1 s, failing from the fault until ``back``."""
    return timeline(
        writes("libpq", "pg1", 0.0, fault - 0.1),
        writes("libpq", None, fault, back - 0.1, NOT_COMMITTED, seq0=1000),
        writes("libpq", "pg2", back, end, seq0=2000),
    )


def test_rto_is_the_write_outage_across_the_fault() -> None:
    assert rto(outage(fault=3.0, back=8.0), fault_t=3.0) == pytest.approx(5.1, abs=0.001)


def test_rto_is_the_longest_gap_after_the_fault() -> None:
    atts = timeline(
        writes("libpq", "pg1", 0.0, 2.9),
        writes("libpq", "pg2", 4.0, 5.0, seq0=100),  # 1.1 s gap first
        writes("libpq", "pg2", 8.0, 9.0, seq0=200),  # then a 3.0 s gap
    )
    assert rto(atts, fault_t=3.0) == pytest.approx(3.0, abs=0.001)


def test_rto_of_an_unnoticed_fault_is_the_write_interval() -> None:
    assert rto(writes("libpq", "pg1", 0.0, 9.0), fault_t=3.05) == pytest.approx(0.1, abs=0.001)


def test_rto_counts_an_ack_at_the_fault_as_before_it() -> None:
    atts = timeline(one("libpq", "pg1", 3.0 - LATENCY, seq=1), one("libpq", "pg2", 5.0 - LATENCY, seq=2))
    assert rto(atts, fault_t=3.0) == pytest.approx(2.0, abs=0.001)


def test_no_rto_without_a_fault_or_without_acks_on_both_sides() -> None:
    atts = writes("libpq", "pg1", 0.0, 9.0)
    assert rto(atts, fault_t=None) is None
    assert (
        rto(writes("libpq", "pg1", 0.0, 2.9) + writes("libpq", None, 3.0, 9.0, NOT_COMMITTED, seq0=100), fault_t=3.0)
        is None
    )  # never resumed
    assert rto(writes("libpq", "pg2", 4.0, 9.0), fault_t=3.0) is None  # nothing before
    assert client_summary(writes("libpq", None, 3.0, 9.0, NOT_COMMITTED), 3.0, None)["rto_s"] is None


# ------------------------------------------------------------------ leadership


def view(t: float, node: str, role: str) -> dict[str, Any]:
    return {"t": t, "node": node, "reachable": True, "role": role, "state": "running"}


def test_a_promotion_after_the_fault_is_a_failover() -> None:
    log = {
        "views": [view(0.0, "pg1", "primary"), view(6.0, "pg2", "primary")],
        "leader_keys": [(0.0, "pg1"), (6.0, "pg2")],
    }
    r = leadership(log, "pg1", fault_t=3.0)
    assert r["failover"]
    assert r["new_leader"] == "pg2"
    assert [p["node"] for p in r["promotions"]] == ["pg2"]


def test_the_old_leader_staying_primary_is_no_failover() -> None:
    log = {
        "views": [view(0.0, "pg1", "primary"), view(0.0, "pg2", "replica"), view(5.0, "pg1", "primary")],
        "leader_keys": [(0.0, "pg1"), (4.0, None), (5.0, "pg1")],
    }
    r = leadership(log, "pg1", fault_t=3.0)
    assert not r["failover"]
    assert r["new_leader"] is None
    assert r["promotions"] == []


# ------------------------------------------------------------------ how many etcd members the quorum drill kills


@pytest.mark.parametrize("members, killed", [(3, 2), (5, 3)])
def test_quorum_loss_is_a_majority_of_the_members(members: int, killed: int) -> None:
    from lab.drills.scenarios import quorum_loss

    assert quorum_loss(members) == killed
