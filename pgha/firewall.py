"""Who may reach which node: THE allow-list.

One function, two consumers: the renderer writes it into each node's nftables host
firewall (``cloud_init/common.py``), and ``components/access.py`` turns it into
OpenStack security group rules. OVH enforces security groups on vRack ports (port
security is on for its private networks), so a flow needs both: both always carry the
same rules, from here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import AddressPlan
    from .settings import Settings

#: OpenStack's metadata service. Its user-data holds the node's TLS keys, passwords and
#: DNS API keys; the host firewall lets only root (cloud-init) reach it.
METADATA_ADDRESS = "169.254.169.254"
#: The same service on IPv6 (Neutron serves it on this link-local address on IPv6
#: networks, and cloud-init's OpenStack datasource can ask it there). pgha's vRack subnet
#: is IPv4 only, so the path does not exist today; the rule keeps it closed for any node
#: that gets an IPv6 network later.
METADATA_ADDRESS_V6 = "fe80::a9fe:a9fe"


@dataclass(frozen=True)
class Allow:
    """One allowed inbound TCP flow to every node of a role."""

    role: str  #: etcd, patroni, bastion or monitoring
    port: int  #: destination TCP port
    sources: tuple[str, ...]  #: addresses or networks allowed in
    why: str  #: one line: why it is open


def allow_list(settings: Settings, plan: AddressPlan) -> list[Allow]:
    """Every inbound rule, per role, in the order the host firewalls list them."""
    e, pg, acc = settings.etcd, settings.patroni, settings.access
    ssh_from = (plan.bastion.address,) if acc.bastion.enabled else (plan.cidr,)
    etcd = tuple(plan.addresses("etcd"))
    patroni = tuple(plan.addresses("patroni"))
    rules = [
        Allow("etcd", 22, ssh_from, "ssh from the bastion"),
        Allow("etcd", e.client_port, patroni + etcd, "etcd clients: Patroni nodes and etcd peers"),
        Allow("etcd", e.peer_port, etcd, "etcd peers"),
        Allow("patroni", 22, ssh_from, "ssh from the bastion"),
        Allow("patroni", pg.port, (plan.cidr, *pg.app_cidrs), "PostgreSQL from the subnet and application networks"),
        Allow(
            "patroni",
            pg.rest_port,
            (plan.cidr,),
            "Patroni REST API from the subnet (peers, load balancer health checks)",
        ),
    ]
    if acc.bastion.enabled:
        rules.append(Allow("bastion", 22, tuple(acc.admin_cidrs), "ssh from admin networks"))
    m = settings.monitoring
    if m.enabled:
        mon = (plan.monitoring.address,)
        ui_from = (plan.bastion.address,) if acc.bastion.enabled else (plan.cidr,)
        rules += [
            Allow("etcd", m.etcd_metrics_port, mon, "etcd /metrics from the monitoring host"),
            Allow("etcd", m.node_exporter_port, mon, "node-exporter from the monitoring host"),
            Allow("patroni", m.postgres_exporter_port, mon, "postgres-exporter from the monitoring host"),
            Allow("patroni", m.node_exporter_port, mon, "node-exporter from the monitoring host"),
            Allow("monitoring", 22, ssh_from, "ssh from the bastion"),
            Allow("monitoring", m.prometheus_port, ui_from, "Prometheus UI/API through the bastion (ssh -L)"),
            Allow("monitoring", m.alertmanager_port, ui_from, "Alertmanager UI/API through the bastion (ssh -L)"),
        ]
    return [r for r in rules if r.sources]


def as_cidr(source: str) -> str:
    """A single address as a /32 (security groups take networks only)."""
    return str(ipaddress.ip_network(source, strict=False))
