"""The monitoring role's render: settings validated with their paths, rules chosen and
filled from settings and target, every alert documented, scrape targets from the plan."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_init.monitoring import (
    DASHBOARD_FILE,
    TEXTFILE_METRICS,
    alert_names,
    alertmanager_config,
    dashboard_exprs,
    monitoring_files,
    prometheus_config,
    promql_metric_names,
    rules,
    scrape_targets,
)
from lab.drills.alerts import AlertWatcher
from lab.topology import Topology
from pgha.firewall import allow_list
from pgha.settings import SettingsError, load, load_stack_file
from pgha.target import Target
from tests.unit.test_settings import DELETE, with_

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

BAD: list[tuple[str, dict[str, Any], set[str]]] = [
    ("retention too short", {"monitoring.retention_days": 0}, {"monitoring.retention_days"}),
    ("scrape interval type", {"monitoring.scrape_interval_seconds": "15s"}, {"monitoring.scrape_interval_seconds"}),
    (
        "evaluation faster than scrape",
        {"monitoring.scrape_interval_seconds": 30, "monitoring.evaluation_interval_seconds": 15},
        {"monitoring.evaluation_interval_seconds"},
    ),
    (
        "webhook not a URL",
        {"monitoring.alertmanager.webhook_url": "hooks.example.com"},
        {"monitoring.alertmanager.webhook_url"},
    ),
    (
        "e-mail without relay and sender",
        {"monitoring.alertmanager.email_to": ["oncall@example.com"]},
        {"monitoring.alertmanager.email_from", "monitoring.alertmanager.smarthost"},
    ),
    (
        "bad addresses",
        {
            "monitoring.alertmanager.email_to": ["oncall@example.com", "not-an-address"],
            "monitoring.alertmanager.email_from": "pgha",
            "monitoring.alertmanager.smarthost": "smtp.example.com",
        },
        {
            "monitoring.alertmanager.email_to[1]",
            "monitoring.alertmanager.email_from",
            "monitoring.alertmanager.smarthost",
        },
    ),
    ("unknown receiver key", {"monitoring.alertmanager.slack": "x"}, {"monitoring.alertmanager.slack"}),
    ("monitoring host overlaps the bastion", {"network.monitoring_host": 5}, {"network.bastion_host"}),
    ("lag threshold", {"monitoring.replication_lag_bytes": 0}, {"monitoring.replication_lag_bytes"}),
]


@pytest.mark.parametrize("changes,paths", [pytest.param(c, p, id=i) for i, c, p in BAD])
def test_bad_monitoring_config_is_rejected_with_its_paths(changes: dict[str, Any], paths: set[str]) -> None:
    with pytest.raises(SettingsError) as exc:
        load("t", with_(changes))
    assert exc.value.paths == paths


def test_complete_email_receiver_is_accepted() -> None:
    s = load(
        "t",
        with_(
            {
                "monitoring.alertmanager.email_to": ["oncall@example.com"],
                "monitoring.alertmanager.email_from": "pgha@example.com",
                "monitoring.alertmanager.smarthost": "smtp.example.com:587",
                "monitoring.alertmanager.webhook_url": "https://hooks.example.com/x",
                "monitoring.enabled": DELETE,
            }
        ),
    )
    assert s.monitoring.enabled is True
    assert s.plan.monitoring.address == "10.42.0.7"


def test_sync_standby_alert_only_in_synchronous_mode() -> None:
    dev, prod = load_stack_file("dev"), load_stack_file("prod")
    assert "PghaSyncStandbyMissing" not in alert_names(dev, Target.vm(dev))
    assert "PghaSyncStandbyMissing" in alert_names(prod, Target.vm(prod))


def test_thresholds_come_from_settings() -> None:
    s = load("t", with_({"monitoring.replication_lag_bytes": 1234567, "monitoring.failover_window_minutes": 7}))
    by_name = {r["alert"]: r for g in rules(s, Target.vm(s))["groups"] for r in g["rules"] if "alert" in r}
    assert "> 1234567" in by_name["PghaReplicationLagBytes"]["expr"]
    assert "[7m]" in by_name["PghaFailover"]["expr"]
    assert "${" not in yaml.safe_dump(rules(s, Target.vm(s)))


def test_lab_target_looks_faster(tmp_path: Path) -> None:
    s = load_stack_file("dev")
    lab = Target.lab(s, tmp_path, "127.85", "pgha", "/opt/pgha/patroni")
    cfg = prometheus_config(s, lab, "ca.crt")
    assert cfg["global"]["scrape_interval"] == "1s"
    assert "[1m]" in next(
        r["expr"] for g in rules(s, lab)["groups"] for r in g["rules"] if r.get("alert") == "PghaFailover"
    )
    assert [t.node for t in scrape_targets(s, lab) if t.job == "node"] == ["monitoring"]


def test_every_alert_has_a_runbook_entry() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    headings = set(re.findall(r"^### (Pgha\w+)$", doc, re.MULTILINE))
    s = load_stack_file("prod")
    names = set(alert_names(s, Target.vm(s)))
    assert names - headings == set(), "alerts without a runbook entry in docs/monitoring.md"
    assert headings - names == set(), "runbook entries for alerts that do not exist"


def test_every_textfile_metric_is_documented() -> None:
    doc = (ROOT / "docs" / "monitoring.md").read_text()
    for name, (file, _, _) in TEXTFILE_METRICS.items():
        assert f"`{name}" in doc, name
        assert f"`{file}`" in doc, name


def test_scrape_targets_cover_every_node() -> None:
    s = load_stack_file("prod")
    t = Target.vm(s)
    by_job: dict[str, set[str]] = {}
    for st in scrape_targets(s, t):
        by_job.setdefault(st.job, set()).add(st.node)
    plan = s.plan
    assert by_job["patroni"] == by_job["postgres"] == {n.name for n in plan.patroni}
    assert by_job["etcd"] == {n.name for n in plan.etcd}
    assert by_job["node"] == {n.name for n in (*plan.cluster, plan.monitoring)}


def test_smtp_password_only_in_the_alertmanager_file_and_it_is_not_world_readable() -> None:
    base = load(
        "t",
        with_(
            {
                "monitoring.alertmanager.email_to": ["oncall@example.com"],
                "monitoring.alertmanager.email_from": "pgha@example.com",
                "monitoring.alertmanager.smarthost": "smtp.example.com:587",
                "monitoring.alertmanager.smtp_username": "pgha",
            }
        ),
    )
    with pytest.raises(ValueError, match="pgha-monitoring:smtpPassword"):
        alertmanager_config(base, None)
    files = monitoring_files(base, Target.vm(base), "CA", smtp_password="pw-xyz")
    holding = {(f.path, f.mode, f.owner, f.secret) for f in files if "pw-xyz" in f.content}
    assert holding == {("/etc/prometheus/alertmanager.yml", "0640", "root:prometheus", True)}


@pytest.mark.parametrize(
    "expr,names",
    [
        ('up{job="etcd"} == 0', {"up"}),
        ("absent(patroni_primary == 1)", {"patroni_primary"}),
        (
            'histogram_quantile(0.99, sum by (instance, le) (rate(etcd_disk_wal_fsync_duration_seconds_bucket{job="etcd"}[5m]))) > 0.5',
            {"etcd_disk_wal_fsync_duration_seconds_bucket"},
        ),
        ("max by (scope) (a) - on (scope) group_right () b > 1e6 and on (scope, name) c == 1", {"a", "b", "c"}),
        ('x{path=~"foo|bar_baz"} offset 5m', {"x"}),
        ("changes(pgha:patroni_timeline:max[10m]) > 0", {"pgha:patroni_timeline:max"}),
        ("time() - 3600", set()),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_grafana_dashboard_is_well_formed() -> None:
    doc = json.loads(DASHBOARD_FILE.read_text())
    assert doc["uid"]
    assert doc["title"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in doc["templating"]["list"]} == {"datasource", "scope"}
    for p in doc["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert promql_metric_names(t["expr"]), f"{p['title']}: reads no metric"
    covered = " ".join(dashboard_exprs().values())
    for needle in (
        "patroni_primary",
        "patroni_postgres_timeline",
        "pgha_replication_replay_lag_seconds",
        "pg_stat_database_xact_commit",
        "pg_stat_activity_count",
        "etcd_server_has_leader",
        "node_filesystem_avail_bytes",
    ):
        assert needle in covered, (
            f"the dashboard shows no {needle} (issue: roles, timeline, lag, TPS, connections, etcd, disk)"
        )


def test_exporter_ports_open_to_the_monitoring_host_only() -> None:
    s = load_stack_file("prod")
    m = s.monitoring
    metrics_ports = {m.etcd_metrics_port, m.node_exporter_port, m.postgres_exporter_port}
    rules_ = [a for a in allow_list(s, s.plan) if a.port in metrics_ports]
    assert {(a.role, a.port) for a in rules_} == {
        ("etcd", m.etcd_metrics_port),
        ("etcd", m.node_exporter_port),
        ("patroni", m.postgres_exporter_port),
        ("patroni", m.node_exporter_port),
    }
    assert {a.sources for a in rules_} == {(s.plan.monitoring.address,)}
    ui = {a.port: a.sources for a in allow_list(s, s.plan) if a.role == "monitoring"}
    assert ui[m.prometheus_port] == ui[m.alertmanager_port] == (s.plan.bastion.address,)


def test_alert_watcher_reports_alerts_in_order_relative_to_the_fault(tmp_path: Path) -> None:
    s = load_stack_file("prod")
    topo = Topology(stack="prod", run_dir=tmp_path, settings=s, target=Target.lab(s, tmp_path, "127.85", "pgha", "/x"))
    w = AlertWatcher(topo, lambda: 0.0)
    down = {"alertname": "PghaPatroniDown", "labels": {"node": "pg1", "severity": "warning"}, "startsAt": "t1"}
    failover = {"alertname": "PghaFailover", "labels": {"severity": "warning"}, "startsAt": "t2"}
    w.record([down], 10.0)
    w.record([down, failover], 12.0)
    w.record([], 13.0)
    w.record([down], 14.0)
    assert w.summary(fault_t=8.0) == [
        {"alertname": "PghaPatroniDown", "node": "pg1", "severity": "warning", "starts_at": "t1",
         "fired_after_fault_s": 2.0, "last_seen_after_fault_s": 6.0},
        {"alertname": "PghaFailover", "node": "", "severity": "warning", "starts_at": "t2",
         "fired_after_fault_s": 4.0, "last_seen_after_fault_s": 4.0},
    ]  # fmt: skip
    assert AlertWatcher(topo, lambda: 0.0).summary(fault_t=None) == []
