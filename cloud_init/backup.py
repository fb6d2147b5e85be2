"""Backups (backup.enabled): pgBackRest on every Patroni node, repository in Object Storage.

What a Patroni node receives, as plain values for ``patroni.py``:

- ``pgbackrest.conf`` (0640, root:<postgres>): the S3 repository, its aes-256-cbc
  passphrase, retention, asynchronous archiving with a spool directory;
- patroni.yml additions: ``archive_mode``/``archive_command`` (``archive-push``),
  ``archive_timeout``, ``restore_command`` (``archive-get``), and
  ``create_replica_methods: [pgbackrest, basebackup]`` so a new or rebuilt replica
  restores from the repository with ``--delta`` instead of loading the primary
  (``basebackup`` stays as the fallback while the repository has no backup);
- ``<bin_dir>/pgha-backup`` (``node_scripts/backup.py``, installed verbatim) and its
  ``backup.json``; systemd timers run it on EVERY node (full, differential, and a
  watch every few minutes that creates the stanza and backs up after a timeline
  change); the script acts only on the leader, so a failover never leaves the
  schedule dead; after every job, on every node, it writes the backup metrics into
  node-exporter's textfile directory (made group-writable for postgres, sticky);
- with a :class:`~pgha.backup.RestoreSpec` (``lab restore``, or ``backup.restore_from``):
  Patroni's custom bootstrap restoring the new cluster from a repository to that target.
  A restore from ANOTHER bucket (``backup.restore_from``) reads it through a separate
  ``restore-from.conf`` (the source's bucket, region, path and passphrase, the same S3
  credential), used only by the bootstrap restore and by the ``restore_command`` pgBackRest
  writes for the replay to the target; ``pgbackrest.conf`` keeps naming this stack's bucket
  only, so archive-push can never write into the source's history.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import PurePosixPath
from typing import Any

from pgha.backup import PGBACKREST, ObjectStorage, RestoreSpec, ovh_endpoint, restore_from, stanza, vm_object_storage
from pgha.plan import Node
from pgha.secrets import BackupSecrets
from pgha.settings import Settings
from pgha.target import Layout, Target

from .common import SUPERUSER, NodeFile, install_dirs, node_script, tpl
from .monitoring import TEXTFILE_METRICS

#: How often the watch timer looks for a missing stanza or a new timeline.
WATCH_INTERVAL = "*:0/5"
#: The backup metrics' file in node-exporter's textfile directory.
TEXTFILE = TEXTFILE_METRICS["pgha_backup_last_success_timestamp_seconds"][0]
#: pgBackRest compression of backups and archived WAL.
COMPRESS_TYPE = "zst"


def object_storage(settings: Settings, target: Target) -> ObjectStorage:
    return target.object_storage or vm_object_storage(settings)


def bucket(settings: Settings, target: Target) -> str:
    return object_storage(settings, target).bucket or settings.backup.bucket


def config_path(layout: Layout) -> str:
    return f"{layout.etc_dir}/backup.json"


def script_path(layout: Layout) -> str:
    return f"{layout.bin_dir}/pgha-backup"


def pgbackrest_cmd(settings: Settings, layout: Layout) -> str:
    return f"{PGBACKREST} --config={layout.pgbackrest_conf} --stanza={stanza(settings)}"


def _repo_options(
    s3: ObjectStorage, bucket_name: str, secrets: BackupSecrets, cipher_pass: str
) -> list[tuple[str, Any]]:
    """repo1: an S3 repository, its credential and its passphrase."""
    repo: list[tuple[str, Any]] = [
        ("repo1-type", "s3"),
        ("repo1-s3-bucket", bucket_name),
        ("repo1-s3-endpoint", s3.endpoint),
        ("repo1-s3-region", s3.region),
        ("repo1-s3-uri-style", s3.uri_style),
        ("repo1-s3-key", secrets.s3_access_key),
        ("repo1-s3-key-secret", secrets.s3_secret_key),
        ("repo1-path", s3.repo_path),
        ("repo1-cipher-type", "aes-256-cbc"),
        ("repo1-cipher-pass", cipher_pass),
    ]
    if s3.port != 443:
        repo.append(("repo1-storage-port", s3.port))
    if s3.ca_file:
        repo.append(("repo1-storage-ca-file", s3.ca_file))
    return repo


def _node_options(settings: Settings, layout: Layout) -> list[tuple[str, Any]]:
    """pg1: this node's PostgreSQL (the stanza section)."""
    return [
        ("pg1-path", layout.pg_data_dir),
        ("pg1-port", settings.patroni.port),
        ("pg1-socket-path", layout.socket_dir),
        ("pg1-user", SUPERUSER),
    ]


def pgbackrest_conf(settings: Settings, target: Target, layout: Layout, secrets: BackupSecrets) -> str:
    """pgbackrest.conf: [global] (repository, archiving) and the stanza (this node's PostgreSQL)."""
    bk = settings.backup
    s3 = object_storage(settings, target)
    repo = [
        *_repo_options(s3, bucket(settings, target), secrets, secrets.cipher_pass),
        ("repo1-retention-full-type", "count"),
        ("repo1-retention-full", bk.retention_full),
        ("repo1-retention-diff", bk.retention_diff),
        # Small files (WAL of a quiet cluster, small relations) bundled: fewer S3 requests.
        ("repo1-bundle", "y"),
    ]
    options: list[tuple[str, Any]] = [
        *repo,
        ("process-max", bk.process_max),
        ("compress-type", COMPRESS_TYPE),
        ("start-fast", "y"),
        # PostgreSQL's archive_command returns as soon as the segment is queued in the
        # spool; a background process pushes batches. No archive-push-queue-max: pgha
        # never drops WAL from the archive to save disk (the node check alerts instead).
        ("archive-async", "y"),
        *_local_options(layout),
    ]
    lines = ["# pgBackRest config, rendered by cloud_init/backup.py", "[global]"]
    lines += [f"{k}={v}" for k, v in options]
    lines += ["", f"[{stanza(settings)}]"]
    lines += [f"{k}={v}" for k, v in _node_options(settings, layout)]
    return "\n".join(lines) + "\n"


def _local_options(layout: Layout) -> list[tuple[str, Any]]:
    """Where pgBackRest keeps its spool, logs and locks on the node, and how much it logs."""
    lock = [("lock-path", layout.pgbackrest_lock)] if layout.pgbackrest_lock else []
    return [
        ("spool-path", layout.pgbackrest_spool),
        ("log-path", layout.pgbackrest_log),
        *lock,
        ("log-level-console", "warn"),
        ("log-level-file", "info"),
    ]


def restore_from_conf_path(layout: Layout) -> str:
    """Beside pgbackrest.conf: /etc/pgbackrest/restore-from.conf on a VM."""
    return str(PurePosixPath(layout.pgbackrest_conf).with_name("restore-from.conf"))


def source_storage(settings: Settings, target: Target, spec: RestoreSpec) -> ObjectStorage:
    """The source repository of ``spec`` (a restore from another bucket): OVH Object Storage
    in the source's region on a VM; the lab's S3 server (the same server, another bucket)."""
    assert spec.bucket is not None
    if target.object_storage is None:
        s3 = vm_object_storage(settings)
        s3 = dataclasses.replace(s3, endpoint=ovh_endpoint(spec.region), region=spec.region)
    else:
        s3 = target.object_storage
    return dataclasses.replace(s3, bucket=spec.bucket, repo_path=spec.repo_path)


def restore_from_conf(
    settings: Settings, target: Target, layout: Layout, secrets: BackupSecrets, spec: RestoreSpec
) -> str:
    """restore-from.conf: the SOURCE repository, read-only use (restore, archive-get while
    replaying to the target). No retention (nothing is ever expired there), no archiving."""
    if not secrets.restore_from_cipher_pass:
        raise ValueError(
            "backup.restore_from.bucket is set but the source repository's passphrase is missing: "
            "pulumi config set --secret pgha-restore-from:cipherPass (docs/backups.md)"
        )
    s3 = source_storage(settings, target, spec)
    assert s3.bucket is not None
    options = [
        *_repo_options(s3, s3.bucket, secrets, secrets.restore_from_cipher_pass),
        ("process-max", settings.backup.process_max),
        *_local_options(layout),  # the spool too: a restore clears the stanza's archive queue there
    ]
    lines = [
        "# pgBackRest config of the SOURCE repository (backup.restore_from), rendered by cloud_init/backup.py:",
        "# read by the bootstrap restore and the replay to the target only; archiving uses pgbackrest.conf",
        "[global]",
    ]
    lines += [f"{k}={v}" for k, v in options]
    lines += ["", f"[{spec.stanza}]"]
    lines += [f"{k}={v}" for k, v in _node_options(settings, layout)]
    return "\n".join(lines) + "\n"


def patroni_parameters(settings: Settings, layout: Layout) -> dict[str, Any]:
    """This node's archiving parameters (local postgresql.parameters: paths differ per node in the lab)."""
    return {
        "archive_mode": "on",
        "archive_command": f"{pgbackrest_cmd(settings, layout)} archive-push %p",
        "archive_timeout": settings.backup.archive_timeout,
    }


def restore_command(settings: Settings, layout: Layout) -> str:
    return f'{pgbackrest_cmd(settings, layout)} archive-get %f "%p"'


def replica_method(settings: Settings, layout: Layout) -> dict[str, Any]:
    """Patroni's ``pgbackrest`` replica method: a delta restore of the latest backup, then
    streaming (Patroni writes the standby configuration itself)."""
    return {"command": f"{pgbackrest_cmd(settings, layout)} --delta restore", "keep_data": True, "no_params": True}


def restore_spec(settings: Settings, restore: RestoreSpec | None) -> RestoreSpec | None:
    """The restore this render bootstraps from: ``restore`` (lab restore), else backup.restore_from."""
    return restore if restore is not None else restore_from(settings)


def restore_sql_path(layout: Layout) -> str:
    """The post_bootstrap SQL of a restored cluster (cloud_init/patroni.py renders it)."""
    return f"{layout.etc_dir}/restore-bootstrap.sql"


def restore_bootstrap(settings: Settings, layout: Layout, spec: RestoreSpec) -> dict[str, Any]:
    """``bootstrap.method``: the new cluster's first primary restores ``spec`` from the
    repository (pgha-backup makes the data directory first), then PostgreSQL replays
    to the target and promotes onto a new timeline."""
    if spec.bucket is None:  # this cluster's bucket and passphrase, another path (lab restore)
        source = [f"--repo-path={spec.repo_path}"]
    else:  # another stack's bucket: its own config file (no secret on the command line)
        source = [f"--pgbackrest-config={restore_from_conf_path(layout)}", f"--stanza={spec.stanza}"]
    cmd = [script_path(layout), "--config", config_path(layout), "restore", *source, *spec.pgbackrest_options()]
    return {
        "method": "pgbackrest",
        "pgbackrest": {"command": shlex.join(cmd), "keep_existing_recovery_conf": True, "no_params": True},
        # The roles and the application database come with the data: the application role
        # takes this stack's password, then the stanza of this cluster's own repository.
        "post_bootstrap": f"{layout.bin_dir}/pgha-post-bootstrap {restore_sql_path(layout)}",
    }


def apply_to_patroni(
    config: dict[str, Any], settings: Settings, layout: Layout, restore: RestoreSpec | None = None
) -> None:
    """Add archiving, restore_command and the replica methods to a node's patroni.yml dict;
    the custom bootstrap of ``restore``, else of ``backup.restore_from``."""
    restore = restore_spec(settings, restore)
    pgc = config["postgresql"]
    pgc["parameters"].update(patroni_parameters(settings, layout))
    pgc["recovery_conf"] = {"restore_command": restore_command(settings, layout)}
    pgc["create_replica_methods"] = ["pgbackrest", "basebackup"]
    pgc["pgbackrest"] = replica_method(settings, layout)
    if restore is not None:
        config["bootstrap"].update(restore_bootstrap(settings, layout, restore))


def stanza_create_cmd(layout: Layout) -> str:
    """What pgha-post-bootstrap runs after initdb (best effort: the watch timer retries)."""
    return f"{script_path(layout)} --config {config_path(layout)} stanza --bootstrap"


def textfile_path(target: Target) -> str:
    """node-exporter textfile the backup jobs write (monitoring.TEXTFILE_METRICS names the file)."""
    return f"{target.monitoring.textfile_dir}/{TEXTFILE}"


def script_config(settings: Settings, target: Target, node: Node) -> dict[str, Any]:
    """backup.json: what pgha-backup needs (no secret: those stay in pgbackrest.conf)."""
    layout, pg = target.layout(node), settings.patroni
    return {
        "node": node.name,
        "stanza": stanza(settings),
        "pgbackrest": PGBACKREST,
        "pgbackrest_conf": layout.pgbackrest_conf,
        "data_dir": layout.pg_data_dir,
        "primary_url": f"https://{node.address}:{pg.rest_port}/primary",
        "cacert": f"{layout.etc_dir}/tls/ca.crt",
        "psql": f"{layout.pg_bin_dir}/psql",
        "socket_dir": layout.socket_dir,
        "port": pg.port,
        "superuser": SUPERUSER,
        "textfile": textfile_path(target),
    }


def units(settings: Settings, layout: Layout) -> list[NodeFile]:
    """The service run by the timers (one instance per job) and the three timers."""
    bk = settings.backup
    service = NodeFile(
        "/etc/systemd/system/pgha-backup@.service",
        tpl(
            "backup/pgha-backup@.service.j2",
            user=layout.pg_os_user,
            script=script_path(layout),
            config=config_path(layout),
            data_mount=layout.data_mount,
        ),
    )
    timers = [
        ("full", bk.full_calendar, "full backup (pgBackRest), on the leader only"),
        ("diff", bk.diff_calendar, "differential backup (pgBackRest), on the leader only"),
        ("watch", WATCH_INTERVAL, "stanza and backup after a timeline change, on the leader only"),
    ]
    return [service] + [
        NodeFile(
            f"/etc/systemd/system/pgha-backup-{job}.timer",
            tpl("backup/pgha-backup.timer.j2", job=job, calendar=calendar, what=what),
        )
        for job, calendar, what in timers
    ]


TIMERS = ("pgha-backup-full.timer", "pgha-backup-diff.timer", "pgha-backup-watch.timer")


def node_files(
    settings: Settings, target: Target, node: Node, secrets: BackupSecrets, restore: RestoreSpec | None = None
) -> list[NodeFile]:
    layout = target.layout(node)
    group = layout.pg_os_user
    spec = restore_spec(settings, restore)
    source = []
    if spec is not None and spec.bucket is not None:
        source.append(
            NodeFile(
                restore_from_conf_path(layout),
                restore_from_conf(settings, target, layout, secrets, spec),
                mode="0640",
                owner=f"root:{group}",
                secret=True,
            )
        )
    return [
        *source,
        NodeFile(
            layout.pgbackrest_conf,
            pgbackrest_conf(settings, target, layout, secrets),
            mode="0640",
            owner=f"root:{group}",
            secret=True,
        ),
        NodeFile(
            config_path(layout), json.dumps(script_config(settings, target, node), indent=2, sort_keys=True) + "\n"
        ),
        node_script(layout, "pgha-backup", "backup.py"),
        *units(settings, layout),
    ]


def runcmd(target: Target, layout: Layout) -> list[list[str]]:
    """Directories pgBackRest writes (the Debian package makes them; the data volume may not),
    node-exporter's textfile directory writable by the backup jobs (group, sticky: they can
    replace their own file only) and the timers."""
    textfile_dir = target.monitoring.textfile_dir
    return [
        install_dirs(layout.pg_os_user, "0750", layout.pgbackrest_spool, layout.pgbackrest_log),
        ["mkdir", "-p", textfile_dir],
        ["chgrp", layout.pg_os_user, textfile_dir],
        ["chmod", "g+w,+t", textfile_dir],
        ["systemctl", "enable", *TIMERS],
    ]
