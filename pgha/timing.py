"""Patroni timing profiles: how fast a failover may start, and the limits Patroni imposes.

A profile names (ttl, loop_wait, retry_timeout); ``patroni.*`` settings override it key
by key. See docs/configuration.md "Timing" for why ``fast`` is the default.
"""

from __future__ import annotations

#: Patroni clamps ttl to >= 20.
PATRONI_MIN_TTL = 20

#: Named timing profiles (ttl, loop_wait, retry_timeout).
TIMING_PROFILES: dict[str, dict[str, int]] = {
    "fast": {"ttl": 20, "loop_wait": 2, "retry_timeout": 9},
    "patroni-defaults": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
}

DEFAULT_PROFILE = "fast"

#: Seconds a client needs past the moment a replica may take over: Patroni's promotion
#: (pg_ctl promote, synchronous standby reconfigured; 1-3 s measured), one backoff step
#: of the connectors (cap 1 s) and a connect attempt to each dead host before the new
#: primary (connect_timeout 2 s each, two at most with three nodes).
CLIENT_DEADLINE_MARGIN = 10


def client_deadline(ttl: int, loop_wait: int) -> float:
    """The failover deadline the generated application config recommends.

    A node death leaves the cluster without a primary until the leader key expires (at
    most ``ttl`` after the last successful update) and a replica's HA loop sees it (at
    most ``loop_wait`` later); then ``CLIENT_DEADLINE_MARGIN``. A connector whose
    deadline is shorter surfaces an error for the request in flight during every node
    death (docs/applications.md: 15 s, the library default, against ~20 s with ``fast``)."""
    return float(ttl + loop_wait + CLIENT_DEADLINE_MARGIN)
