"""Lab fixtures: a real cluster on its own loopback prefix and run directory.

The run directory is kept when a test failed (its logs/ holds one log per process)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import psycopg
import pytest

from lab import control, observe, rundir
from lab.topology import Topology, load_topology, scratch_dir

FAILED: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    rep = yield
    if rep.failed:
        FAILED.append(item.nodeid)
    return rep


def start_lab(stack: str, prefix: str) -> Topology:
    run_dir = scratch_dir("pgha-lab-tests") / f"{stack}-{os.getpid()}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    topo = load_topology(stack, run_dir, prefix)
    rundir.prepare(topo)
    control.start_supervisor(topo)
    try:
        observe.wait_healthy(topo, timeout=120)
    except BaseException:
        FAILED.append(f"lab {stack} did not come up")
        finish_lab(topo)
        raise
    return topo


def finish_lab(topo: Topology) -> None:
    control.stop(topo)
    if FAILED:
        print(f"\nlab run dir kept for inspection: {topo.run_dir} (logs/ has one log per process)")
    else:
        shutil.rmtree(topo.run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def sync_lab() -> Iterator[Topology]:
    """The prod stack's topology (synchronous mode) on 127.77.x.y."""
    topo = start_lab("prod", "127.77")
    try:
        yield topo
    finally:
        finish_lab(topo)


def connect(topo: Topology, dsn: str, **kw: object) -> psycopg.Connection:
    return psycopg.connect(dsn, password=topo.passwords().app, autocommit=True, **kw)  # type: ignore[arg-type]


def wait_for(pred, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
