"""PatroniCluster: PostgreSQL managed by Patroni, one data volume per node.

Per node: a protected Cinder volume (PostgreSQL's data, never deleted by a node
replacement or by ``pulumi destroy`` without an explicit unprotect), a fixed-IP port and
an instance in an anti-affinity server group that boots with the volume attached (the
volume must exist at first boot: cloud-init formats it once and mounts it before
PostgreSQL is installed). User-data is ``cloud_init.patroni.render_patroni_node``
computed inside ``Output.apply`` from the node's certificates and the role passwords,
and is a secret. Passwords are pulumi-random, alphanumeric (safe in YAML and libpq).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack
import pulumi_random as random

from cloud_init.common import hostname, nova_user_data
from cloud_init.patroni import render_patroni_node
from pgha.plan import Node
from pgha.secrets import BackupSecrets, KeyPair, OvhApiCredentials, Passwords, PatroniNodeSecrets, SshHostKey
from pgha.settings import Settings
from pgha.target import Target

from .backup import BackupRepository
from .config import DnsApiKeys
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

TYPE = "pgha:index:PatroniCluster"
#: Fields of pgha.secrets.Passwords, one RandomPassword each.
PASSWORD_ROLES = ("superuser", "replication", "rewind", "rest_api", "app")
PASSWORD_LENGTH = 32


@dataclass(frozen=True)
class PatroniClusterArgs:
    settings: Settings
    """Validated stack settings (the renderer needs all of it; addresses from ``plan.patroni``)."""
    placement: Placement
    """Network, security group, deploy key and boot dependencies of the nodes."""
    ca_cert: pulumi.Input[str]
    """PEM of the cluster CA."""
    server_certs: Sequence[TlsKeyPair]
    """PostgreSQL + REST API server certificate per node, in plan order."""
    etcd_client_certs: Sequence[TlsKeyPair]
    """etcd client certificate per node, in plan order."""
    dns_api: DnsApiKeys | None = None
    """OVH API keys of the DNS primary-record callback (endpoint.dns.primary_record only)."""
    backup: BackupRepository | None = None
    """The pgBackRest repository (backup.enabled only): its credential and passphrase go into user-data."""


class PatroniCluster(pulumi.ComponentResource):
    """``settings.patroni.nodes`` Patroni/PostgreSQL nodes on fixed private addresses."""

    names: list[str]
    """Node names in plan order (pg1, pg2, ...)."""
    addresses: list[str]
    """Node addresses in plan order."""
    instances: list[openstack.compute.Instance]
    """The node instances, in plan order."""
    volumes: list[openstack.blockstorage.Volume]
    """The data volumes (protected), in plan order."""
    passwords: dict[str, pulumi.Output[str]]
    """Role -> password (secret): superuser, replication, rewind, rest_api, app."""
    app_password: pulumi.Output[str]
    """Password of the application role (secret)."""

    def __init__(self, name: str, args: PatroniClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        s = args.settings
        plan, pg = s.plan, s.patroni
        for what, certs in (("server", args.server_certs), ("etcd client", args.etcd_client_certs)):
            if len(certs) != len(plan.patroni):
                raise ValueError(f"{name}: {len(certs)} {what} certificates for {len(plan.patroni)} Patroni nodes")
        region = s.network.region
        if s.backup.enabled and args.backup is None:
            raise ValueError(f"{name}: backup.enabled is on but no BackupRepository was given")
        child = pulumi.ResourceOptions(parent=self)
        self.names = [n.name for n in plan.patroni]
        self.addresses = plan.addresses("patroni")

        self.password_resources = {
            role: random.RandomPassword(
                f"{name}-{role.replace('_', '-')}-password", length=PASSWORD_LENGTH, special=False, opts=child
            )
            for role in PASSWORD_ROLES
        }
        self.passwords = {role: pulumi.Output.secret(p.result) for role, p in self.password_resources.items()}
        self.app_password = self.passwords["app"]

        group = server_group(self, name, f"pgha-{s.stack}-patroni", region)
        image = image_id(self, pg.image, region)

        self.instances = []
        self.volumes = []
        self.user_data: list[pulumi.Output[str]] = []
        #: Each node's SSH host key (public), pinned by the validation commands.
        self.host_keys: list[pulumi.Output[str]] = []
        for i, (node, ip) in enumerate(zip(self.names, self.addresses, strict=True)):
            res = f"{name}-{node}"
            volume = openstack.blockstorage.Volume(
                f"{res}-data",
                name=f"{hostname(s, node)}-data",
                description=f"pgha {s.stack}: PostgreSQL data of {node}",
                size=pg.volume_size_gb,
                volume_type=pg.volume_type,
                enable_online_resize=True,
                metadata={"pgha-stack": s.stack, "pgha-node": node},
                region=region,
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
            self.volumes.append(volume)
            port = fixed_port(self, res, hostname(s, node), ip, args.placement, region)
            host_key = ssh_host_key(self, res)
            self.host_keys.append(public_key(host_key))
            user_data: pulumi.Output[str] = pulumi.Output.secret(
                pulumi.Output.all(
                    ca=args.ca_cert,
                    host_private=host_key.private_key_openssh,
                    host_public=public_key(host_key),
                    deploy_key=args.placement.deploy_key,
                    server_cert=args.server_certs[i].cert,
                    server_key=args.server_certs[i].key,
                    etcd_cert=args.etcd_client_certs[i].cert,
                    etcd_key=args.etcd_client_certs[i].key,
                    **self.passwords,
                    **_dns_api_inputs(args.dns_api),
                    **_backup_inputs(args.backup),
                    # Nova gives the attached volume the serial <volume id>[:20]: the node finds
                    # its data disk as /dev/disk/by-id/virtio-<serial>, whatever its kernel name.
                    volume_id=volume.id,
                ).apply(
                    functools.partial(_user_data, s, plan.patroni[i], args.dns_api.endpoint if args.dns_api else None)
                )
            )
            self.user_data.append(user_data)
            self.instances.append(
                openstack.compute.Instance(
                    res,
                    name=hostname(s, node),
                    region=region,
                    flavor_name=pg.flavor,
                    image_id=image,
                    user_data=user_data,
                    stop_before_destroy=True,  # etcd and PostgreSQL stop cleanly on replacement
                    networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
                    # Boot disk from the image; the data volume attached at boot (it shows
                    # up as the layout's data_device) and kept when the instance goes.
                    block_devices=[
                        openstack.compute.InstanceBlockDeviceArgs(
                            source_type="image",
                            uuid=image,
                            destination_type="local",
                            boot_index=0,
                            delete_on_termination=True,
                        ),
                        openstack.compute.InstanceBlockDeviceArgs(
                            source_type="volume",
                            uuid=volume.id,
                            destination_type="volume",
                            boot_index=-1,
                            delete_on_termination=False,
                        ),
                    ],
                    scheduler_hints=[openstack.compute.InstanceSchedulerHintArgs(group=group.id)],
                    metadata={"pgha-stack": s.stack, "pgha-role": "patroni", "pgha-member": node},
                    opts=instance_opts(self, args.placement, node),
                )
            )

        self.register_outputs(
            {
                "names": self.names,
                "addresses": self.addresses,
                "instance_ids": [i.id for i in self.instances],
                "volume_ids": [v.id for v in self.volumes],
                "app_password": self.app_password,
            }
        )


def _dns_api_inputs(keys: DnsApiKeys | None) -> dict[str, pulumi.Output[str]]:
    if keys is None:
        return {}
    return {
        "dns_application_key": keys.application_key,
        "dns_application_secret": keys.application_secret,
        "dns_consumer_key": keys.consumer_key,
    }


def _backup_inputs(repo: BackupRepository | None) -> dict[str, pulumi.Output[str]]:
    if repo is None:
        return {}
    inputs = {"s3_access_key": repo.access_key, "s3_secret_key": repo.secret_key, "cipher_pass": repo.cipher_pass}
    if repo.restore_from_cipher_pass is not None:  # backup.restore_from: the source repository's passphrase
        inputs["restore_from_cipher_pass"] = repo.restore_from_cipher_pass
    return inputs


def _user_data(settings: Settings, node: Node, dns_endpoint: str | None, v: dict[str, str]) -> str:
    """Runs inside Output.apply, once the node's certificates and the passwords are known."""
    dns_api = None
    if dns_endpoint is not None:
        dns_api = OvhApiCredentials(
            v["dns_application_key"], v["dns_application_secret"], v["dns_consumer_key"], endpoint=dns_endpoint
        )
    secrets = PatroniNodeSecrets(
        ca_cert=v["ca"],
        server=KeyPair(cert=v["server_cert"], key=v["server_key"]),
        etcd_client=KeyPair(cert=v["etcd_cert"], key=v["etcd_key"]),
        passwords=Passwords(**{role: v[role] for role in PASSWORD_ROLES}),
        dns_api=dns_api,
        host_key=SshHostKey(private=v["host_private"], public=v["host_public"]),
        backup=(
            BackupSecrets(v["s3_access_key"], v["s3_secret_key"], v["cipher_pass"], v.get("restore_from_cipher_pass"))
            if "cipher_pass" in v
            else None
        ),
    )
    settings = with_deploy_key(settings, v["deploy_key"])
    target = Target.vm(settings, volume_ids={node.name: v["volume_id"]})
    return nova_user_data(render_patroni_node(settings, target, node, secrets).user_data)
