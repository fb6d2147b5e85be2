"""examples/app-stack: its own mocks tests pass, and it only reads outputs pgha exports."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from .mocks import ROOT
from .test_stack import ALWAYS, OPTIONAL

pytestmark = pytest.mark.components

APP = ROOT / "examples" / "app-stack"


def test_reads_only_outputs_pgha_exports():
    spec = importlib.util.spec_from_file_location("app_config", APP / "app_config.py")
    assert spec
    assert spec.loader
    app_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_config)
    assert set(app_config.REQUIRED) <= ALWAYS
    assert set(app_config.OPTIONAL) <= OPTIONAL["prod"] - {"bastion_ip"}


def test_example_mocks_suite():
    """In its own interpreter: the example is a separate Pulumi project with its own mocks."""
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(APP)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
