"""Rendered backup files (backup.enabled): pgBackRest config, Patroni integration, timers, restore bootstrap."""

from __future__ import annotations

import configparser
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_init.backup import TIMERS, object_storage
from cloud_init.common import NODE_SCRIPTS, RenderedNode
from cloud_init.patroni import render_patroni_node
from pgha.backup import ObjectStorage, RestoreSpec
from pgha.secrets import FAKE_CA, PatroniNodeSecrets, fake_backup_secrets, fake_keypair, fake_passwords
from pgha.settings import Settings, load, sections_from_stack_yaml
from pgha.target import Target

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def settings(enabled: bool = True, **backup: Any) -> Settings:
    raw = sections_from_stack_yaml(yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text()))
    raw["backup"] = {"enabled": enabled, "bucket": "pgha-prod-backups-test", **backup}
    return load("prod", raw)


def secrets(backup: bool = True) -> PatroniNodeSecrets:
    return PatroniNodeSecrets(
        FAKE_CA,
        fake_keypair("s"),
        fake_keypair("c"),
        fake_passwords(),
        backup=fake_backup_secrets() if backup else None,
    )


def render(s: Settings, target: Target | None = None, restore: RestoreSpec | None = None) -> RenderedNode:
    t = target or Target.vm(s)
    return render_patroni_node(s, t, t.plan.patroni[0], secrets(), restore)


def patroni_yml(node: RenderedNode) -> dict[str, Any]:
    return yaml.safe_load(node.file("/patroni.yml").content)


def pgbackrest_conf(node: RenderedNode) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(node.file("/pgbackrest.conf").content)
    return cp


def test_pgbackrest_conf_is_an_encrypted_s3_repository_readable_by_postgres_only() -> None:
    node = render(settings())
    f = node.file("/pgbackrest.conf")
    assert (f.path, f.mode, f.owner, f.secret) == ("/etc/pgbackrest/pgbackrest.conf", "0640", "root:postgres", True)
    g = pgbackrest_conf(node)["global"]
    assert g["repo1-type"] == "s3"
    assert g["repo1-s3-endpoint"] == "s3.gra.io.cloud.ovh.net"
    assert g["repo1-s3-region"] == "gra"
    assert g["repo1-s3-bucket"] == "pgha-prod-backups-test"
    assert g["repo1-cipher-type"] == "aes-256-cbc"
    assert g["repo1-cipher-pass"] == fake_backup_secrets().cipher_pass
    assert g["repo1-s3-key-secret"] == fake_backup_secrets().s3_secret_key
    assert (g["archive-async"], g["spool-path"]) == ("y", "/var/spool/pgbackrest")
    assert (g["repo1-retention-full"], g["repo1-retention-diff"]) == ("2", "7")
    assert "archive-push-queue-max" not in g, "pgha never drops WAL from the archive"
    assert "repo1-storage-port" not in g
    assert "repo1-storage-ca-file" not in g
    stanza = pgbackrest_conf(node)["pgha"]
    assert stanza["pg1-path"] == "/var/lib/postgresql/15/pgha"


def test_conf_written_after_packages_create_the_postgres_group() -> None:
    doc = yaml.safe_load(render(settings()).user_data)
    entry = next(w for w in doc["write_files"] if w["path"] == "/etc/pgbackrest/pgbackrest.conf")
    assert entry.get("defer") is True
    assert "pgbackrest" in doc["packages"]


def test_patroni_archives_through_pgbackrest_and_restores_replicas_from_the_repository() -> None:
    s = settings(archive_timeout=30)
    pg = patroni_yml(render(s))["postgresql"]
    conf = "--config=/etc/pgbackrest/pgbackrest.conf --stanza=pgha"
    assert pg["parameters"]["archive_mode"] == "on"
    assert pg["parameters"]["archive_command"] == f"/usr/bin/pgbackrest {conf} archive-push %p"
    assert pg["parameters"]["archive_timeout"] == 30
    assert pg["recovery_conf"]["restore_command"] == f'/usr/bin/pgbackrest {conf} archive-get %f "%p"'
    assert pg["create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert pg["pgbackrest"] == {
        "command": f"/usr/bin/pgbackrest {conf} --delta restore",
        "keep_data": True,
        "no_params": True,
    }


def test_timers_run_on_every_node_with_the_configured_calendars() -> None:
    s = settings(full_calendar="Sat *-*-* 03:00:00", diff_calendar="daily")
    t = Target.vm(s)
    for n in t.plan.patroni:
        node = render_patroni_node(s, t, n, secrets())
        assert "OnCalendar=Sat *-*-* 03:00:00" in node.file("/pgha-backup-full.timer").content
        assert "OnCalendar=daily" in node.file("/pgha-backup-diff.timer").content
        assert "Unit=pgha-backup@watch.service" in node.file("/pgha-backup-watch.timer").content
        service = node.file("/pgha-backup@.service").content
        assert "User=postgres" in service
        assert "ExecStart=/usr/local/sbin/pgha-backup --config /etc/pgha/backup.json run %i" in service
        runcmd = yaml.safe_load(node.user_data)["runcmd"]
        assert ["systemctl", "enable", *TIMERS] in runcmd
        assert node.file("/pgha-backup").content == (NODE_SCRIPTS / "backup.py").read_text()


def test_timers_are_started_at_first_boot_not_only_enabled() -> None:
    """Found by booting (machines tier, `up --backup`): cloud-init's runcmd runs after
    timers.target is reached, so `systemctl enable` alone left the three timers inactive
    until a reboot: no stanza retry, no first full backup, no schedule."""
    s = settings()
    t = Target.vm(s)
    runcmd = yaml.safe_load(render_patroni_node(s, t, t.plan.patroni[0], secrets()).user_data)["runcmd"]
    start = ["systemctl", "start", "--no-block", *TIMERS]
    assert start in runcmd
    assert runcmd.index(start) > runcmd.index(["systemctl", "daemon-reload"])


def test_stanza_created_after_bootstrap_best_effort() -> None:
    script = render(settings()).file("/pgha-post-bootstrap").content
    assert "/usr/local/sbin/pgha-backup --config /etc/pgha/backup.json stanza --bootstrap ||" in script


def test_backup_json_holds_no_secret() -> None:
    node = render(settings())
    content = node.file("/backup.json").content
    cfg = json.loads(content)
    assert cfg["primary_url"].endswith(":8008/primary")
    for value in dataclasses.asdict(fake_backup_secrets()).values():
        assert value not in content


def test_node_check_watches_archiving_only_with_backups() -> None:
    on = json.loads(render(settings()).file("/check.json").content)
    off = json.loads(render(settings(enabled=False)).file("/check.json").content)
    assert (on["patroni"]["archiving"], off["patroni"]["archiving"]) == (True, False)


def test_disabled_renders_nothing_of_pgbackrest() -> None:
    node = render(settings(enabled=False))
    assert not [f for f in node.files if "pgbackrest" in f.path or "pgha-backup" in f.path]
    pg = patroni_yml(node)["postgresql"]
    assert "archive_command" not in pg["parameters"]
    assert "create_replica_methods" not in pg
    assert "pgbackrest" not in yaml.safe_load(node.user_data)["packages"]


def test_enabled_without_credentials_is_refused() -> None:
    s = settings()
    t = Target.vm(s)
    with pytest.raises(ValueError, match=r"backup.enabled is on but no repository credentials"):
        render_patroni_node(s, t, t.plan.patroni[0], secrets(backup=False))


def test_restore_spec_bootstraps_from_the_repository() -> None:
    spec = RestoreSpec("time", "2026-11-27 20:00:00+00", repo_path="/old")
    boot = patroni_yml(render(settings(), restore=spec))["bootstrap"]
    assert boot["method"] == "pgbackrest"
    cmd = boot["pgbackrest"]["command"]
    assert cmd.startswith("/usr/local/sbin/pgha-backup --config /etc/pgha/backup.json restore --repo-path=/old")
    assert "--type=time '--target=2026-11-27 20:00:00+00' --target-action=promote" in cmd
    assert boot["pgbackrest"]["keep_existing_recovery_conf"] is True
    # The roles come with the data: the application role takes this stack's password, then the stanza.
    assert boot["post_bootstrap"] == "/usr/local/sbin/pgha-post-bootstrap /etc/pgha/restore-bootstrap.sql"
    assert "method" not in patroni_yml(render(settings()))["bootstrap"]


@pytest.mark.parametrize(
    "kind,value",
    [("latest", "x"), ("time", ""), ("lsn", "0/1"), ("xid", "")],
    ids=["latest+value", "time", "lsn", "xid"],
)
def test_bad_restore_spec_is_refused(kind: str, value: str) -> None:
    with pytest.raises(ValueError, match="restore target"):
        RestoreSpec(kind, value)


def test_lab_target_points_pgbackrest_at_its_own_paths_and_s3(tmp_path: Path) -> None:
    s = settings()
    t = dataclasses.replace(
        Target.lab(s, tmp_path, "127.90", "pgha", "/opt/pgha/patroni"),
        object_storage=ObjectStorage("localhost", 30906, "lab", "path", "/lab", str(tmp_path / "ca.crt"), "pgha-lab"),
    )
    node = render(s, t)
    assert object_storage(s, t).endpoint == "localhost"
    f = node.file("/pgbackrest.conf")
    assert f.path == str(tmp_path / "pg1" / "etc" / "pgbackrest.conf")
    g = pgbackrest_conf(node)["global"]
    assert (g["repo1-storage-port"], g["repo1-s3-uri-style"], g["repo1-s3-bucket"]) == ("30906", "path", "pgha-lab")
    assert g["repo1-storage-ca-file"] == str(tmp_path / "ca.crt")
    assert g["spool-path"].startswith(str(tmp_path / "pg1"))
