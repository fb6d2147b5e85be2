"""The whole program (__main__.py) under mocks, with the real stack files' config."""

from __future__ import annotations

import runpy

import pytest

from cloud_init.common import etcd_urls
from cloud_init.endpoint import libpq_dsn, render_haproxy
from pgha.settings import SettingsError
from pgha.target import Target
from pgha.timing import client_deadline

from .mocks import BASTION_PUBLIC_IP, OPENSTACK_NETWORK_ID, ROLLED_ONLY_INPUTS, ROOT

pytestmark = pytest.mark.components

COMPONENTS = {
    "pgha:index:PrivateNetwork": "network",
    "pgha:index:Access": "access",
    "pgha:index:Pki": "pki",
    "pgha:index:EtcdCluster": "etcd",
    "pgha:index:PatroniCluster": "patroni",
    "pgha:index:Endpoint": "endpoint",
    "pgha:index:Validation": "validation",
    "pgha:index:MonitoringHost": "monitoring",
}
ALWAYS = {
    "network_id",
    "subnet_id",
    "etcd_addresses",
    "patroni_addresses",
    "etcd_client_urls",
    "patroni_rest_urls",
    "libpq_dsn",
    "ca_certificate",
    "app_user",
    "app_password",
    "haproxy_config",
    "client_deadline",
    "scrape_targets",
}
MONITORING = {"monitoring_address", "prometheus_url", "alertmanager_url"}
OPTIONAL = {"dev": {"bastion_ip"} | MONITORING, "prod": {"bastion_ip", "dns_name", "lb_address"} | MONITORING}


def run_main(h):
    return h.run(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="pgha_main"))


@pytest.fixture(params=["dev", "prod"])
def deployed(request, harness):
    h = harness(request.param)
    h.set_stack_config(h.stack_yaml())
    run_main(h)
    return h


def test_every_resource_belongs_to_a_component(deployed):
    h = deployed
    comps = [r for r in h.resources if r.type.startswith("pgha:index:")]
    assert {r.type: r.name for r in comps} == COMPONENTS
    by_urn = {r.urn: r for r in comps}
    for r in h.resources:
        if r.type.startswith("pgha:index:"):
            assert "::pulumi:pulumi:Stack::" in r.parent, r.urn
            continue
        parent = by_urn.get(r.parent)
        assert parent is not None, f"{r.urn} is not parented to a pgha component"
        assert r.name.startswith(f"{parent.name}-"), f"{r.urn}: name not derived from {parent.name}"
        assert r.custom, r.urn


def test_stack_outputs(deployed):
    h = deployed
    s = h.settings()
    plan = s.plan
    outputs = h.stack_outputs()
    assert set(outputs) == ALWAYS | OPTIONAL[h.stack]
    value = {k: v for k, (v, _) in outputs.items()}
    secret = {k for k, (_, is_secret) in outputs.items() if is_secret}
    assert secret == {"app_password"}
    assert value["network_id"] == OPENSTACK_NETWORK_ID
    assert value["etcd_addresses"] == plan.addresses("etcd")
    assert value["patroni_addresses"] == plan.addresses("patroni")
    assert value["etcd_client_urls"] == etcd_urls(s, plan)
    assert value["patroni_rest_urls"] == [f"https://{ip}:{s.patroni.rest_port}" for ip in plan.addresses("patroni")]
    assert value["libpq_dsn"] == libpq_dsn(s, plan)
    assert "password" not in value["libpq_dsn"]
    assert value["haproxy_config"] == render_haproxy(s, Target.vm(s))
    assert value["app_user"] == s.patroni.app_user
    assert value["client_deadline"] == client_deadline(s.patroni.ttl, s.patroni.loop_wait)
    assert value["app_password"] in h.mocks.secrets
    assert value["ca_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert value["bastion_ip"] == BASTION_PUBLIC_IP
    if h.stack == "prod":
        assert value["dns_name"] == f"{s.endpoint.dns.name}.{s.endpoint.dns.zone}"
        assert value["lb_address"] == plan.lb


def test_no_plaintext_secret_anywhere(deployed):
    """Walk every registered input, component output and stack output: secrets only inside secret wrappers."""
    h = deployed
    secrets = h.mocks.secrets
    kinds = {
        "passwords": [v for v in secrets if v.startswith("MockPw")],
        "keys": [v for v in secrets if "PRIVATE KEY" in v],
    }
    assert len(kinds["passwords"]) == 5, "the mocks must have handed out the passwords"
    assert len(kinds["keys"]) >= 10, "the mocks must have handed out the keys"
    assert {r.urn for r in h.resources if not r.custom} <= set(h.monitor.component_outputs), "register_outputs missing"
    assert h.secret_leaks() == []
    # ...and Patroni's own role passwords did reach the nodes, as secrets (the application
    # role's password never does: nodes only get its SCRAM verifier).
    pg1 = h.named("patroni-pg1")
    app_password = outputs_value(h, "app_password")
    assert pg1.is_secret("userData")
    assert {p for p in kinds["passwords"] if p in pg1.user_data()} == set(kinds["passwords"]) - {app_password}


def outputs_value(h, name):
    return h.stack_outputs()[name][0]


def test_bad_stack_config_fails_before_any_resource(harness):
    h = harness("dev")
    doc = h.stack_yaml()
    doc["config"]["pgha:etcd"]["members"] = 2
    doc["config"]["pgha:patroini"] = {"nodes": 3}
    doc["config"]["pgha:access"]["admin_cidrs"] = ["not-a-cidr"]
    h.set_stack_config(doc)
    with pytest.raises(SettingsError) as e:
        run_main(h)
    assert e.value.paths == {"etcd.members", "patroini", "access.admin_cidrs[0]"}
    assert h.resources == [], "nothing may be registered when the config is invalid"


def test_roll_reaches_the_named_instance_only(harness, monkeypatch):
    h = harness("dev")
    monkeypatch.setenv("PGHA_ROLL", "etcd2")
    h.set_stack_config(h.stack_yaml())
    run_main(h)
    instances = {r.name: r for r in h.of_type("openstack:compute/instance:Instance")}
    assert instances.pop("etcd-etcd2").ignore_changes == []
    instances.pop("access-bastion")
    assert instances
    # Every input that would replace or reboot a node waits for its turn in PGHA_ROLL.
    for r in instances.values():
        assert set(r.ignore_changes) == ROLLED_ONLY_INPUTS, r.urn
        assert r.input("stopBeforeDestroy") is True, f"{r.urn}: etcd/PostgreSQL must stop cleanly on replacement"
