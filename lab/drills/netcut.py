"""Network partitions for the lab: cut one node off from etcd and its peers.

Every lab daemon connects from 127.0.0.1 as the same OS user, so addresses cannot tell
lab nodes apart. Their cgroups can: the supervisor puts each daemon (and everything it
forks: Patroni's postmaster and backends) in its own cgroup v2 group
``pgha-lab-<prefix>/<node>``, and nftables matches the sending socket's cgroup
(``socket cgroupv2``) in the output hook. Clients outside the lab (drill writers,
applications) are not in those groups, so they still reach the cut-off node, as
applications on the other side of a real partition would.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from lab.topology import Topology

NFT_CGROUP_BASE = Path("/sys/fs/cgroup")  # nft resolves cgroupv2 paths relative to this


def cgroup2_root() -> Path | None:
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1])
    except OSError:
        pass
    return None


def _group_name(topo: Topology) -> str:
    return "pgha-lab-" + topo.prefix


def node_cgroup(topo: Topology, node: str) -> Path | None:
    root = cgroup2_root()
    return root / _group_name(topo) / node if root else None


def join(topo: Topology, node: str, pid: int) -> bool:
    """Put ``pid`` (before it forks) in the node's cgroup. Best effort: False if impossible."""
    cg = node_cgroup(topo, node)
    if cg is None:
        return False
    try:
        cg.mkdir(parents=True, exist_ok=True)
        (cg / "cgroup.procs").write_text(str(pid))
        return True
    except OSError:
        return False


def cleanup(topo: Topology) -> None:
    """Remove the (empty) node cgroups after every daemon stopped."""
    cg = node_cgroup(topo, "x")
    if cg is None:
        return
    for d in (*sorted(cg.parent.glob("*/")), cg.parent):
        if d.is_dir():
            with contextlib.suppress(OSError):
                d.rmdir()


def _nft_ref(topo: Topology, node: str) -> tuple[int, str]:
    cg = node_cgroup(topo, node)
    root = cgroup2_root()
    assert cg is not None
    assert root is not None
    return len(cg.relative_to(root).parts), str(cg.relative_to(NFT_CGROUP_BASE))


def table_name(topo: Topology) -> str:
    return "pgha_cut_" + topo.prefix.replace(".", "_")


def kernel_unsupported() -> str | None:
    """Why this kernel/mount layout cannot isolate a lab node (not fixable by setup), or None."""
    root = cgroup2_root()
    if root is None:
        return "no cgroup v2 hierarchy mounted"
    try:
        root.relative_to(NFT_CGROUP_BASE)
    except ValueError:
        return f"cgroup v2 is mounted at {root}, outside {NFT_CGROUP_BASE} where nft resolves cgroup paths"
    return None


def unavailable(topo: Topology) -> str | None:
    """Why a partition cannot be made here, or None."""
    if not shutil.which("nft"):
        return "nft (Debian package nftables) is not installed; scripts/setup.sh installs it"
    unsupported = kernel_unsupported()
    if unsupported:
        return unsupported
    for n in topo.pg_names:
        cg = node_cgroup(topo, n)
        try:
            if cg is None or not (cg / "cgroup.procs").read_text().strip():
                return f"{n}'s daemons are not in their cgroup (lab started before cgroups were used?)"
        except OSError:
            return f"{n} has no cgroup {cg}"
    return None


def ruleset(topo: Topology, node: str) -> str:
    """Drop what ``node`` sends to etcd and its peers, and what its peers send to it."""
    level, path = _nft_ref(topo, node)
    ip = topo.address(node)
    others = [n for n in topo.pg_names if n != node]
    away = ", ".join([*topo.plan.addresses("etcd"), *(topo.address(n) for n in others)])
    lines = [f'        socket cgroupv2 level {level} "{path}" ip daddr {{ {away} }} drop']
    for n in others:
        lv, p = _nft_ref(topo, n)
        lines.append(f'        socket cgroupv2 level {lv} "{p}" ip daddr {ip} drop')
    body = "\n".join(lines)
    return f"table inet {table_name(topo)} {{\n    chain out {{\n        type filter hook output priority 0; policy accept;\n{body}\n    }}\n}}\n"


def partition(topo: Topology, node: str) -> str:
    reason = unavailable(topo)
    if reason:
        raise RuntimeError(f"cannot partition: {reason}")
    heal(topo)
    rules = ruleset(topo, node)
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)
    return rules


def heal(topo: Topology) -> None:
    if shutil.which("nft"):
        subprocess.run(check=False, args=["nft", "delete", "table", "inet", table_name(topo)], capture_output=True)
