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
