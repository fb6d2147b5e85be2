"""Render the monitoring role: Prometheus' config, pgha's alert rules and Alertmanager's config.

The alert rules are data (``templates/monitoring/alerts.yml``); thresholds come from
``monitoring.*`` settings, the pace (scrape and evaluation intervals, the failover
notice's window) from the target (the lab looks faster). Every structured file is built
as a dict and dumped. Scrape targets are computed once, here, from the address plan:
the monitoring host's Prometheus uses them, and so can a team's own Prometheus (the
``scrape_targets`` stack output).

Metric names are those of the versions shipped: Patroni 4 (``patroni_primary``), etcd 3.4
(its plain-HTTP metrics listener, no ``etcd_http_*``), prometheus-postgres-exporter 0.11
with pgha's extra queries (:data:`EXPORTER_QUERIES`), prometheus-node-exporter 1.5 with
its textfile collector for what no exporter knows (:data:`TEXTFILE_METRICS`).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pgha.plan import Node
from pgha.secrets import SshHostKey
from pgha.settings import Settings
from pgha.target import Layout, Target

from .common import NodeFile, RenderedNode, cloud_config, dump_yaml, firewall_file, hostname, node_script, tpl

ALERTS_FILE = Path(__file__).parent / "templates" / "monitoring" / "alerts.yml"

#: Role allowed to read statistics only (pg_monitor); the exporters log in as it over the
#: local socket with peer authentication: no password exists, so none can leak.
MONITOR_USER = "pgha_monitor"

#: Metrics written to node-exporter's textfile directory by programs on the nodes, not by an
#: exporter: name -> (file in the textfile directory, who writes it, meaning).
TEXTFILE_METRICS: dict[str, tuple[str, str, str]] = {
    "pgha_backup_last_success_timestamp_seconds": (
        "pgha-backup.prom",
        "pgha-backup (node_scripts/backup.py), after every job: the watch every 5 minutes, on every Patroni node",
        "Unix time the repository's last backup finished (label: type=full|diff|incr); no sample without one",
    ),
    "pgha_archive_failing": (
        "pgha-backup.prom",
        "pgha-backup (node_scripts/backup.py), after every job: the watch every 5 minutes, on every Patroni node",
        "1 while WAL archiving fails (on the leader: pg_stat_archiver), else 0",
    ),
    "pgha_certificate_expiry_timestamp_seconds": (
        "pgha-certificates.prom",
        "pgha-cert-expiry (node_scripts/cert_expiry.py), hourly",
        "Unix time a TLS certificate expires (label: path)",
    ),
}

#: prometheus-postgres-exporter's extra queries (--extend.query-path): metric <query>_<column>.
EXPORTER_QUERIES: dict[str, Any] = {
    "pgha_replication": {
        "query": (
            "SELECT application_name, COALESCE(EXTRACT(EPOCH FROM replay_lag), 0) AS replay_lag_seconds"
            " FROM pg_stat_replication"
        ),
        "metrics": [
            {"application_name": {"usage": "LABEL", "description": "standby's name (the Patroni member)"}},
            {
                "replay_lag_seconds": {
                    "usage": "GAUGE",
                    "description": "time between flushing WAL on the primary and its replay on the standby",
                }
            },
        ],
    },
    "pgha_wal": {
        "query": "SELECT COALESCE(sum(size), 0) AS size_bytes FROM pg_ls_waldir()",
        "metrics": [{"size_bytes": {"usage": "GAUGE", "description": "size of pg_wal"}}],
    },
}


@dataclass(frozen=True)
class ScrapeTarget:
    job: str  #: patroni, etcd, postgres, node, prometheus, alertmanager
    node: str  #: node name (label ``node``)
    address: str  #: host:port
    scheme: str  #: http or https (https: checked against the cluster CA)


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def pace(settings: Settings, target: Target) -> dict[str, int]:
    """Scrape and evaluation intervals and the failover notice's window, in seconds."""
    m, place = settings.monitoring, target.monitoring
    return {
        "scrape": place.scrape_interval_seconds or m.scrape_interval_seconds,
        "evaluation": place.evaluation_interval_seconds or m.evaluation_interval_seconds,
        "failover_window": place.failover_window_seconds or m.failover_window_minutes * 60,
    }


def prometheus_address(settings: Settings, target: Target) -> str:
    return f"{target.plan.monitoring.address}:{settings.monitoring.prometheus_port}"


def alertmanager_address(settings: Settings, target: Target) -> str:
    return f"{target.plan.monitoring.address}:{settings.monitoring.alertmanager_port}"


def node_exporter_nodes(target: Target) -> list[Node]:
    plan = target.plan
    every = [*plan.cluster, plan.monitoring]
    only = target.monitoring.node_exporter_on
    return every if only is None else [n for n in every if n.name in only]


def scrape_targets(settings: Settings, target: Target) -> list[ScrapeTarget]:
    """Every endpoint a Prometheus scrapes, in job order."""
    plan, m = target.plan, settings.monitoring
    out = [ScrapeTarget("patroni", n.name, f"{n.address}:{settings.patroni.rest_port}", "https") for n in plan.patroni]
    out += [ScrapeTarget("etcd", n.name, f"{n.address}:{m.etcd_metrics_port}", "http") for n in plan.etcd]
    out += [ScrapeTarget("postgres", n.name, f"{n.address}:{m.postgres_exporter_port}", "http") for n in plan.patroni]
    out += [
        ScrapeTarget("node", n.name, f"{n.address}:{m.node_exporter_port}", "http") for n in node_exporter_nodes(target)
    ]
    mon = plan.monitoring.name
    out.append(ScrapeTarget("prometheus", mon, prometheus_address(settings, target), "http"))
    out.append(ScrapeTarget("alertmanager", mon, alertmanager_address(settings, target), "http"))
    return out


def thresholds(settings: Settings, target: Target) -> dict[str, str]:
    """The values the rules' ``${...}`` placeholders take."""
    m = settings.monitoring
    return {
        "failover_window": _duration(pace(settings, target)["failover_window"]),
        "lag_bytes": str(m.replication_lag_bytes),
        "lag_seconds": str(m.replication_lag_seconds),
        "sync_standby_severity": "critical" if settings.patroni.synchronous_mode_strict else "warning",
        "disk_free_percent": str(m.disk_free_percent),
        "disk_full_seconds": str(m.disk_full_hours * 3600),
        "disk_full_hours": str(m.disk_full_hours),
        "wal_size_bytes": str(m.wal_size_mb * 1024 * 1024),
        "backup_max_age_seconds": str(m.backup_max_age_hours * 3600),
        "backup_max_age_hours": str(m.backup_max_age_hours),
        "certificate_seconds": str(m.certificate_days * 86400),
        "certificate_days": str(m.certificate_days),
    }


def load_alerts() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ALERTS_FILE.read_text())
    return doc


def rules(settings: Settings, target: Target) -> dict[str, Any]:
    """Prometheus' rules file: pgha's recording rules, then its alerts by group."""
    data = load_alerts()
    values = thresholds(settings, target)
    flags = {"synchronous_mode": settings.patroni.synchronous_mode}

    def sub(text: str) -> str:
        return string.Template(text).substitute(values)

    groups: list[dict[str, Any]] = [
        {"name": "pgha-recording", "rules": [{"record": r["record"], "expr": r["expr"]} for r in data["recording"]]}
    ]
    for g in data["groups"]:
        out = []
        for a in g["alerts"]:
            if "only_if" in a and not flags[a["only_if"]]:
                continue
            out.append(
                {
                    "alert": a["alert"],
                    "expr": sub(a["expr"]),
                    "for": sub(a["for"]),
                    "labels": {"severity": sub(a["severity"])},
                    "annotations": {
                        "summary": sub(a["summary"]),
                        "description": "{{ $labels.node }} {{ $labels.instance }}: " + sub(a["summary"]),
                        "runbook": f"docs/monitoring.md#{a['alert'].lower()}",
                    },
                }
            )
        groups.append({"name": g["name"], "rules": out})
    return {"groups": groups}


def alert_names(settings: Settings, target: Target) -> list[str]:
    return [r["alert"] for g in rules(settings, target)["groups"] for r in g["rules"] if "alert" in r]


def prometheus_config(settings: Settings, target: Target, ca_file: str) -> dict[str, Any]:
    p = pace(settings, target)
    etc = target.monitoring.etc_dir
    jobs: dict[str, list[ScrapeTarget]] = {}
    for t in scrape_targets(settings, target):
        jobs.setdefault(t.job, []).append(t)
    scrape_configs = []
    for job, targets in jobs.items():
        cfg: dict[str, Any] = {
            "job_name": job,
            "scheme": targets[0].scheme,
            "static_configs": [{"targets": [t.address], "labels": {"node": t.node}} for t in targets],
        }
        if targets[0].scheme == "https":
            cfg["tls_config"] = {"ca_file": ca_file}
        scrape_configs.append(cfg)
    return {
        "global": {
            "scrape_interval": _duration(p["scrape"]),
            "scrape_timeout": _duration(max(1, min(10, p["scrape"]))),
            "evaluation_interval": _duration(p["evaluation"]),
            "external_labels": {"pgha_stack": settings.stack, "scope": settings.patroni.scope},
        },
        "rule_files": [f"{etc}/rules/*.rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_address(settings, target)]}]}]},
        "scrape_configs": scrape_configs,
    }


def alertmanager_config(settings: Settings, smtp_password: str | None) -> dict[str, Any]:
    """Receivers from monitoring.alertmanager.*: a webhook and/or e-mail; ``none`` when neither
    (alerts still show in Alertmanager's API and UI)."""
    am = settings.monitoring.alertmanager
    receiver: dict[str, Any] = {"name": "pgha"}
    if am.webhook_url:
        receiver["webhook_configs"] = [{"url": am.webhook_url, "send_resolved": True}]
    if am.email_to:
        email: dict[str, Any] = {
            "to": ", ".join(am.email_to),
            "from": am.email_from,
            "smarthost": am.smarthost,
            "send_resolved": True,
            "require_tls": True,
        }
        if am.smtp_username:
            email["auth_username"] = am.smtp_username
            if smtp_password is None:
                raise ValueError(
                    "monitoring.alertmanager.smtp_username is set but no SMTP password was given"
                    " (pulumi config set --secret pgha-monitoring:smtpPassword ...)"
                )
            email["auth_password"] = smtp_password
        receiver["email_configs"] = [email]
    return {
        "route": {
            "receiver": "pgha",
            "group_by": ["alertname", "scope"],
            "group_wait": "10s",
            "group_interval": "1m",
            "repeat_interval": f"{am.repeat_interval_hours}h",
        },
        # A firing critical alert mutes the warnings of the same cluster it explains.
        "inhibit_rules": [
            {
                "source_matchers": ["alertname = PghaNoPrimary"],
                "target_matchers": ["alertname =~ PghaReplicaNotStreaming|PghaSyncStandbyMissing"],
                "equal": ["scope"],
            }
        ],
        "receivers": [receiver],
    }


def exporter_queries() -> str:
    return "# prometheus-postgres-exporter extra queries, rendered by cloud_init/monitoring.py\n" + dump_yaml(
        EXPORTER_QUERIES
    )


def monitoring_files(
    settings: Settings, target: Target, ca_cert: str, smtp_password: str | None = None
) -> list[NodeFile]:
    """The monitoring host's config files (Alertmanager's readable by root and its group
    only when it holds the SMTP password)."""
    etc = target.monitoring.etc_dir
    ca_file = f"{etc}/tls/ca.crt"
    head = "# {what}, rendered by cloud_init/monitoring.py\n"
    return [
        NodeFile(
            f"{etc}/prometheus.yml",
            head.format(what="Prometheus config") + dump_yaml(prometheus_config(settings, target, ca_file)),
        ),
        NodeFile(
            f"{etc}/rules/pgha.rules.yml",
            head.format(what="pgha alert rules (data: templates/monitoring/alerts.yml)")
            + dump_yaml(rules(settings, target)),
        ),
        NodeFile(
            f"{etc}/alertmanager.yml",
            head.format(what="Alertmanager config") + dump_yaml(alertmanager_config(settings, smtp_password)),
            mode="0640" if smtp_password else "0644",
            owner="root:prometheus" if smtp_password else "root:root",
            secret=bool(smtp_password),
        ),
        NodeFile(ca_file, ca_cert),
    ]


def prometheus_command(settings: Settings, target: Target) -> list[str]:
    place = target.monitoring
    return [
        "/usr/bin/prometheus",
        f"--config.file={place.etc_dir}/prometheus.yml",
        f"--storage.tsdb.path={place.data_dir}",
        f"--storage.tsdb.retention.time={settings.monitoring.retention_days}d",
        f"--web.listen-address={prometheus_address(settings, target)}",
    ]


def alertmanager_command(settings: Settings, target: Target) -> list[str]:
    place = target.monitoring
    return [
        "/usr/bin/prometheus-alertmanager",
        f"--config.file={place.etc_dir}/alertmanager.yml",
        f"--storage.path={place.alertmanager_data_dir}",
        f"--web.listen-address={alertmanager_address(settings, target)}",
        "--cluster.listen-address=",  # one Alertmanager: no gossip port
    ]


# ---------------------------------------------------------------- on every node


def postgres_exporter_dsn(layout: Layout, settings: Settings) -> str:
    """The exporter's connection: the local socket, peer-authenticated as MONITOR_USER."""
    return f"host={layout.socket_dir} port={settings.patroni.port} user={MONITOR_USER} dbname=postgres sslmode=disable"


def postgres_exporter_args(settings: Settings, node: Node, queries: str) -> list[str]:
    return [
        f"--web.listen-address={node.address}:{settings.monitoring.postgres_exporter_port}",
        f"--extend.query-path={queries}",
    ]


def node_exporter_args(settings: Settings, target: Target, node: Node) -> list[str]:
    return [
        f"--web.listen-address={node.address}:{settings.monitoring.node_exporter_port}",
        f"--collector.textfile.directory={target.monitoring.textfile_dir}",
    ]


def queries_path(layout: Layout) -> str:
    return f"{layout.etc_dir}/postgres-exporter-queries.yml"


def exporter_command(settings: Settings, target: Target, node: Node, which: str) -> list[str]:
    """argv of a node's exporter (``node`` or ``postgres``): the unit's ExecStart, and the lab's command."""
    if which == "node":
        return ["/usr/bin/prometheus-node-exporter", *node_exporter_args(settings, target, node)]
    layout = target.layout(node)
    return [
        "/usr/bin/env",
        f"DATA_SOURCE_NAME={postgres_exporter_dsn(layout, settings)}",
        "/usr/bin/prometheus-postgres-exporter",
        *postgres_exporter_args(settings, node, queries_path(layout)),
    ]


def _drop_in(unit: str, argv: list[str]) -> NodeFile:
    # Debian's units take their arguments from /etc/default (a conffile the package would
    # ask about); a drop-in replaces ExecStart instead, quoting the DSN's spaces.
    quoted = " ".join(f'"{a}"' if " " in a else a for a in argv)
    return NodeFile(
        f"/etc/systemd/system/{unit}.service.d/pgha.conf",
        f"# {unit} as pgha runs it, rendered by cloud_init/monitoring.py\n[Service]\nExecStart=\nExecStart={quoted}\n",
    )


def exporter_files(settings: Settings, target: Target, node: Node) -> list[NodeFile]:
    """A node's exporters: node-exporter everywhere, postgres-exporter (and its extra
    queries) on Patroni nodes, both listening on the node's private address."""
    files = [_drop_in("prometheus-node-exporter", exporter_command(settings, target, node, "node"))]
    if node.role == "patroni":
        files += [
            NodeFile(queries_path(target.layout(node)), exporter_queries()),
            _drop_in("prometheus-postgres-exporter", exporter_command(settings, target, node, "postgres")),
        ]
    return files


def exporter_packages(node: Node) -> list[str]:
    return ["prometheus-node-exporter"] + (["prometheus-postgres-exporter"] if node.role == "patroni" else [])


def exporter_units(node: Node) -> list[str]:
    return ["prometheus-node-exporter.service"] + (
        ["prometheus-postgres-exporter.service"] if node.role == "patroni" else []
    )


# ---------------------------------------------------------------- metric names an expression reads

_PROMQL_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, label names,
    strings, durations and numbers left out). Good enough for pgha's own expressions,
    which the lab test checks against what the real endpoints expose."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        before = s[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":
            continue  # 1e6, 0.5e3
        if s[m.end() :].lstrip().startswith("(") or m.group().lower() in _PROMQL_KEYWORDS:
            continue
        names.add(m.group())
    return names


def rule_metric_names(settings: Settings, target: Target) -> dict[str, set[str]]:
    """Rule (alert or record name) -> metric names its expression reads; recording rules'
    own outputs are not counted as metrics to find on an endpoint."""
    doc = rules(settings, target)
    recorded = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    return {
        r.get("alert") or r["record"]: promql_metric_names(r["expr"]) - recorded
        for g in doc["groups"]
        for r in g["rules"]
    }


# ---------------------------------------------------------------- certificate expiry on every node


def cert_expiry_command(target: Target, layout: Layout, certs: list[str]) -> list[str]:
    out = f"{target.monitoring.textfile_dir}/{TEXTFILE_METRICS['pgha_certificate_expiry_timestamp_seconds'][0]}"
    return [layout.python, f"{layout.bin_dir}/pgha-cert-expiry", "--out", out, *certs]


def cert_expiry_files(target: Target, node: Node, certs: list[str]) -> list[NodeFile]:
    """pgha-cert-expiry and its hourly timer: the node's certificates' expiry, as a textfile metric."""
    layout = target.layout(node)
    command = " ".join(cert_expiry_command(target, layout, certs))
    return [
        node_script(layout, "pgha-cert-expiry", "cert_expiry.py"),
        NodeFile(
            "/etc/systemd/system/pgha-cert-expiry.service",
            tpl("monitoring/pgha-cert-expiry.service.j2", command=command),
        ),
        NodeFile("/etc/systemd/system/pgha-cert-expiry.timer", tpl("monitoring/pgha-cert-expiry.timer.j2")),
    ]


# ---------------------------------------------------------------- the monitoring host


def render_monitoring_node(
    settings: Settings,
    target: Target,
    ca_cert: str,
    smtp_password: str | None = None,
    host_key: SshHostKey | None = None,
) -> RenderedNode:
    """The monitoring host: Prometheus, Alertmanager and node-exporter from Debian's
    packages, run with pgha's arguments (unit drop-ins), configs checked by promtool and
    amtool on the host before the services restart."""
    node = target.plan.monitoring
    place = target.monitoring
    files = monitoring_files(settings, target, ca_cert, smtp_password)
    files += [
        _drop_in("prometheus", prometheus_command(settings, target)),
        _drop_in("prometheus-alertmanager", alertmanager_command(settings, target)),
        _drop_in("prometheus-node-exporter", exporter_command(settings, target, node, "node")),
    ]
    runcmd: list[list[str] | str] = []
    if settings.access.host_firewall:
        files.append(firewall_file(settings, target.plan, "monitoring"))
        runcmd.append(["systemctl", "enable", "--now", "nftables.service"])
    runcmd += [
        ["promtool", "check", "config", f"{place.etc_dir}/prometheus.yml"],
        ["amtool", "check-config", f"{place.etc_dir}/alertmanager.yml"],
        ["systemctl", "daemon-reload"],
        [
            "systemctl",
            "restart",
            "prometheus.service",
            "prometheus-alertmanager.service",
            "prometheus-node-exporter.service",
        ],
    ]
    user_data = cloud_config(
        settings,
        node,
        packages=["prometheus", "prometheus-alertmanager", "prometheus-node-exporter", "nftables"],
        files=files,
        runcmd=runcmd,
        # alertmanager.yml belongs to the prometheus group, created by the packages: write
        # every file after they install (the services restart on them in runcmd).
        deferred_owners=("root",),
        host_key=host_key,
    )
    return RenderedNode(node=node, hostname=hostname(settings, node.name), files=tuple(files), user_data=user_data)


# ---------------------------------------------------------------- the Grafana dashboard

DASHBOARD_FILE = Path(__file__).parent / "templates" / "monitoring" / "grafana-dashboard.json"


def dashboard_exprs() -> dict[str, str]:
    """Panel title/refId -> PromQL of the Grafana dashboard, dashboard variables replaced
    by what they select at most (``$scope`` -> any)."""
    doc = json.loads(DASHBOARD_FILE.read_text())
    return {
        f"{p['title']}/{t['refId']}": t["expr"].replace("$scope", ".*")
        for p in doc["panels"]
        for t in p.get("targets", [])
    }
