"""Render an etcd member: etcd.yml, TLS files, check.json, its unit and #cloud-config."""

from __future__ import annotations

import json

from pgha.plan import Node
from pgha.secrets import EtcdNodeSecrets
from pgha.settings import Settings
from pgha.target import Target

from . import monitoring
from .common import (
    NodeFile,
    RenderedNode,
    check_config,
    cloud_config,
    dump_yaml,
    firewall_file,
    hostname,
    node_script,
    tpl,
)


def render_etcd_node(
    settings: Settings, target: Target, node: Node, secrets: EtcdNodeSecrets, cluster_state: str = "new"
) -> RenderedNode:
    """``cluster_state="existing"`` for a member that replaces one removed from a running
    cluster (``etcdctl member add`` first); ``"new"`` when the cluster is created."""
    if cluster_state not in ("new", "existing"):
        raise ValueError(f"cluster_state must be 'new' or 'existing', got {cluster_state!r}")
    plan, layout = target.plan, target.layout(node)
    e = settings.etcd
    ip = node.address
    tls_dir = f"{layout.etc_dir}/tls"
    owner = f"{layout.etcd_os_user}:{layout.etcd_os_user}"
    ca, crt, key = f"{tls_dir}/ca.crt", f"{tls_dir}/etcd.crt", f"{tls_dir}/etcd.key"
    security = {"cert-file": crt, "key-file": key, "client-cert-auth": True, "trusted-ca-file": ca, "auto-tls": False}
    config = {
        "name": node.name,
        "data-dir": layout.etcd_data_dir,
        "listen-peer-urls": f"https://{ip}:{e.peer_port}",
        "listen-client-urls": f"https://{ip}:{e.client_port}",
        # /metrics and /health only, for Prometheus: no etcd credential on the monitoring host.
        "listen-metrics-urls": f"http://{ip}:{settings.monitoring.etcd_metrics_port}",
        "initial-advertise-peer-urls": f"https://{ip}:{e.peer_port}",
        "advertise-client-urls": f"https://{ip}:{e.client_port}",
        "initial-cluster": ",".join(f"{m.name}=https://{m.address}:{e.peer_port}" for m in plan.etcd),
        "initial-cluster-state": cluster_state,
        "initial-cluster-token": f"pgha-{settings.stack}-{settings.patroni.scope}",
        "heartbeat-interval": e.heartbeat_interval_ms,
        "election-timeout": e.election_timeout_ms,
        "enable-v2": False,
        "enable-grpc-gateway": True,  # Patroni speaks etcd3 over its HTTP gateway (off by default with --config-file)
        "auto-compaction-mode": "periodic",
        "auto-compaction-retention": "1h",
        "quota-backend-bytes": 2 * 1024**3,
        "logger": "zap",
        "log-outputs": ["stderr"],
        "client-transport-security": security,
        "peer-transport-security": security,
    }
    check = check_config(settings, plan, layout, node, {"ca": ca, "cert": crt, "key": key})
    files = [
        NodeFile(
            f"{layout.etc_dir}/etcd.yml", "# etcd member config, rendered by cloud_init/etcd.py\n" + dump_yaml(config)
        ),
        NodeFile(ca, secrets.ca_cert),
        NodeFile(crt, secrets.node.cert),
        NodeFile(key, secrets.node.key, mode="0600", owner=owner, secret=True),
        NodeFile(f"{layout.etc_dir}/check.json", json.dumps(check, indent=2, sort_keys=True) + "\n"),
        node_script(layout, "pgha-check-etcd", "check_etcd.py"),
        NodeFile(
            "/etc/systemd/system/pgha-etcd.service",
            tpl(
                "etcd/pgha-etcd.service.j2",
                user=layout.etcd_os_user,
                config=f"{layout.etc_dir}/etcd.yml",
                data_dir=layout.etcd_data_dir,
            ),
        ),
    ]
    files += monitoring.exporter_files(settings, target, node)
    files += monitoring.cert_expiry_files(target, node, [ca, crt])
    if settings.access.host_firewall:
        files.append(firewall_file(settings, plan, "etcd"))
    runcmd = [
        ["systemctl", "disable", "--now", "etcd.service"],
        ["install", "-d", "-o", layout.etcd_os_user, "-g", layout.etcd_os_user, "-m", "0700", layout.etcd_data_dir],
        ["systemctl", "daemon-reload"],
        ["systemctl", "restart", *monitoring.exporter_units(node)],
        ["systemctl", "enable", "pgha-cert-expiry.timer"],
        ["systemctl", "start", "--no-block", "pgha-cert-expiry.timer"],
        # --no-block: a new member's first start lasts until a quorum of peers is up;
        # cloud-init must not wait for it (the validation does, with its own timeout).
        ["systemctl", "enable", "pgha-etcd.service"],
        ["systemctl", "start", "--no-block", "pgha-etcd.service"],
    ]
    if settings.access.host_firewall:
        runcmd.insert(0, ["systemctl", "enable", "--now", "nftables.service"])
    user_data = cloud_config(
        settings,
        node,
        packages=["etcd-server", "etcd-client", "nftables", "python3", *monitoring.exporter_packages(node)],
        files=files,
        runcmd=runcmd,
        deferred_owners=(layout.etcd_os_user,),
        host_key=secrets.host_key,
    )
    return RenderedNode(node=node, hostname=hostname(settings, node.name), files=tuple(files), user_data=user_data)
