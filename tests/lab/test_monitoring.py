"""Monitoring on a real lab (prod stack: synchronous mode): Prometheus scrapes the lab's
real endpoints, Alertmanager receives what its rules fire. Asserts that every metric a
rule reads exists on some endpoint, that a healthy lab raises no alert, and that the
faults the rules exist for fire them (and resolve). Timings: bench/monitoring.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud_init.monitoring import (
    MONITOR_USER,
    TEXTFILE_METRICS,
    dashboard_exprs,
    promql_metric_names,
    rule_metric_names,
)
from lab import control, monitoring, observe
from lab.drills import faults
from lab.drills.run import run_drill
from lab.topology import Topology

from .conftest import lab_fixture, wait_for

pytestmark = pytest.mark.lab

monitor_lab = lab_fixture("monitor", "prod", scope="module")

#: Textfile metrics this lab does not produce, with why (everything else must be exposed). This
#: lab's stack has no backups; the backup lab checks those in Prometheus (test_backup.py).
NOT_IN_THE_LAB = {
    name: why
    for name, (_, why, _) in TEXTFILE_METRICS.items()
    if name in ("pgha_backup_last_success_timestamp_seconds", "pgha_archive_failing")
}


def all_targets_up(topo: Topology) -> list[dict[str, Any]] | None:
    ts = monitoring.targets(topo)
    return ts if ts and all(t["health"] == "up" for t in ts) else None


def firing(topo: Topology, alertname: str, **labels: str) -> list[dict[str, Any]]:
    return [
        a
        for a in monitoring.active_alerts(topo)
        if a["alertname"] == alertname and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def test_every_target_is_scraped_and_every_rule_and_dashboard_metric_exists(monitor_lab: Topology) -> None:
    ts = wait_for(lambda: all_targets_up(monitor_lab), 60, "every Prometheus target up")
    jobs = {t["job"] for t in ts}
    assert jobs == {"patroni", "etcd", "postgres", "node", "prometheus", "alertmanager"}
    # pgha_replication_replay_lag_seconds needs streaming replicas; one scrape after healthy is enough.
    wait_for(lambda: "pgha_replication_replay_lag_seconds" in monitoring.metric_names(monitor_lab), 30, "lag metric")
    exposed = monitoring.metric_names(monitor_lab)
    t = monitor_lab
    missing = {
        rule: sorted(names - exposed - set(NOT_IN_THE_LAB))
        for rule, names in rule_metric_names(t.settings, t.target).items()
        if names - exposed - set(NOT_IN_THE_LAB)
    }
    assert missing == {}, "rules read metrics no lab endpoint exposes"
    dashboard = {
        panel: sorted(promql_metric_names(expr) - exposed)
        for panel, expr in dashboard_exprs().items()
        if promql_metric_names(expr) - exposed
    }
    assert dashboard == {}, "dashboard panels read metrics no lab endpoint exposes"


def test_the_exporter_role_reads_statistics_only_and_only_over_its_socket(monitor_lab: Topology) -> None:
    t = monitor_lab
    lead = observe.leader(t)
    assert lead
    lay = t.layout(lead)
    psql = [
        f"{lay.pg_bin_dir}/psql",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        lay.socket_dir,
        "-p",
        str(t.settings.patroni.port),
        "-U",
        MONITOR_USER,
        "-d",
        "postgres",
        "-Atc",
    ]
    ok = observe.run_as_user([*psql, "select count(*) >= 2 from pg_stat_replication"])
    assert (ok.returncode, ok.stdout.strip()) == (0, "t"), ok.stderr
    for sql in (
        "create table intruder (x int)",
        "create role intruder login",
        "select pg_read_file('postgresql.conf')",
    ):
        p = observe.run_as_user([*psql, sql])
        assert p.returncode != 0, sql
        assert "permission denied" in p.stderr, p.stderr
    # Over the network, even with the CA and TLS: no pg_hba line lets it in (no password exists).
    dsn = (
        t.node_dsn(lead)
        .replace(f"user={t.settings.patroni.app_user}", f"user={MONITOR_USER}")
        .replace(f"dbname={t.settings.patroni.app_database}", "dbname=postgres")
    )
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry|pg_hba\.conf rejects"):
        psycopg.connect(dsn, password="anything")


def test_a_healthy_lab_raises_no_alert(monitor_lab: Topology) -> None:
    wait_for(lambda: all_targets_up(monitor_lab), 60, "every Prometheus target up")
    seen: set[str] = set()
    deadline = time.monotonic() + 45  # longer than every `for:` of the quick alerts
    while time.monotonic() < deadline:
        seen |= {f"{a['alertname']}{a['labels']}" for a in monitoring.active_alerts(monitor_lab)}
        time.sleep(1)
    assert seen == set()
    status = observe.status_table(monitor_lab)  # what `python -m lab status` prints
    n = len(monitoring.targets(monitor_lab))
    assert f"targets up {n}/{n}" in status, status
    assert "alerts: none" in status, status


def test_a_stopped_replica_fires_patroni_down_then_resolves(monitor_lab: Topology) -> None:
    t = monitor_lab
    lead = observe.leader(t)
    replica = next(n for n in t.pg_names if n != lead)
    faults.kill_node(t, replica)
    try:
        wait_for(lambda: firing(t, "PghaPatroniDown", node=replica), 90, f"PghaPatroniDown for {replica}")
        assert firing(t, "PghaNoPrimary") == []
    finally:
        control.request_start(t, replica)
    observe.wait_healthy(t, timeout=120)
    wait_for(lambda: not firing(t, "PghaPatroniDown", node=replica), 90, "PghaPatroniDown resolved")


def test_one_etcd_member_down_fires_its_alert_then_resolves(monitor_lab: Topology) -> None:
    t = monitor_lab
    member = t.etcd_names[-1]
    control.signal_node(t, member, 9)
    try:
        wait_for(lambda: firing(t, "PghaEtcdMemberDown", node=member), 90, f"PghaEtcdMemberDown for {member}")
    finally:
        control.request_start(t, member)
    observe.wait_healthy(t, timeout=120)
    wait_for(lambda: not firing(t, "PghaEtcdMemberDown", node=member), 90, "PghaEtcdMemberDown resolved")


def test_primary_node_death_drill_records_the_failover_alert_which_then_resolves(monitor_lab: Topology) -> None:
    """The node-death drill (lab/drills): SIGKILL the primary under write load, restart it.
    The drill records, from Alertmanager's API, the failover notice firing after the fault."""
    t = monitor_lab
    r = run_drill(t, "node-death", t.run_dir / "drills")
    assert r["error"] is None, r["error"]
    assert r["failover"]
    assert r["healthy_after"]
    fired = {a["alertname"]: a for a in r["alerts"]}
    assert "PghaFailover" in fired, r["alerts"]
    assert fired["PghaFailover"]["fired_after_fault_s"] > 0
    assert "PghaMultiplePrimaries" not in fired
    assert Path(r["png"]).stat().st_size > 0  # the timeline, annotated with the alerts (lab/drills/report.py)
    # The notice lasts the lab's failover window (60 s) after the timeline changed.
    wait_for(lambda: not firing(t, "PghaFailover"), 150, "PghaFailover resolved")
