"""MonitoringHost: one VM running Prometheus and Alertmanager (``monitoring.enabled``).

A fixed-IP port (``plan.monitoring``, like the bastion's address) in the monitoring
security group, no public IP: operators reach the UIs through the bastion
(``ssh -L 9090:<address>:9090 debian@<bastion>``). Its user-data is
``cloud_init.monitoring.render_monitoring_node``, a secret (it holds the host key and,
with e-mail receivers, the SMTP password). Rolled like a node (``PGHA_ROLL=monitoring``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_openstack as openstack

from cloud_init.common import hostname, nova_user_data
from cloud_init.monitoring import (
    alertmanager_address,
    prometheus_address,
    render_monitoring_node,
    scrape_targets,
)
from pgha.secrets import SshHostKey
from pgha.settings import Settings
from pgha.target import Target

from .nodes import Placement, fixed_port, image_id, instance_opts, public_key, ssh_host_key, with_deploy_key

TYPE = "pgha:index:MonitoringHost"


@dataclass(frozen=True)
class MonitoringHostArgs:
    settings: Settings
    """Validated stack settings (scrape targets from the plan, thresholds from monitoring.*)."""
    placement: Placement
    """Network, the monitoring security group, keypair and boot dependencies."""
    ca_cert: pulumi.Input[str]
    """PEM of the cluster CA (Prometheus checks Patroni's REST API with it)."""
    smtp_password: pulumi.Input[str] | None = None
    """Alertmanager's SMTP password (secret ``pgha-monitoring:smtpPassword``), only with an SMTP login."""


def scrape_targets_output(settings: Settings) -> list[dict[str, str]]:
    """The ``scrape_targets`` stack output: every endpoint, for a team's own Prometheus."""
    return [
        {"job": t.job, "node": t.node, "address": t.address, "scheme": t.scheme}
        for t in scrape_targets(settings, Target.vm(settings))
    ]


class MonitoringHost(pulumi.ComponentResource):
    """Prometheus + Alertmanager on ``plan.monitoring``."""

    address: str
    """Private address of the monitoring host."""
    prometheus_url: str
    """Prometheus' URL on the private network."""
    alertmanager_url: str
    """Alertmanager's URL on the private network."""
    instance: openstack.compute.Instance

    def __init__(self, name: str, args: MonitoringHostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        s = args.settings
        node = s.plan.monitoring
        region = s.network.region
        target = Target.vm(s)
        self.address = node.address
        self.prometheus_url = f"http://{prometheus_address(s, target)}"
        self.alertmanager_url = f"http://{alertmanager_address(s, target)}"
        res = f"{name}-host"
        port = fixed_port(self, res, hostname(s, node.name), node.address, args.placement, region)
        host_key = ssh_host_key(self, res)
        self.host_key = public_key(host_key)
        inputs: dict[str, Any] = {
            "ca": args.ca_cert,
            "host_private": host_key.private_key_openssh,
            "host_public": self.host_key,
            "deploy_key": args.placement.deploy_key,
        }
        if args.smtp_password is not None:
            inputs["smtp"] = args.smtp_password
        self.user_data: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(**inputs).apply(functools.partial(_user_data, s))
        )
        self.instance = openstack.compute.Instance(
            res,
            name=hostname(s, node.name),
            region=region,
            flavor_name=s.monitoring.flavor,
            image_id=image_id(self, s.etcd.image, region),  # Debian 12, as the etcd members (and the bastion)
            user_data=self.user_data,
            stop_before_destroy=True,  # Prometheus flushes its TSDB head on a clean stop
            networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
            metadata={"pgha-stack": s.stack, "pgha-role": "monitoring"},
            opts=instance_opts(self, args.placement, node.name),
        )
        self.register_outputs(
            {
                "address": self.address,
                "prometheus_url": self.prometheus_url,
                "alertmanager_url": self.alertmanager_url,
                "instance_id": self.instance.id,
            }
        )


def _user_data(settings: Settings, values: dict[str, str]) -> str:
    """Runs inside Output.apply, once the CA, host key, deploy key and SMTP password are known."""
    node = render_monitoring_node(
        with_deploy_key(settings, values["deploy_key"]),
        Target.vm(settings),
        values["ca"],
        smtp_password=values.get("smtp"),
        host_key=SshHostKey(private=values["host_private"], public=values["host_public"]),
    )
    return nova_user_data(node.user_data)
