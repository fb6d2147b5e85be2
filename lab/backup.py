"""Backups in the lab: the same pgha-backup script and pgBackRest the VMs run, against the
lab's S3 server (lab/s3.py).

- :func:`run_job`: what the timers do on a VM: the job on EVERY node, only the leader acts.
- :func:`status_lines`: last backup and archive lag (``lab status``).
- :func:`restore`: a NEW lab in a new run directory, bootstrapped by Patroni from the
  repository to a target (latest, time, xid, restore point). The target is checked
  against the repository first (before the oldest backup, after the end of the
  archive: a clear error and nothing created); a restore that fails anyway is stopped
  and its run directory removed, never left half-started.
- :func:`restore_from_bucket`: the scripted path of a NEW OVH stack (``backup.restore_from``):
  a new lab with its OWN bucket, its own passphrase and new role passwords, bootstrapped from
  the source lab's bucket read through ``restore-from.conf`` with the source's passphrase.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from pgha.backup import PGBACKREST, ObjectStorage, RestoreSpec, stanza
from pgha.settings import SettingsError

from . import control, observe, rundir, s3
from .errors import LabError
from .topology import Topology, _merge, load_topology

#: ``lab up --backup``: this lab's settings over the stack file (the S3 server is the lab's own).
LAB_OVERRIDES: dict[str, Any] = {"backup": {"enabled": True, "bucket": "pgha-lab"}}
WAL_RE = re.compile(r"(^|/)([0-9A-F]{24})-[0-9a-f]{40}(\.\w+)?$")


def require(topo: Topology) -> None:
    if not topo.settings.backup.enabled:
        raise LabError("backups are off in this lab: start it with `python -m lab up --backup` (or backup.enabled)")


def node_script(topo: Topology, node: str, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    lay = topo.layout(node)
    cmd = [lay.python, f"{lay.bin_dir}/pgha-backup", "--config", f"{lay.etc_dir}/backup.json", *args]
    return observe.run_as_user(cmd, timeout=timeout)


def run_job(topo: Topology, job: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """``pgha-backup run JOB`` on every node, as the timers do; raises if any node failed."""
    require(topo)
    out = {n: node_script(topo, n, "run", job) for n in topo.pg_names}
    failed = {n: p for n, p in out.items() if p.returncode != 0}
    if failed:
        detail = "; ".join(
            f"{n}: exit {p.returncode}: {(p.stdout + p.stderr).strip()[-400:]}" for n, p in failed.items()
        )
        raise LabError(f"pgha-backup run {job} failed: {detail}")
    return out


def acted(results: dict[str, subprocess.CompletedProcess[str]]) -> list[str]:
    """The nodes that did something (the others said they are not the leader)."""
    return sorted(n for n, p in results.items() if "is not the leader" not in p.stdout)


def pgbackrest(topo: Topology, node: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    lay = topo.layout(node)
    cmd = [PGBACKREST, f"--config={lay.pgbackrest_conf}", f"--stanza={stanza(topo.settings)}", *args]
    return observe.run_as_user(cmd, timeout=timeout)


def info(topo: Topology, repo_path: str | None = None) -> dict[str, Any]:
    """``pgbackrest info`` of the stanza (this lab's repository path, or ``repo_path``)."""
    extra = [f"--repo1-path={repo_path}"] if repo_path else []
    p = pgbackrest(topo, topo.pg_names[0], *extra, "--output=json", "info")
    if p.returncode != 0:
        raise LabError(f"pgbackrest info failed: {(p.stderr or p.stdout).strip()}")
    stanzas: list[dict[str, Any]] = json.loads(p.stdout or "[]")
    return stanzas[0] if stanzas else {}


def archive_end(topo: Topology, repo_path: str | None = None) -> float | None:
    """When the newest WAL segment reached the repository (epoch seconds), None if none did."""
    extra = [f"--repo1-path={repo_path}"] if repo_path else []
    path = f"archive/{stanza(topo.settings)}"
    p = pgbackrest(topo, topo.pg_names[0], *extra, "--output=json", "--recurse", "repo-ls", path)
    if p.returncode != 0:
        raise LabError(f"pgbackrest repo-ls failed: {(p.stderr or p.stdout).strip()}")
    files: dict[str, dict[str, Any]] = json.loads(p.stdout or "{}")
    times = [float(f["time"]) for name, f in files.items() if f.get("type") == "file" and WAL_RE.search(name)]
    return max(times) if times else None


def _utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 time WITH its offset (a restore target must not depend on the machine's zone)."""
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError as e:
        raise LabError(f"--to {value!r}: not an ISO 8601 time ({e}); e.g. '2026-11-27 20:15:00+00:00'") from e
    if t.tzinfo is None:
        raise LabError(f"--to {value!r}: add the UTC offset, e.g. '{value}+00:00'")
    return t


def target_problem(spec: RestoreSpec, backups: list[dict[str, Any]], end: float | None) -> str | None:
    """Why the repository cannot restore to ``spec``, or None. A time before the end of the
    oldest backup cannot be reached; a time after the newest archived WAL segment was
    never archived (PostgreSQL would stop short of it)."""
    if not backups:
        return "the repository has no backup yet: take one (python -m lab backup) before restoring"
    if spec.kind != "time":
        return None
    t = parse_time(spec.value).timestamp()
    oldest = min(float(b["timestamp"]["stop"]) for b in backups)
    if t < oldest:
        return (
            f"target {spec.value} is before the oldest backup ended ({_utc(oldest)}), the earliest point "
            "this repository can restore to: choose a later time"
        )
    if end is None or t > end:
        last = _utc(end) if end is not None else "never"
        return (
            f"target {spec.value} is after the end of the archive (newest WAL segment archived {last}): "
            "use --to latest, or a time before that"
        )
    return None


def status_lines(topo: Topology) -> list[str]:
    """Last backup and archive lag, from the leader (``lab status``)."""
    lead = observe.leader(topo)
    if not lead:
        return ["backups: no leader to ask"]
    p = node_script(topo, lead, "status", timeout=60)
    try:
        st = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [f"backups: pgha-backup status failed: {(p.stderr or p.stdout).strip()[-300:]}"]
    out = [
        "backups (pgBackRest, repository "
        + (topo.target.object_storage.repo_path if topo.target.object_storage else "")
        + ")"
    ]
    last = st.get("last_backup")
    if last:
        out.append(
            f"  last backup   {last['label']} ({last['type']}), ended {_utc(last['stop'])}, timeline {last['timeline']}"
            f"; {st.get('backups')} in the repository"
        )
    else:
        out.append(f"  last backup   none ({st.get('error') or st.get('stanza_status') or 'no backup yet'})")
    a = st.get("archiver") or {}
    if a:
        lag = f"{a['now'] - a['last_archived_time']:.0f}s ago" if a.get("last_archived_time") else "never"
        failing = (a.get("last_failed_time") or 0) > (a.get("last_archived_time") or 0)
        state = "FAILING since the last success" if failing else "ok"
        out.append(
            f"  archive       last segment {a.get('last_archived_wal') or '-'} archived {lag}; "
            f"{a['ready']} waiting in pg_wal; {state}"
        )
    return out


def _restore_source(src: Topology, into: Path) -> ObjectStorage:
    """The running source lab's repository, and an empty ``into``; else a clear error."""
    require(src)
    if not control.running(src):
        raise LabError(f"the source lab in {src.run_dir} is not running (its S3 server holds the repository)")
    if into.exists() and any(into.iterdir()):
        raise LabError(f"{into} is not empty: restore into a new run directory")
    storage = src.target.object_storage
    assert storage is not None
    return storage


def restore(src: Topology, kind: str, value: str, into: Path, prefix: str, timeout: float = 600) -> Topology:
    """A new lab in ``into`` on ``prefix``, restored from ``src``'s repository to ``kind``/``value``
    (pgha.backup.TARGET_KINDS)."""
    storage = _restore_source(src, into)
    source_path = storage.repo_path
    if kind == "time":
        value = parse_time(value).isoformat(sep=" ")
    try:
        spec = RestoreSpec(kind, value, repo_path=source_path)
    except ValueError as e:
        raise LabError(str(e)) from e
    if kind == "time":
        # PostgreSQL reaches a time at the first commit after it: make sure the archive holds one.
        lead = observe.leader(src)
        if lead:
            superuser_sql(src, lead, "SELECT pg_current_xact_id()")
            wait_archived(src)
    backups = info(src, source_path).get("backup") or []
    problem = target_problem(spec, backups, archive_end(src, source_path))
    if problem:
        raise LabError(f"restore refused, nothing created: {problem}")
    storage_from = src.storage_from or (src.run_dir, src.prefix)
    topo = load_topology(src.stack, into, prefix, overrides=src.overrides, storage_from=storage_from)
    topo.restore = spec
    into.mkdir(parents=True, exist_ok=True)
    for name in ("secrets.json", "backup-secrets.json"):  # the same roles and repository passphrase
        shutil.copy2(src.run_dir / name, into / name)
        os.chmod(into / name, 0o600)
    _start_restored(topo, timeout)
    # What the new leader's watch timer does within minutes on a VM: the stanza of its own
    # repository path and a first full backup, so its archiving works from now on.
    run_job(topo, "watch")
    return topo


def restore_from_bucket(
    src: Topology,
    bucket: str,
    kind: str,
    value: str,
    into: Path,
    prefix: str,
    source_cipher_pass: str | None = None,
    timeout: float = 600,
) -> Topology:
    """A NEW lab in ``into`` on ``prefix`` as a new OVH stack with ``backup.restore_from`` is:
    its own ``bucket`` (created on ``src``'s S3 server, as the stack creates its bucket), its own
    repository passphrase and role passwords, bootstrapped from ``src``'s bucket to
    ``kind``/``value`` through restore-from.conf with the source's passphrase
    (``source_cipher_pass``, default: the right one). Nothing is checked beforehand but the
    settings, as on OVH; a failed restore is stopped and its run directory set aside."""
    storage = _restore_source(src, into)
    assert storage.bucket is not None
    source = {"bucket": storage.bucket, "stanza": stanza(src.settings), "repo_path": storage.repo_path}
    if kind != "latest":
        source[kind] = value
    overrides = _merge(src.overrides or {}, {"backup": {"bucket": bucket, "restore_from": source}})
    storage_from = src.storage_from or (src.run_dir, src.prefix)
    try:
        topo = load_topology(src.stack, into, prefix, overrides=overrides, storage_from=storage_from)
    except SettingsError as e:
        raise LabError(f"restore refused, nothing created: {e}") from e
    theirs = src.backup_secrets()
    ours = dataclasses.replace(
        s3.new_secrets(),  # a passphrase of its own; the S3 credential is the one the server knows
        s3_access_key=theirs.s3_access_key,
        s3_secret_key=theirs.s3_secret_key,
        restore_from_cipher_pass=source_cipher_pass if source_cipher_pass is not None else theirs.cipher_pass,
    )
    own = topo.target.object_storage
    assert own is not None
    s3.wait_bucket(own, ours)  # this stack's bucket (pulumi up creates it on OVH)
    into.mkdir(parents=True, exist_ok=True)
    fd = os.open(into / "backup-secrets.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dataclasses.asdict(ours), f)
    _start_restored(topo, timeout)
    run_job(topo, "watch")  # the first full backup into its own bucket, as the watch timer takes it
    return topo


def _start_restored(topo: Topology, timeout: float) -> None:
    """Start the new lab in ``topo.run_dir`` and wait until healthy; on failure stop it and set
    its run directory aside (``.failed``, logs kept): never a half-started cluster."""
    into = topo.run_dir
    try:
        rundir.prepare(topo)
        control.start_supervisor(topo)
        deadline = time.monotonic() + timeout
        while True:
            try:
                observe.wait_healthy(topo, timeout=5)
                break
            except LabError:
                fatal = _restore_failure(topo)
                if fatal or time.monotonic() > deadline:
                    raise LabError(fatal or f"not healthy after {timeout:.0f}s") from None
    except BaseException as e:
        why = _restore_failure(topo) or str(e)
        control.stop(topo)
        kept = into.with_name(into.name + ".failed")
        shutil.rmtree(kept, ignore_errors=True)
        into.rename(kept)  # nothing runs from it; its logs stay for the post-mortem
        raise LabError(f"restore failed and was rolled back (nothing left running; logs in {kept}/logs): {why}") from e


#: Log lines that end a restore: PostgreSQL stopping short of the target, pgBackRest, etcd.
FATAL_MARKERS = (
    "recovery ended before configured recovery target",
    "requested recovery stop point is before consistent recovery point",
    '"level":"fatal"',
    "pgha-backup: restore FAILED",
    # Patroni 4 exits after a failed bootstrap (the data directory renamed *.failed).
    "PatroniFatalException: Failed to bootstrap cluster",
)


def _restore_failure(topo: Topology) -> str:
    """The first fatal line in the new lab's logs (PostgreSQL, pgBackRest, etcd), or ''."""
    for n in [*topo.pg_names, *topo.etcd_names]:
        log = topo.run_dir / "logs" / f"{n}.log"
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if any(m in line for m in FATAL_MARKERS):
                    return f"{n}: {line.strip()[:400]}"
    return ""


def superuser_sql(topo: Topology, node: str, sql: str) -> str:
    """SQL as the postgres role over the node's socket (peer authentication, as Patroni does)."""
    lay = topo.layout(node)
    cmd = [
        f"{lay.pg_bin_dir}/psql",
        "--no-psqlrc",
        "-XAtq",
        "-h",
        lay.socket_dir,
        "-p",
        str(topo.settings.patroni.port),
    ]
    p = observe.run_as_user([*cmd, "-U", "postgres", "-d", "postgres", "-c", sql], timeout=60)
    if p.returncode != 0:
        raise LabError(f"psql on {node}: {p.stderr.strip()}")
    return p.stdout.strip()


def wait_archived(topo: Topology, timeout: float = 120) -> str:
    """Switch to a new WAL segment on the leader and wait until it is archived; returns its name."""
    lead = observe.leader(topo)
    if not lead:
        raise LabError("no leader")
    st0 = json.loads(node_script(topo, lead, "status").stdout.strip().splitlines()[-1])
    before = (st0.get("archiver") or {}).get("archived_count", 0)
    superuser_sql(topo, lead, "SELECT pg_switch_wal()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = json.loads(node_script(topo, lead, "status").stdout.strip().splitlines()[-1])
        a = st.get("archiver") or {}
        if a.get("archived_count", 0) > before and a.get("ready") == 0:
            return str(a.get("last_archived_wal"))
        time.sleep(1)
    raise LabError(f"WAL not archived within {timeout}s")
