"""Failover benchmark: the drills of lab/drills/, N times per Patroni timing profile,
on a lab of its own. Prints min/median/max of the client-observed RTO per client path
(libpq multi-host DSN, HAProxy) and of the old primary's rejoin time, and the ratio of
the medians between the profiles.

    .venv/bin/python bench/failover.py --runs 3
    .venv/bin/python bench/failover.py --runs 5 --scenarios node-death,switchover --profiles fast

The profile is applied at runtime through Patroni's PATCH /config (ttl, loop_wait,
retry_timeout for the whole cluster), as an operator would. Figures, not assertions:
the invariants are checked by tests/lab/test_drills.py. Raw figures go to
bench/results/failover-<UTC stamp>.json (git-ignored)."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import control, observe, rundir  # noqa: E402
from lab.drills.run import run_drill  # noqa: E402
from lab.drills.scenarios import SCENARIOS, resolve  # noqa: E402
from lab.drills.timing import apply_timing  # noqa: E402
from lab.topology import load_topology, scratch_dir  # noqa: E402
from pgha.timing import TIMING_PROFILES  # noqa: E402

DEFAULT_SCENARIOS = "node-death,frozen-primary,switchover,replica-loss,postgres-crash"
METRICS = (
    ("rto libpq", ("clients", "libpq", "rto_s")),
    ("rto haproxy", ("clients", "haproxy", "rto_s")),
    ("rejoin", ("rejoin_s",)),
)

#: Targets from issue 5 (reported, not asserted).
TARGETS = [
    ("node-death", "rto libpq", "median", 20.0),
    ("node-death", "rto libpq", "max", 21.0),
    ("node-death", "rto haproxy", "median", 20.0),
    ("node-death", "rto haproxy", "max", 21.0),
    ("switchover", "rto libpq", "max", 1.0),
    ("switchover", "rto haproxy", "max", 1.0),
    ("node-death", "rejoin", "max", 5.0),
    ("frozen-primary", "rejoin", "max", 5.0),
    ("switchover", "rejoin", "max", 5.0),
]


def dig(d: dict[str, Any], path: tuple[str, ...]) -> float | None:
    cur: Any = d
    for k in path:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur if isinstance(cur, (int, float)) else None


def stats(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


def fmt(s: dict[str, float] | None) -> str:
    if not s:
        return "-"
    return f"{s['min']:6.2f} {s['median']:6.2f} {s['max']:6.2f}  (n={s['n']})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs of each scenario per profile")
    ap.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated names or numbers, or 'all' (default {DEFAULT_SCENARIOS})",
    )
    ap.add_argument("--profiles", default="fast,patroni-defaults", help="comma-separated timing profiles")
    ap.add_argument("--stack", default="prod")
    ap.add_argument("--prefix", default="127.80")
    ap.add_argument("--run-dir", type=Path, default=scratch_dir("pgha-bench-failover"))
    ap.add_argument("--keep", action="store_true", help="keep the run dir (logs, per-drill JSON and PNG)")
    ap.add_argument(
        "--json", type=Path, help="where to write the figures (default bench/results/failover-<stamp>.json)"
    )
    args = ap.parse_args()
    names = [s.name for s in SCENARIOS.values()] if args.scenarios == "all" else args.scenarios.split(",")
    scenarios = [s.name for s in resolve(names)]
    profiles = args.profiles.split(",")
    for p in profiles:
        if p not in TIMING_PROFILES:
            ap.error(f"unknown profile {p!r}; known: {', '.join(TIMING_PROFILES)}")

    shutil.rmtree(args.run_dir, ignore_errors=True)
    topo = load_topology(args.stack, args.run_dir, args.prefix)
    t0 = time.monotonic()
    rundir.prepare(topo)
    control.start_supervisor(topo)
    runs: list[dict[str, Any]] = []
    failed = False
    try:
        observe.wait_healthy(topo, timeout=180)
        print(f"lab {args.stack} healthy on {args.prefix}.x.y in {time.monotonic() - t0:.1f}s", flush=True)
        for profile in profiles:
            timing = apply_timing(topo, profile)
            print(
                f"profile {profile}: ttl {timing.ttl} loop_wait {timing.loop_wait} retry_timeout {timing.retry_timeout}",
                flush=True,
            )
            for i in range(args.runs):
                for name in scenarios:
                    out = args.run_dir / "drills" / profile / f"run{i + 1}"
                    r = run_drill(topo, name, out, png=(i == 0), log=lambda m: print("  " + m, flush=True))
                    r["profile"] = profile
                    r["run"] = i + 1
                    runs.append(r)
                    failed |= bool(r.get("error") or r.get("acked_missing") or r.get("dual_primary"))
    finally:
        control.stop(topo)

    summary: dict[str, Any] = {}
    print("\nclient-observed figures, seconds: min median max")
    for name in scenarios:
        if all(r.get("skipped") for r in runs if r["scenario"] == name):
            print(f"{name}: skipped")
            continue
        for metric, path in METRICS:
            row = {}
            for profile in profiles:
                xs = [
                    v
                    for r in runs
                    if r["scenario"] == name and r["profile"] == profile and (v := dig(r, path)) is not None
                ]
                row[profile] = stats(xs)
            if not any(row.values()):
                continue
            summary.setdefault(name, {})[metric] = row
            cells = "   ".join(f"{p}: {fmt(row[p])}" for p in profiles)
            ratio = ""
            if len(profiles) == 2 and row[profiles[0]] and row[profiles[1]] and row[profiles[0]]["median"] > 0:  # type: ignore[index]
                ratio = f"   ratio {profiles[1]}/{profiles[0]} {row[profiles[1]]['median'] / row[profiles[0]]['median']:.2f}x"  # type: ignore[index]
            print(f"{name:15} {metric:12} {cells}{ratio}")
    print("\ntargets (issue 5):")
    for name, metric, stat, limit in TARGETS:
        for profile in profiles:
            s = summary.get(name, {}).get(metric, {}).get(profile)
            if s:
                v = s[stat]
                print(
                    f"  {profile:17} {name:15} {metric:12} {stat:6} {v:6.2f} s <= {limit:4.1f} s  {'met' if v <= limit else 'NOT met'}"
                )
    lost = sum(r.get("acked_missing") or 0 for r in runs)
    dual = sum(len(r.get("dual_primary") or []) for r in runs)
    errors = [f"{r['profile']} {r['scenario']} run {r['run']}: {r['error']}" for r in runs if r.get("error")]
    print(
        f"\nacknowledged commits lost: {lost}; moments with two writable primaries: {dual}; drill errors: {len(errors)}"
    )
    for e in errors:
        print(f"  {e}")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = args.json or ROOT / "bench" / "results" / f"failover-{stamp}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    slim = [{k: v for k, v in r.items() if k != "events_file"} for r in runs]
    dest.write_text(
        json.dumps(
            {
                "stack": args.stack,
                "profiles": profiles,
                "runs_per_profile": args.runs,
                "summary": summary,
                "drills": slim,
            },
            indent=2,
        )
    )
    print(f"figures: {dest}")
    if args.keep or failed:
        print(f"run dir kept: {args.run_dir}")
    else:
        shutil.rmtree(args.run_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
