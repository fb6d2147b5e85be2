"""Endpoint: how applications find the primary, when the stack manages it.

- ``endpoint.load_balancer.enabled``: an Octavia load balancer on the plan's ``lb``
  address. A TCP listener on ``primary_port`` whose pool health-checks every node's
  Patroni REST API on ``GET /primary`` (only the leader answers 200), and optionally a
  read-only listener on ``replica_port`` checked on ``GET /replica``. The REST API
  speaks TLS only, so the monitors are HTTPS (Octavia does not verify the certificate;
  the check is the status code). Listeners accept the subnet and ``app_cidrs`` only.
- ``endpoint.dns.enabled``: an A record ``<name>.<zone>`` in an OVH DNS zone, pointing
  at the load balancer, or at every Patroni node when there is none (libpq's
  ``target_session_attrs=read-write`` then finds the primary).

Both off: nothing is created (applications use the libpq DSN or HAProxy outputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack
import pulumi_ovh as ovh

from pgha.settings import Settings

TYPE = "pgha:index:Endpoint"
#: Health checks: a failed primary leaves the pool after ~MONITOR_RETRIES * MONITOR_DELAY seconds.
MONITOR_DELAY = 3
MONITOR_TIMEOUT = 2
MONITOR_RETRIES = 2


@dataclass(frozen=True)
class EndpointArgs:
    settings: Settings
    """Validated stack settings: ``endpoint``, ports, ``app_cidrs`` and the address plan."""
    subnet_id: pulumi.Input[str]
    """OpenStack id of the private subnet (load balancer VIP and members)."""


class Endpoint(pulumi.ComponentResource):
    """Optional load balancer and DNS record(s) in front of the Patroni nodes."""

    lb_address: pulumi.Output[str] | None
    """VIP of the load balancer; None when disabled."""
    dns_name: str | None
    """Fully qualified record name; None when DNS is disabled."""

    def __init__(self, name: str, args: EndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        s = args.settings
        lb, dns = s.endpoint.load_balancer, s.endpoint.dns
        region = s.network.region
        child = pulumi.ResourceOptions(parent=self)

        self.load_balancer: openstack.loadbalancer.LoadBalancer | None = None
        self.lb_address = None
        if lb.enabled:
            flavor = openstack.loadbalancer.get_flavor_v2_output(
                name=lb.flavor, region=region, opts=pulumi.InvokeOptions(parent=self)
            )
            self.load_balancer = openstack.loadbalancer.LoadBalancer(
                f"{name}-lb",
                name=f"pgha-{s.stack}",
                description=f"pgha {s.stack}: PostgreSQL primary (and replicas)",
                vip_subnet_id=args.subnet_id,
                vip_address=s.plan.lb,
                flavor_id=flavor.id,
                region=region,
                opts=child,
            )
            self.lb_address = self.load_balancer.vip_address
            self._listener(name, "primary", lb.primary_port, "/primary", args)
            if lb.read_only_listener:
                self._listener(name, "replica", lb.replica_port, "/replica", args)

        self.records: list[ovh.domain.ZoneRecord] = []
        self.dns_name = None
        if dns.enabled:
            self.dns_name = f"{dns.name}.{dns.zone}"
            targets: list[pulumi.Input[str]] = (
                [self.lb_address] if self.lb_address is not None else [*s.plan.addresses("patroni")]
            )
            names = ["lb"] if self.lb_address is not None else [n.name for n in s.plan.patroni]
            self.records = [
                ovh.domain.ZoneRecord(
                    f"{name}-dns-{n}",
                    zone=dns.zone,
                    subdomain=dns.name,
                    fieldtype="A",
                    ttl=dns.ttl,
                    target=t,
                    opts=child,
                )
                for n, t in zip(names, targets, strict=True)
            ]

        outputs: dict[str, object] = {}
        if self.lb_address is not None:
            outputs["lb_address"] = self.lb_address
        if self.dns_name is not None:
            outputs["dns_name"] = self.dns_name
        self.register_outputs(outputs)

    def _listener(self, name: str, role: str, port: int, check_path: str, args: EndpointArgs) -> None:
        """Listener -> pool -> HTTPS monitor on the REST API -> one member per node."""
        s = args.settings
        assert self.load_balancer is not None
        child = pulumi.ResourceOptions(parent=self)
        region = s.network.region
        listener = openstack.loadbalancer.Listener(
            f"{name}-{role}",
            name=f"pgha-{s.stack}-{role}",
            loadbalancer_id=self.load_balancer.id,
            protocol="TCP",
            protocol_port=port,
            allowed_cidrs=[s.plan.cidr, *s.patroni.app_cidrs],
            # PostgreSQL sessions are long-lived; do not cut idle ones after Octavia's 50 s default.
            timeout_client_data=3600_000,
            timeout_member_data=3600_000,
            region=region,
            opts=child,
        )
        pool = openstack.loadbalancer.Pool(
            f"{name}-{role}-pool",
            name=f"pgha-{s.stack}-{role}",
            listener_id=listener.id,
            protocol="TCP",
            lb_method="ROUND_ROBIN",
            region=region,
            opts=child,
        )
        openstack.loadbalancer.Monitor(
            f"{name}-{role}-monitor",
            name=f"pgha-{s.stack}-{role}",
            pool_id=pool.id,
            type="HTTPS",
            http_method="GET",
            url_path=check_path,
            expected_codes="200",
            delay=MONITOR_DELAY,
            timeout=MONITOR_TIMEOUT,
            max_retries=MONITOR_RETRIES,
            max_retries_down=MONITOR_RETRIES,
            region=region,
            opts=child,
        )
        for n in s.plan.patroni:
            openstack.loadbalancer.Member(
                f"{name}-{role}-{n.name}",
                name=n.name,
                pool_id=pool.id,
                address=n.address,
                protocol_port=s.patroni.port,
                monitor_port=s.patroni.rest_port,
                subnet_id=args.subnet_id,
                region=region,
                opts=child,
            )
