"""Lab fixtures: a real cluster on its own loopback prefix and run directory.

:func:`running_lab` is the one way the lab tests start and stop a lab; :func:`lab_fixture`
makes a pytest fixture of it. Each lab has its own fixed prefix (PREFIXES), so labs of
different test modules never collide. The run directory is kept when a test failed
(its logs/ holds one log per process)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from lab import control, observe, rundir
from lab.topology import Topology, load_topology, scratch_dir

#: Loopback prefix of each lab the tests start: name -> 127.N.
PREFIXES = {
    "sync": "127.77",
    "cli": "127.78",
    "drills": "127.79",
    "dns": "127.82",
    "backup": "127.83",
    "restore": "127.84",
    "monitor": "127.85",
    "restore_from": "127.86",
}

FAILED: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.failed:
        FAILED.append(item.nodeid)
    return rep


@contextmanager
def running_lab(
    name: str,
    stack: str,
    configure: Callable[[Topology], None] | None = None,
    start: bool = True,
    overrides: dict[str, Any] | None = None,
) -> Iterator[Topology]:
    """A lab ``name`` of ``stack`` on ``PREFIXES[name]``, in a fresh run dir.

    ``configure`` may change the topology before anything is rendered. With
    ``start=False`` nothing is started (a test drives ``python -m lab`` itself); either
    way, whatever runs there at the end is stopped by pid, and the run dir is removed
    unless a test failed."""
    run_dir = scratch_dir("pgha-lab-tests") / f"{name}-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    topo = load_topology(stack, run_dir, PREFIXES[name], overrides=overrides)
    if configure:
        configure(topo)
    try:
        if start:
            rundir.prepare(topo)
            control.start_supervisor(topo)
            try:
                observe.wait_healthy(topo, timeout=120)
            except BaseException:
                FAILED.append(f"lab {name} ({stack}) did not come up")
                raise
        yield topo
    finally:
        control.stop(topo)
        if FAILED:
            print(f"\nlab {name} run dir kept for inspection: {topo.run_dir} (logs/ has one log per process)")
        else:
            shutil.rmtree(topo.run_dir, ignore_errors=True)


def lab_fixture(name: str, stack: str, scope: Any = "session", **kw: Any) -> Any:
    """A pytest fixture yielding :func:`running_lab` (name, stack, ``kw``) for ``scope``."""

    @pytest.fixture(scope=scope)
    def fixture() -> Iterator[Topology]:
        with running_lab(name, stack, **kw) as topo:
            yield topo

    return fixture


#: The prod stack's topology (synchronous mode), shared by most lab test modules.
sync_lab = lab_fixture("sync", "prod")


def connect(topo: Topology, dsn: str, **kw: object) -> psycopg.Connection:
    return psycopg.connect(dsn, password=topo.passwords().app, autocommit=True, **kw)


def wait_for(pred, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
