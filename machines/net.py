"""The stack's private L2 network (the OVH vRack stand-in) and its egress; see spec.py.

Every step is idempotent; :func:`teardown` removes everything :func:`setup` and
:func:`add_node` can have created, by name, whether or not the state file survived.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .spec import NodeSpec, StackNet

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def _run(*cmd: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(check=False, args=list(cmd), capture_output=True, text=True, input=stdin)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return _run(*cmd, check=False).returncode == 0


def _add_netns(name: str) -> None:
    if not netns_exists(name):
        _run("ip", "netns", "add", name)
    _run("ip", "-n", name, "link", "set", "lo", "up")


def setup(net: StackNet) -> str:
    """The vRack namespace, its bridge with the gateway address, NAT egress. Returns the
    host's previous ip_forward value (restored by teardown)."""
    ns = net.netns
    _add_netns(ns)
    prefix = net.cidr.split("/")[1]
    if not link_exists(net.bridge, ns):
        _run("ip", "-n", ns, "link", "add", net.bridge, "type", "bridge")
        _run("ip", "-n", ns, "addr", "add", f"{net.gateway}/{prefix}", "dev", net.bridge)
    _run("ip", "-n", ns, "link", "set", net.bridge, "up")
    if not link_exists(net.uplink_host):
        _run("ip", "link", "add", net.uplink_host, "type", "veth", "peer", "name", "uplink", "netns", ns)
        _run("ip", "addr", "add", f"{net.uplink_host_ip}/30", "dev", net.uplink_host)
        _run("ip", "-n", ns, "addr", "add", f"{net.uplink_ns_ip}/30", "dev", "uplink")
    _run("ip", "link", "set", net.uplink_host, "up")
    _run("ip", "-n", ns, "link", "set", "uplink", "up")
    _run("ip", "-n", ns, "route", "replace", "default", "via", net.uplink_host_ip)
    _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # In the vRack namespace: the private network leaves only masqueraded, only via uplink.
    _run(
        "ip", "netns", "exec", ns, "nft", "-f", "-",
        stdin=f"""table ip pgha_vrack
delete table ip pgha_vrack
table ip pgha_vrack {{
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    oifname "uplink" ip saddr {net.cidr} masquerade
  }}
  chain forward {{ type filter hook forward priority filter; policy accept;
    oifname "uplink" ip saddr != {net.cidr} drop
  }}
}}
""",
    )  # fmt: skip
    # On the host: the namespace's transit address leaves masqueraded; nothing else from it.
    _run(
        "nft", "-f", "-",
        stdin=f"""table ip {net.nft_table}
delete table ip {net.nft_table}
table ip {net.nft_table} {{
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    ip saddr {net.uplink_ns_ip} oifname != "{net.uplink_host}" masquerade
  }}
  chain forward {{ type filter hook forward priority filter; policy accept;
    iifname "{net.uplink_host}" ip saddr != {net.uplink_ns_ip} drop
    iifname "{net.public_host}" drop
    oifname "{net.public_host}" drop
  }}
}}
""",
    )  # fmt: skip
    before = IP_FORWARD.read_text().strip()
    IP_FORWARD.write_text("1\n")
    return before


def add_node(net: StackNet, node: NodeSpec) -> None:
    """The node's own namespace with its NIC(s); the private one plugged into br0."""
    _add_netns(node.netns)
    if not link_exists("ens4", node.netns):
        if link_exists(node.bridge_port, net.netns):
            _run("ip", "-n", net.netns, "link", "del", node.bridge_port)
        _run(
            "ip",
            "-n",
            net.netns,
            "link",
            "add",
            node.bridge_port,
            "type",
            "veth",
            "peer",
            "name",
            "ens4",
            "netns",
            node.netns,
        )
        _run("ip", "-n", node.netns, "link", "set", "ens4", "address", node.mac)
    _run("ip", "-n", net.netns, "link", "set", node.bridge_port, "master", net.bridge, "up")
    if node.public_address and not link_exists("ens3", node.netns):
        if link_exists(net.public_host):
            _run("ip", "link", "del", net.public_host)
        _run("ip", "link", "add", net.public_host, "type", "veth", "peer", "name", "ens3", "netns", node.netns)
        _run("ip", "-n", node.netns, "link", "set", "ens3", "address", node.public_mac or "")
        _run("ip", "addr", "add", f"{net.public_host_ip}/30", "dev", net.public_host)
        _run("ip", "link", "set", net.public_host, "up")


def teardown(net: StackNet, nodes: list[NodeSpec], ip_forward_before: str | None) -> list[str]:
    """Remove namespaces, veths, the bridge and the host's nft table. Returns problems."""
    problems = []
    for node in nodes:
        if netns_exists(node.netns):
            r = _run("ip", "netns", "del", node.netns, check=False)
            if r.returncode:
                problems.append(f"ip netns del {node.netns}: {r.stderr.strip()}")
    for link in (net.uplink_host, net.public_host):
        if link_exists(link):
            _run("ip", "link", "del", link, check=False)
    if netns_exists(net.netns):
        r = _run("ip", "netns", "del", net.netns, check=False)
        if r.returncode:
            problems.append(f"ip netns del {net.netns}: {r.stderr.strip()}")
    if _run("nft", "list", "table", "ip", net.nft_table, check=False).returncode == 0:
        _run("nft", "delete", "table", "ip", net.nft_table, check=False)
    if ip_forward_before is not None and ip_forward_before != "1":
        IP_FORWARD.write_text(ip_forward_before + "\n")
    return problems


def leftovers(net: StackNet, nodes: list[NodeSpec]) -> list[str]:
    """What of this stack's network still exists (empty after a clean teardown)."""
    out = [f"netns {n}" for n in [net.netns, *(x.netns for x in nodes)] if netns_exists(n)]
    out += [f"link {link}" for link in (net.uplink_host, net.public_host) if link_exists(link)]
    if _run("nft", "list", "table", "ip", net.nft_table, check=False).returncode == 0:
        out.append(f"nft table ip {net.nft_table}")
    return out
