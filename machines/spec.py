"""What a stack looks like as machines on this host: pure naming and addressing.

Nothing here touches the system, so it is unit-tested (tests/unit/test_machines_seed.py).

Networks (stack ``dev``, plan 10.42.0.0/24):

- ``pgha-dev``: a network namespace standing for the OVH vRack. Bridge ``br0`` in it
  holds the gateway address (plan.gateway_ip, e.g. 10.42.0.1/24). Egress: the veth
  ``uplink`` in it (``T.2/30``) to ``pm-<stack>-up`` on the host (``T.1/30``), with a
  masquerade in the namespace (10.42/24 -> T.2) and one on the host (T.2 -> the host's
  address). The plan's private addresses never leave the namespace un-NATed.
- ``pgha-dev-<node>``: one network namespace per node; its interface ``ens4`` (fixed
  MAC, see :func:`mac_for`) is a veth whose peer ``vb-<node>`` is a port of br0.
  The node's systemd-nspawn runs inside that namespace (nsenter --net), so cloud-init
  sees its NIC in /sys and renders the fixed address from the NoCloud network-config.
- the bastion also gets ``ens3``, a veth to ``pm-<stack>-pub`` on the host: the
  "public" address B.2/30, host side B.1/30. ``ssh`` from the host reaches the bastion
  there and the nodes through it (ProxyJump), as the deploy's validation does.

T and B are two /30s in 100.64.0.0/10 (shared address space, RFC 6598: never routed
on the internet, unlikely on a host LAN), chosen from the stack name.
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass

from pgha.settings import Settings

TRANSIT = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class NodeSpec:
    name: str  #: etcd1, pg1, bastion
    role: str  #: etcd, patroni, bastion
    hostname: str
    address: str  #: private (vRack) address from the plan
    prefixlen: int
    gateway: str
    mac: str  #: private NIC
    netns: str
    bridge_port: str  #: veth end in the stack namespace, port of br0
    public_address: str | None = None  #: bastion only: its "public" address
    public_mac: str | None = None


@dataclass(frozen=True)
class StackNet:
    stack: str
    netns: str  #: the vRack namespace
    bridge: str
    cidr: str
    gateway: str
    uplink_host: str  #: host end of the egress veth
    uplink_host_ip: str  #: T.1
    uplink_ns_ip: str  #: T.2
    public_host: str  #: host end of the bastion's public veth
    public_host_ip: str  #: B.1
    public_bastion_ip: str  #: B.2
    nft_table: str  #: host nftables table (nat for the uplink)


def _short(stack: str) -> str:
    """Interface names are at most 15 bytes: pm-<short>-up/pub."""
    return stack if len(stack) <= 8 else f"{stack[:3]}{zlib.crc32(stack.encode()) & 0xFFFF:04x}"


def stack_net(settings: Settings) -> StackNet:
    plan = settings.plan
    net = ipaddress.ip_network(plan.cidr)
    # 2 /30s per stack: block k in 100.64.0.0/10 holds T (first /30) and B (second).
    k = 1 + zlib.crc32(settings.stack.encode()) % ((TRANSIT.num_addresses // 8) - 1)
    base = int(TRANSIT.network_address) + 8 * k

    def ip(off: int) -> str:
        return str(ipaddress.ip_address(base + off))

    s = _short(settings.stack)
    return StackNet(
        stack=settings.stack,
        netns=f"pgha-{settings.stack}",
        bridge="br0",
        cidr=str(net),
        gateway=plan.gateway_ip,
        uplink_host=f"pm-{s}-up",
        uplink_host_ip=ip(1),
        uplink_ns_ip=ip(2),
        public_host=f"pm-{s}-pub",
        public_host_ip=ip(5),
        public_bastion_ip=ip(6),
        nft_table=f"pgha_machines_{settings.stack}".replace("-", "_"),
    )


def mac_for(address: str, nic: int = 0) -> str:
    """Locally administered unicast MAC carrying the IPv4 address: 02:<nic>:a:b:c:d."""
    a, b, c, d = (int(x) for x in address.split("."))
    return f"02:{nic:02x}:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def node_specs(settings: Settings) -> list[NodeSpec]:
    """etcd members, Patroni nodes, then the bastion (when the stack has one)."""
    plan = settings.plan
    net = stack_net(settings)
    prefix = ipaddress.ip_network(plan.cidr).prefixlen
    out: list[NodeSpec] = []
    roles = [(n.role, n.name, n.address) for n in plan.cluster]
    if settings.access.bastion.enabled:
        roles.append(("bastion", plan.bastion.name, plan.bastion.address))
    for role, name, ip in roles:
        pub = role == "bastion"
        out.append(
            NodeSpec(
                name=name,
                role=role,
                hostname=f"pgha-{settings.stack}-{name}",
                address=ip,
                prefixlen=prefix,
                gateway=plan.gateway_ip,
                mac=mac_for(ip),
                netns=f"{net.netns}-{name}",
                bridge_port=f"vb-{name}"[:15],
                public_address=net.public_bastion_ip if pub else None,
                public_mac=mac_for(net.public_bastion_ip, 1) if pub else None,
            )
        )
    return out


def machine_name(settings: Settings, node: str) -> str:
    return f"pgha-{settings.stack}-{node}"
