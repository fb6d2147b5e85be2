"""The lab's monitoring: Prometheus, Alertmanager and the exporters as real processes.

The files are the monitoring role's render (``cloud_init/monitoring.py``) on the lab
target; the commands are those the units run on VMs (Debian's prometheus and
prometheus-alertmanager with pgha's paths; the exporters' drop-in ExecStart). One
node-exporter for the machine, one postgres-exporter per Patroni node on that node's
address. Started by the supervisor after the cluster, stopped before it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cloud_init.common import NODE_SCRIPTS
from cloud_init.monitoring import (
    TEXTFILE_METRICS,
    alertmanager_address,
    alertmanager_command,
    exporter_command,
    monitoring_files,
    prometheus_address,
    prometheus_command,
)

from .topology import Topology, run_user

PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"
NODE_EXPORTER = "node-exporter"


def enabled(topo: Topology) -> bool:
    return topo.settings.monitoring.enabled


def exporter_name(node: str) -> str:
    """The supervisor's name for a Patroni node's postgres-exporter."""
    return f"{node}-exporter"


def commands(topo: Topology) -> dict[str, list[str]]:
    """name -> argv of every monitoring process (none when monitoring.enabled is false)."""
    if not enabled(topo):
        return {}
    s, t = topo.settings, topo.target
    mon = topo.plan.monitoring
    out = {
        PROMETHEUS: prometheus_command(s, t),
        ALERTMANAGER: alertmanager_command(s, t),
        NODE_EXPORTER: exporter_command(s, t, mon, "node"),
    }
    for n in topo.plan.patroni:
        out[exporter_name(n.name)] = exporter_command(s, t, n, "postgres")
    return out


def names(topo: Topology) -> list[str]:
    return list(commands(topo))


def ports(topo: Topology) -> list[tuple[str, int]]:
    """Addresses and ports the monitoring processes bind (for ``lab down``'s check)."""
    if not enabled(topo):
        return []
    m = topo.settings.monitoring
    mon = topo.plan.monitoring.address
    out = [(mon, m.prometheus_port), (mon, m.alertmanager_port), (mon, m.node_exporter_port)]
    out += [(ip, m.postgres_exporter_port) for ip in topo.plan.addresses("patroni")]
    out += [(ip, m.etcd_metrics_port) for ip in topo.plan.addresses("etcd")]
    return out


def write_files(topo: Topology, ca_pem: str) -> None:
    """The monitoring host's rendered files, its data and textfile directories, and the
    certificate-expiry textfile of the lab's node certificates."""
    if not enabled(topo):
        return
    user = run_user()
    place = topo.target.monitoring
    dirs = (place.etc_dir, f"{place.etc_dir}/rules", f"{place.etc_dir}/tls", place.data_dir)
    for d in (*dirs, place.alertmanager_data_dir, place.textfile_dir):
        Path(d).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(d, user, user)
    for f in monitoring_files(topo.settings, topo.target, ca_pem):
        p = Path(f.path)
        p.write_text(f.content)
        os.chmod(p, int(f.mode, 8))
    write_certificate_expiry(topo)


def write_certificate_expiry(topo: Topology) -> None:
    """Run the node script pgha-cert-expiry on the lab's certificates (on a VM: a timer)."""
    certs = sorted(str(p) for p in topo.run_dir.glob("*/etc/tls/*.crt"))
    out = Path(topo.target.monitoring.textfile_dir) / TEXTFILE_METRICS["pgha_certificate_expiry_timestamp_seconds"][0]
    subprocess.run(
        [sys.executable, str(NODE_SCRIPTS / "cert_expiry.py"), "--out", str(out), *certs],
        check=True,
        capture_output=True,
    )


# ---------------------------------------------------------------- reading it back


def _get(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def prometheus_url(topo: Topology) -> str:
    return f"http://{prometheus_address(topo.settings, topo.target)}"


def alertmanager_url(topo: Topology) -> str:
    return f"http://{alertmanager_address(topo.settings, topo.target)}"


def targets(topo: Topology) -> list[dict[str, Any]]:
    """Prometheus' active targets: job, node, health ("up"/"down"/"unknown"), lastError."""
    data = _get(f"{prometheus_url(topo)}/api/v1/targets?state=active")["data"]["activeTargets"]
    return [
        {
            "job": t["labels"].get("job"),
            "node": t["labels"].get("node"),
            "health": t["health"],
            "error": t.get("lastError", ""),
        }
        for t in data
    ]


def metric_names(topo: Topology) -> set[str]:
    """Every metric name Prometheus has ingested from the lab's endpoints."""
    names: list[str] = _get(f"{prometheus_url(topo)}/api/v1/label/__name__/values")["data"]
    return set(names)


def query(topo: Topology, expr: str) -> list[tuple[dict[str, str], float]]:
    """An instant PromQL query: (labels, value) per series."""
    url = f"{prometheus_url(topo)}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return [(r["metric"], float(r["value"][1])) for r in _get(url)["data"]["result"]]


def active_alerts(topo: Topology) -> list[dict[str, Any]]:
    """Alertmanager's active alerts (API v2): name, labels, startsAt, state."""
    data = _get(f"{alertmanager_url(topo)}/api/v2/alerts?active=true&silenced=false&inhibited=true")
    return [
        {
            "alertname": a["labels"].get("alertname"),
            "labels": a["labels"],
            "startsAt": a["startsAt"],
            "state": a["status"]["state"],
        }
        for a in data
    ]


def status_lines(topo: Topology) -> list[str]:
    """The monitoring section of ``lab status``."""
    if not enabled(topo):
        return ["monitoring: off (monitoring.enabled: false)"]
    out = ["monitoring"]
    try:
        ts = targets(topo)
        up = sum(1 for t in ts if t["health"] == "up")
        down = sorted(f"{t['job']}/{t['node']}" for t in ts if t["health"] != "up")
        out.append(
            f"  Prometheus    {prometheus_url(topo)}  targets up {up}/{len(ts)}"
            + (f"; not up: {', '.join(down)}" if down else "")
        )
    except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
        out.append(f"  Prometheus    {prometheus_url(topo)}  UNREACHABLE ({e})")
    try:
        alerts = active_alerts(topo)
        firing = sorted(f"{a['alertname']}({a['labels'].get('node', '')})" for a in alerts)
        out.append(f"  Alertmanager  {alertmanager_url(topo)}  alerts: {', '.join(firing) if firing else 'none'}")
    except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
        out.append(f"  Alertmanager  {alertmanager_url(topo)}  UNREACHABLE ({e})")
    return out
