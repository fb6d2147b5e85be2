"""backup.restore_from: a NEW stack bootstrapped from another stack's repository.

Settings (every mistake with its dotted path, at once) and the rendered bootstrap: the
source is read through its own pgBackRest config, the steady-state config only ever
names this stack's bucket, and no secret is on any command line."""

from __future__ import annotations

import configparser
import shlex
from typing import Any

import pytest
import yaml

from cloud_init.patroni import render_patroni_node
from pgha.backup import RestoreSpec, restore_from
from pgha.secrets import FAKE_CA, BackupSecrets, PatroniNodeSecrets, fake_keypair, fake_passwords
from pgha.settings import Settings, SettingsError, load
from pgha.target import Target
from tests.unit.test_settings import with_

pytestmark = pytest.mark.unit

ON = {"backup.enabled": True, "backup.bucket": "pgha-restored-backups"}
RF = {**ON, "backup.restore_from.bucket": "pgha-prod-backups", "backup.restore_from.stanza": "pgha-prod"}
SOURCE_PASS = "SOURCE-repository-passphrase"
OWN = BackupSecrets("AKEY", "SKEY", "OWN-repository-passphrase", restore_from_cipher_pass=SOURCE_PASS)

BAD: list[tuple[str, dict[str, Any], set[str]]] = [
    ("without backup.enabled", {**RF, "backup.enabled": False}, {"backup.enabled"}),
    ("into the source's own bucket", {**RF, "backup.bucket": "pgha-prod-backups"}, {"backup.restore_from.bucket"}),
    ("without stanza", {**RF, "backup.restore_from.stanza": ""}, {"backup.restore_from.stanza"}),
    ("bad bucket name", {**RF, "backup.restore_from.bucket": "Prod_Backups"}, {"backup.restore_from.bucket"}),
    ("bad region", {**RF, "backup.restore_from.region": "GRA11"}, {"backup.restore_from.region"}),
    ("bad stanza", {**RF, "backup.restore_from.stanza": "Prod Scope"}, {"backup.restore_from.stanza"}),
    ("relative repo path", {**RF, "backup.restore_from.repo_path": "pgbackrest"}, {"backup.restore_from.repo_path"}),
    ("time without offset", {**RF, "backup.restore_from.time": "2026-11-27 20:15:00"}, {"backup.restore_from.time"}),
    ("time not a time", {**RF, "backup.restore_from.time": "yesterday"}, {"backup.restore_from.time"}),
    ("xid not digits", {**RF, "backup.restore_from.xid": "12a"}, {"backup.restore_from.xid"}),
    ("name with a quote", {**RF, "backup.restore_from.name": "it's"}, {"backup.restore_from.name"}),
    ("name too long", {**RF, "backup.restore_from.name": "n" * 64}, {"backup.restore_from.name"}),
    (
        "two targets",
        {**RF, "backup.restore_from.xid": "1234", "backup.restore_from.name": "before-migration"},
        {"backup.restore_from.xid", "backup.restore_from.name"},
    ),
    ("target without bucket", {**ON, "backup.restore_from.xid": "1234"}, {"backup.restore_from.bucket"}),
    ("secret in the settings", {**RF, "backup.restore_from.cipher_pass": "x"}, {"backup.restore_from.cipher_pass"}),
    ("not a mapping", {**ON, "backup.restore_from": "pgha-prod-backups"}, {"backup.restore_from"}),
]


@pytest.mark.parametrize("changes,paths", [pytest.param(c, p, id=i) for i, c, p in BAD])
def test_bad_restore_from_is_rejected_with_its_paths(changes: dict[str, Any], paths: set[str]) -> None:
    with pytest.raises(SettingsError) as e:
        load("dev", with_(changes))
    assert e.value.paths == paths, str(e.value)


def test_every_restore_from_problem_at_once() -> None:
    raw = with_(
        {
            "backup.restore_from.bucket": "pgha-prod-backups",
            "backup.restore_from.time": "2026-11-27 20:15:00",
            "backup.retention_full": 0,
        }
    )
    with pytest.raises(SettingsError) as e:
        load("dev", raw)
    assert e.value.paths == {
        "backup.enabled",
        "backup.retention_full",
        "backup.restore_from.stanza",
        "backup.restore_from.time",
    }
    assert "its own backup.bucket" in str(e.value)


def test_defaults_and_the_restore_they_ask_for() -> None:
    s = load("dev", with_(ON))
    assert s.backup.restore_from.bucket == ""
    assert restore_from(s) is None
    s = load("dev", with_(RF))
    rf = s.backup.restore_from
    assert (rf.region, rf.repo_path) == ("gra", "/pgbackrest")  # backup.region, the VMs' repository path
    assert restore_from(s) == RestoreSpec(
        "latest", "", repo_path="/pgbackrest", bucket="pgha-prod-backups", region="gra", stanza="pgha-prod"
    )
    s = load("dev", with_({**RF, "backup.restore_from.region": "sbg", "backup.restore_from.xid": "4711"}))
    spec = restore_from(s)
    assert spec is not None
    assert (spec.kind, spec.value, spec.region) == ("xid", "4711", "sbg")


def settings(**changes: Any) -> Settings:
    return load("prod", with_({**RF, **changes}))


def render(s: Settings, backup: BackupSecrets = OWN) -> dict[str, Any]:
    t = Target.vm(s)
    secrets = PatroniNodeSecrets(FAKE_CA, fake_keypair("s"), fake_keypair("e"), fake_passwords(), backup=backup)
    node = render_patroni_node(s, t, t.plan.patroni[0], secrets)
    return {f.path: f for f in node.files}


def conf(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    return cp


def test_source_read_through_its_own_config_and_steady_state_unchanged() -> None:
    files = render(settings(**{"backup.restore_from.time": "2026-11-27 20:15:00+00:00"}))
    main = conf(files["/etc/pgbackrest/pgbackrest.conf"].content)
    assert main["global"]["repo1-s3-bucket"] == "pgha-restored-backups"  # archive-push: the NEW bucket only
    assert main["global"]["repo1-cipher-pass"] == OWN.cipher_pass
    assert SOURCE_PASS not in files["/etc/pgbackrest/pgbackrest.conf"].content
    rf_file = files["/etc/pgbackrest/restore-from.conf"]
    assert (rf_file.mode, rf_file.owner, rf_file.secret) == ("0640", "root:postgres", True)
    src = conf(rf_file.content)
    g = src["global"]
    assert g["repo1-s3-bucket"] == "pgha-prod-backups"
    assert g["repo1-s3-endpoint"] == "s3.gra.io.cloud.ovh.net"
    assert g["repo1-path"] == "/pgbackrest"
    assert g["repo1-cipher-pass"] == SOURCE_PASS
    assert (g["repo1-s3-key"], g["repo1-s3-key-secret"]) == ("AKEY", "SKEY")  # the same S3 credential
    assert not [k for k in g if "retention" in k]  # nothing is ever expired in the source
    assert src["pgha-prod"]["pg1-path"] == "/var/lib/postgresql/15/pgha"


def test_bootstrap_restores_from_the_source_config_with_no_secret_on_a_command_line() -> None:
    files = render(settings(**{"backup.restore_from.name": "before-migration"}))
    patroni = yaml.safe_load(files["/etc/pgha/patroni.yml"].content)
    boot = patroni["bootstrap"]
    assert boot["method"] == "pgbackrest"
    method = boot["pgbackrest"]
    assert method["keep_existing_recovery_conf"] is True
    argv = shlex.split(method["command"])
    assert argv[:4] == ["/usr/local/sbin/pgha-backup", "--config", "/etc/pgha/backup.json", "restore"]
    assert "--pgbackrest-config=/etc/pgbackrest/restore-from.conf" in argv
    assert "--stanza=pgha-prod" in argv
    assert argv[-3:] == ["--type=name", "--target=before-migration", "--target-action=promote"]
    # post_bootstrap: this stack's application password, then the NEW repository's stanza.
    assert boot["post_bootstrap"] == "/usr/local/sbin/pgha-post-bootstrap /etc/pgha/restore-bootstrap.sql"
    sql = files["/etc/pgha/restore-bootstrap.sql"]
    assert sql.mode == "0600"
    assert "ALTER ROLE app LOGIN PASSWORD 'SCRAM-SHA-256$4096:" in sql.content
    assert fake_passwords().app not in sql.content
    # Replicas and restarts read this cluster's own repository.
    assert "restore-from" not in patroni["postgresql"]["recovery_conf"]["restore_command"]
    everything = "\n".join(f.content for p, f in files.items() if p != "/etc/pgbackrest/restore-from.conf")
    assert SOURCE_PASS not in everything


def test_source_passphrase_is_required_to_render() -> None:
    with pytest.raises(ValueError, match=r"pgha-restore-from:cipherPass"):
        render(settings(), BackupSecrets("AKEY", "SKEY", "OWN"))


def test_no_restore_from_no_source_file() -> None:
    files = render(load("prod", with_(ON)), BackupSecrets("AKEY", "SKEY", "OWN"))
    assert "/etc/pgbackrest/restore-from.conf" not in files
    assert "method" not in yaml.safe_load(files["/etc/pgha/patroni.yml"].content)["bootstrap"]


#: ``pgbackrest info --output=json`` of a source read with a wrong passphrase (pgBackRest 2.45): exit 0,
#: the decrypted garbage as raw control characters inside the message.
WRONG_PASSPHRASE_INFO = (
    '[{"archive":[],"backup":[],"cipher":"aes-256-cbc","db":[],"name":"pgha","repo":[{"cipher":"aes-256-cbc",'
    '"key":1,"status":{"code":99,"message":"[FormatError] unable to load info file \'/src/backup/pgha/backup.info\''
    " or '/src/backup/pgha/backup.info.copy':\\nFormatError: key/value found outside of section at line 1: \x0b\x91r\x1f"
    '"}}],"status":{"code":99,"lock":{"backup":{"held":false}},"message":"other"}}]'
)
GOOD_INFO = '[{"backup":[{"label":"20261127-235147F"}],"name":"pgha","status":{"code":0,"message":"ok"}}]'


@pytest.mark.parametrize(
    "rc,stdout,expected",
    [
        (0, WRONG_PASSPHRASE_INFO, "key/value found outside of section (it decrypts to garbage: a wrong passphrase)"),
        (0, '[{"name":"pgha","status":{"code":1,"message":"missing stanza path"}}]', "missing stanza path"),
        (82, "", "pgBackRest (exit 82): [082]: unable to connect"),
        (0, GOOD_INFO, None),
    ],
)
def test_node_script_says_why_the_source_cannot_be_read(rc: int, stdout: str, expected: str | None) -> None:
    import subprocess

    from tests.unit.test_backup_metrics import load_script

    script = load_script("backup")
    stderr = "[082]: unable to connect" if rc else ""
    script.pgbackrest = lambda cfg, *a, capture=False: subprocess.CompletedProcess([], rc, stdout, stderr)  # type: ignore[attr-defined]
    problem = script.source_problem({"stanza": "pgha"})
    if expected is None:
        assert problem is None
    else:
        assert "pgha-restore-from:cipherPass" in problem
        assert expected in problem
        assert problem.isprintable()


@pytest.mark.parametrize(
    "options,expected",
    [
        (("--type=time", "--target=2026-11-27 20:00:00+00:00", "--target-action=promote"), "before the oldest backup"),
        (("--type=time", "--target=2026-11-27 23:00:00+00:00", "--target-action=promote"), None),
        (("--type=default",), None),
        (("--type=xid", "--target=1234", "--target-action=promote"), None),
    ],
)
def test_node_script_refuses_a_time_before_the_oldest_backup(options: tuple[str, ...], expected: str | None) -> None:
    from tests.unit.test_backup_metrics import load_script

    script = load_script("backup")
    stop = 1_795_818_000  # 2026-11-27 22:20:00 UTC
    backups = [{"timestamp": {"stop": stop}}, {"timestamp": {"stop": stop + 3600}}]
    problem = script.target_problem(backups, options)
    if expected is None:
        assert problem is None
    else:
        assert expected in problem
        assert "2026-11-27 22:20:00 UTC" in problem
