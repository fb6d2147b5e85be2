"""Fixtures for the component tests: fresh Pulumi mocks per test (see mocks.py).

``harness(stack)`` creates a new event loop first (Python >= 3.12 has no implicit one),
resets the root stack and the config, then calls ``set_mocks(preview=False)``.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator

import pulumi
import pulumi.runtime.config as runtime_config
import pytest
from pulumi.runtime.settings import set_root_resource
from pulumi.runtime.stack import wait_for_rpcs

# The provider SDKs warn about their own deprecated aliases when first imported (below).
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_(openstack|ovh|command)\.")

from .mocks import PROJECT_ID, Harness, PghaMocks, RecordingMonitor  # noqa: E402 - after the filter


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Harness]]:
    loops: list[asyncio.AbstractEventLoop] = []

    def make(stack: str = "dev") -> Harness:
        # A second set_mocks would silently redirect the first harness's registrations.
        assert not loops, "one harness per test"
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loops.append(loop)
        monkeypatch.setenv("OVH_CLOUD_PROJECT_SERVICE", PROJECT_ID)
        monkeypatch.delenv("PULUMI_CONFIG", raising=False)
        monkeypatch.delenv("PGHA_ROLL", raising=False)
        runtime_config.set_all_config({}, [])
        set_root_resource(None)  # type: ignore[arg-type]
        mocks = PghaMocks()
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(mocks, project="pgha", stack=stack, preview=False, monitor=monitor)
        loop.run_until_complete(wait_for_rpcs())  # the root stack's registration
        return Harness(stack=stack, mocks=mocks, monitor=monitor, loop=loop)

    yield make
    runtime_config.set_all_config({}, [])
    set_root_resource(None)  # type: ignore[arg-type]
    for loop in loops:
        loop.close()
    asyncio.set_event_loop(None)


def pytest_configure(config: pytest.Config) -> None:
    # Same filter for the SDK modules that are imported lazily, inside tests.
    config.addinivalue_line("filterwarnings", r"ignore::DeprecationWarning:pulumi_(openstack|ovh|command)\.")
