#!/usr/bin/python3
# pgha-check-patroni: installed verbatim by cloud_init (node_scripts/check_patroni.py). Run by the deploy-time remote
# commands and by the lab, on every Patroni node.
#
# Checks through this node's Patroni REST API (TLS, verified against the cluster CA)
# that every member is present and exactly one is the leader; on the leader, that
# pg_stat_replication shows N-1 replicas streaming under their member names (not a
# pg_basebackup) and, in synchronous mode, a synchronous standby. On a VM, first that the
# data directory is on its own mounted volume. With backup.enabled, on the leader, that WAL archiving
# to the backup repository is not failing (pg_stat_archiver).
import argparse
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from typing import Any


def get_json(url: str, cacert: str) -> Any:
    ctx = ssl.create_default_context(cafile=cacert)
    with urllib.request.urlopen(url, context=ctx, timeout=3) as r:
        return json.load(r)


def replication_rows(cfg: dict[str, Any]) -> list[list[str]]:
    sql = "SELECT application_name, state, sync_state FROM pg_stat_replication"
    cmd = [
        cfg["psql"],
        "--no-psqlrc",
        "-XAt",
        "-F",
        "|",
        "-h",
        cfg["socket_dir"],
        "-p",
        str(cfg["port"]),
        "-U",
        cfg["superuser"],
        "-d",
        "postgres",
        "-c",
        sql,
    ]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        raise RuntimeError("psql failed: " + p.stderr.strip())
    return [line.split("|") for line in p.stdout.splitlines() if line]


ARCHIVER_SQL = (
    "SELECT coalesce(to_char(last_archived_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS UTC'), 'never'),"
    " coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false), failed_count,"
    " (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') FROM pg_stat_archiver"
)


def archiving_problem(cfg: dict[str, Any]) -> str | None:
    """WAL archiving failing: the last attempt failed after the last success."""
    cmd = [cfg["psql"], "--no-psqlrc", "-XAt", "-F", "|", "-h", cfg["socket_dir"], "-p", str(cfg["port"])]
    cmd += ["-U", cfg["superuser"], "-d", "postgres", "-c", ARCHIVER_SQL]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        return "pg_stat_archiver: psql failed: " + p.stderr.strip()
    since, failing, failed, ready = p.stdout.strip().split("|")
    if failing != "t":
        return None
    return (
        f"archiving failing since {since} (last successful archive; {failed} failed attempts, "
        f"{ready} WAL segments waiting in pg_wal): writes go on and WAL piles up in pg_wal until the "
        "repository is reachable again; check Object Storage reachability and credentials, then the "
        "pgBackRest log (pgbackrest.conf log-path)"
    )


def data_volume_problem(cfg: dict[str, Any]) -> str | None:
    """On a VM, PostgreSQL's data lives on its own volume: refuse a data dir on the root disk."""
    mount = cfg.get("data_mount")
    if mount and not os.path.ismount(mount):
        return (
            f"{mount} is not a mounted volume: the data volume did not attach or was not formatted "
            "(see fs_setup/mounts in /var/log/cloud-init.log and `lsblk`, `ls -l /dev/disk/by-id/`)"
        )
    return None


def check(cfg: dict[str, Any], node: str) -> tuple[list[str], str]:
    volume = data_volume_problem(cfg)
    if volume:
        return [volume], ""
    try:
        cluster = get_json(cfg["rest_url"] + "/cluster", cfg["cacert"])
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        return ["Patroni REST API {}/cluster: {}".format(cfg["rest_url"], e)], ""
    members: dict[str, dict[str, Any]] = {m["name"]: m for m in cluster.get("members", [])}
    problems: list[str] = []
    missing = sorted(set(cfg["members"]) - set(members))
    if missing:
        problems.append("members missing from the cluster: " + ", ".join(missing))
    leaders = sorted(n for n, m in members.items() if m.get("role") in ("leader", "standby_leader"))
    if len(leaders) != 1:
        problems.append(f"expected exactly one leader, found {len(leaders)}: {leaders}")
        return problems, ""
    leader = leaders[0]
    for n, m in sorted(members.items()):
        if n != leader and m.get("state") != "streaming":
            problems.append("{} is {}, not streaming".format(n, m.get("state")))
    summary = "patroni: leader {} (timeline {})".format(leader, members[leader].get("timeline"))
    if node == leader:
        try:
            rows = replication_rows(cfg)
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            return [*problems, str(e)], summary
        names = set(cfg["members"]) - {leader}
        streaming = sorted(r[0] for r in rows if r[0] in names and r[1] == "streaming")
        if len(streaming) != len(names):
            listed = ", ".join(streaming) or "none"
            problems.append(
                f"pg_stat_replication on {leader} shows {len(streaming)}/{len(names)} replicas streaming ({listed})"
            )
        sync = sorted(r[0] for r in rows if r[0] in names and r[2] in ("sync", "quorum"))
        if cfg["synchronous_mode"] and not sync:
            problems.append("synchronous mode is on but no synchronous standby in pg_stat_replication")
        sync_part = ", sync: " + ",".join(sync) if sync else ""
        summary += f"; pg_stat_replication: {len(streaming)} streaming{sync_part}"
        if cfg.get("archiving"):
            archiving = archiving_problem(cfg)
            if archiving:
                problems.append(archiving)
            else:
                summary += "; archiving OK"
    else:
        summary += f"; {node} is a replica (replication checked on the leader)"
    return problems, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True, help="check.json rendered for this node")
    ap.add_argument("--wait", type=float, default=0, help="retry for this many seconds")
    args = ap.parse_args()
    with open(args.config) as f:
        full = json.load(f)
    cfg, node = full["patroni"], full["node"]
    deadline = time.monotonic() + args.wait
    last: list[str] | None = None
    while True:
        problems, summary = check(cfg, node)
        if not problems:
            print("OK " + summary, flush=True)
            return 0
        if problems != last:
            print("waiting: " + "; ".join(problems), file=sys.stderr, flush=True)
            last = problems
        if time.monotonic() >= deadline:
            print("FAILED patroni check on {}: {}".format(node, "; ".join(problems)), file=sys.stderr, flush=True)
            return 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
