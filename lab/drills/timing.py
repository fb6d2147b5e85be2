"""Patroni's timing (ttl, loop_wait, retry_timeout) on a running lab: read it from the
DCS, or set a timing profile (cloud_init/settings.py) at runtime as an operator does."""

from __future__ import annotations

import time
from dataclasses import dataclass

from lab import observe
from lab.errors import DrillError
from lab.topology import Topology
from pgha.timing import TIMING_PROFILES


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
    code, body = observe.rest_post(
        topo,
        lead,
        "/config",
        {"ttl": want.ttl, "loop_wait": want.loop_wait, "retry_timeout": want.retry_timeout},
        method="PATCH",
    )
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
