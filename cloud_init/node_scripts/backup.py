#!/usr/bin/python3
# pgha-backup: installed verbatim by cloud_init (node_scripts/backup.py) on every Patroni node when
# backup.enabled. Run by the pgha-backup-{full,diff,watch}.timer units on EVERY node, by Patroni
# (post_bootstrap, custom bootstrap of a restored cluster) and by the lab. Acts only on the leader
# (Patroni's /primary answers 200 and PostgreSQL is not in recovery), so after a failover the new
# leader's timers carry on.
#
#   run full|diff   stanza-create (idempotent), then a backup of that type
#   run watch       stanza-create; a full backup when the repository has none, a differential one
#                   when the cluster's timeline is newer than the last backup's (after a failover)
#                   Every run (any node, leader or not) then writes node-exporter's textfile metrics
#                   (backup.json "textfile"): the last backup's stop time, archiving failing (leader).
#   stanza          stanza-create on the leader (--bootstrap: on this node, which Patroni is bootstrapping)
#   restore         make the data directory, then pgbackrest restore (custom bootstrap of a NEW cluster);
#                   with --pgbackrest-config/--stanza: from ANOTHER stack's repository (backup.restore_from),
#                   read through its own config (restore-from.conf), checked readable first
#   status          JSON: leader or not, last backup, pg_stat_archiver, WAL segments waiting
import argparse
import datetime
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def log(msg: str) -> None:
    print("pgha-backup: " + msg, flush=True)


def psql(cfg: dict[str, Any], sql: str) -> str:
    cmd = [cfg["psql"], "--no-psqlrc", "-XAtq", "-h", cfg["socket_dir"], "-p", str(cfg["port"])]
    cmd += ["-U", cfg["superuser"], "-d", "postgres", "-c", sql]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("psql failed: " + p.stderr.strip())
    return p.stdout.strip()


def is_leader(cfg: dict[str, Any]) -> bool:
    """Patroni says this node is the primary AND PostgreSQL is not in recovery."""
    ctx = ssl.create_default_context(cafile=cfg["cacert"])
    try:
        with urllib.request.urlopen(cfg["primary_url"], context=ctx, timeout=5) as r:
            if r.status != 200:
                return False
    except (urllib.error.URLError, OSError):
        return False
    try:
        return psql(cfg, "SELECT pg_is_in_recovery()") == "f"
    except (RuntimeError, subprocess.TimeoutExpired):
        return False


def pgbackrest(cfg: dict[str, Any], *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [cfg["pgbackrest"], "--config=" + cfg["pgbackrest_conf"], "--stanza=" + cfg["stanza"], *args]
    # errors="replace": pgBackRest may echo undecryptable bytes (a wrong passphrase) in its messages.
    return subprocess.run(cmd, check=False, text=True, errors="replace", capture_output=capture)


def info(cfg: dict[str, Any]) -> dict[str, Any]:
    p = pgbackrest(cfg, "--output=json", "info", capture=True)
    if p.returncode != 0:
        raise RuntimeError("pgbackrest info failed: " + (p.stderr.strip() or p.stdout.strip()))
    stanzas = json.loads(p.stdout or "[]")
    return stanzas[0] if stanzas else {}


def timeline_of(wal: str) -> int:
    return int(wal[:8], 16)


#: pgbackrest info status codes meaning the stanza does not exist yet (missing stanza path / data).
STANZA_MISSING = (1, 3)


def stanza_missing(cfg: dict[str, Any]) -> bool:
    try:
        return (info(cfg).get("status") or {}).get("code") in STANZA_MISSING
    except (RuntimeError, ValueError):
        return True


def ensure_stanza(cfg: dict[str, Any]) -> int:
    """stanza-create only when the stanza is missing: it takes the archive lock, which the
    asynchronous archive-push holds while it works through a backlog."""
    return stanza_create(cfg) if stanza_missing(cfg) else 0


#: pgBackRest's exit code when another pgBackRest process holds the lock (the asynchronous
#: archive-push, retrying segments the missing stanza made fail): wait for it, a few times.
LOCK_HELD = 50
LOCK_RETRIES = 10
LOCK_WAIT = 3.0


def stanza_create(cfg: dict[str, Any]) -> int:
    for attempt in range(LOCK_RETRIES):
        p = pgbackrest(cfg, "stanza-create")
        if p.returncode != LOCK_HELD:
            break
        log(f"stanza-create: lock held by another pgBackRest process, retrying ({attempt + 1}/{LOCK_RETRIES})")
        time.sleep(LOCK_WAIT)
    if p.returncode != 0:
        log(f"stanza-create failed (exit {p.returncode}); see {cfg['pgbackrest_conf']} log-path")
    return p.returncode


def backup(cfg: dict[str, Any], kind: str) -> int:
    log(f"{kind} backup of stanza {cfg['stanza']} starting on {cfg['node']}")
    p = pgbackrest(cfg, "--type=" + kind, "backup")
    log(f"{kind} backup done" if p.returncode == 0 else f"{kind} backup FAILED (exit {p.returncode})")
    return p.returncode


def watch_kind(cfg: dict[str, Any]) -> str | None:
    """full when the repository has no backup; diff when the timeline moved on since the last one."""
    backups = info(cfg).get("backup") or []
    if not backups:
        return "full"
    current = timeline_of(psql(cfg, "SELECT pg_walfile_name(pg_current_wal_lsn())"))
    last = timeline_of(backups[-1]["archive"]["start"])
    if current > last:
        log(f"timeline {current} is newer than the last backup's ({last}): a failover happened")
        return "diff"
    return None


#: WAL archiving failing: the last attempt failed after the last success. The same condition
#: as pgha-check-patroni's ARCHIVER_SQL (a unit test keeps them equal).
ARCHIVE_FAILING = "coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false)"


def archive_failing(cfg: dict[str, Any]) -> bool:
    return psql(cfg, f"SELECT {ARCHIVE_FAILING} FROM pg_stat_archiver") == "t"


def metrics_text(stanza: dict[str, Any] | None, failing: bool) -> str:
    """node-exporter textfile: the last backup's stop time (no sample when the repository has
    no backup or could not be read, so ``absent()`` catches it) and archiving failing."""
    lines = [
        "# HELP pgha_backup_last_success_timestamp_seconds Unix time the last successful backup finished.",
        "# TYPE pgha_backup_last_success_timestamp_seconds gauge",
    ]
    backups = (stanza or {}).get("backup") or []
    if backups:
        last = max(backups, key=lambda b: b["timestamp"]["stop"])
        lines.append(
            f'pgha_backup_last_success_timestamp_seconds{{type="{last["type"]}"}} {int(last["timestamp"]["stop"])}'
        )
    lines += [
        "# HELP pgha_archive_failing 1 while WAL archiving to the backup repository fails (leader), else 0.",
        "# TYPE pgha_archive_failing gauge",
        f"pgha_archive_failing {1 if failing else 0}",
    ]
    return "\n".join(lines) + "\n"


def write_textfile(path: str, text: str) -> None:
    """Atomically (a temporary file in the same directory, then rename), readable by node-exporter."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_metrics(cfg: dict[str, Any], leader: bool) -> None:
    """Never fails the job: a repository or psql error is logged and leaves no timestamp sample."""
    stanza: dict[str, Any] | None = None
    try:
        stanza = info(cfg)
    except (RuntimeError, ValueError, OSError) as e:
        log(f"metrics: {e}")
    failing = False
    if leader:
        try:
            failing = archive_failing(cfg)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            log(f"metrics: pg_stat_archiver: {e}")
    try:
        write_textfile(cfg["textfile"], metrics_text(stanza, failing))
    except OSError as e:
        log(f"metrics: cannot write {cfg['textfile']}: {e}")


def cmd_run(cfg: dict[str, Any], job: str) -> int:
    leader = is_leader(cfg)
    try:
        return run_job(cfg, job, leader)
    finally:
        write_metrics(cfg, leader)


def run_job(cfg: dict[str, Any], job: str, leader: bool) -> int:
    if not leader:
        log(f"{cfg['node']} is not the leader: nothing to do ({job})")
        return 0
    rc = ensure_stanza(cfg)
    if rc != 0:
        return rc
    if job == "watch":
        kind = watch_kind(cfg)
        if kind is None:
            log("stanza present, last backup on the current timeline: nothing to do")
            return 0
        return backup(cfg, kind)
    return backup(cfg, job)


def cmd_stanza(cfg: dict[str, Any], bootstrap: bool) -> int:
    if not bootstrap and not is_leader(cfg):
        log(f"{cfg['node']} is not the leader: the leader creates the stanza")
        return 0
    rc = ensure_stanza(cfg)
    if rc != 0 and bootstrap:
        # Patroni's post_bootstrap: an unreachable repository must not fail the bootstrap
        # (Patroni would discard the new cluster); the watch timer creates the stanza later.
        log("stanza not created now; pgha-backup-watch.timer retries on the leader")
        return 0
    return rc


#: What an operator checks when the source repository cannot be read (backup.restore_from).
SOURCE_HINT = (
    "check the source's passphrase (pgha-restore-from:cipherPass), backup.restore_from.bucket/region/"
    "stanza/repo_path, and that this stack's S3 user may read the source bucket"
)


def printable(text: str, limit: int = 300) -> str:
    """One line of plain ASCII (a wrong passphrase makes pgBackRest echo decrypted garbage)."""
    return re.sub(r"[^\x20-\x7e]+", " ", text).strip()[:limit]


def source_problem(cfg: dict[str, Any], options: tuple[str, ...] = ()) -> str | None:
    """Why the source repository cannot be restored from (unreadable, wrong passphrase, no backup,
    a target time before the oldest backup ended), or None."""
    p = pgbackrest(cfg, "--output=json", "info", capture=True)
    try:
        stanzas = json.loads(p.stdout or "[]", strict=False)  # control characters inside messages
    except ValueError:
        stanzas = None
    if p.returncode != 0 or not isinstance(stanzas, list):
        why = printable(p.stderr or p.stdout)
        return f"cannot read the source repository: {SOURCE_HINT}; pgBackRest (exit {p.returncode}): {why}"
    st = stanzas[0] if stanzas else {}
    if st.get("backup"):
        return target_problem(st["backup"], options)
    # A wrong passphrase decrypts backup.info into garbage: "FormatError: key/value found outside of section".
    repo = (st.get("repo") or [{}])[0].get("status") or {}
    why = printable(repo.get("message") or (st.get("status") or {}).get("message") or "no such stanza", 1000)
    why = re.sub(r"(key/value found outside of section).*", r"\1 (it decrypts to garbage: a wrong passphrase)", why)
    return f"cannot read the source repository, or it has no backup of stanza {cfg['stanza']}: {SOURCE_HINT}; pgBackRest: {why}"


def target_problem(backups: list[dict[str, Any]], options: tuple[str, ...]) -> str | None:
    """A time target before the oldest backup ended cannot be reached (PostgreSQL would stop at a
    later point, or refuse): say so before anything is restored. After the end of the archive,
    PostgreSQL itself stops the replay ("recovery ended before configured recovery target")."""
    opts = dict(o.split("=", 1) for o in options if o.startswith("--") and "=" in o)
    if opts.get("--type") != "time" or "--target" not in opts:
        return None
    try:
        target = datetime.datetime.fromisoformat(opts["--target"]).timestamp()
    except ValueError:
        return f"restore target {opts['--target']!r} is not an ISO 8601 time with its offset"
    oldest = min(float(b["timestamp"]["stop"]) for b in backups)
    if target < oldest:
        ended = datetime.datetime.fromtimestamp(oldest, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"restore target {opts['--target']} is before the oldest backup ended ({ended}), the "
            "earliest point the source repository can restore to: choose a later time (backup.restore_from.time)"
        )
    return None


def cmd_restore(cfg: dict[str, Any], repo_path: str | None, options: list[str]) -> int:
    os.makedirs(cfg["data_dir"], mode=0o700, exist_ok=True)
    where = repo_path or cfg["pgbackrest_conf"]
    log(f"restoring stanza {cfg['stanza']} from {where} into {cfg['data_dir']}: {' '.join(options)}")
    if repo_path is None:  # another stack's repository: say clearly when it cannot be read
        problem = source_problem(cfg, tuple(options))
        if problem:
            log(f"restore FAILED: {problem}")
            return 1
    repo = ["--repo1-path=" + repo_path] if repo_path else []
    rc = pgbackrest(cfg, *repo, "--delta", *options, "restore").returncode
    if rc != 0:
        log(f"restore FAILED (pgbackrest restore exit {rc}); see the pgBackRest log (log-path of {where})")
    return rc


def cmd_status(cfg: dict[str, Any]) -> int:
    out: dict[str, Any] = {"node": cfg["node"], "leader": is_leader(cfg)}
    try:
        stanza = info(cfg)
        backups = stanza.get("backup") or []
        out["stanza_status"] = (stanza.get("status") or {}).get("message")
        if backups:
            b = backups[-1]
            out["last_backup"] = {
                "label": b["label"],
                "type": b["type"],
                "stop": b["timestamp"]["stop"],
                "timeline": timeline_of(b["archive"]["start"]),
            }
        out["backups"] = len(backups)
    except (RuntimeError, ValueError, KeyError, IndexError) as e:
        out["error"] = str(e)
    if out["leader"]:
        row = psql(
            cfg,
            "SELECT json_build_object('archived_count', archived_count, 'last_archived_wal', last_archived_wal,"
            " 'last_archived_time', extract(epoch from last_archived_time), 'failed_count', failed_count,"
            " 'last_failed_time', extract(epoch from last_failed_time), 'now', extract(epoch from now()),"
            " 'ready', (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'))"
            " FROM pg_stat_archiver",
        )
        out["archiver"] = json.loads(row)
    print(json.dumps(out, sort_keys=True))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="pgha backups (pgBackRest), acting on the leader only")
    ap.add_argument("--config", required=True, help="backup.json rendered for this node")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("job", choices=("full", "diff", "watch"))
    st = sub.add_parser("stanza")
    st.add_argument("--bootstrap", action="store_true", help="this node is bootstrapping the cluster")
    st.add_argument("patroni_args", nargs="*", help=argparse.SUPPRESS)  # post_bootstrap appends a connstring
    rs = sub.add_parser("restore")
    rs_from = rs.add_mutually_exclusive_group(required=True)
    rs_from.add_argument("--repo-path", help="another path of this cluster's repository (lab restore)")
    rs_from.add_argument("--pgbackrest-config", help="another stack's repository: its pgBackRest config")
    rs.add_argument("--stanza", help="the source's stanza (with --pgbackrest-config)")
    sub.add_parser("status")
    args, extra = ap.parse_known_args()
    if extra and args.cmd != "restore":
        ap.error("unrecognized arguments: " + " ".join(extra))
    with open(args.config) as f:
        cfg = json.load(f)
    if args.cmd == "run":
        return cmd_run(cfg, args.job)
    if args.cmd == "stanza":
        return cmd_stanza(cfg, args.bootstrap)
    if args.cmd == "restore":
        if args.pgbackrest_config:
            cfg = {**cfg, "pgbackrest_conf": args.pgbackrest_config, "stanza": args.stanza or cfg["stanza"]}
        return cmd_restore(cfg, args.repo_path, extra)
    return cmd_status(cfg)


if __name__ == "__main__":
    sys.exit(main())
