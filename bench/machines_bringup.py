"""Machines bring-up benchmark: wall time from nothing to a validated cluster (every
etcd member and Patroni node passed the deploy's validation over SSH through the
bastion), by running the CLI exactly as a person would, then ``down``.

    .venv/bin/python bench/machines_bringup.py --runs 3 [--stack dev] [--cold]

warm: the cached Debian 12 rootfs and apt cache are reused (the normal case).
--cold: the first run removes the cached rootfs (and, with --cold-apt, the apt cache)
so it includes mmdebstrap; later runs are warm. Prints each run, then min/median/max
of the warm runs. Needs root and scripts/setup-machines.sh."""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machines import image  # noqa: E402


def cli(stack: str, run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        check=False,
        args=[sys.executable, "-m", "machines", "--stack", stack, "--run-dir", str(run_dir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def one_run(stack: str) -> tuple[float, float, float]:
    """(seconds to validated, seconds until cloud-init finished everywhere, seconds for down)."""
    run_dir = Path(tempfile.mkdtemp(prefix="pgha-machines-bench-"))
    t0 = time.monotonic()
    up = cli(stack, run_dir, "up")
    t_up = time.monotonic() - t0
    m = re.search(r"cloud-init finished on every node after (\d+)s", up.stdout)
    t1 = time.monotonic()
    down = cli(stack, run_dir, "down", *(["--clean"] if up.returncode == 0 else []))  # a failed run keeps its logs
    t_down = time.monotonic() - t1
    if up.returncode != 0 or down.returncode != 0:
        print(up.stdout[-3000:], up.stderr[-3000:], down.stdout, down.stderr, sep="\n", file=sys.stderr)
        raise SystemExit(f"run failed (up rc={up.returncode}, down rc={down.returncode}); run dir {run_dir}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return t_up, float(m.group(1)) if m else float("nan"), t_down


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--cold", action="store_true", help="first run rebuilds the rootfs")
    ap.add_argument("--cold-apt", action="store_true", help="with --cold: also empty the apt cache")
    args = ap.parse_args()
    warm: list[float] = []
    for i in range(args.runs):
        kind = "warm"
        if i == 0 and args.cold:
            kind = "cold"
            shutil.rmtree(image.image_dir(), ignore_errors=True)
            if args.cold_apt:
                shutil.rmtree(image.apt_cache_dir(), ignore_errors=True)
        t_up, t_ci, t_down = one_run(args.stack)
        print(
            f"run {i + 1} ({kind}): validated after {t_up:.1f}s (cloud-init done on every node at {t_ci:.0f}s of boot), down {t_down:.1f}s",
            flush=True,
        )
        if kind == "warm":
            warm.append(t_up)
    if warm:
        print(
            f"warm nothing->validated over {len(warm)} runs: min {min(warm):.1f}s  median {statistics.median(warm):.1f}s  max {max(warm):.1f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
