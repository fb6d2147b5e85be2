"""The lab's restore-target check and S3 port plan (no processes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from lab import s3
from lab.backup import parse_time, target_problem
from lab.errors import LabError
from pgha.backup import RestoreSpec

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 11, 27, 20, 0, tzinfo=dt.UTC).timestamp()


def backups(*stops: float) -> list[dict[str, Any]]:
    return [{"timestamp": {"start": s - 10, "stop": s}} for s in stops]


def at(seconds: float) -> str:
    return dt.datetime.fromtimestamp(T0 + seconds, dt.UTC).isoformat(sep=" ")


@pytest.mark.parametrize(
    "spec,stops,end,expect",
    [
        (RestoreSpec("time", at(60)), (T0,), T0 + 120, None),
        (RestoreSpec("time", at(0)), (T0,), T0 + 120, None),  # the oldest backup's end itself
        (RestoreSpec("time", at(-1)), (T0, T0 + 600), T0 + 900, "before the oldest backup ended"),
        (RestoreSpec("time", at(121)), (T0,), T0 + 120, "after the end of the archive"),
        (RestoreSpec("time", at(10)), (T0,), None, "after the end of the archive"),
        (RestoreSpec("latest"), (), T0, "no backup yet"),
        (RestoreSpec("latest"), (T0,), T0, None),
        (RestoreSpec("xid", "1234"), (T0,), None, None),  # checked by PostgreSQL, rolled back if unreachable
    ],
    ids=["inside", "oldest end", "before oldest", "after archive", "no archive", "no backup", "latest", "xid"],
)
def test_target_problem(spec: RestoreSpec, stops: tuple[float, ...], end: float | None, expect: str | None) -> None:
    problem = target_problem(spec, backups(*stops), end)
    if expect is None:
        assert problem is None
    else:
        assert problem is not None
        assert expect in problem


def test_time_needs_its_offset() -> None:
    with pytest.raises(LabError, match="UTC offset"):
        parse_time("2026-11-27 20:00:00")
    with pytest.raises(LabError, match="ISO 8601"):
        parse_time("yesterday")
    assert parse_time("2026-11-27 20:00:00+01:00").utcoffset() == dt.timedelta(hours=1)


def test_s3_ports_differ_between_labs_and_stay_below_ephemeral_range() -> None:
    seen: set[int] = set()
    for n in range(256):
        ports = set(s3.ports(f"127.{n}").values())
        assert not ports & seen
        assert max(ports) < 32768
        seen |= ports
