"""Failover drills on the prod stack (synchronous mode): invariants, never timings.

One lab for the module (conftest PREFIXES["drills"], run dir pgha-lab-tests/drills-<pid> under the
temp dir, kept when a test failed: logs/ plus drills/ with each drill's JSON, raw attempts and PNG). Each
test runs one scenario of lab/drills/scenarios.py, which ends with the cluster healthy again.
Timings are figures for bench/failover.py."""

from __future__ import annotations

from typing import Any

import pytest

from lab.drills import netcut
from lab.drills.run import run_drill
from lab.drills.scenarios import SCENARIOS
from lab.topology import Topology

from .conftest import lab_fixture

pytestmark = pytest.mark.lab

drill_lab = lab_fixture("drills", "prod")


def drill(topo: Topology, name: str) -> dict[str, Any]:
    r = run_drill(topo, name, topo.run_dir / "drills")
    assert r["error"] is None, r["error"]
    assert r["healthy_after"], "the drill did not put the cluster back to healthy"
    assert not r["dual_primary"], f"two writable primaries at once: {r['dual_primary']}"
    for path, cl in r["clients"].items():
        assert cl["committed"] > 0, f"{path}: no write acknowledged at all"
        assert cl["first_ack_after_fault"] is not None, f"{path}: writes never resumed after the fault"
        assert cl["failed_present"] == [], (
            f"{path}: attempts reported as not committed exist: {cl['failed_present'][:10]}"
        )
    return r


def no_acked_commit_lost(r: dict[str, Any]) -> None:
    assert r["synchronous_mode"]
    lost = {p: cl["acked_missing"] for p, cl in r["clients"].items() if cl["acked_missing"]}
    assert not lost, f"acknowledged commits missing after {r['scenario']}: {lost}"


def test_node_death_fails_over_without_loss_and_the_old_primary_rejoins(drill_lab: Topology) -> None:
    r = drill(drill_lab, "node-death")
    no_acked_commit_lost(r)
    assert r["failover"]
    assert r["new_leader"] not in (None, r["old_leader"])
    assert r["rejoin_node"] == r["old_leader"]
    assert r["rejoin_s"] is not None


def test_frozen_primary_is_replaced_and_rejoins_after_sigcont(drill_lab: Topology) -> None:
    r = drill(drill_lab, "frozen-primary")
    no_acked_commit_lost(r)
    assert r["failover"]
    assert r["new_leader"] != r["old_leader"]
    assert r["rejoin_node"] == r["old_leader"]
    assert r["rejoin_s"] is not None


def test_partition_of_the_primary(drill_lab: Topology) -> None:
    unsupported = netcut.kernel_unsupported()
    if unsupported:  # a machine whose kernel cannot isolate one loopback node; setup cannot fix that
        pytest.skip(f"partition needs nftables matching cgroup v2 groups: {unsupported}")
    reason = SCENARIOS["partition"].unavailable(drill_lab)
    assert reason is None, reason
    r = drill(drill_lab, "partition")
    no_acked_commit_lost(r)
    assert r["failover"]
    assert r["new_leader"] != r["old_leader"]
    assert r["rejoin_node"] == r["old_leader"]
    assert r["rejoin_s"] is not None


def test_switchover_moves_the_leader_without_loss(drill_lab: Topology) -> None:
    r = drill(drill_lab, "switchover")
    no_acked_commit_lost(r)
    assert r["failover"]
    assert r["new_leader"] != r["old_leader"]
    assert r["rejoin_s"] is not None


def test_losing_one_etcd_member_changes_nothing(drill_lab: Topology) -> None:
    r = drill(drill_lab, "etcd-loss-1")
    no_acked_commit_lost(r)
    assert not r["failover"], f"leader changed: {r['promotions']} {r['leader_key_changes']}"


def test_losing_etcd_quorum_keeps_the_primary_in_failsafe_mode(drill_lab: Topology) -> None:
    r = drill(drill_lab, "etcd-loss-2")
    no_acked_commit_lost(r)
    assert r["promotions"] == [], f"a replica was promoted without etcd quorum: {r['promotions']}"
    assert r["primary_during_outage"] == [r["old_leader"]]


def test_losing_the_sync_standby_moves_sync_to_the_other_replica(drill_lab: Topology) -> None:
    r = drill(drill_lab, "replica-loss")
    no_acked_commit_lost(r)
    assert not r["failover"]
    assert r["new_sync_standby"]
    assert r["replica_killed"] not in r["new_sync_standby"]
    assert r["replica_rejoin_s"] is not None


def test_postgres_crash_is_restarted_by_patroni(drill_lab: Topology) -> None:
    r = drill(drill_lab, "postgres-crash")
    no_acked_commit_lost(r)
    assert r["postgres_back_s"] is not None
