"""python -m lab <command>: the pgha cluster, for real, on loopback addresses.

up          render the stack's node files, start its etcd members, Patroni/PostgreSQL nodes
            and HAProxy (--fresh: stop and discard what the run dir held first),
            wait with live progress, validate, print the status (safe when running)
status      the status table and validation
down        stop every process the lab started (TERM, then KILL); --clean removes the run dir
switchover  planned switchover to another node
logs NODE   a daemon's log (etcd1.., pg1.., haproxy, supervisor)
psql ARGS   psql on the primary as the application user; ARGS go to psql (-c 'select 1')
start NODE / kill NODE   start a stopped daemon / SIGKILL a node (drills)
backup      a pgBackRest backup (up --backup starts the lab with backups and its S3 server)
restore     a NEW lab restored from this lab's repository: --to latest|TIME, --xid, --name; --into DIR
            (--bucket NEW: as a new OVH stack with backup.restore_from, into a bucket of its own)
rewind      THIS lab's cluster rewound in place: --to TIME | --xid | --name, --yes
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from pgha.backup import RestoreSpec
from pgha.settings import SettingsError

from . import backup, control, errors, observe, rewind, rundir
from .topology import Topology, default_prefix, default_run_dir, load_topology

#: stack and prefix: the flag, else its environment variable, else a default.
REQUESTS = (("stack", "--stack", "PGHA_STACK"), ("prefix", "--prefix", "PGHA_LAB_PREFIX"))


def _requested(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """The stack and prefix the user asked for: name -> (value, the flag or variable used)."""
    out = {}
    for name, flag, env in REQUESTS:
        if getattr(args, name):
            out[name] = (getattr(args, name), flag)
        elif os.environ.get(env):
            out[name] = (os.environ[env], env)
    return out


def _stack(args: argparse.Namespace) -> str:
    return args.stack or os.environ.get("PGHA_STACK") or "dev"


def _run_dir(args: argparse.Namespace) -> Path:
    return Path(args.run_dir) if args.run_dir else default_run_dir(_stack(args))


def _topo(args: argparse.Namespace) -> Topology:
    """The lab of the run dir. An existing one keeps its stack and prefix (lab.json):
    asking for others is an error that names the conflict and the ways out."""
    run_dir = _run_dir(args)
    if not rundir.lab_file(run_dir).exists():
        return load_topology(_stack(args), run_dir, args.prefix or default_prefix())
    meta = rundir.lab_meta(run_dir)
    wrong = {name: (value, via) for name, (value, via) in _requested(args).items() if value != meta[name]}
    if wrong:
        conflicts = "; ".join(
            f"{via} asks for {name} {value}, it was created with {name} {meta[name]}"
            for name, (value, via) in wrong.items()
        )
        undo = " and ".join(f"drop {via}" if via.startswith("--") else f"unset {via}" for _, via in wrong.values())
        ways = [f"{undo} to use it as it is", "choose another --run-dir"]
        if args.cmd == "up":
            ways.insert(
                0, "add --fresh to 'up' to stop it and start a new lab there (its data and secrets are deleted)"
            )
        raise errors.LabError(f"the lab in {run_dir} does not match: {conflicts}. Either {', or '.join(ways)}.")
    return rundir.open_lab(run_dir)


def print_validation(results: list[observe.CheckResult]) -> bool:
    print("validation (the scripts the deploy-time remote commands run):")
    for r in results:
        print(f"  {'PASS' if r.ok else 'FAIL'}  {r.node:6} {r.check:27} {r.output}")
    return all(r.ok for r in results)


def cmd_up(args: argparse.Namespace) -> int:
    if args.fresh and _run_dir(args).exists():
        print(f"--fresh: stopping and discarding {_run_dir(args)}")
        control.discard(_run_dir(args))
    topo = _topo(args)
    if args.backup and not topo.settings.backup.enabled and not control.running(topo):
        topo = load_topology(topo.stack, topo.run_dir, topo.prefix, overrides=backup.LAB_OVERRIDES)
    t0 = time.monotonic()
    if control.running(topo):
        print(f"lab {topo.stack} already running in {topo.run_dir}; checking it")
    else:
        print(f"lab {topo.stack}: rendering node files into {topo.run_dir}")
        rundir.prepare(topo)
        control.start_supervisor(topo)
        print(
            f"started {len(topo.etcd_names)} etcd, {len(topo.pg_names)} Patroni (each managing its PostgreSQL) and HAProxy; waiting for a healthy cluster"
        )
    observe.wait_healthy(topo, timeout=args.timeout, show=True)
    print(f"healthy after {time.monotonic() - t0:.1f}s")
    ok = print_validation(observe.validate(topo))
    print()
    print(observe.status_table(topo))
    if not ok:
        print(f"\nvalidation FAILED; logs in {topo.run_dir}/logs", file=sys.stderr)
        return 1
    if topo.settings.backup.enabled:
        # What the watch timer's first run does on a VM (within 5 minutes): the stanza, and a
        # full backup while the repository has none. The lab has no timers: run it now.
        backup.run_job(topo, "watch")
        print("\n".join(backup.status_lines(topo)))
    print("\nvalidation passed. Next: python -m lab switchover | python -m lab psql | python -m lab down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    topo = _topo(args)
    if not control.running(topo):
        print(f"lab {topo.stack} is not running ({topo.run_dir})")
        return 3
    print(observe.status_table(topo))
    if topo.settings.backup.enabled:
        print("\n".join(backup.status_lines(topo)))
    return 0 if print_validation(observe.validate(topo, wait=0)) else 1


def cmd_backup(args: argparse.Namespace) -> int:
    topo = _topo(args)
    results = backup.run_job(topo, args.type)
    for n, p in sorted(results.items()):
        print(f"{n}: {p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ''}")
    print("\n".join(backup.status_lines(topo)))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    src = _topo(args)
    kind, value = ("xid", args.xid) if args.xid else ("name", args.name) if args.name else ("latest", "")
    if args.to and args.to != "latest":
        kind, value = "time", args.to
    into = Path(args.into)
    print(f"restoring {src.stack} ({src.run_dir}) to {kind} {value} into {into} on {args.restore_prefix}")
    t0 = time.monotonic()
    if args.bucket:
        topo = backup.restore_from_bucket(
            src, args.bucket, kind, value, into, args.restore_prefix, timeout=args.timeout
        )
    else:
        topo = backup.restore(src, kind, value, into, args.restore_prefix, timeout=args.timeout)
    print(f"restored and healthy after {time.monotonic() - t0:.1f}s")
    print(observe.status_table(topo))
    return 0


def cmd_rewind(args: argparse.Namespace) -> int:
    topo = _topo(args)
    kind, value = ("xid", args.xid) if args.xid else ("name", args.name) if args.name else ("time", args.to)
    if kind == "time":
        value = backup.parse_time(value).isoformat(sep=" ")
    if not args.yes:
        print(
            f"rewinding {topo.run_dir} in place to {kind} {value} loses everything after it: add --yes", file=sys.stderr
        )
        return 2
    t0 = time.monotonic()
    done = rewind.rewind(topo, RestoreSpec(kind, value), timeout=args.timeout)
    print(
        f"rewound to {kind} {value} in {time.monotonic() - t0:.1f}s: {done.restored_on} restored, timeline "
        f"{done.timeline}; the way back is restore point {done.way_back!r} (python -m lab restore --name ...)"
    )
    print(observe.status_table(topo))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    run_dir = _run_dir(args)
    if not rundir.lab_file(run_dir).exists():
        print(f"no lab in {run_dir}")
        return 0
    topo = rundir.open_lab(run_dir)
    control.stop(topo)
    left = control.leftover_pids(topo)
    ports = observe.bound_ports(topo)
    if left or ports:
        print(f"still running: pids {left}, ports {ports}", file=sys.stderr)
        return 1
    print(f"lab {topo.stack} stopped: no process left, no port bound")
    if args.clean:
        shutil.rmtree(run_dir)
        print(f"removed {run_dir}")
    return 0


def cmd_switchover(args: argparse.Namespace) -> int:
    topo = _topo(args)
    lead = observe.leader(topo)
    if not lead:
        print("no leader right now", file=sys.stderr)
        return 1
    cand = args.to or observe.switchover_candidate(topo, lead)
    code, body = observe.rest_post(topo, lead, "/switchover", {"leader": lead, "candidate": cand})
    print(f"switchover {lead} -> {cand}: HTTP {code} {body.strip()}")
    if code != 200:
        return 1
    observe.wait_healthy(topo, timeout=60, show=True)
    print(observe.status_table(topo))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    topo = _topo(args)
    path = topo.run_dir / "logs" / f"{args.node}.log"
    if not path.exists():
        print(f"no log {path}", file=sys.stderr)
        return 1
    lines = path.read_text(errors="replace").splitlines()
    print("\n".join(lines[-args.lines :]))
    return 0


def cmd_psql(args: argparse.Namespace) -> int:
    topo = _topo(args)
    os.environ["PGPASSFILE"] = str(topo.run_dir / "pgpass")
    os.execvp("psql", ["psql", topo.dsn(), *args.psql_args])


def cmd_rotate_certs(args: argparse.Namespace) -> int:
    topo = _topo(args)
    changed = control.rotate_certs(topo)
    bad = [k for k, (old, new) in changed.items() if old == new or not new]
    for k, (old, new) in sorted(changed.items()):
        print(f"  {k:14} serial {old:x} -> {new:x}")
    if bad:
        print(f"not rotated: {', '.join(bad)}", file=sys.stderr)
        return 1
    print(f"rotated {len(changed)} TLS endpoints in place (no restart)")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    topo = _topo(args)
    print(f"{args.node}: pid {control.request_start(topo, args.node)}")
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    topo = _topo(args)
    print(f"{args.node}: SIGKILL sent to {control.signal_node(topo, args.node, signal.SIGKILL)}")
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    from .drills.run import cli as drill_cli

    return drill_cli(_topo(args), args.scenarios, args.all, args.timing_profile, args.out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stack", help="stack whose Pulumi.<stack>.yaml to run (default $PGHA_STACK, else dev)")
    ap.add_argument(
        "--run-dir", help="run directory (default $PGHA_LAB_DIR, else pgha-lab/<stack> in the system temp dir)"
    )
    ap.add_argument(
        "--prefix", help="loopback prefix, e.g. 127.0 -> etcd 127.0.1.N, Patroni 127.0.2.N (or $PGHA_LAB_PREFIX)"
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="bring the lab up and validate it")
    up.add_argument("--timeout", type=float, default=180)
    up.add_argument(
        "--fresh",
        action="store_true",
        help="stop the lab of the run dir and delete it (data, secrets) before starting a new one",
    )
    up.add_argument("--backup", action="store_true", help="with backups: pgBackRest and an S3 server (SeaweedFS)")
    sub.add_parser("status", help="status table and validation")
    bk = sub.add_parser("backup", help="a pgBackRest backup, run on every node like the timers (the leader acts)")
    bk.add_argument("--type", default="full", choices=("full", "diff", "watch"))
    rs = sub.add_parser("restore", help="a new lab restored from this lab's repository")
    target = rs.add_mutually_exclusive_group()
    target.add_argument("--to", help="latest (default) or a time with its offset, e.g. '2026-11-27 20:15:00+00:00'")
    target.add_argument("--xid", help="a transaction id")
    target.add_argument("--name", help="a restore point (pg_create_restore_point)")
    rs.add_argument("--into", required=True, help="run directory of the new lab (must not exist or be empty)")
    rs.add_argument("--restore-prefix", required=True, help="loopback prefix of the new lab, e.g. 127.84")
    rs.add_argument("--timeout", type=float, default=900)
    rs.add_argument(
        "--bucket",
        help="restore as a new OVH stack does (backup.restore_from): its own bucket BUCKET, passphrase and passwords",
    )
    rw = sub.add_parser("rewind", help="rewind THIS lab's cluster in place to a point in time (the runbook)")
    target = rw.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", help="a time with its offset, e.g. '2026-11-27 20:15:00+00:00'")
    target.add_argument("--xid", help="a transaction id")
    target.add_argument("--name", help="a restore point (pg_create_restore_point)")
    rw.add_argument("--yes", action="store_true", help="everything after the target is lost: say so")
    rw.add_argument("--timeout", type=float, default=900)
    down = sub.add_parser("down", help="stop every lab process")
    down.add_argument("--clean", action="store_true", help="also remove the run directory")
    sw = sub.add_parser("switchover", help="planned switchover")
    sw.add_argument("--to", help="candidate (default: any replica)")
    lg = sub.add_parser("logs", help="show a daemon's log")
    lg.add_argument("node")
    lg.add_argument("-n", "--lines", type=int, default=50)
    # Everything after "psql" is psql's (parse_known_args below): no options of its own, not even -h.
    sub.add_parser(
        "psql", help="psql on the primary (application user); the arguments after it go to psql", add_help=False
    )
    sub.add_parser("rotate-certs", help="issue new certificates for every node and reload in place")
    st = sub.add_parser("start", help="start a stopped daemon")
    st.add_argument("node")
    kl = sub.add_parser("kill", help="SIGKILL a node's daemon (and its PostgreSQL)")
    kl.add_argument("node")
    dr = sub.add_parser("drill", help="failover drills on the running lab (lab/drills/)")
    dr.add_argument("scenarios", nargs="*", help="scenario names or numbers (see lab/drills/scenarios.py)")
    dr.add_argument("--all", action="store_true", help="every scenario, in order")
    dr.add_argument("--timing-profile", help="a timing profile (pgha/timing.py) to PATCH into Patroni's config first")
    dr.add_argument("--out", help="output directory (default <run dir>/drills/<UTC stamp>)")
    sv = sub.add_parser("_supervise", help=argparse.SUPPRESS)
    sv.add_argument("--run-dir", dest="sv_run_dir", required=True)
    sv.add_argument("--prefix", dest="sv_prefix", required=True)
    sv.add_argument("--stack", dest="sv_stack", required=True)
    args, extra = ap.parse_known_args(argv)
    if args.cmd == "psql":
        args.psql_args = extra
    elif extra:
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd == "_supervise":
        from .supervisor import main as supervise

        return supervise(args.sv_stack, args.sv_run_dir, args.sv_prefix)
    handlers = {
        "up": cmd_up,
        "status": cmd_status,
        "down": cmd_down,
        "switchover": cmd_switchover,
        "logs": cmd_logs,
        "psql": cmd_psql,
        "start": cmd_start,
        "kill": cmd_kill,
        "drill": cmd_drill,
        "rotate-certs": cmd_rotate_certs,
        "backup": cmd_backup,
        "restore": cmd_restore,
        "rewind": cmd_rewind,
    }
    try:
        return handlers[args.cmd](args)
    except SettingsError as e:
        print(f"Pulumi.{_stack(args)}.yaml: {e}", file=sys.stderr)
        return 2
    except errors.LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
