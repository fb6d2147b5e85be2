"""PrivateNetwork: the vRack private network, its subnet and (optionally) egress.

Nodes have no public IP. Their fixed addresses come from the settings' address plan;
the subnet's DHCP pool is the plan's ``dhcp_start``-``dhcp_end`` range, which no fixed
address uses (Octavia amphorae and other DHCP ports take addresses from there).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_ovh as ovh

from pgha.settings import Settings

TYPE = "pgha:index:PrivateNetwork"


@dataclass(frozen=True)
class PrivateNetworkArgs:
    settings: Settings
    """Validated stack settings: ``network`` (region, cidr, vlan, gateway, vRack) and ``plan``."""
    service_name: str
    """OVH Public Cloud project id the network belongs to."""


class PrivateNetwork(pulumi.ComponentResource):
    """vRack network + subnet in one region, optional vRack attachment and egress gateway."""

    network_id: pulumi.Output[str]
    """OpenStack id of the private network in ``settings.network.region`` (for ports, LB)."""
    subnet_id: pulumi.Output[str]
    """OpenStack id of the subnet."""
    vrack_network_id: pulumi.Output[str]
    """OVH id of the vRack network (``pn-...``)."""
    egress: list[pulumi.Resource]
    """Resources that must exist before a node boots (the gateway: cloud-init installs packages)."""

    def __init__(self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        net = args.settings.network
        plan = args.settings.plan
        stack = args.settings.stack
        child = pulumi.ResourceOptions(parent=self)

        attach: list[pulumi.Resource] = []
        self.vrack: ovh.vrack.CloudProject | None = None
        if net.vrack_service_name:
            # Attaching the project to the vRack is a one-time account operation; it is
            # skipped when vrack_service_name is empty (the project is already attached).
            self.vrack = ovh.vrack.CloudProject(
                f"{name}-vrack",
                service_name=net.vrack_service_name,
                project_id=args.service_name,
                opts=child,
            )
            attach.append(self.vrack)

        self.network = ovh.cloudproject.NetworkPrivate(
            f"{name}-net",
            service_name=args.service_name,
            name=f"pgha-{stack}",
            regions=[net.region],
            vlan_id=net.vlan_id,
            opts=pulumi.ResourceOptions(parent=self, depends_on=attach),
        )
        self.network_id = self.network.regions_openstack_ids.apply(lambda ids: ids[net.region])
        self.vrack_network_id = self.network.id

        self.subnet = ovh.cloudproject.NetworkPrivateSubnetV2(
            f"{name}-subnet",
            service_name=args.service_name,
            network_id=self.network_id,
            region=net.region,
            name=f"pgha-{stack}",
            cidr=plan.cidr,
            dhcp=True,
            allocation_pools=[
                ovh.cloudproject.NetworkPrivateSubnetV2AllocationPoolArgs(start=plan.dhcp_start, end=plan.dhcp_end)
            ],
            enable_gateway_ip=True,
            gateway_ip=plan.gateway_ip,
            opts=child,
        )
        self.subnet_id = self.subnet.id

        self.gateway: ovh.cloudproject.Gateway | None = None
        self.egress = []
        if net.gateway:
            self.gateway = ovh.cloudproject.Gateway(
                f"{name}-gateway",
                service_name=args.service_name,
                name=f"pgha-{stack}",
                model=net.gateway_model,
                region=net.region,
                network_id=self.network_id,
                subnet_id=self.subnet.id,
                opts=child,
            )
            self.egress.append(self.gateway)

        self.register_outputs(
            {"network_id": self.network_id, "subnet_id": self.subnet_id, "vrack_network_id": self.vrack_network_id}
        )
