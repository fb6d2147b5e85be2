"""machines/drills.py's pure logic: the load's timeline, the leader/rejoin readings of
Patroni's /patroni, the verdicts. No machine needed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab.drills.events import COMMITTED, NOT_COMMITTED, UNKNOWN, Attempt
from machines import drills

pytestmark = pytest.mark.unit


def _line(a: Attempt) -> str:
    return json.dumps(dict(zip(("source", "seq", "t0", "t1", "outcome", "node", "error"), a.row(), strict=True)))


def test_read_timeline_attempts_present_and_torn_line() -> None:
    atts = [Attempt("libpq", 1, 0.0, 0.01, COMMITTED, "pg1"), Attempt("probe:pg2", 1, 0.0, 0.01, "read_only", "pg2")]
    lines = [_line(a) for a in atts] + ['{"read_back_error": "x"}', '{"present": [1, 2]}', '{"source": "libpq", "se']
    got, present = drills.read_timeline(lines)
    assert [(a.source, a.seq, a.outcome, a.node) for a in got] == [
        ("libpq", 1, COMMITTED, "pg1"),
        ("probe:pg2", 1, "read_only", "pg2"),
    ]
    assert present == {1, 2}
    assert drills.read_timeline(lines[:2])[1] is None


def test_acks_after_excludes_old_primary_other_sources_and_failures() -> None:
    atts = [
        Attempt("libpq", 1, 0.0, 1.0, COMMITTED, "pg1"),
        Attempt("libpq", 2, 1.0, 3.0, COMMITTED, "pg1"),  # the old primary, after the fault
        Attempt("libpq", 3, 3.0, 4.0, UNKNOWN, None),
        Attempt("probe:pg2", 1, 3.0, 4.0, COMMITTED, "pg2"),
        Attempt("libpq", 4, 4.0, 5.0, COMMITTED, "pg2"),
    ]
    assert drills.acks_after(atts, 2.0) == 2
    assert drills.acks_after(atts, 2.0, exclude="pg1") == 1
    assert drills.acks_after(atts, 5.0) == 0


def test_leader_of_and_streaming_replica() -> None:
    docs: dict[str, dict[str, Any] | None] = {
        "pg1": {"role": "primary", "state": "running"},
        "pg2": {"role": "replica", "state": "running", "replication_state": "streaming"},
        "pg3": None,
    }
    assert drills.leader_of(docs) == ["pg1"]
    assert drills.leader_of({"pg1": {"role": "master", "state": "running"}}) == ["pg1"]
    assert drills.leader_of({"pg1": {"role": "primary", "state": "starting"}}) == []
    assert drills.is_streaming_replica(docs["pg2"])
    assert drills.is_streaming_replica({"role": "replica", "state": "running"})  # Patroni without the field
    assert not drills.is_streaming_replica(
        {"role": "replica", "state": "running", "replication_state": "in archive recovery"}
    )
    assert not drills.is_streaming_replica(docs["pg1"])
    assert not drills.is_streaming_replica(None)


def _result(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "scenario": "node-death",
        "old_leader": "pg1",
        "failover": True,
        "rejoin_s": 12.0,
        "dual_primary": [],
        "clients": {"libpq": {"rto_s": 9.5, "acked_missing": [], "failed_present": []}},
    }
    r.update(over)
    return r


def test_breaches() -> None:
    assert drills.breaches(_result()) == []
    lost = drills.breaches(_result(clients={"libpq": {"rto_s": 1.0, "acked_missing": [7], "failed_present": [3]}}))
    assert len(lost) == 2
    assert "1 acknowledged write(s) lost" in lost[0]
    assert "two writable primaries" in drills.breaches(_result(dual_primary=[{"nodes": ["pg1", "pg2"]}]))[0]
    assert "not verified" in drills.breaches(_result(clients={"libpq": {"rto_s": 1.0}}))[0]
    assert drills.breaches(_result(failover=False, rejoin_s=None)) == [
        "no new primary (still pg1)",
        "pg1 did not rejoin as a streaming replica",
    ]
    assert drills.breaches(_result(scenario="switchover", rejoin_s=None)) == []
    assert drills.breaches(_result(clients={"libpq": {"rto_s": None, "acked_missing": [], "failed_present": []}})) == [
        "writes did not resume after the fault"
    ]
    assert NOT_COMMITTED  # the outcomes the load writes are the lab's


def _frozen(**kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "scenario": "frozen-primary",
        "old_leader": "pg1",
        "failover": True,
        "dual_primary": [],
        "rejoin_s": 90.0,
        "promoted_s": 21.0,
        "reset_s": 14.0,
        "clients": {"libpq": {"acked_missing": [], "failed_present": [], "rto_s": 22.0}},
    }
    r.update(kw)
    return r


def test_frozen_primary_verdicts() -> None:
    assert drills.breaches(_frozen()) == []
    assert "did not reset" in " ".join(drills.breaches(_frozen(reset_s=None)))
    late = drills.breaches(_frozen(reset_s=22.5))
    assert len(late) == 1
    assert "leader key expired first" in late[0]
    assert "did not rejoin" in " ".join(drills.breaches(_frozen(rejoin_s=None)))
    lost = drills.breaches(_frozen(clients={"libpq": {"acked_missing": [7], "failed_present": [], "rto_s": 1.0}}))
    assert "1 acknowledged write(s) lost" in " ".join(lost)


def test_reset_seen_on_the_console() -> None:
    assert drills.reset_seen("") is None
    assert drills.reset_seen("[  300.1] cloud-init[1]: something\n") is None
    assert drills.reset_seen("[ 512.2] softdog: Initiating system reboot\nSeaBIOS\n") == drills.RESET_MARKERS[0]
    assert drills.reset_seen("SeaBIOS\n[    0.000000] Linux version 6.1.0\n") == "Linux version "


def test_guest_freeze_to_reset_uses_the_vms_kernel_clock() -> None:
    tail = (
        f"[  790.100000] {drills.FROZEN_MARK}\n"
        "[  795.0] cloud-init[1]: noise\n"
        f"[  804.600000] {drills.RESET_MARKERS[0]}\n"
        "SeaBIOS\n[    0.000000] Linux version 6.1.0\n"
    )
    assert drills.guest_freeze_to_reset(tail) == 14.5
    assert drills.guest_freeze_to_reset(tail.split("[  804")[0]) is None  # not reset (yet)
    assert drills.guest_freeze_to_reset(f"[  804.6] {drills.RESET_MARKERS[0]}\n") is None  # no freeze mark


def test_lost_writes_split_at_the_freeze() -> None:
    writer = [
        Attempt("libpq", 1, 0.0, 1.0, COMMITTED, "pg1"),
        Attempt("libpq", 2, 1.0, 2.5, COMMITTED, "pg1"),  # acked while the freeze command ran
        Attempt("libpq", 3, 2.5, 9.0, COMMITTED, "pg1"),  # acked after every process was stopped
    ]
    split = drills.lost_around_freeze(writer, [2, 3], frozen_t=3.0)
    assert split == {"acked_lost_before_freeze": [2], "acked_lost_after_freeze": [3]}
    assert drills.lost_around_freeze(writer, [7], 3.0)["acked_lost_after_freeze"] == [7]  # unknown: counted after


def test_frozen_primary_async_rpo_is_reported_not_a_breach_but_sync_loss_is() -> None:
    lost = {"libpq": {"acked_missing": [156], "failed_present": [], "rto_s": 21.8}}
    rpo = _frozen(clients=lost, synchronous_mode=False, acked_lost_before_freeze=[156], acked_lost_after_freeze=[])
    assert drills.breaches(rpo) == []
    after = dict(rpo, acked_lost_before_freeze=[], acked_lost_after_freeze=[156])
    assert "1 acknowledged write(s) lost" in " ".join(drills.breaches(after))
    sync = dict(rpo, synchronous_mode=True)
    assert "1 acknowledged write(s) lost" in " ".join(drills.breaches(sync))
    unsplit = _frozen(clients=lost, synchronous_mode=False)  # no split (freeze not confirmed): a breach
    assert drills.breaches(unsplit)
