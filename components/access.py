"""Access: who may talk to which node, and how operators and the deploy get in.

- A deploy SSH key (pulumi-tls, ED25519) the validation commands use, rendered by
  cloud-init into the admin user's ``ssh_authorized_keys`` of every node and the bastion,
  next to the operators' own keys (``access.ssh_public_keys``). No Nova keypair: it
  would belong to the one OpenStack user who created it.
- Security groups, the same allow-list the renderer writes into each node's nftables
  host firewall (both from :func:`pgha.firewall.allow_list`). OVH enables port security
  on private (vRack) networks, so the groups filter every node's port, and each port
  says ``port_security_enabled=True`` rather than relying on the network's default;
  nftables filters again on the host. Two layers from one list, never one without the
  other: a flow missing from the list is dropped by both.
- Optionally a bastion: one private port and a floating IP from Ext-Net (routed by the
  Public Cloud gateway), the only public address, SSH from ``access.admin_cidrs`` only.
  Rolled like a node (``PGHA_ROLL=bastion``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack
import pulumi_tls as tls

from cloud_init.bastion import render_bastion
from cloud_init.common import hostname, nova_user_data
from pgha.firewall import allow_list, as_cidr
from pgha.secrets import SshHostKey
from pgha.settings import Settings

from .nodes import ROLLED_ONLY, image_id, public_key, ssh_host_key, with_deploy_key

TYPE = "pgha:index:Access"
#: OVH's public network: an interface on it gets a public IPv4 (security groups enforced).
PUBLIC_NETWORK = "Ext-Net"
#: Default user of OVH's Debian images (passwordless sudo).
SSH_USER = "debian"


@dataclass(frozen=True)
class IngressRule:
    """One allowed inbound TCP flow."""

    role: str
    """Security group it belongs to: etcd, patroni or bastion."""
    port: int
    """Destination TCP port."""
    cidr: str
    """Allowed source network (a /32 for a single node)."""
    description: str
    """Why it is open."""


def ingress_rules(settings: Settings) -> list[IngressRule]:
    """Every inbound rule, per role: the allow-list the host firewalls carry (:func:`pgha.firewall.allow_list`)."""
    return [
        IngressRule(a.role, a.port, as_cidr(src), a.why)
        for a in allow_list(settings, settings.plan)
        for src in a.sources
    ]


@dataclass(frozen=True)
class AccessArgs:
    settings: Settings
    """Validated stack settings: ``access``, ports and the address plan."""
    network_id: pulumi.Input[str]
    """OpenStack id of the private network (the bastion's private port)."""
    subnet_id: pulumi.Input[str]
    """OpenStack id of the private subnet."""
    egress: Sequence[pulumi.Resource] = ()
    """The Public Cloud gateway (the router the bastion's floating IP goes through)."""
    roll: frozenset[str] = frozenset()
    """PGHA_ROLL: ``bastion`` lets the bastion follow user-data, image or flavor changes."""


class Access(pulumi.ComponentResource):
    """Deploy key, security groups, optional bastion."""

    deploy_public_key: pulumi.Output[str]
    """OpenSSH public deploy key, rendered into every node's ``ssh_authorized_keys``."""
    private_key: pulumi.Output[str]
    """OpenSSH private key of the deploy key (secret)."""
    security_group_ids: dict[str, pulumi.Output[str]]
    """Security group id per role: etcd, patroni (and bastion when enabled)."""
    bastion_ip: pulumi.Output[str] | None
    """Public IPv4 of the bastion; None when the bastion is disabled."""

    def __init__(self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        s = args.settings
        region = s.network.region
        child = pulumi.ResourceOptions(parent=self)

        key = tls.PrivateKey(f"{name}-deploy-key", algorithm="ED25519", opts=child)
        self.private_key = pulumi.Output.secret(key.private_key_openssh)
        # Delivered by cloud-init (ssh_authorized_keys), not as a Nova keypair: a keypair
        # is visible to the OpenStack user who created it only, so a teammate's (or CI's)
        # later `pulumi up` that replaces a node would be refused the key.
        self.deploy_public_key = public_key(key)

        rules = ingress_rules(s)
        self.security_groups: dict[str, openstack.networking.SecGroup] = {}
        for role in dict.fromkeys(r.role for r in rules):
            self.security_groups[role] = openstack.networking.SecGroup(
                f"{name}-{role}-sg",
                name=f"pgha-{s.stack}-{role}",
                description=f"pgha {s.stack}: inbound allow-list of {role} nodes (mirrors their nftables host firewall)",
                region=region,
                opts=child,
            )
        self.rules = [
            openstack.networking.SecGroupRule(
                f"{name}-{r.role}-{r.port}-{r.cidr.replace('/', '_')}",
                security_group_id=self.security_groups[r.role].id,
                direction="ingress",
                ethertype="IPv6" if ipaddress.ip_network(r.cidr).version == 6 else "IPv4",
                protocol="tcp",
                port_range_min=r.port,
                port_range_max=r.port,
                remote_ip_prefix=r.cidr,
                description=r.description,
                region=region,
                opts=child,
            )
            for r in rules
        ]
        self.security_group_ids = {role: sg.id for role, sg in self.security_groups.items()}

        self.bastion: openstack.compute.Instance | None = None
        self.bastion_ip = None
        #: The bastion's SSH host key (public), pinned by the validation's jump; None without bastion.
        self.bastion_host_key: pulumi.Output[str] | None = None
        if s.access.bastion.enabled:
            sg = self.security_groups["bastion"]
            port = openstack.networking.Port(
                f"{name}-bastion-port",
                name=hostname(s, "bastion"),
                network_id=args.network_id,
                fixed_ips=[
                    openstack.networking.PortFixedIpArgs(subnet_id=args.subnet_id, ip_address=s.plan.bastion.address)
                ],
                security_group_ids=[sg.id],
                port_security_enabled=True,
                region=region,
                opts=child,
            )
            host_key = ssh_host_key(self, f"{name}-bastion")
            self.bastion_host_key = public_key(host_key)
            bastion_user_data: pulumi.Output[str] = pulumi.Output.all(
                host_key.private_key_openssh, self.bastion_host_key, self.deploy_public_key
            ).apply(
                lambda v: nova_user_data(
                    render_bastion(with_deploy_key(s, v[2]), SshHostKey(private=v[0], public=v[1]))
                )
            )
            bastion_user_data = pulumi.Output.secret(bastion_user_data)
            # One private port and a floating IP, never a second interface on Ext-Net: two
            # interfaces (Ext-Net and the private subnet with DHCP and a gateway) can each
            # bring a default route. Same image lookup and ignore rules as the nodes.
            self.bastion = openstack.compute.Instance(
                f"{name}-bastion",
                name=hostname(s, "bastion"),
                region=region,
                flavor_name=s.access.bastion.flavor,
                image_id=image_id(self, s.etcd.image, region),
                user_data=bastion_user_data,
                networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    delete_before_replace=True,
                    depends_on=list(args.egress),
                    ignore_changes=[] if "bastion" in args.roll else ROLLED_ONLY,
                ),
            )
            # The floating IP is routed through the Public Cloud gateway (network.gateway).
            fip = openstack.networking.FloatingIp(
                f"{name}-bastion-ip",
                pool=PUBLIC_NETWORK,
                description=f"pgha {s.stack}: the bastion's public address",
                region=region,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.egress)),
            )
            openstack.networking.FloatingIpAssociate(
                f"{name}-bastion-ip-association",
                floating_ip=fip.address,
                port_id=port.id,
                region=region,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.bastion]),
            )
            self.bastion_ip = fip.address

        outputs: dict[str, object] = {
            "deploy_public_key": self.deploy_public_key,
            "security_group_ids": self.security_group_ids,
        }
        if self.bastion_ip is not None:
            outputs["bastion_ip"] = self.bastion_ip
        self.register_outputs(outputs)
