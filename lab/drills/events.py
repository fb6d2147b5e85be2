"""What a drill records: one :class:`Attempt` per write tried by a writer or the probe,
with its outcome. Plain data, no I/O: the load (lab/drills/load.py) produces it, the
detectors (lab/drills/detect.py) and the report read it.

All times are seconds on one monotonic clock, relative to the recorder's start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COMMITTED = "committed"  #: acknowledged: the row must exist afterwards
NOT_COMMITTED = "not_committed"  #: certainly not applied
UNKNOWN = "unknown"  #: the connection broke after the INSERT was sent
READ_ONLY = "read_only"  #: probe: the node is a standby (25006)
LOCAL_ONLY = "local_only"  #: probe: committed locally, the synchronous standby never confirmed
DOWN = "down"  #: probe: no connection / no answer


@dataclass
class Attempt:
    source: str  #: "libpq", "haproxy" or "probe:<node>"
    seq: int
    t0: float  #: sent
    t1: float  #: answered (ack or error)
    outcome: str
    node: str | None  #: node that committed (inet_server_addr), or the probed node
    error: str | None = None

    def row(self) -> list[Any]:
        return [self.source, self.seq, round(self.t0, 4), round(self.t1, 4), self.outcome, self.node, self.error]
