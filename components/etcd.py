"""EtcdCluster: the etcd members Patroni uses as its DCS.

One fixed-IP port and one instance per member, in an anti-affinity server group, no
public IP. Each instance's user-data is ``cloud_init.etcd.render_etcd_node`` computed
inside ``Output.apply`` from the member's certificate and key, and is a secret.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from cloud_init.common import hostname, nova_user_data
from cloud_init.etcd import render_etcd_node
from pgha.plan import Node
from pgha.secrets import EtcdNodeSecrets, KeyPair, SshHostKey
from pgha.settings import Settings
from pgha.target import Target

from .nodes import (
    Placement,
    fixed_port,
    image_id,
    instance_opts,
    public_key,
    server_group,
    ssh_host_key,
    with_deploy_key,
)
from .pki import TlsKeyPair

TYPE = "pgha:index:EtcdCluster"


@dataclass(frozen=True)
class EtcdClusterArgs:
    settings: Settings
    """Validated stack settings (the renderer needs all of it; addresses from ``plan.etcd``)."""
    placement: Placement
    """Network, security group, deploy key and boot dependencies of the members."""
    ca_cert: pulumi.Input[str]
    """PEM of the cluster CA."""
    certs: Sequence[TlsKeyPair]
    """One certificate + key per member, in plan order."""


class EtcdCluster(pulumi.ComponentResource):
    """``settings.etcd.members`` etcd members on fixed private addresses."""

    names: list[str]
    """Member names in plan order (etcd1, etcd2, ...)."""
    addresses: list[str]
    """Member addresses in plan order."""
    instances: list[openstack.compute.Instance]
    """The member instances, in plan order."""

    def __init__(self, name: str, args: EtcdClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        s = args.settings
        plan = s.plan
        if len(args.certs) != len(plan.etcd):
            raise ValueError(f"{name}: {len(args.certs)} certificates for {len(plan.etcd)} etcd members")
        region = s.network.region
        self.names = [n.name for n in plan.etcd]
        self.addresses = plan.addresses("etcd")
        group = server_group(self, name, f"pgha-{s.stack}-etcd", region)
        image = image_id(self, s.etcd.image, region)

        self.instances = []
        self.user_data: list[pulumi.Output[str]] = []
        #: Each member's SSH host key (public), pinned by the validation commands.
        self.host_keys: list[pulumi.Output[str]] = []
        for i, (member, ip) in enumerate(zip(self.names, self.addresses, strict=True)):
            res = f"{name}-{member}"
            port = fixed_port(self, res, hostname(s, member), ip, args.placement, region)
            pair = args.certs[i]
            host_key = ssh_host_key(self, res)
            self.host_keys.append(public_key(host_key))
            user_data: pulumi.Output[str] = pulumi.Output.secret(
                pulumi.Output.all(
                    ca=args.ca_cert,
                    cert=pair.cert,
                    key=pair.key,
                    host_private=host_key.private_key_openssh,
                    host_public=public_key(host_key),
                    deploy_key=args.placement.deploy_key,
                ).apply(
                    # A rolled member is a new VM with an empty data dir that joins the running
                    # cluster (after `etcdctl member add`, see README "Day 2").
                    functools.partial(
                        _user_data, s, plan.etcd[i], "existing" if member in args.placement.roll else "new"
                    )
                )
            )
            self.user_data.append(user_data)
            self.instances.append(
                openstack.compute.Instance(
                    res,
                    name=hostname(s, member),
                    region=region,
                    flavor_name=s.etcd.flavor,
                    image_id=image,
                    user_data=user_data,
                    stop_before_destroy=True,  # etcd and PostgreSQL stop cleanly on replacement
                    networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
                    scheduler_hints=[openstack.compute.InstanceSchedulerHintArgs(group=group.id)],
                    metadata={"pgha-stack": s.stack, "pgha-role": "etcd", "pgha-member": member},
                    opts=instance_opts(self, args.placement, member),
                )
            )

        self.register_outputs(
            {"names": self.names, "addresses": self.addresses, "instance_ids": [i.id for i in self.instances]}
        )


def _user_data(settings: Settings, node: Node, cluster_state: str, values: dict[str, str]) -> str:
    """Runs inside Output.apply, once the member's certificate and key are known."""
    secrets = EtcdNodeSecrets(
        ca_cert=values["ca"],
        node=KeyPair(cert=values["cert"], key=values["key"]),
        host_key=SshHostKey(private=values["host_private"], public=values["host_public"]),
    )
    settings = with_deploy_key(settings, values["deploy_key"])
    return nova_user_data(
        render_etcd_node(settings, Target.vm(settings), node, secrets, cluster_state=cluster_state).user_data
    )
