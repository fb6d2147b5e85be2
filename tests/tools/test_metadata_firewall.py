"""Proof that the rendered host firewall keeps the metadata service (user-data: TLS keys,
passwords, DNS API keys) from every local user but root.

In a network namespace of its own, the test gives loopback the metadata address, serves
it on port 80, loads a node's rendered /etc/nftables.conf with ``nft -f`` and connects:
root gets the data, ``nobody`` is refused at once. Without the ruleset, ``nobody`` gets
the data too, so the refusal is the firewall's doing. Needs root; the host's own ruleset
is never touched (nft and the namespace's loopback are per namespace).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_init.__main__ import fake_render
from pgha.firewall import METADATA_ADDRESS, METADATA_ADDRESS_V6
from pgha.settings import load_stack_file

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
PORT = 80
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may not be readable by nobody
UNPRIVILEGED = "nobody"
SECRET = "user-data: private keys"

# The metadata service on both its addresses: IPv4, and IPv6's link-local one (scope:
# the namespace's loopback, interface index 1).
LISTENER = f"""
import socket, threading
def serve(family, address):
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(address)
    s.listen()
    while True:
        c, _ = s.accept()
        c.sendall({SECRET!r}.encode())
        c.close()
threading.Thread(target=serve, args=(socket.AF_INET6, ({METADATA_ADDRESS_V6!r}, {PORT}, 0, 1)), daemon=True).start()
serve(socket.AF_INET, ({METADATA_ADDRESS!r}, {PORT}))
"""

CLIENT = """
import json, socket, sys, time
t = time.monotonic()
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
        out = {"data": s.recv(100).decode()}
except OSError as e:
    out = {"errno": e.errno, "error": str(e)}
out["seconds"] = time.monotonic() - t
print(json.dumps(out))
"""
#: Where a client on the node reaches the metadata service.
ADDRESSES = {"ipv4": METADATA_ADDRESS, "ipv6": f"{METADATA_ADDRESS_V6}%lo"}


def ruleset(role: str) -> str:
    files = fake_render(load_stack_file("dev", ROOT))
    node = "etcd1" if role == "etcd" else "pg1"
    return files[f"{role}/{node}/files/etc/nftables.conf"]


def missing_prerequisite() -> str | None:
    """Why this host cannot run the proof (a skip), or None. What scripts/setup.sh installs
    and Debian always has is not a reason to skip: its absence fails the test."""
    if os.geteuid() != 0:
        return "needs root: creates a network namespace, loads nftables in it, runs a client as nobody"
    for tool in ("ip", "nft", "runuser"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run scripts/setup.sh (iproute2, nftables, util-linux)")
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing: run scripts/setup.sh")
    try:
        pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        pytest.fail(f"no user {UNPRIVILEGED!r} to run the unprivileged client as (Debian always has one)")
    return None


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=False, capture_output=True, text=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace whose loopback carries the metadata address and serves it."""
    if reason := missing_prerequisite():
        pytest.skip(reason)
    ns = f"pgha-mdtest-{os.getpid()}"
    p = run("ip", "netns", "add", ns)
    if p.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {p.stderr.strip()}")
    listener = None
    try:
        for cmd in (
            ["link", "set", "lo", "up"],
            ["addr", "add", f"{METADATA_ADDRESS}/32", "dev", "lo"],
            ["addr", "add", f"{METADATA_ADDRESS_V6}/128", "dev", "lo"],
        ):
            p = run("ip", "-n", ns, *cmd)
            assert p.returncode == 0, p.stderr
        listener = subprocess.Popen(
            ["ip", "netns", "exec", ns, SYSTEM_PYTHON, "-c", LISTENER],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        while any(connect(ns, a, as_root=True).get("data") != SECRET for a in ADDRESSES.values()):
            assert listener.poll() is None, f"listener exited: {listener.stderr.read() if listener.stderr else ''}"
            assert time.monotonic() < deadline, "the listener never answered"
            time.sleep(0.1)
        yield ns
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(timeout=10)
        run("ip", "netns", "del", ns)


def connect(ns: str, address: str, *, as_root: bool) -> dict[str, object]:
    """Connect to the metadata ``address`` from inside ``ns``; what the client saw."""
    user = [] if as_root else ["runuser", "-u", UNPRIVILEGED, "--"]
    p = run("ip", "netns", "exec", ns, *user, SYSTEM_PYTHON, "-c", CLIENT, address, str(PORT))
    assert p.returncode == 0, p.stderr
    out: dict[str, object] = json.loads(p.stdout)
    return out


def load(ns: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "nftables.conf"
    path.write_text(text)
    p = run("ip", "netns", "exec", ns, "nft", "-f", str(path))
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("family", sorted(ADDRESSES))
@pytest.mark.parametrize("role", ["etcd", "patroni"])
def test_only_root_reaches_the_metadata_service(role: str, family: str, netns: str, tmp_path: Path) -> None:
    address = ADDRESSES[family]
    # Control: with no ruleset, an unprivileged process reads user-data.
    assert connect(netns, address, as_root=False).get("data") == SECRET

    load(netns, ruleset(role), tmp_path)
    root = connect(netns, address, as_root=True)
    assert root.get("data") == SECRET, root  # cloud-init (root) still gets its user-data
    other = connect(netns, address, as_root=False)
    assert "data" not in other, f"{UNPRIVILEGED} read the metadata service through the {role} firewall"
    assert other["errno"] in (1, 111), other  # EPERM or ECONNREFUSED: rejected, not timed out
    assert isinstance(other["seconds"], float)
    assert other["seconds"] < 2, other
