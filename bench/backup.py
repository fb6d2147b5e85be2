"""Backup benchmark: pgBackRest against the lab's S3 server (SeaweedFS, TLS), real PostgreSQL.

On a lab of its own (dev stack, backups on) loaded with pgbench (scale 70 is about 1 GB),
N runs of each measurement; prints min/median/max:

- full backup: seconds and MB/s (database size / duration);
- PITR into a new lab: seconds from ``lab restore`` to a healthy new cluster, MB/s, and
  PostgreSQL's own WAL replay time ("redo done ... elapsed");
- the same PITR as a NEW OVH stack does it (``backup.restore_from``: its own bucket, the
  source read through restore-from.conf), until healthy and its first full backup taken;
- delta restore of a replica (Patroni reinitialize, pgbackrest method, until streaming);
- rewinding the lab's own cluster in place to the same target (``lab rewind``, the runbook:
  a full backup first, the restore, a full backup of the new timeline, the replicas
  re-created), until healthy;
- RPO after losing all three nodes at once (SIGKILL of every Patroni and PostgreSQL,
  the S3 server survives, as Object Storage would), on a small lab of its own with the
  default archive_timeout: last acknowledged commit minus the newest commit a restore
  to latest returns.

    .venv/bin/python bench/backup.py --runs 3
    .venv/bin/python bench/backup.py --runs 1 --scale 10 --skip-rpo

Figures, not assertions (the invariants are tests/lab/test_backup.py). Raw figures go to
bench/results/backup-<UTC stamp>.json (git-ignored)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from lab import backup, control, observe, rewind, rundir  # noqa: E402
from lab.topology import Topology, load_topology, scratch_dir  # noqa: E402
from pgha.backup import RestoreSpec  # noqa: E402

REDO_RE = re.compile(r"redo done at .* elapsed: ([0-9.]+) s")


def stats(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


def fmt(s: dict[str, float] | None, unit: str = "s") -> str:
    if not s:
        return "-"
    return f"{s['min']:8.2f} {s['median']:8.2f} {s['max']:8.2f} {unit}  (n={int(s['n'])})"


def start(run_dir: Path, prefix: str) -> Topology:
    shutil.rmtree(run_dir, ignore_errors=True)
    topo = load_topology("dev", run_dir, prefix, overrides=backup.LAB_OVERRIDES)
    rundir.prepare(topo)
    control.start_supervisor(topo)
    observe.wait_healthy(topo, timeout=300)
    return topo


def conn(topo: Topology) -> psycopg.Connection[Any]:
    return psycopg.connect(topo.dsn(), password=topo.passwords().app, autocommit=True)


def db_mb(topo: Topology) -> float:
    with conn(topo) as c:
        row = c.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return float(row[0]) / 1e6


def pgbench(topo: Topology, *args: str) -> None:
    env = {
        **os.environ,
        "PGPASSWORD": topo.passwords().app,
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": str(topo.ca_file),
    }
    lead = observe.leader(topo)
    assert lead
    pg = topo.settings.patroni
    cmd = ["pgbench", "-h", topo.address(lead), "-p", str(pg.port), "-U", pg.app_user, *args, pg.app_database]
    subprocess.run(cmd, check=True, env=env, capture_output=True)


def redo_seconds(topo: Topology) -> float | None:
    for n in topo.pg_names:
        log = topo.run_dir / "logs" / f"{n}.log"
        m = REDO_RE.search(log.read_text(errors="replace")) if log.exists() else None
        if m:
            return float(m.group(1))
    return None


def rpo_once(run_dir: Path, prefix: str, restore_dir: Path, restore_prefix: str) -> float:
    """Seconds of acknowledged commits a restore to latest lacks after losing every node at once."""
    topo = start(run_dir, prefix)
    try:
        with conn(topo) as c:
            c.execute("CREATE TABLE ticks (at timestamptz PRIMARY KEY)")
        backup.run_job(topo, "full")  # the table is in the backup: a restore always has it
        with conn(topo) as c:
            row = c.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        backed_up: dt.datetime = row[0]
        acked: list[dt.datetime] = []
        stop = threading.Event()

        def writer() -> None:
            with conn(topo) as c:
                while not stop.is_set():
                    row = c.execute("INSERT INTO ticks VALUES (clock_timestamp()) RETURNING at").fetchone()
                    assert row is not None
                    acked.append(row[0])  # returned: acknowledged
                    time.sleep(0.05)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        time.sleep(random.uniform(30, 90))
        for n in topo.pg_names:  # the whole cluster at once; the S3 server survives
            control.signal_node(topo, n, signal.SIGKILL)
        stop.set()
        t.join(5)
        last = max(acked)
        shutil.rmtree(restore_dir, ignore_errors=True)
        r = backup.restore(topo, "latest", "", restore_dir, restore_prefix, timeout=600)
        try:
            with conn(r) as c:
                row = c.execute("SELECT max(at) FROM ticks").fetchone()
            got = row[0] if row else None
        finally:
            control.stop(r)
            shutil.rmtree(restore_dir, ignore_errors=True)
        # Nothing after the backup came back: every commit since the backup ended was lost.
        return (last - (got or backed_up)).total_seconds()
    finally:
        control.stop(topo)
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70: about 1 GB)")
    ap.add_argument("--prefix", default="127.93")
    ap.add_argument("--restore-prefix", default="127.94")
    ap.add_argument("--skip-rpo", action="store_true")
    args = ap.parse_args()
    base = scratch_dir("pgha-bench-backup")
    raw: dict[str, list[float]] = {
        k: [] for k in ("full_s", "full_mbs", "pitr_s", "pitr_mbs", "redo_s", "rf_s", "replica_s", "rewind_s", "rpo_s")
    }
    size = 0.0
    topo = start(base / "src", args.prefix)
    try:
        t0 = time.monotonic()
        pgbench(topo, "-i", "-q", "-s", str(args.scale))
        size = db_mb(topo)
        print(f"pgbench scale {args.scale}: {size:.0f} MB in {time.monotonic() - t0:.0f}s", flush=True)
        for i in range(args.runs):
            t0 = time.monotonic()
            backup.run_job(topo, "full")
            full = time.monotonic() - t0
            raw["full_s"].append(full)
            raw["full_mbs"].append(size / full)
            pgbench(topo, "-T", "10", "-c", "2")
            with conn(topo) as c:
                row = c.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            target = row[0].isoformat(sep=" ")
            pgbench(topo, "-T", "5", "-c", "2")
            backup.wait_archived(topo)
            into = base / f"pitr-{i}"
            shutil.rmtree(into, ignore_errors=True)
            t0 = time.monotonic()
            r = backup.restore(topo, "time", target, into, args.restore_prefix, timeout=1800)
            pitr = time.monotonic() - t0
            raw["pitr_s"].append(pitr)
            raw["pitr_mbs"].append(size / pitr)
            redo = redo_seconds(r)
            if redo is not None:
                raw["redo_s"].append(redo)
            control.stop(r)
            shutil.rmtree(into, ignore_errors=True)
            # The same target as a new OVH stack restores it (backup.restore_from): its own bucket,
            # the source read through restore-from.conf; until healthy and its first full backup.
            t0 = time.monotonic()
            r = backup.restore_from_bucket(
                topo, f"pgha-bench-rf-{i}", "time", target, into, args.restore_prefix, timeout=1800
            )
            raw["rf_s"].append(time.monotonic() - t0)
            control.stop(r)
            shutil.rmtree(into, ignore_errors=True)
            lead = observe.leader(topo)
            replica = next(n for n in topo.pg_names if n != lead)
            off = observe.log_size(topo, replica)
            t0 = time.monotonic()
            code, body = observe.rest_post(topo, replica, "/reinitialize", {"force": True})
            assert code == 200, body
            while "replica has been created using pgbackrest" not in observe.log_since(topo, replica, off):
                if time.monotonic() - t0 > 1800:
                    raise SystemExit(f"{replica} not rebuilt with pgbackrest")
                time.sleep(0.5)
            observe.wait_healthy(topo, timeout=600)
            raw["replica_s"].append(time.monotonic() - t0)
            t0 = time.monotonic()
            rewind.rewind(topo, RestoreSpec("time", target), timeout=1800)
            raw["rewind_s"].append(time.monotonic() - t0)
            save(raw, size, args.scale)
            print(
                f"run {i + 1}: full {full:.1f}s, pitr {pitr:.1f}s (redo {redo}s), restore_from {raw['rf_s'][-1]:.1f}s,"
                f" replica {raw['replica_s'][-1]:.1f}s, rewind in place {raw['rewind_s'][-1]:.1f}s",
                flush=True,
            )
    finally:
        control.stop(topo)
        shutil.rmtree(base / "src", ignore_errors=True)
    if not args.skip_rpo:
        for i in range(args.runs):
            rpo = rpo_once(base / "rpo", args.prefix, base / "rpo-restore", args.restore_prefix)
            raw["rpo_s"].append(rpo)
            save(raw, size, args.scale)
            print(f"rpo run {i + 1}: {rpo:.1f}s", flush=True)
    print(
        f"\nbackup benchmark: dev stack, {size:.0f} MB (pgbench scale {args.scale}), {args.runs} runs; min median max"
    )
    print(f"  full backup               {fmt(stats(raw['full_s']))}")
    print(f"  full backup throughput    {fmt(stats(raw['full_mbs']), 'MB/s')}")
    print(f"  PITR to a healthy cluster {fmt(stats(raw['pitr_s']))}")
    print(f"  PITR throughput           {fmt(stats(raw['pitr_mbs']), 'MB/s')}")
    print(f"  PITR WAL replay (redo)    {fmt(stats(raw['redo_s']))}")
    print(f"  PITR as a new stack (restore_from, own bucket) {fmt(stats(raw['rf_s']))}")
    print(f"  replica delta restore     {fmt(stats(raw['replica_s']))}")
    print(f"  rewind in place (lab rewind, until healthy) {fmt(stats(raw['rewind_s']))}")
    print(f"  RPO, all nodes lost       {fmt(stats(raw['rpo_s']))}")
    print(f"raw figures: {save(raw, size, args.scale)}")
    return 0


STAMP = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def save(raw: dict[str, list[float]], size: float, scale: int) -> Path:
    """bench/results/backup-<stamp>.json, rewritten after every measurement (a crash keeps what was measured)."""
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"backup-{STAMP}.json"
    path.write_text(json.dumps({"size_mb": size, "scale": scale, **raw}, indent=2))
    return path


if __name__ == "__main__":
    sys.exit(main())
