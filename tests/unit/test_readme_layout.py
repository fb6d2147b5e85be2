"""The README's layout section matches the tree: every path it names exists, and every
top-level directory of the repository is named."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def layout_block(readme: str) -> list[str]:
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1].splitlines()[1:]


def named_paths(lines: list[str]) -> set[str]:
    """Path tokens at the start of lines (and the files on the first line)."""
    out: set[str] = set()
    for line in lines:
        if not line or line.startswith(" "):
            continue
        first = re.split(r" {3,}", line)[0]
        for token in first.split():
            if re.match(r"^[\w.\-/]+$", token):
                out.add(token.rstrip("/"))
    return out


def tracked_top_level() -> set[str]:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return {f.split("/")[0] for f in files if "/" in f and not f.startswith(".")}


def test_every_named_path_exists() -> None:
    names = named_paths(layout_block((ROOT / "README.md").read_text()))
    missing = sorted(n for n in names if not (ROOT / n).exists())
    assert not missing, f"README layout names paths that do not exist: {missing}"


def test_every_top_level_directory_is_named() -> None:
    names = named_paths(layout_block((ROOT / "README.md").read_text()))
    tops = {n.split("/")[0] for n in names}
    unnamed = sorted(tracked_top_level() - tops)
    assert not unnamed, f"README layout does not mention: {unnamed}"


def test_named_paths_reads_the_first_column_only() -> None:
    lines = [
        "pgha/   the core: settings",
        "                       continued text/with slashes",
        "a.py  b.py   two files",
    ]
    assert named_paths(lines) == {"pgha", "a.py", "b.py"}
