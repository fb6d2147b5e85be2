"""DNS primary record: settings, rendering, and the rendered callback script run for
real (as Patroni runs it) against a local double of the OVH API on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_init import dns_callback
from cloud_init.patroni import render_patroni_node
from pgha.secrets import (
    FAKE_CA,
    OvhApiCredentials,
    PatroniNodeSecrets,
    fake_keypair,
    fake_ovh_api_credentials,
    fake_passwords,
)
from pgha.settings import SettingsError, load, sections_from_stack_yaml
from pgha.target import Layout, Target

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ZONE = "example.com"
RECORD_ID = 5081234567
AK, AS, CK = "test-ak-7f3a", "test-as-SECRET-91c2", "test-ck-SECRET-d4e8"


def prod_raw(**dns: Any) -> dict[str, Any]:
    raw = sections_from_stack_yaml(yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text()))
    raw["endpoint"]["dns"].update(dns)
    return raw


# ------------------------------------------------------------------ settings

BAD: list[tuple[str, dict[str, Any], set[str]]] = [
    ("primary record without dns", {"enabled": False, "primary_record": True}, {"endpoint.dns.primary_record"}),
    ("explicit name not a label", {"primary_record_name": "Primary_DB"}, {"endpoint.dns.primary_record_name"}),
    (
        "same name as the pulumi record",
        {"primary_record": True, "primary_record_name": "db-prod"},
        {"endpoint.dns.primary_record_name"},
    ),
    ("derived name too long", {"primary_record": True, "name": "d" * 60}, {"endpoint.dns.primary_record_name"}),
    ("wrong type", {"primary_record": "yes"}, {"endpoint.dns.primary_record"}),
]


@pytest.mark.parametrize("dns,paths", [pytest.param(d, p, id=i) for i, d, p in BAD])
def test_bad_primary_record_settings(dns: dict[str, Any], paths: set[str]) -> None:
    with pytest.raises(SettingsError) as exc:
        load("prod", prod_raw(**dns))
    assert exc.value.paths == paths, str(exc.value)


def test_primary_record_defaults() -> None:
    s = load("prod", prod_raw())
    assert s.endpoint.dns.primary_record is False
    assert s.endpoint.dns.primary_record_name == "primary-db-prod"
    s = load("prod", prod_raw(primary_record=True, primary_record_name="pg-rw"))
    assert (s.endpoint.dns.primary_record, s.endpoint.dns.primary_record_name) == (True, "pg-rw")
    assert dns_callback.record_fqdn(s) == "pg-rw.example.com"


# ------------------------------------------------------------------ rendering


def tmp_layout(base: Path) -> Layout:
    return Layout(
        etc_dir=str(base / "etc"),
        bin_dir=str(base / "bin"),
        etcd_data_dir=str(base / "etcd"),
        pg_data_dir=str(base / "data"),
        pg_bin_dir="/usr/lib/postgresql/15/bin",
        socket_dir=str(base / "sock"),
        patroni_venv="/opt/pgha/patroni",
        python="/usr/bin/python3",
        pg_os_user="postgres",
        pgpass=str(base / "pgpass"),
        etcd_os_user="etcd",
        watchdog=False,
    )


def node_secrets(creds: OvhApiCredentials | None) -> PatroniNodeSecrets:
    return PatroniNodeSecrets(FAKE_CA, fake_keypair("s"), fake_keypair("c"), fake_passwords(), dns_api=creds)


def test_render_off_by_default() -> None:
    s = load("prod", prod_raw())
    node = render_patroni_node(s, Target.vm(s), s.plan.patroni[0], node_secrets(fake_ovh_api_credentials()))
    assert "callbacks" not in yaml.safe_load(node.file("/patroni.yml").content)["postgresql"]
    assert not [f for f in node.files if "dns-callback" in f.path]


def test_render_callback_files_and_patroni_callbacks() -> None:
    s = load("prod", prod_raw(primary_record=True))
    node = render_patroni_node(s, Target.vm(s), s.plan.patroni[1], node_secrets(fake_ovh_api_credentials()))
    cfg = yaml.safe_load(node.file("/patroni.yml").content)
    cmd = "/usr/bin/timeout --kill-after=2 30 /usr/local/sbin/pgha-dns-callback --config /etc/pgha/dns-callback.json"
    assert cfg["postgresql"]["callbacks"] == {"on_start": cmd, "on_role_change": cmd}
    script = node.file("/usr/local/sbin/pgha-dns-callback")
    assert script.mode == "0755"
    assert script.content.startswith("#!/usr/bin/python3\n")
    conf = node.file("/etc/pgha/dns-callback.json")
    assert (conf.mode, conf.owner, conf.secret) == ("0600", "postgres:postgres", True)
    c = json.loads(conf.content)
    assert (c["node"], c["address"], c["zone"], c["record"], c["ttl"]) == (
        "pg2",
        s.plan.patroni[1].address,
        "example.com",
        "primary-db-prod",
        60,
    )
    assert c["leader_check_url"] == f"https://{s.plan.patroni[1].address}:8008/primary"
    assert c["cacert"] == "/etc/pgha/tls/ca.crt"
    assert c["ovh"]["endpoint"] == "https://eu.api.ovh.com/1.0"
    assert c["ovh"]["consumer_key"] == "FAKE-ovh-consumer-key"
    # Stdlib only: the node runs it with the system python, outside Patroni's venv.
    imports = {
        line.split()[1].split(".")[0] for line in script.content.splitlines() if line.startswith(("import ", "from "))
    }
    assert imports <= sys.stdlib_module_names, imports - sys.stdlib_module_names
    assert "urllib" in imports  # the parse above sees the imports at all


def test_render_refuses_primary_record_without_credentials() -> None:
    s = load("prod", prod_raw(primary_record=True))
    with pytest.raises(ValueError, match="no OVH API credentials"):
        render_patroni_node(s, Target.vm(s), s.plan.patroni[0], node_secrets(None))


def test_access_rules_are_limited_to_the_record() -> None:
    assert dns_callback.access_rules("example.com", 42) == [
        {"method": "GET", "path": "/domain/zone/example.com/record"},
        {"method": "GET", "path": "/domain/zone/example.com/record/42"},
        {"method": "PUT", "path": "/domain/zone/example.com/record/42"},
        {"method": "POST", "path": "/domain/zone/example.com/refresh"},
    ]
    doc = (ROOT / "docs" / "applications.md").read_text()  # the access rules an operator copies
    for rule in dns_callback.access_rules("<zone>", "<record-id>"):
        assert f'{{"method": "{rule["method"]}", "path": "{rule["path"]}"}}' in doc, rule
