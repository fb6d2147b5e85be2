"""The cluster, for real: replication, endpoints, switchover, node death (prod stack,
synchronous mode). Asserts invariants, never timings."""

from __future__ import annotations

import signal
import uuid

import psycopg
import pytest

from lab import control, observe
from lab.topology import Topology

from .conftest import connect, wait_for

pytestmark = pytest.mark.lab


def members(topo: Topology) -> dict[str, dict]:
    return {m["name"]: m for m in (observe.cluster(topo) or {}).get("members", [])}


def test_validation_scripts_pass(sync_lab: Topology) -> None:
    results = observe.validate(sync_lab)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert {r.check for r in results} == {"pgha-check-etcd", "pgha-check-patroni", "patroni --validate-config"}


def test_every_etcd_member_started(sync_lab: Topology) -> None:
    n = len(sync_lab.etcd_names)
    results = [r for r in observe.validate(sync_lab, wait=5) if r.check == "pgha-check-etcd"]
    assert len(results) == n
    assert all(f"{n}/{n} members started, {n}/{n} endpoints healthy" in r.output for r in results)
    assert observe.etcd_health(sync_lab) == dict.fromkeys(sync_lab.etcd_names, True)


def test_exactly_one_leader_and_every_replica_streaming(sync_lab: Topology) -> None:
    m = members(sync_lab)
    leaders = [n for n, v in m.items() if v["role"] == "leader"]
    assert len(leaders) == 1
    with connect(sync_lab, sync_lab.node_dsn(leaders[0])) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone() == (False,)
    # pg_stat_replication as the leader sees it, through the node's own check script:
    # application_name must be a member name (pg_basebackup shows up as streaming too).
    leader_check = next(
        r for r in observe.validate(sync_lab, wait=10) if r.node == leaders[0] and r.check == "pgha-check-patroni"
    )
    assert leader_check.ok
    assert f"pg_stat_replication: {len(sync_lab.pg_names) - 1} streaming" in leader_check.output


def test_sync_standby_in_synchronous_mode(sync_lab: Topology) -> None:
    assert sync_lab.settings.patroni.synchronous_mode
    m = wait_for(lambda: [n for n, v in members(sync_lab).items() if v["role"] == "sync_standby"], 30, "a sync standby")
    assert len(m) >= 1
    leader = observe.leader(sync_lab)
    assert leader
    code, body = observe.rest(sync_lab, leader, "/config")
    assert code == 200
    assert body["synchronous_mode"] is True


def test_write_on_primary_is_readable_on_replicas(sync_lab: Topology) -> None:
    token = uuid.uuid4().hex
    with connect(sync_lab, sync_lab.dsn()) as conn:
        conn.execute("create table if not exists t_replicated (v text)")
        conn.execute("insert into t_replicated values (%s)", (token,))
    leader = observe.leader(sync_lab)
    for n in sync_lab.pg_names:
        if n == leader:
            continue
        with connect(sync_lab, sync_lab.node_dsn(n)) as conn:
            assert conn.execute("select pg_is_in_recovery()").fetchone() == (True,)
            wait_for(
                lambda: conn.execute("select count(*) from t_replicated where v = %s", (token,)).fetchone() == (1,),
                10,
                f"row on {n}",
            )


def test_multihost_dsn_and_haproxy_land_on_the_primary(sync_lab: Topology) -> None:
    leader = observe.leader(sync_lab)
    for dsn in (sync_lab.dsn(), sync_lab.haproxy_dsn()):
        with connect(sync_lab, dsn) as conn:
            conn.execute("create table if not exists t_endpoints (v text)")
            addr, in_recovery = conn.execute(
                "insert into t_endpoints values ('x') returning inet_server_addr()::text, pg_is_in_recovery()"
            ).fetchone()
            assert (addr.split("/")[0], in_recovery) == (sync_lab.address(leader), False)
    with connect(sync_lab, sync_lab.haproxy_dsn(replica=True)) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone() == (True,)


def test_switchover_moves_the_leader(sync_lab: Topology) -> None:
    old = observe.leader(sync_lab)
    target = observe.switchover_candidate(sync_lab, old)
    assert target != old
    code, body = observe.rest_post(sync_lab, old, "/switchover", {"leader": old, "candidate": target})
    assert code == 200, body
    wait_for(lambda: observe.leader(sync_lab) == target, 60, f"{target} to lead")
    observe.wait_healthy(sync_lab, timeout=60)
    with connect(sync_lab, sync_lab.dsn()) as conn:
        assert conn.execute("select inet_server_addr()::text").fetchone()[0].split("/")[0] == sync_lab.address(target)


def test_killed_primary_is_replaced_and_rejoins(sync_lab: Topology) -> None:
    observe.wait_healthy(sync_lab, timeout=60)
    old = observe.leader(sync_lab)
    assert old
    with connect(sync_lab, sync_lab.dsn()) as conn:
        conn.execute("create table if not exists t_failover (id serial primary key, v text)")
        acked = [
            conn.execute("insert into t_failover (v) values ('before') returning id").fetchone()[0] for _ in range(20)
        ]
        timeline = int(members(sync_lab)[old]["timeline"])
    killed = control.signal_node(sync_lab, old, signal.SIGKILL)
    assert len(killed) == 2, "expected Patroni and its postmaster"
    new = wait_for(
        lambda: (lambda ldr: ldr if ldr and ldr != old else None)(observe.leader(sync_lab)), 90, "a new leader"
    )
    assert new != old

    def writable_ids() -> set[int] | None:
        # The leader key moves before PostgreSQL finishes its promotion: until then the
        # read-write DSN finds no writable server ("session is read-only"). Retry, bounded.
        try:
            with connect(sync_lab, sync_lab.dsn()) as conn:
                return {r[0] for r in conn.execute("select id from t_failover").fetchall()}
        except psycopg.OperationalError:
            return None

    ids = wait_for(writable_ids, 60, "the new primary to accept read-write sessions")
    assert set(acked) <= ids, "acknowledged commits lost in synchronous mode"
    wait_for(
        lambda: int(members(sync_lab)[new].get("timeline") or 0) > timeline, 30, "the new leader on a new timeline"
    )
    # Restart the old node as systemd would: it rejoins as a replica (pg_rewind if needed).
    control.request_start(sync_lab, old)
    wait_for(lambda: members(sync_lab).get(old, {}).get("state") == "streaming", 90, f"{old} streaming again")
    assert members(sync_lab)[old]["role"] != "leader"
    observe.wait_healthy(sync_lab, timeout=60)
    assert observe.leader(sync_lab) == new
