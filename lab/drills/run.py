"""Running drills on a running lab: start the load, run a scenario, restore the
cluster, look the acknowledged rows up, compute the verdicts (lab/drills/detect.py)
and write the report (lab/drills/report.py) under <run dir>/drills/<stamp>/.

    python -m lab --stack prod drill node-death        # or a number: drill 1
    python -m lab --stack prod drill --all
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab import control, observe
from lab.errors import DrillError, LabError
from lab.topology import Topology
from pgha.timing import TIMING_PROFILES

from . import netcut
from .alerts import AlertWatcher
from .detect import client_summary, dual_primaries, leadership
from .faults import thaw
from .load import LoadSettings, Recorder, ensure_tables, present_seqs
from .report import plot, table, write_summary
from .scenarios import SCENARIOS, Drill, resolve
from .timing import apply_timing, current_timing


def restore(topo: Topology, frozen: list[int], timeout: float = 180) -> None:
    """Every daemon running again (frozen ones resumed, dead ones restarted, network
    healed), then healthy."""
    netcut.heal(topo)
    if frozen:
        thaw(frozen)
    for n in [*topo.etcd_names, *topo.pg_names, "haproxy"]:
        if control.pid_of(topo, n) is None:
            control.request_start(topo, n)
    observe.wait_healthy(topo, timeout=timeout)


def run_drill(
    topo: Topology,
    name: str,
    out_dir: Path | None = None,
    load: LoadSettings | None = None,
    png: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run one scenario on a running lab and return its result (also written as JSON,
    with the raw attempts and a PNG timeline, under ``out_dir``)."""
    sc = resolve([name])[0]
    started = datetime.now(UTC)
    out_dir = out_dir or default_out_dir(topo)
    result: dict[str, Any] = {
        "number": sc.number,
        "scenario": sc.name,
        "title": sc.title,
        "stack": topo.stack,
        "synchronous_mode": topo.settings.patroni.synchronous_mode,
        "started_at": started.isoformat(timespec="seconds"),
        "skipped": sc.unavailable(topo),
    }
    if result["skipped"]:
        log(f"[{sc.number} {sc.name}] skipped: {result['skipped']}")
        return result
    observe.wait_healthy(topo, timeout=180)
    timing = current_timing(topo)
    old = observe.leader(topo)
    if not old:
        raise DrillError("no leader before the drill")
    ensure_tables(topo)
    tag = f"{sc.name}-{started:%Y%m%dT%H%M%S%f}"
    rec = Recorder(topo, tag, load)
    d = Drill(topo, rec, timing, old)
    log(
        f"[{sc.number} {sc.name}] {sc.title}; leader {old}, ttl {timing.ttl} loop_wait {timing.loop_wait} retry_timeout {timing.retry_timeout}"
    )
    error: str | None = None
    healthy = False
    present: dict[str, set[int]] | None = None
    t_start = time.monotonic()
    alerts = AlertWatcher(topo, rec.now)
    alerts.start()
    rec.start()
    try:
        try:
            d.wait(
                lambda: rec.acked_since(0.0) and old in rec.monitor.primaries(),
                30,
                "both writers to write and the monitor to see the leader",
            )
            d.hold(1.0)
            sc.run(d)
            settle = d.rec.now()
            d.recovered_after(settle, 60)
            d.hold(1.0)
        except Exception as e:  # noqa: BLE001 - the drill still restores and reports
            error = f"{type(e).__name__}: {e}"
            log(f"[{sc.number} {sc.name}] ERROR {error}")
        finally:
            rec.stop()
        try:
            restore(topo, d.frozen)
            healthy = True
        except LabError as e:
            error = (error + "; " if error else "") + f"not healthy afterwards: {e}"
        finally:
            alerts.stop()
        present = {p: present_seqs(topo, cl) for p, cl in rec.clients.items()} if healthy else None
    finally:
        if d.frozen:  # never leave a node stopped, whatever happened
            thaw(d.frozen)
    attempts = rec.attempts()
    lead = leadership(rec.monitor_log(), old, d.fault_t)
    clients = {
        p: client_summary([a for a in attempts if a.source == p], d.fault_t, present[p] if present else None)
        for p in rec.clients
    }
    result.update(
        {
            "timing": timing.__dict__,
            "duration_s": round(time.monotonic() - t_start, 1),
            "old_leader": old,
            "new_leader": lead["new_leader"],
            "failover": lead["failover"],
            "promotions": lead["promotions"],
            "leader_key_changes": lead["leader_key_changes"],
            "fault_t": round(d.fault_t, 3) if d.fault_t is not None else None,
            "marks": d.marks,
            "clients": clients,
            "acked_missing": sum(len(v.get("acked_missing", [])) for v in clients.values()) if present else None,
            "dual_primary": dual_primaries(attempts),
            "rejoin_node": d.rejoin_node,
            "rejoin_s": d.rejoin_s,
            "healthy_after": healthy,
            "error": error,
            "notes": d.notes,
            # Alertmanager's view (API v2) while the drill ran, until the cluster was healthy again.
            "alerts": alerts.summary(d.fault_t),
            **d.extra,
        }
    )
    if error:
        d.notes.append(f"ERROR: {error}")
    out_dir.mkdir(parents=True, exist_ok=True)
    events = out_dir / f"{sc.number}-{sc.name}.events.json"
    events.write_text(
        json.dumps({"clients": rec.clients, "attempts": [a.row() for a in attempts], "monitor": rec.monitor_log()})
    )
    result["events_file"] = str(events)
    if png:
        png_path = out_dir / f"{sc.number}-{sc.name}.png"
        plot(png_path, result, attempts, topo.pg_names)
        result["png"] = str(png_path)
    (out_dir / f"{sc.number}-{sc.name}.json").write_text(json.dumps(result, indent=2))
    cl = result["clients"]
    log(
        f"[{sc.number} {sc.name}] failover {'yes ' + str(old) + '->' + str(result['new_leader']) if result['failover'] else 'no'}; "
        f"RTO libpq {cl['libpq']['rto_s']} s, haproxy {cl['haproxy']['rto_s']} s; acked lost {result['acked_missing']}; "
        f"two primaries {len(result['dual_primary'])}; rejoin {result['rejoin_s']} s; alerts "
        + (
            ", ".join(f"{a['alertname']}({a['node']}) +{a['fired_after_fault_s']} s" for a in result["alerts"])
            or "none"
        )
    )
    return result


def default_out_dir(topo: Topology) -> Path:
    return topo.run_dir / "drills" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_drills(
    topo: Topology,
    names: list[str],
    out_dir: Path | None = None,
    load: LoadSettings | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    out_dir = out_dir or default_out_dir(topo)
    results = [run_drill(topo, s.name, out_dir, load, log=log) for s in resolve(names)]
    write_summary(out_dir, results)
    return results


def cli(topo: Topology, names: list[str], all_: bool, profile: str | None, out: str | None) -> int:
    """``python -m lab drill``: run scenarios on the running lab, print the table."""
    if not control.running(topo):
        print(f"lab {topo.stack} is not running ({topo.run_dir}); start it with: python -m lab --stack {topo.stack} up")
        return 3
    if all_:
        names = [s.name for s in SCENARIOS.values()]
    if not names:
        print(
            "name a scenario or use --all:\n"
            + "\n".join(f"  {s.number} {s.name:15} {s.title}" for s in SCENARIOS.values())
        )
        return 2
    scenarios = resolve(names)
    if profile and profile not in TIMING_PROFILES:
        print(f"unknown timing profile {profile!r}; known: {', '.join(TIMING_PROFILES)}")
        return 2
    if profile:
        t = apply_timing(topo, profile)
        print(
            f"timing profile {profile}: ttl {t.ttl} loop_wait {t.loop_wait} retry_timeout {t.retry_timeout} (PATCH /config)"
        )
    out_dir = Path(out) if out else default_out_dir(topo)
    results = run_drills(topo, [s.name for s in scenarios], out_dir)
    print()
    print(table(results))
    print(f"\nJSON, raw attempts and PNG timelines: {out_dir}")
    bad = [
        r
        for r in results
        if not r.get("skipped") and (r.get("error") or r.get("acked_missing") or r.get("dual_primary"))
    ]
    return 1 if bad else 0
