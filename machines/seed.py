"""NoCloud seed of a node: meta-data and network-config (v2). user-data comes from
machines/render.py, byte for byte what the stack renders. Pure functions."""

from __future__ import annotations

from typing import Any

import yaml

from .spec import NodeSpec

SEED_DIR = "var/lib/cloud/seed/nocloud"  #: inside the rootfs


def meta_data(node: NodeSpec, instance_id: str, public_keys: list[str]) -> str:
    """What OpenStack's metadata gives cloud-init on OVH: instance id, hostname, keypair."""
    doc = {"instance-id": instance_id, "local-hostname": node.hostname, "public-keys": list(public_keys)}
    return yaml.safe_dump(doc, sort_keys=False)


def network_config(node: NodeSpec, nameservers: list[str]) -> dict[str, Any]:
    """v2 config: the private NIC (ens4, matched by MAC) with its planned fixed address and
    the plan's gateway; the bastion's public NIC (ens3) has its address and no gateway
    (egress goes through the vRack gateway here; on OVH it would be the public one)."""
    eth: dict[str, Any] = {
        "ens4": {
            "match": {"macaddress": node.mac},
            "set-name": "ens4",
            "addresses": [f"{node.address}/{node.prefixlen}"],
            "gateway4": node.gateway,
            "nameservers": {"addresses": list(nameservers)},
        }
    }
    if node.public_address:
        eth["ens3"] = {
            "match": {"macaddress": node.public_mac},
            "set-name": "ens3",
            "addresses": [f"{node.public_address}/30"],
        }
    return {"version": 2, "ethernets": eth}


def network_config_yaml(node: NodeSpec, nameservers: list[str]) -> str:
    return yaml.safe_dump(network_config(node, nameservers), sort_keys=False)


def host_nameservers(resolv_conf: str) -> list[str]:
    """IPv4 nameservers of the host's resolv.conf: the nodes resolve through the host's
    resolver (their queries leave the vRack namespace NATed, like the rest)."""
    out = []
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
            out.append(parts[1])
    if not out:
        raise ValueError("no IPv4 nameserver in the host's resolv.conf")
    return out
