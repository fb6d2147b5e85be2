"""The address plan: every node of a stack as a value, with its fixed address.

Addresses are computed from the subnet before any VM exists, so every peer list is
known at render time. A :class:`Node` is handed out whole: code never keeps parallel
lists of names and addresses, never looks one up by index.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

ROLES = ("etcd", "patroni", "bastion", "monitoring")


@dataclass(frozen=True)
class Node:
    name: str  #: etcd1.., pg1.., bastion
    role: str  #: etcd, patroni, bastion or monitoring
    address: str  #: fixed private IPv4 address


def etcd_node_name(i: int) -> str:
    return f"etcd{i + 1}"


def patroni_node_name(i: int) -> str:
    return f"pg{i + 1}"


def nodes(role: str, addresses: Iterable[str]) -> tuple[Node, ...]:
    """Nodes of one role, named in order (etcd1, etcd2, ... / pg1, pg2, ...)."""
    name = {"etcd": etcd_node_name, "patroni": patroni_node_name}[role]
    return tuple(Node(name(i), role, a) for i, a in enumerate(addresses))


@dataclass(frozen=True)
class AddressPlan:
    """Every fixed address of a stack (on a VM target: from the subnet)."""

    cidr: str  #: the private subnet: pg_hba and firewall sources
    gateway_ip: str
    etcd: tuple[Node, ...]
    patroni: tuple[Node, ...]
    bastion: Node
    monitoring: Node  #: the monitoring host (Prometheus, Alertmanager)
    lb: str  #: the load balancer's VIP (HAProxy's bind address in the lab)
    dhcp_start: str
    dhcp_end: str

    @property
    def cluster(self) -> tuple[Node, ...]:
        """etcd members, then Patroni nodes: every node that runs a rendered service."""
        return self.etcd + self.patroni

    def node(self, name: str) -> Node:
        for n in (*self.cluster, self.bastion):
            if n.name == name:
                return n
        known = ", ".join(n.name for n in (*self.cluster, self.bastion))
        raise KeyError(f"no node named {name!r}; known nodes: {known}")

    def addresses(self, role: str) -> list[str]:
        return [n.address for n in getattr(self, role)]


def subnet_plan(
    cidr: str,
    members: int,
    nodes_: int,
    hosts: dict[str, int],
    problems: list[tuple[str, str]],
) -> AddressPlan | None:
    """The VM address plan from the subnet and the ``network.*_host`` numbers.

    ``hosts`` maps etcd_first_host, patroni_first_host, bastion_host, monitoring_host, lb_host,
    dhcp_first_host, dhcp_last_host to host numbers. Problems are appended with their
    ``network.*`` path; None when the plan cannot be built."""
    subnet = ipaddress.ip_network(cidr)
    last_host = subnet.num_addresses - 2  # highest usable host number (broadcast excluded)
    ok = True
    if hosts["dhcp_first_host"] > hosts["dhcp_last_host"]:
        problems.append(("network.dhcp_first_host", "must be <= network.dhcp_last_host"))
        ok = False
    spans = {
        "etcd_first_host": (hosts["etcd_first_host"], members),
        "patroni_first_host": (hosts["patroni_first_host"], nodes_),
        "bastion_host": (hosts["bastion_host"], 1),
        "monitoring_host": (hosts["monitoring_host"], 1),
        "lb_host": (hosts["lb_host"], 1),
        "dhcp_first_host": (hosts["dhcp_first_host"], hosts["dhcp_last_host"] - hosts["dhcp_first_host"] + 1),
    }
    for key, (start, count) in spans.items():
        end = start + count - 1
        if end > last_host:
            problems.append(
                (
                    "network.cidr",
                    f"{subnet} is too small for the address plan: network.{key} needs host {end}, the subnet's last host is {last_host}",
                )
            )
            ok = False
    keys = list(spans)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            (sa, ca), (sb, cb) = spans[a], spans[b]
            if sa <= sb + cb - 1 and sb <= sa + ca - 1:
                problems.append(
                    (f"network.{a}", f"hosts {sa}-{sa + ca - 1} overlap network.{b} (hosts {sb}-{sb + cb - 1})")
                )
                ok = False
    if not ok:
        return None
    base = subnet.network_address

    def at(n: int) -> str:
        return str(base + n)

    return AddressPlan(
        cidr=str(subnet),
        gateway_ip=at(1),
        etcd=nodes("etcd", (at(hosts["etcd_first_host"] + i) for i in range(members))),
        patroni=nodes("patroni", (at(hosts["patroni_first_host"] + i) for i in range(nodes_))),
        bastion=Node("bastion", "bastion", at(hosts["bastion_host"])),
        monitoring=Node("monitoring", "monitoring", at(hosts["monitoring_host"])),
        lb=at(hosts["lb_host"]),
        dhcp_start=at(hosts["dhcp_first_host"]),
        dhcp_end=at(hosts["dhcp_last_host"]),
    )
