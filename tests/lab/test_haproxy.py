"""HAProxy for applications, for real: the rendered lab config passes HAProxy's own
check with the lab CA, the primary port lands on the leader, the replica port on
replicas (prod stack, synchronous mode)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from lab import observe
from lab.topology import Topology

from .conftest import connect, wait_for

pytestmark = pytest.mark.lab


def served_by(topo: Topology, dsn: str) -> tuple[str, bool]:
    """(node name, in recovery) of the server behind a DSN."""
    with connect(topo, dsn) as conn:
        addr, in_recovery = conn.execute("select inet_server_addr()::text, pg_is_in_recovery()").fetchone()
    by_addr = {topo.address(n): n for n in topo.pg_names}
    return by_addr[addr.split("/")[0]], in_recovery


def test_rendered_config_passes_haproxy_check(sync_lab: Topology) -> None:
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is not installed: run scripts/setup.sh")
    cfg = sync_lab.run_dir / "haproxy" / "haproxy.cfg"
    assert f"ca-file {sync_lab.ca_file}" in cfg.read_text()
    p = subprocess.run(check=False, args=["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Configuration file is valid" in p.stdout + p.stderr


def test_primary_port_lands_on_the_leader(sync_lab: Topology) -> None:
    observe.wait_healthy(sync_lab, timeout=60)
    leader = observe.leader(sync_lab)
    assert leader
    # HAProxy's check (inter 1s) may still be catching up with a leader change.
    wait_for(
        lambda: served_by(sync_lab, sync_lab.haproxy_dsn()) == (leader, False), 15, f"HAProxy primary port on {leader}"
    )
    with connect(sync_lab, sync_lab.haproxy_dsn()) as conn:
        conn.execute("create table if not exists t_haproxy (v text)")
        addr = conn.execute("insert into t_haproxy values ('x') returning inet_server_addr()::text").fetchone()[0]
    assert addr.split("/")[0] == sync_lab.address(leader)


def test_replica_port_lands_on_replicas(sync_lab: Topology) -> None:
    observe.wait_healthy(sync_lab, timeout=60)
    leader = observe.leader(sync_lab)
    replicas = set(sync_lab.pg_names) - {leader}
    seen: set[str] = set()

    def both_replicas_seen() -> bool:
        node, in_recovery = served_by(sync_lab, sync_lab.haproxy_dsn(replica=True))
        if node != leader and in_recovery:
            seen.add(node)
        return seen == replicas

    # Round robin over the two replicas (a check may still be catching up with an
    # earlier switchover: tolerated while waiting, not afterwards).
    wait_for(both_replicas_seen, 15, f"the replica port to serve {sorted(replicas)}", interval=0.05)
    for _ in range(6):
        node, in_recovery = served_by(sync_lab, sync_lab.haproxy_dsn(replica=True))
        assert node in replicas, f"replica port served by {node}"
        assert in_recovery, f"replica port served by {node}, which is not in recovery"
