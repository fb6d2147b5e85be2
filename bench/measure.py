"""What the benchmarks measure the same way: memory of a process tree, and the
min/median/max line every benchmark prints."""

from __future__ import annotations

import statistics
from pathlib import Path


def descendants(root: int) -> list[int]:
    """Every process below ``root``, from /proc."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for ch in children.get(pid, []):
            out.append(ch)
            todo.append(ch)
    return out


def pss_kib(pids: list[int]) -> int:
    """Proportional set size of these processes, summed (KiB)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def summary(name: str, xs: list[float], unit: str) -> str:
    return f"{name}: min {min(xs):.1f}{unit}  median {statistics.median(xs):.1f}{unit}  max {max(xs):.1f}{unit}  (n={len(xs)})"
