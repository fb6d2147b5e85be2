"""Frozen primary with the real kernel watchdog, on machines that are up with Patroni on a
qemu VM (``python -m machines up --vms pg1`` or ``--backend qemu``): runs the
``frozen-primary`` drill N times through the CLI, as a person would, and prints each run
then min/median/max of: freeze -> reset (the softdog), freeze -> a replica promoted, the
writer's RTO, the old primary's rejoin as a streaming replica after its reset; and the
safety counts (acknowledged writes lost, two writable primaries), which must be 0.

    .venv/bin/python bench/machines_frozen.py --stack dev --name qvm --runs 3

Each run starts with a switchover back to the VM when a container is primary (the
previous run's failover). A run whose drill fails stops the bench (its result is kept in
<run dir>/drills/)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machines import cluster as c  # noqa: E402

FIGURES = (
    ("guest_freeze_to_reset_s", "freeze -> softdog reboot (the VM's kernel clock)"),
    ("reset_s", "freeze command sent -> reset seen on the console (host clock)"),
    ("promoted_s", "freeze -> replica promoted (seen)"),
    ("rto_s", "writer RTO (libpq multi-host DSN)"),
    ("rejoin_s", "reset -> old primary streams again"),
)


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: no value"
    return (
        f"{label}: min {min(values):.2f} s, median {statistics.median(values):.2f} s, max {max(values):.2f} s"
        f" (n={len(values)})"
    )


def one_run(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    before = set((run_dir / "drills").glob("*-frozen-primary"))
    cmd = [sys.executable, "-m", "machines", "--stack", args.stack, "--run-dir", str(run_dir)]
    cmd += ["--name", args.name] if args.name else []
    r = subprocess.run([*cmd, "drill", "frozen-primary"], cwd=ROOT, capture_output=True, text=True, check=False)
    print(r.stdout, r.stderr, sep="\n", flush=True)
    new = sorted(set((run_dir / "drills").glob("*-frozen-primary")) - before)
    if not new or not (new[-1] / "result.json").exists():
        raise SystemExit(f"drill produced no result (exit {r.returncode})")
    result: dict[str, Any] = json.loads((new[-1] / "result.json").read_text())
    if r.returncode != 0:
        raise SystemExit(f"drill failed (exit {r.returncode}): {result.get('breaches')}; see {new[-1]}")
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stack", default="dev")
    ap.add_argument("--name", default=None)
    ap.add_argument("--run-dir", type=Path, default=None)
    args = ap.parse_args()
    m = c.open_machines(args.stack, args.run_dir, args.name)
    results = [one_run(args, m.run_dir) for _ in range(args.runs)]
    print()
    for i, r in enumerate(results, 1):
        cl = r["clients"]["libpq"]
        print(
            f"run {i}: {r['old_leader']}->{r['new_leader']} watchdog [{r.get('watchdog')}]"
            f" reset {r.get('guest_freeze_to_reset_s')} s in the VM / {r.get('reset_s')} s seen, promoted {r.get('promoted_s')} s,"
            f" RTO {cl.get('rto_s')} s, rejoin {r.get('rejoin_s')} s,"
            f" acked lost {len(cl.get('acked_missing') or [])} of {cl.get('committed')}, two primaries {len(r['dual_primary'])}"
        )
    for key, label in FIGURES:
        vals = [
            float(v)
            for r in results
            if (v := (r["clients"]["libpq"].get(key) if key == "rto_s" else r.get(key))) is not None
        ]
        print(summary(label, vals))
    lost = sum(len(r["clients"]["libpq"].get("acked_missing") or []) for r in results)
    dual = sum(len(r["dual_primary"]) for r in results)
    print(f"acknowledged writes lost: {lost}; two writable primaries: {dual}")
    return 0 if lost == 0 and dual == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
