"""BackupRepository: bucket, Object Storage user, S3 credential and policy per stack; secrets stay secret."""

from __future__ import annotations

import configparser
import json
import runpy

import pytest
import yaml

from components.backup import S3_ACTIONS, TYPE

from .mocks import PASSWORD, ROOT

pytestmark = pytest.mark.components

STORAGE = "ovh:CloudProject/storage:Storage"
USER = "ovh:CloudProject/user:User"
CREDENTIAL = "ovh:CloudProject/s3Credential:S3Credential"
POLICY = "ovh:CloudProject/s3Policy:S3Policy"
BUCKET = "pgha-dev-backups-acme"


def deploy(h, backup: dict | None):
    doc = h.stack_yaml()
    if backup is not None:
        doc["config"]["pgha:backup"] = backup
    h.set_stack_config(doc)
    h.run(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="pgha_main"))
    return h


@pytest.fixture(params=["dev", "prod"])
def with_backup(request, harness):
    return deploy(harness(request.param), {"enabled": True, "bucket": BUCKET})


def test_bucket_user_credential_and_policy_per_stack(with_backup):
    h = with_backup
    comp = h.component(TYPE)
    kids = h.children(comp)
    assert sorted(k.type for k in kids) == sorted([STORAGE, USER, CREDENTIAL, POLICY, PASSWORD])
    (bucket,) = h.of_type(STORAGE)
    assert bucket.input("name") == BUCKET
    assert bucket.input("regionName") == "GRA"
    assert bucket.input("versioning") == {"status": "enabled"}
    assert bucket.protect, "backups must survive pulumi destroy"
    (user,) = h.of_type(USER)
    assert user.input("roleName") == "objectstore_operator"
    (cred,) = h.of_type(CREDENTIAL)
    assert cred.input("userId") == h.id_of(user)
    (policy,) = h.of_type(POLICY)
    assert policy.input("userId") == h.id_of(user)
    statement = json.loads(policy.input("policy"))["Statement"]
    assert [s["Resource"] for s in statement] == [[f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]]
    assert set(statement[0]["Action"]) == set(S3_ACTIONS)
    assert h.stack_outputs()["backup_bucket"] == (BUCKET, False)


def test_credential_and_passphrase_only_as_secrets_into_user_data(with_backup):
    h = with_backup
    secrets = h.mocks.secrets
    s3 = {v for v in secrets if v.startswith(("MockS3Secret", "MOCKACCESSKEY"))}
    passphrase = {v for v in secrets if v.startswith("MockPwbackupcipher")}
    assert len(s3) == 2
    assert len(passphrase) == 1
    assert h.secret_leaks() == []
    for n in ("pg1", "pg2", "pg3"):
        node = h.named(f"patroni-{n}")
        assert node.is_secret("userData")
        ud = node.user_data()
        conf = next(f["content"] for f in yaml.safe_load(ud)["write_files"] if f["path"].endswith("pgbackrest.conf"))
        cp = configparser.ConfigParser(interpolation=None)
        cp.read_string(conf)
        g = cp["global"]
        assert {g["repo1-s3-key"], g["repo1-s3-key-secret"]} == s3
        assert {g["repo1-cipher-pass"]} == passphrase
        assert g["repo1-s3-bucket"] == BUCKET
    for r in h.of_type("openstack:compute/instance:Instance"):
        if "etcd" in r.name:
            assert not any(v in r.user_data() for v in s3 | passphrase), f"{r.urn} got backup secrets"


def test_no_repository_without_backup(harness):
    h = deploy(harness("dev"), None)
    assert not h.of_type(TYPE)
    assert not h.of_type(STORAGE)
    assert "backup_bucket" not in h.stack_outputs()
