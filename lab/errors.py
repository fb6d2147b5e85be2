"""The lab's one exception: what went wrong, in words a user can act on."""

from __future__ import annotations


class LabError(RuntimeError):
    pass


class DrillError(LabError):
    """A failover drill could not do what it set out to (lab/drills/)."""
