"""SSH from the host: to the bastion's "public" address, to the nodes through it
(ProxyJump), as user ``debian`` with the deploy key -- exactly the deploy's path."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from components.access import SSH_USER

from .spec import NodeSpec

OPTS = {
    "User": SSH_USER,
    # Host keys are pinned (known_hosts written by `up` from the keys it rendered), as
    # the deploy's validation pins them: a node answering with another key is refused.
    "StrictHostKeyChecking": "yes",
    "LogLevel": "ERROR",
    "BatchMode": "yes",
    "ConnectTimeout": "5",
    "ServerAliveInterval": "10",
}


#: For qemu VMs under TCG: a loaded host can stall a VM's sshd for more than the 5 s banner
#: timeout or the 30 s of unanswered keepalives (seen: a validation cut silently, since
#: ssh logs "Timeout, server not responding" below LogLevel ERROR).
SLOW_OPTS = {"ConnectTimeout": "30", "ServerAliveCountMax": "18"}


def ssh_config(
    nodes: list[NodeSpec],
    bastion_public_ip: str | None,
    key: str,
    known_hosts: Path,
    slow: frozenset[str] = frozenset(),
) -> str:
    """An ssh_config where every node is a Host: ``ssh -F <run>/ssh_config pg1``.
    ``slow``: nodes (qemu VMs) given SLOW_OPTS."""
    lines = []
    for node in nodes:
        lines.append(f"Host {node.name} {node.hostname}")
        if node.role == "bastion":
            lines.append(f"  HostName {bastion_public_ip}")
        else:
            lines.append(f"  HostName {node.address}")
            if bastion_public_ip:
                lines.append("  ProxyJump bastion")
        lines.append(f"  IdentityFile {key}")
        lines.append(f"  HostKeyAlias {node.name}")
        lines.append(f"  UserKnownHostsFile {known_hosts}")
        lines.append("  IdentitiesOnly yes")
        lines += [f"  {k} {v}" for k, v in (OPTS | (SLOW_OPTS if node.name in slow else {})).items()]
        lines.append("")
    return "\n".join(lines)


def run(config: Path, host: str, script: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    """The script as the remote command (the user's shell runs it, like pulumi-command's
    remote.Command ``create``)."""
    return subprocess.run(
        check=False, args=["ssh", "-F", str(config), host, script], capture_output=True, text=True, timeout=timeout
    )


def wait_reachable(config: Path, host: str, timeout: float, stop: Callable[[], bool] = lambda: False) -> str | None:
    """Retry dialing while the node boots (the deploy's dial_error_limit). None when in,
    else the last error."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline and not stop():
        r = subprocess.run(
            check=False, args=["ssh", "-F", str(config), host, "true"], capture_output=True, text=True, timeout=60
        )
        if r.returncode == 0:
            return None
        last = r.stderr.strip()
        time.sleep(2)
    return last or "timed out"
