"""What etcd members and Patroni nodes share: where a node goes and how it is built.

A node is a fixed-IP port (address from the plan) plus an instance in an anti-affinity
server group, booted with user-data rendered by ``cloud_init``. User-data is read once,
at first boot, and OpenStack replaces an instance whose user-data (or image, key pair,
server group) changes, and resizes (reboots) one whose flavor changes. So instances ignore
later changes of those inputs: a template, flavor or config change would otherwise hit
every node of a cluster in one update. It is rolled out one node at
a time instead, by naming the node in ``Placement.roll`` (``PGHA_ROLL=pg2 pulumi up``,
see README "Deploy to OVH" "Day 2"): that instance stops ignoring them and is replaced if they
changed. Instances are deleted before their replacement is created (the fixed-IP port
can only be bound to one instance), and stopped first (``stop_before_destroy``) so etcd
and PostgreSQL shut down cleanly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_openstack as openstack

#: Instance inputs whose change replaces (user-data, image, volumes, key pair, server
#: group) or resizes and reboots (flavor) the instance: followed only by the nodes named
#: in PGHA_ROLL, one at a time, never by every node of a cluster in one update.
ROLLED_ONLY = ["user_data", "image_id", "block_devices", "key_pair", "scheduler_hints", "flavor_name"]


@dataclass(frozen=True)
class Placement:
    """Network, firewall and SSH settings shared by every node of a cluster."""

    network_id: pulumi.Input[str]
    """OpenStack id of the private network."""
    subnet_id: pulumi.Input[str]
    """OpenStack id of the private subnet (fixed IPs are allocated in it)."""
    security_group_id: pulumi.Input[str]
    """Security group of the node's port (the role's allow-list)."""
    key_pair: pulumi.Input[str]
    """OpenStack keypair name (the deploy key used by the validation commands)."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """Resources that must exist before a node boots, e.g. the egress gateway."""
    roll: frozenset[str] = frozenset()
    """Nodes (e.g. ``pg2``) that follow user-data and image changes in this update."""


def server_group(parent: pulumi.Resource, name: str, display_name: str, region: str) -> openstack.compute.ServerGroup:
    """Anti-affinity: no two members of a cluster on the same hypervisor."""
    return openstack.compute.ServerGroup(
        f"{name}-group",
        name=display_name,
        policies="anti-affinity",
        region=region,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def image_id(parent: pulumi.Resource, image: str, region: str) -> pulumi.Output[str]:
    """Id of the newest image with that name (only used at first boot: see ROLLED_ONLY)."""
    return openstack.images.get_image_output(
        name=image, most_recent=True, region=region, opts=pulumi.InvokeOptions(parent=parent)
    ).id


def fixed_port(
    parent: pulumi.Resource, res: str, display_name: str, address: str, placement: Placement, region: str
) -> openstack.networking.Port:
    """A port with the plan's address, so every peer list is known before any VM exists."""
    return openstack.networking.Port(
        f"{res}-port",
        name=display_name,
        network_id=placement.network_id,
        fixed_ips=[openstack.networking.PortFixedIpArgs(subnet_id=placement.subnet_id, ip_address=address)],
        security_group_ids=[placement.security_group_id],
        admin_state_up=True,
        region=region,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def instance_opts(parent: pulumi.Resource, placement: Placement, node: str) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(
        parent=parent,
        depends_on=list(placement.depends_on),
        delete_before_replace=True,
        ignore_changes=[] if node in placement.roll else ROLLED_ONLY,
    )
