"""Lab bring-up benchmark: time from nothing to healthy (every etcd member healthy, a leader,
N-1 replicas streaming, sync standby in synchronous mode; TLS on everywhere), and
the daemons' peak memory (PSS summed over every process the lab runs).

    .venv/bin/python bench/lab_bringup.py --runs 5 [--stack dev]

Prints min/median/max. Uses its own loopback prefix and run directory."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import descendants, pss_kib, summary
from lab import control, observe, rundir
from lab.topology import load_topology, scratch_dir


def one_run(stack: str, run_dir: Path, prefix: str) -> tuple[float, float]:
    shutil.rmtree(run_dir, ignore_errors=True)
    topo = load_topology(stack, run_dir, prefix)
    t0 = time.monotonic()
    rundir.prepare(topo)
    control.start_supervisor(topo)
    try:
        observe.wait_healthy(topo, timeout=180)
        elapsed = time.monotonic() - t0
        sup = (control.state(topo) or {})["supervisor"]
        peak = 0
        for _ in range(10):  # settle: sample PSS for 2 s after healthy
            peak = max(peak, pss_kib(descendants(sup)))
            time.sleep(0.2)
        return elapsed, peak / 1024
    finally:
        control.stop(topo)
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--prefix", default="127.81")
    ap.add_argument("--run-dir", type=Path, default=scratch_dir("pgha-bench-bringup"))
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args()
    times, mems = [], []
    for i in range(args.runs):
        t, m = one_run(args.stack, args.run_dir, args.prefix)
        print(f"run {i + 1}/{args.runs}: healthy in {t:.1f}s, daemons' PSS {m:.0f} MiB", flush=True)
        times.append(t)
        mems.append(m)
    print(summary(f"bring-up to healthy ({args.stack}, TLS on)", times, " s"))
    print(summary("daemons' PSS", mems, " MiB"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"stack": args.stack, "seconds": times, "pss_mib": mems}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
