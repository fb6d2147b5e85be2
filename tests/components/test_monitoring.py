"""MonitoringHost: one VM on the plan's monitoring address, in the monitoring security group,
no public IP, its user-data (secret) the renderer's, carrying Prometheus' scrape targets and
pgha's rules; the SMTP password reaches it only as a secret. The whole stack exports the
host's URLs and the scrape targets."""

from __future__ import annotations

import runpy

import pulumi
import pytest
import yaml

from cloud_init.common import hostname
from cloud_init.monitoring import alert_names, scrape_targets
from components.monitoring import TYPE, MonitoringHost, MonitoringHostArgs, scrape_targets_output
from pgha.secrets import FAKE_CA
from pgha.target import Target

from .mocks import (
    HOST_KEY,
    INSTANCE,
    PORT,
    ROLLED_ONLY_INPUTS,
    ROOT,
    SUBNET_ID,
    static_placement,
    with_section,
)

pytestmark = pytest.mark.components


def build(h, settings, smtp_password=None):
    return h.run(
        lambda: MonitoringHost("monitoring", MonitoringHostArgs(settings, static_placement(), FAKE_CA, smtp_password))
    )


def written(user_data: str) -> dict[str, str]:
    doc = yaml.safe_load(user_data.split("\n", 1)[1])
    return {f["path"]: f["content"] for f in doc["write_files"]}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_host_wired_with_its_targets_and_rules(harness, stack):
    h = harness(stack)
    s = h.settings()
    build(h, s)
    comp = h.component(TYPE)
    assert sorted(c.type for c in h.children(comp)) == sorted([PORT, INSTANCE, HOST_KEY])
    port = h.named("monitoring-host-port")
    assert port.input("fixedIps") == [{"subnetId": SUBNET_ID, "ipAddress": s.plan.monitoring.address}]
    assert port.input("securityGroupIds") == ["sg-id"]
    inst = h.named("monitoring-host")
    assert inst.input("name") == hostname(s, "monitoring")
    assert inst.input("flavorName") == s.monitoring.flavor
    assert inst.input("networks") == [{"port": h.id_of(port)}], "only the private port, no public IP"
    assert set(inst.ignore_changes) == ROLLED_ONLY_INPUTS
    assert inst.is_secret("userData")
    files = written(inst.user_data())
    prom = yaml.safe_load(files["/etc/prometheus/prometheus.yml"].split("\n", 1)[1])
    scraped = {(j["job_name"], t) for j in prom["scrape_configs"] for c in j["static_configs"] for t in c["targets"]}
    assert scraped == {(t.job, t.address) for t in scrape_targets(s, Target.vm(s))}
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"{s.plan.monitoring.address}:{s.monitoring.alertmanager_port}"
    ]
    rules = yaml.safe_load(files["/etc/prometheus/rules/pgha.rules.yml"].split("\n", 1)[1])
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert alerts == alert_names(s, Target.vm(s))
    assert files["/etc/prometheus/tls/ca.crt"] == FAKE_CA


def test_smtp_password_reaches_the_host_as_a_secret_only(harness):
    h = harness("prod")
    s = with_section(
        h.settings(),
        "monitoring.alertmanager",
        email_to=("oncall@example.com",),
        email_from="pgha@example.com",
        smarthost="smtp.example.com:587",
        smtp_username="pgha",
    )
    password = "MockSmtpPassword-0123456789"
    h.mocks.secrets.add(password)
    build(h, s, pulumi.Output.secret(password))
    inst = h.named("monitoring-host")
    assert inst.is_secret("userData")
    am = written(inst.user_data())["/etc/prometheus/alertmanager.yml"]
    assert f"auth_password: {password}" in am
    assert h.secret_leaks() == []


def test_stack_exports_urls_and_scrape_targets(harness):
    h = harness("dev")
    doc = h.stack_yaml()
    h.set_stack_config(doc)
    h.run(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="pgha_main"))
    s = h.settings()
    out = {k: v for k, (v, _) in h.stack_outputs().items()}
    assert out["scrape_targets"] == scrape_targets_output(s)
    assert out["prometheus_url"] == f"http://{s.plan.monitoring.address}:{s.monitoring.prometheus_port}"
    assert out["monitoring_address"] == s.plan.monitoring.address
    assert h.named("monitoring-host-port").input("securityGroupIds") == [
        h.id_of(
            next(g for g in h.of_type("openstack:networking/secGroup:SecGroup") if g.name == "access-monitoring-sg")
        )
    ]


def test_monitoring_disabled_creates_no_host_and_opens_no_port(harness):
    h = harness("dev")
    doc = h.stack_yaml()
    doc["config"]["pgha:monitoring"] = {"enabled": False}
    h.set_stack_config(doc)
    h.run(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="pgha_main"))
    assert [r for r in h.resources if r.type == TYPE] == []
    assert not [g for g in h.of_type("openstack:networking/secGroup:SecGroup") if g.name == "access-monitoring-sg"]
    s = h.settings()
    ports = {r.input("portRangeMin") for r in h.of_type("openstack:networking/secGroupRule:SecGroupRule")}
    m = s.monitoring
    assert ports.isdisjoint({m.etcd_metrics_port, m.node_exporter_port, m.postgres_exporter_port})
    out = h.stack_outputs()
    assert "prometheus_url" not in out
    assert "scrape_targets" in out  # a team's own Prometheus still finds every endpoint
