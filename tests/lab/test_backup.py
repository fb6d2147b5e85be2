"""Backups for real: pgBackRest, a SeaweedFS S3 server with TLS, PostgreSQL under Patroni.

One lab (dev stack, backups on) for the module; each restore is a NEW lab in a new run
directory on its own prefix, bootstrapped by Patroni from the first lab's repository."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from lab import backup, control, monitoring, observe, rewind, s3
from lab.errors import LabError
from lab.topology import Topology, scratch_dir
from pgha.backup import RestoreSpec, stanza

from .conftest import FAILED, PREFIXES, connect, lab_fixture, wait_for

pytestmark = pytest.mark.lab

backup_lab = lab_fixture("backup", "dev", scope="module", overrides=backup.LAB_OVERRIDES)


def restore_dir(tag: str) -> Path:
    return scratch_dir("pgha-lab-tests") / f"restore-{tag}-{os.getpid()}"


def listeners(prefix: str) -> list[str]:
    """Local addresses:ports on ``prefix`` that accept connections (ss)."""
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    return [f for line in out.splitlines() for f in line.split()[3:4] if f.startswith(prefix + ".")]


@contextmanager
def restored(src: Topology, kind: str, value: str, tag: str) -> Iterator[Topology]:
    into = restore_dir(tag)
    shutil.rmtree(into, ignore_errors=True)
    topo = backup.restore(src, kind, value, into, PREFIXES["restore"], timeout=600)
    try:
        yield topo
    finally:
        control.stop(topo)
        if not FAILED:
            shutil.rmtree(into, ignore_errors=True)


def sql(topo: Topology, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with connect(topo, topo.dsn()) as c:
        cur = c.execute(query, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def full_backup(backup_lab: Topology) -> dict[str, object]:
    results = backup.run_job(backup_lab, "full")
    return {"acted": backup.acted(results), "leader": observe.leader(backup_lab)}


def test_full_backup_runs_on_the_leader_only(backup_lab: Topology, full_backup: dict[str, object]) -> None:
    assert full_backup["acted"] == [full_backup["leader"]]
    backups = backup.info(backup_lab)["backup"]
    assert [b["type"] for b in backups] == ["full"]
    assert backup.info(backup_lab)["cipher"] == "aes-256-cbc"


def test_backup_metrics_reach_prometheus(backup_lab: Topology, full_backup: object) -> None:
    """The job's textfile metrics, through the real node-exporter, in the real Prometheus: the
    last backup's stop time as the repository has it, and archiving not failing."""
    assert monitoring.enabled(backup_lab), "the dev stack monitors; this lab must too"
    last = int(max(b["timestamp"]["stop"] for b in backup.info(backup_lab)["backup"]))
    wait_for(
        lambda: [v for _, v in monitoring.query(backup_lab, "pgha_backup_last_success_timestamp_seconds")] == [last],
        timeout=60,
        what="Prometheus to hold the last backup's time",
    )
    assert [v for _, v in monitoring.query(backup_lab, "pgha_archive_failing")] == [0]


def test_restore_to_a_time_brings_the_dropped_table_back(backup_lab: Topology, full_backup: object) -> None:
    sql(backup_lab, "CREATE TABLE precious (id int PRIMARY KEY)")
    sql(backup_lab, "INSERT INTO precious SELECT generate_series(1, 500)")
    time.sleep(1.5)
    target = str(sql(backup_lab, "SELECT clock_timestamp()")[0][0])
    time.sleep(1.5)
    sql(backup_lab, "DROP TABLE precious")
    sql(backup_lab, "CREATE TABLE after_drop (id int)")
    sql(backup_lab, "INSERT INTO after_drop VALUES (1)")
    backup.wait_archived(backup_lab)
    with restored(backup_lab, "time", target, "time") as r:
        assert sql(r, "SELECT count(*), max(id) FROM precious") == [(500, 500)]
        assert sql(r, "SELECT to_regclass('after_drop') IS NULL") == [(True,)]
        # The restored cluster is a new timeline and archives into its own repository path.
        timelines = {m["timeline"] for m in (observe.cluster(r) or {"members": []})["members"]}
        assert min(timelines) >= 2
        src, new = backup_lab.target.object_storage, r.target.object_storage
        assert src is not None
        assert new is not None
        assert new.repo_path != src.repo_path


def test_restore_to_latest_has_every_acknowledged_write(backup_lab: Topology, full_backup: object) -> None:
    sql(backup_lab, "CREATE TABLE acked (id int PRIMARY KEY)")
    acknowledged = []
    with connect(backup_lab, backup_lab.dsn()) as c:
        for i in range(300):
            c.execute("INSERT INTO acked VALUES (%s)", (i,))  # autocommit: returned = acknowledged
            acknowledged.append(i)
    backup.wait_archived(backup_lab)  # the last acknowledged commit is in an archived segment
    with restored(backup_lab, "latest", "", "latest") as r:
        got = {row[0] for row in sql(r, "SELECT id FROM acked")}
        assert set(acknowledged) <= got, f"lost {sorted(set(acknowledged) - got)[:10]}"


def test_bad_restore_targets_are_refused_before_anything_starts(backup_lab: Topology, full_backup: object) -> None:
    into = restore_dir("bad")
    shutil.rmtree(into, ignore_errors=True)
    cases = [
        ("2001-01-01 00:00:00+00:00", "before the oldest backup ended"),
        ("2099-01-01 00:00:00+00:00", "after the end of the archive"),
        ("2026-11-27 12:00:00", "add the UTC offset"),
    ]
    for value, message in cases:
        with pytest.raises(LabError, match=message):
            backup.restore(backup_lab, "time", value, into, PREFIXES["restore"])
        assert not os.path.exists(into), "nothing may be created for a refused target"


def test_unreachable_restore_point_is_rolled_back(backup_lab: Topology, full_backup: object) -> None:
    into = restore_dir("name")
    shutil.rmtree(into, ignore_errors=True)
    with pytest.raises(LabError, match="rolled back") as e:
        backup.restore(backup_lab, "name", "no-such-restore-point", into, PREFIXES["restore"], timeout=300)
    assert "recovery target" in str(e.value)
    assert not os.path.exists(into)
    shutil.rmtree(f"{into}.failed", ignore_errors=True)  # the failed restore's logs, kept for a post-mortem
    assert not listeners(PREFIXES["restore"]), "a process of the failed restore still runs"


def archive_check(topo: Topology) -> observe.CheckResult:
    lead = observe.leader(topo)
    return next(r for r in observe.validate(topo, wait=0) if r.node == lead and r.check == "pgha-check-patroni")


def test_storage_outage_writes_go_on_the_check_reports_and_archiving_drains(
    backup_lab: Topology, full_backup: object
) -> None:
    sql(backup_lab, "CREATE TABLE during_outage (id int)")
    control.signal_node(backup_lab, "s3", signal.SIGTERM)
    try:
        written = 0

        def failing() -> str | bool:
            nonlocal written
            with connect(backup_lab, backup_lab.dsn()) as c:  # the primary keeps accepting writes
                c.execute("INSERT INTO during_outage SELECT generate_series(1, 2000)")
                written += 2000
            backup.superuser_sql(backup_lab, str(observe.leader(backup_lab)), "SELECT pg_switch_wal()")
            r = archive_check(backup_lab)
            return not r.ok and "archiving failing since" in r.output and r.output

        report = wait_for(failing, timeout=300, what="the node check to report failing archiving", interval=3)
        assert "WAL segments waiting in pg_wal" in str(report)
        assert sql(backup_lab, "SELECT count(*) FROM during_outage") == [(written,)]
    finally:
        control.request_start(backup_lab, "s3")
    wait_for(lambda: archive_check(backup_lab).ok, timeout=300, what="archiving to drain", interval=3)
    assert "archiving OK" in archive_check(backup_lab).output


def test_replica_rebuilt_from_the_repository_while_the_primary_serves_writes(
    backup_lab: Topology, full_backup: object
) -> None:
    backup.run_job(backup_lab, "full")  # a recent backup: the delta restore replays little WAL
    lead = observe.leader(backup_lab)
    replica = next(n for n in backup_lab.pg_names if n != lead)
    sql(backup_lab, "CREATE TABLE while_rebuilding (id int)")
    stop = threading.Event()
    count = [0]

    def writer() -> None:
        with connect(backup_lab, backup_lab.dsn()) as c:
            while not stop.is_set():
                c.execute("INSERT INTO while_rebuilding VALUES (%s)", (count[0],))
                count[0] += 1
                time.sleep(0.02)

    t = threading.Thread(target=writer, daemon=True)
    log_offset = observe.log_size(backup_lab, replica)
    t.start()
    try:
        code, body = observe.rest_post(backup_lab, replica, "/reinitialize", {"force": True})
        assert code == 200, body
        wait_for(
            lambda: "replica has been created using pgbackrest" in observe.log_since(backup_lab, replica, log_offset),
            timeout=300,
            what=f"{replica} rebuilt with the pgbackrest method",
        )
        # Created is not started: wait for the rebuilt server itself to stream, not for the
        # member list, which can still show the replica's state from before the rebuild.
        wait_for(lambda: observe.replica_streams(backup_lab, replica), timeout=180, what=f"{replica} streaming")
        observe.wait_healthy(backup_lab, timeout=180)
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive(), "the writer is stuck in an INSERT"
    assert count[0] > 0
    replica_dsn = backup_lab.node_dsn(replica)

    def rows_on_replica() -> int | None:
        try:
            with connect(backup_lab, replica_dsn) as c:
                row = c.execute("SELECT count(*) FROM while_rebuilding").fetchone()
        except psycopg.OperationalError:  # a restart between the checks above and this one
            return None
        return row[0] if row else None

    wait_for(lambda: rows_on_replica() == count[0], timeout=60, what="the rebuilt replica to have every row")


def test_after_a_failover_archiving_continues_and_the_watch_job_backs_up(
    backup_lab: Topology, full_backup: object
) -> None:
    old = observe.leader(backup_lab)
    assert old
    cand = observe.switchover_candidate(backup_lab, old)
    code, body = observe.rest_post(backup_lab, old, "/switchover", {"leader": old, "candidate": cand})
    assert code == 200, body
    observe.wait_healthy(backup_lab, timeout=120)
    new = observe.leader(backup_lab)
    assert new == cand
    timeline = int(backup.superuser_sql(backup_lab, new, "SELECT timeline_id FROM pg_control_checkpoint()"))
    wal = backup.wait_archived(backup_lab)
    assert int(wal[:8], 16) == timeline >= 2, f"archiving did not continue on the new timeline: {wal}"
    results = backup.run_job(backup_lab, "watch")  # what the watch timer runs on every node
    assert backup.acted(results) == [new]
    assert "newer than the last backup" in results[new].stdout
    last = backup.info(backup_lab)["backup"][-1]
    assert (last["type"], int(last["archive"]["start"][:8], 16)) == ("diff", timeline)
    again = backup.run_job(backup_lab, "watch")  # nothing more to do on this timeline
    assert "nothing to do" in again[new].stdout


def test_lab_status_shows_last_backup_and_archive_lag(backup_lab: Topology, full_backup: object) -> None:
    lines = "\n".join(backup.status_lines(backup_lab))
    assert "last backup   20" in lines
    assert "waiting in pg_wal" in lines


def test_repository_config_is_readable_by_the_node_user_only(backup_lab: Topology) -> None:
    for n in backup_lab.pg_names:
        conf = Path(backup_lab.layout(n).pgbackrest_conf)
        assert oct(conf.stat().st_mode & 0o777) == "0o640"
        assert backup_lab.backup_secrets().cipher_pass in conf.read_text()


def test_new_stack_restores_from_another_stacks_bucket(backup_lab: Topology, full_backup: object) -> None:
    """backup.restore_from, the scripted path of a NEW OVH stack: its own bucket, passphrase and
    role passwords, the source read through restore-from.conf with the source's passphrase."""
    src_storage, src_secrets = backup_lab.target.object_storage, backup_lab.backup_secrets()
    assert src_storage is not None
    assert src_storage.bucket is not None
    prefix, bucket = PREFIXES["restore_from"], "pgha-lab-restored"

    # A wrong passphrase: a clear failure, rolled back, nothing left running.
    into = restore_dir("from-wrong")
    shutil.rmtree(into, ignore_errors=True)
    with pytest.raises(LabError, match="rolled back") as e:
        backup.restore_from_bucket(backup_lab, bucket, "latest", "", into, prefix, "not-the-passphrase", timeout=300)
    assert "cannot read the source repository" in str(e.value)
    assert "pgha-restore-from:cipherPass" in str(e.value)
    assert not os.path.exists(into)
    shutil.rmtree(f"{into}.failed", ignore_errors=True)
    assert not listeners(prefix), "a process of the failed restore still runs"

    sql(backup_lab, "CREATE TABLE rf_before (id int PRIMARY KEY)")
    sql(backup_lab, "INSERT INTO rf_before SELECT generate_series(1, 300)")
    time.sleep(1.5)
    target = str(sql(backup_lab, "SELECT clock_timestamp()")[0][0])
    time.sleep(1.5)
    sql(backup_lab, "CREATE TABLE rf_after (id int)")
    source_tl = int(backup.wait_archived(backup_lab)[:8], 16)
    before = s3.list_objects(src_storage, src_secrets, src_storage.bucket)

    into = restore_dir("from")
    shutil.rmtree(into, ignore_errors=True)
    r = backup.restore_from_bucket(backup_lab, bucket, "time", target, into, prefix, timeout=600)
    try:
        # The data as of the target; the application role took the NEW stack's password.
        assert r.passwords().app != backup_lab.passwords().app
        assert sql(r, "SELECT count(*) FROM rf_before") == [(300,)]
        assert sql(r, "SELECT to_regclass('rf_after') IS NULL") == [(True,)]
        # Its own repository: own bucket, own passphrase, its first full backup and archive there.
        assert r.backup_secrets().cipher_pass != src_secrets.cipher_pass
        assert [b["type"] for b in backup.info(r)["backup"]] == ["full"]
        assert backup.info(r)["cipher"] == "aes-256-cbc"
        lead = observe.leader(r)
        assert lead
        new_tl = int(backup.superuser_sql(r, lead, "SELECT timeline_id FROM pg_control_checkpoint()"))
        assert new_tl != source_tl
        ours = s3.list_objects(src_storage, src_secrets, bucket)
        assert any(f"/archive/{stanza(r.settings)}/" in k for k in ours)
        # The steady-state config names the new bucket only; the bootstrap's source reading is gone.
        for n in r.pg_names:
            assert f"repo1-s3-bucket={bucket}\n" in Path(r.layout(n).pgbackrest_conf).read_text()
            assert "restore-from.conf" not in backup.superuser_sql(r, n, "SHOW restore_command")
        auto = Path(r.layout(lead).pg_data_dir) / "postgresql.auto.conf"
        assert "restore-from.conf" not in backup.superuser_sql(r, lead, f"SELECT pg_read_file('{auto}')")
        # A roll of the leader (its data volume kept) never restores again: Patroni bootstraps
        # only a cluster its DCS does not know, and this one is initialized.
        old_pid = control.pid_of(r, lead)
        control.signal_node(r, lead, signal.SIGTERM, postgres=False)
        wait_for(lambda: not (control.pid_of(r, lead) or control.postmaster_of(r, lead)), 90, f"{lead} stopped")
        assert control.request_start(r, lead) != old_pid
        observe.wait_healthy(r, timeout=180)
        boots = [observe.log_since(r, n, 0).count("Running custom bootstrap script") for n in r.pg_names]
        assert sum(boots) == 1, boots
        assert sql(r, "SELECT count(*) FROM rf_before") == [(300,)]
    finally:
        control.stop(r)
        if not FAILED:
            shutil.rmtree(into, ignore_errors=True)
    # The source bucket: nothing removed or rewritten; the only new objects are the SOURCE
    # cluster's own WAL (its timeline, its repository path): none of the new cluster's.
    after = s3.list_objects(src_storage, src_secrets, src_storage.bucket)
    assert not [k for k in before if after.get(k) != before[k]], "objects of the source bucket changed"
    added = sorted(set(after) - set(before))
    own_wal = f"{src_storage.repo_path.strip('/')}/archive/{stanza(backup_lab.settings)}/"
    assert [k for k in added if not (k.lstrip("/").startswith(own_wal) and f"/{source_tl:08X}" in k)] == []


# Last in the module: it rewrites the shared lab's history.
def test_rewind_in_place_to_a_time_then_every_node_follows(backup_lab: Topology, full_backup: object) -> None:
    """docs/backups.md's in-place rewind, scripted (lab/rewind.py): the cluster keeps its
    addresses, the data is as it was at T, every node streams on the new timeline, and the
    repository holds a backup of that timeline."""
    too_late = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat(sep=" ")
    lead = observe.leader(backup_lab)
    with pytest.raises(LabError, match=r"rewind refused, nothing changed: .* after the end of the archive"):
        rewind.rewind(backup_lab, RestoreSpec("time", too_late))
    assert observe.leader(backup_lab) == lead

    # A restore that fails after every node stopped (no such restore point) is rolled back.
    sql(backup_lab, "CREATE TABLE survives_a_failed_rewind AS SELECT generate_series(1, 7) AS id")
    with pytest.raises(LabError, match="rolled back"):
        rewind.rewind(backup_lab, RestoreSpec("name", "no-such-restore-point"), timeout=300)
    assert observe.leader(backup_lab) not in (None, lead)  # an untouched node took over
    for n in backup_lab.pg_names:
        with connect(backup_lab, backup_lab.node_dsn(n)) as c:
            assert c.execute("SELECT count(*) FROM survives_a_failed_rewind").fetchone() == (7,), n
    lead = observe.leader(backup_lab)

    sql(backup_lab, "CREATE TABLE kept (id int PRIMARY KEY)")
    sql(backup_lab, "INSERT INTO kept SELECT generate_series(1, 300)")
    time.sleep(1.5)
    target = str(sql(backup_lab, "SELECT clock_timestamp()")[0][0])
    time.sleep(1.5)
    sql(backup_lab, "DROP TABLE kept")
    sql(backup_lab, "CREATE TABLE written_after_target (id int)")
    timeline_before = int(backup.superuser_sql(backup_lab, lead, "SELECT timeline_id FROM pg_control_checkpoint()"))
    backup.wait_archived(backup_lab)

    done = rewind.rewind(backup_lab, RestoreSpec("time", target), timeout=300)
    assert done.restored_on == lead == observe.leader(backup_lab)
    assert done.timeline > timeline_before
    for n in backup_lab.pg_names:  # the replicas were re-created from the rewound node
        dsn = backup_lab.node_dsn(n)
        with connect(backup_lab, dsn) as c:
            assert c.execute("SELECT count(*) FROM kept").fetchone() == (300,), n
            assert c.execute("SELECT to_regclass('written_after_target') IS NULL").fetchone() == (True,), n
    wal = backup.wait_archived(backup_lab)
    assert int(wal[:8], 16) >= done.timeline, f"archiving did not continue on the new timeline: {wal}"
    last = backup.info(backup_lab)["backup"][-1]
    assert (last["type"], int(last["archive"]["start"][:8], 16)) == ("full", done.timeline)
