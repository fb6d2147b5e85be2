"""backup.restore_from on OVH: the new stack's S3 user may READ the source bucket (and write
only its own), and the source's passphrase is a secret config value that stays a secret
Output end to end, into the Patroni nodes' user-data only."""

from __future__ import annotations

import configparser
import json
import runpy

import pulumi
import pytest
import yaml

from components.backup import S3_ACTIONS, S3_READ_ACTIONS
from components.config import load_stack_config
from pgha.settings import SettingsError

from .mocks import ROOT

pytestmark = pytest.mark.components

POLICY = "ovh:CloudProject/s3Policy:S3Policy"
OWN, SOURCE = "pgha-prod-restored-acme", "pgha-prod-backups-acme"
SOURCE_PASS = "SourceRepositoryPassphrase0123456789"
RESTORE_FROM = {"bucket": SOURCE, "stanza": "pgha-prod", "time": "2026-11-27 20:15:00+00:00"}
WRITES = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutBucketPolicy", "s3:DeleteBucket"}


def configure(h, secret: bool = True):
    doc = h.stack_yaml()
    doc["config"]["pgha:backup"] = {"enabled": True, "bucket": OWN, "restore_from": RESTORE_FROM}
    h.set_stack_config(doc)
    if secret:
        config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc["config"].items()}
        config["pgha-restore-from:cipherPass"] = SOURCE_PASS
        pulumi.runtime.set_all_config(config, ["pgha-restore-from:cipherPass"])
        h.mocks.secrets.add(SOURCE_PASS)
    return h


@pytest.fixture
def restored(harness):
    h = configure(harness("prod"))
    h.run(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="pgha_main"))
    return h


def test_policy_reads_the_source_and_writes_only_its_own_bucket(restored):
    (policy,) = restored.of_type(POLICY)
    statements = {s["Sid"]: s for s in json.loads(policy.input("policy"))["Statement"]}
    assert set(statements) == {"PgBackRestRepository", "RestoreFromSourceReadOnly"}
    own, source = statements["PgBackRestRepository"], statements["RestoreFromSourceReadOnly"]
    assert own["Resource"] == [f"arn:aws:s3:::{OWN}", f"arn:aws:s3:::{OWN}/*"]
    assert set(own["Action"]) == set(S3_ACTIONS)
    assert source["Resource"] == [f"arn:aws:s3:::{SOURCE}", f"arn:aws:s3:::{SOURCE}/*"]
    assert set(source["Action"]) == set(S3_READ_ACTIONS) == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}
    assert not set(source["Action"]) & WRITES
    for s in statements.values():  # every write names this stack's bucket only
        if set(s["Action"]) & WRITES:
            assert all(r.startswith(f"arn:aws:s3:::{OWN}") for r in s["Resource"]), s


def test_source_passphrase_stays_secret_into_the_patroni_user_data_only(restored):
    h = restored
    assert h.secret_leaks() == []
    for n in ("pg1", "pg2", "pg3"):
        node = h.named(f"patroni-{n}")
        assert node.is_secret("userData")
        files = {f["path"]: f for f in yaml.safe_load(node.user_data())["write_files"]}
        source = files["/etc/pgbackrest/restore-from.conf"]
        assert (source["permissions"], source["owner"]) == ("0640", "root:postgres")
        cp = configparser.ConfigParser(interpolation=None)
        cp.read_string(source["content"])
        assert (cp["global"]["repo1-s3-bucket"], cp["global"]["repo1-cipher-pass"]) == (SOURCE, SOURCE_PASS)
        steady = files["/etc/pgbackrest/pgbackrest.conf"]["content"]
        assert f"repo1-s3-bucket={OWN}\n" in steady
        assert SOURCE_PASS not in steady
        assert "restore-from.conf" in files["/etc/pgha/patroni.yml"]["content"]  # the bootstrap reads it
    for r in h.of_type("openstack:compute/instance:Instance"):
        if "patroni" not in r.name:
            assert SOURCE_PASS not in r.user_data(), f"{r.urn} got the source passphrase"


def test_missing_source_passphrase_is_a_config_error_naming_the_key_and_the_command(harness):
    h = configure(harness("prod"), secret=False)
    with pytest.raises(SettingsError) as e:
        load_stack_config()
    assert e.value.paths == {"pgha-restore-from:cipherPass"}
    assert "pulumi config set --secret pgha-restore-from:cipherPass" in str(e.value)
    configure(h, secret=True)
    cfg = load_stack_config()
    assert cfg.restore_from_cipher_pass is not None
    assert h.resolve(cfg.restore_from_cipher_pass) == (SOURCE_PASS, True)  # read as a secret Output
