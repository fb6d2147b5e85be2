"""Monitoring benchmark on a lab (prod stack: synchronous mode): time from a fault to its
alert in Alertmanager, the monitoring processes' memory, and the cost of a scrape.

    .venv/bin/python bench/monitoring.py --runs 3

Faults, each run: a replica's node dies (PghaPatroniDown), one etcd member dies
(PghaEtcdMemberDown), the primary's node dies (PghaFailover, once a replica took over).
Time to alert = from the SIGKILL to the alert listed by Alertmanager's API v2 (polled every
0.2 s). The lab scrapes and evaluates every second; on a VM (15 s each) add up to 30 s.
Memory: PSS of Prometheus, Alertmanager and the exporters once the lab is up. Scrape cost:
Prometheus' scrape_duration_seconds per job and the CPU time an exporter spends per scrape
(/proc utime+stime over a window, divided by the scrapes in it).
Prints min/median/max. Uses its own loopback prefix and run directory."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import pss_kib, summary
from lab import control, monitoring, observe, rundir
from lab.drills import faults
from lab.topology import Topology, load_topology, scratch_dir

POLL = 0.2


def wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(POLL)
    raise TimeoutError(f"{what} not seen within {timeout}s")


def alert(topo: Topology, name: str, **labels: str) -> bool:
    return any(
        a["alertname"] == name and all(a["labels"].get(k) == v for k, v in labels.items())
        for a in monitoring.active_alerts(topo)
    )


def quiet(topo: Topology) -> None:
    """Healthy and no alert held by Alertmanager (the previous fault's alerts resolved)."""
    observe.wait_healthy(topo, timeout=180)
    wait(lambda: not monitoring.active_alerts(topo), 240, "no active alert")


def time_to_alert(topo: Topology, fault: Callable[[], object], name: str, **labels: str) -> float:
    t0 = time.monotonic()
    fault()
    wait(lambda: alert(topo, name, **labels), 180, name)
    return time.monotonic() - t0


def replica_death(topo: Topology) -> float:
    lead = observe.leader(topo)
    replica = next(n for n in topo.pg_names if n != lead)
    try:
        return time_to_alert(topo, lambda: faults.kill_node(topo, replica), "PghaPatroniDown", node=replica)
    finally:
        control.request_start(topo, replica)


def etcd_member_death(topo: Topology) -> float:
    member = topo.etcd_names[-1]
    try:
        return time_to_alert(
            topo, lambda: control.signal_node(topo, member, signal.SIGKILL), "PghaEtcdMemberDown", node=member
        )
    finally:
        control.request_start(topo, member)


def primary_death(topo: Topology) -> float:
    lead = observe.leader(topo)
    assert lead
    try:
        return time_to_alert(topo, lambda: faults.kill_node(topo, lead), "PghaFailover")
    finally:
        control.request_start(topo, lead)


SCENARIOS: dict[str, Callable[[Topology], float]] = {
    "replica node death -> PghaPatroniDown (for: 30s)": replica_death,
    "etcd member death -> PghaEtcdMemberDown (for: 30s)": etcd_member_death,
    "primary node death -> PghaFailover (timeline changed)": primary_death,
}


def monitoring_pids(topo: Topology) -> dict[str, int]:
    procs: dict[str, int] = (control.state(topo) or {}).get("procs", {})
    return {n: p for n, p in procs.items() if n in monitoring.names(topo)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def query(topo: Topology, promql: str) -> list[dict[str, Any]]:
    url = f"{monitoring.prometheus_url(topo)}/api/v1/query?query={urllib.parse.quote(promql)}"
    result: list[dict[str, Any]] = monitoring._get(url)["data"]["result"]
    return result


def scrape_cost(topo: Topology, window: float = 20.0) -> dict[str, float]:
    """CPU milliseconds per scrape of each exporter, and mean scrape duration per job (ms)."""
    pids = monitoring_pids(topo)
    exporters = {n: p for n, p in pids.items() if n.endswith("exporter")}
    before = {n: cpu_seconds(p) for n, p in exporters.items()}
    time.sleep(window)
    after = {n: cpu_seconds(p) for n, p in exporters.items()}
    interval = topo.target.monitoring.scrape_interval_seconds or topo.settings.monitoring.scrape_interval_seconds
    scrapes = window / interval
    out = {f"cpu ms/scrape {n}": 1000 * (after[n] - before[n]) / scrapes for n in exporters}
    for r in query(topo, "avg by (job) (avg_over_time(scrape_duration_seconds[30s]))"):
        out[f"scrape duration ms job={r['metric']['job']}"] = 1000 * float(r["value"][1])
    for r in query(topo, "avg by (job) (scrape_samples_scraped)"):
        out[f"samples per target job={r['metric']['job']}"] = float(r["value"][1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stack", default="prod")
    ap.add_argument("--prefix", default="127.88")
    ap.add_argument("--run-dir", type=Path, default=scratch_dir("pgha-bench-monitoring"))
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args()
    shutil.rmtree(args.run_dir, ignore_errors=True)
    topo = load_topology(args.stack, args.run_dir, args.prefix)
    rundir.prepare(topo)
    control.start_supervisor(topo)
    raw: dict[str, list[float]] = {}
    try:
        for i in range(args.runs):
            quiet(topo)
            pids = monitoring_pids(topo)
            for group, names in (
                ("Prometheus + Alertmanager PSS", ["prometheus", "alertmanager"]),
                (
                    "exporters PSS (node-exporter + one postgres-exporter per node)",
                    [n for n in pids if n.endswith("exporter")],
                ),
            ):
                raw.setdefault(group, []).append(pss_kib([pids[n] for n in names]) / 1024)
            for k, v in scrape_cost(topo).items():
                raw.setdefault(k, []).append(v)
            for name, scenario in SCENARIOS.items():
                quiet(topo)
                t = scenario(topo)
                print(f"run {i + 1}/{args.runs}: {name}: {t:.1f} s", flush=True)
                raw.setdefault(name, []).append(t)
    finally:
        control.stop(topo)
        shutil.rmtree(args.run_dir, ignore_errors=True)
    print(f"time from fault to alert in Alertmanager ({args.stack}, lab: scrape and evaluation every 1 s):")
    for name in SCENARIOS:
        print("  " + summary(name, raw[name], " s"))
    print("monitoring memory and scrape cost:")
    for name, xs in raw.items():
        if name not in SCENARIOS:
            unit = " MiB" if "PSS" in name else ""
            print("  " + summary(name, xs, unit))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
