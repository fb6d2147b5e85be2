"""A node: an overlay over the cached rootfs, its NoCloud seed, its data disk (Patroni),
and a ``systemd-nspawn --boot`` process started inside the node's network namespace.

Containers are plain background processes (PID 1 here is not systemd: no machinectl,
no scopes; ``--register=no --keep-unit``), tracked by pid in the run dir's state.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .seed import SEED_DIR
from .spec import NodeSpec


@dataclass
class NodePaths:
    dir: Path

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    @property
    def data_img(self) -> Path:
        return self.dir / "data.img"


def is_mounted(path: Path) -> bool:
    target = str(path.resolve()) if path.exists() else str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def prepare(paths: NodePaths, base: Path, apt_cache: Path) -> None:
    """Overlay mount (copy-on-write over the cached rootfs); the apt cache's .debs are
    hard-linked into the node's own archive dir (no shared lock between nodes)."""
    for d in (paths.upper, paths.work, paths.root):
        d.mkdir(parents=True, exist_ok=True)
    archives = paths.upper / "var/cache/apt/archives"
    if not archives.exists():
        archives.mkdir(parents=True)
        debs = list(apt_cache.glob("*.deb"))
        for deb in debs:
            with contextlib.suppress(OSError):
                os.link(deb, archives / deb.name)
    if not is_mounted(paths.root):
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={base},upperdir={paths.upper},workdir={paths.work}",
                str(paths.root),
            ],
            check=True,
        )
    (paths.root / "var/log/journal").mkdir(parents=True, exist_ok=True)


def write_seed(paths: NodePaths, meta_data: str, user_data: bytes, network_config: str) -> None:
    """``user_data``: the bytes OVH's metadata service would serve (gzip, see
    cloud_init.common.nova_user_data), so cloud-init decompresses them as on a VM."""
    seed = paths.root / SEED_DIR
    seed.mkdir(parents=True, exist_ok=True)
    os.chmod(seed, 0o700)
    for name, content in (
        ("meta-data", meta_data.encode()),
        ("user-data", user_data),
        ("network-config", network_config.encode()),
    ):
        f = seed / name
        f.write_bytes(content)
        os.chmod(f, 0o600)


def attach_data_disk(paths: NodePaths, size_gb: int) -> str:
    """A sparse file on a loop device: the Patroni node's data volume. Returns /dev/loopN."""
    if not paths.data_img.exists():
        with open(paths.data_img, "wb") as f:
            f.truncate(size_gb * 1024**3)
    found = subprocess.run(
        check=False, args=["losetup", "-j", str(paths.data_img)], capture_output=True, text=True
    ).stdout.strip()
    if found:
        return found.split(":")[0]
    return subprocess.run(
        ["losetup", "-f", "--show", str(paths.data_img)], capture_output=True, text=True, check=True
    ).stdout.strip()


def volume_id(node: str, stack: str) -> str:
    """A stable OpenStack-like volume UUID for the node (the disk's by-id name uses 20 chars)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node}.{stack}.pgha-machines"))


def nspawn_command(node: NodeSpec, machine: str, paths: NodePaths, loop: str | None, vol_id: str | None) -> list[str]:
    cmd = [
        "nsenter", f"--net=/run/netns/{node.netns}",
        "systemd-nspawn", "--boot", f"--machine={machine}", "-D", str(paths.root),
        "--private-users=no", "--register=no", "--keep-unit",
        # The node's namespace is its network: nspawn does not create one, so grant what a VM's root has there.
        "--capability=CAP_NET_ADMIN",
        "--link-journal=no", "--console=read-only", "--resolv-conf=off", "--timezone=off",
    ]  # fmt: skip
    if loop:
        # The kernel's name of the disk (blkid scans /proc/partitions names: LABEL= resolves)
        # and the udev-made by-id name OVH volumes have, which the render's fs_setup uses.
        cmd += [f"--bind={loop}"]
        if vol_id:
            cmd += [f"--bind={loop}:/dev/disk/by-id/virtio-{vol_id[:20]}"]
    return cmd


def cgroup_dirs(machine: str) -> list[Path]:
    """The container's own cgroup in the hierarchies systemd uses. With no systemd on the
    host, ``--keep-unit`` leaves every nspawn in its caller's cgroup, so the containers'
    systemds would share one subtree and trip over each other's units (seen:
    systemd-user-sessions.service "status=219/CGROUP", so /run/nologin stays and SSH is
    refused). One cgroup per machine, made before nspawn starts, removed by ``down``."""
    fs = Path("/sys/fs/cgroup")
    if (fs / "cgroup.controllers").exists():  # pure cgroup v2
        roots = [fs]
    else:
        roots = [r for r in (fs / "systemd", fs / "unified") if (r / "cgroup.procs").exists()]
    return [r / "pgha-machines" / machine for r in roots]


def _enter_cgroups(dirs: list[Path]) -> None:
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.procs").write_text(f"{os.getpid()}\n")


def remove_cgroups(machine: str) -> list[str]:
    """rmdir the machine's cgroup trees, deepest first. Returns those that remain."""
    left = []
    for top in cgroup_dirs(machine):
        if not top.exists():
            continue
        for d in [*sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True), top]:
            with contextlib.suppress(OSError):
                d.rmdir()
        if top.exists():
            left.append(str(top))
    for top in cgroup_dirs(machine):
        with contextlib.suppress(OSError):
            top.parent.rmdir()  # pgha-machines/, when no other stack uses it
    return left


def start(cmd: list[str], console: Path, machine: str) -> int:
    dirs = cgroup_dirs(machine)
    with open(console, "ab") as out, open(os.devnull, "rb") as devnull:
        p = subprocess.Popen(
            cmd,
            stdin=devnull,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: _enter_cgroups(dirs),
        )
    return p.pid


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int | None, machine: str) -> bool:
    """The pid still runs OUR nspawn for ``machine`` (not a recycled pid). During an
    execve (nsenter -> systemd-nspawn) cmdline can read empty: the pid counts as alive
    unless it is a zombie."""
    if not pid:
        return False
    cmd = _cmdline(pid)
    if f"--machine={machine}" in cmd:
        return True
    if cmd == "":
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    return False


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stop(pid: int | None, machine: str, timeout: float = 30.0) -> str:
    """TERM to nspawn (the container powers off cleanly), then KILL nspawn and the
    container's init (its PID namespace dies with it). Returns what was done."""
    if not alive(pid, machine):
        return "not running"
    assert pid
    leaders = _children(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not alive(pid, machine):
            return "stopped"
        time.sleep(0.3)
    for p in leaders:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    return "killed"


def cloud_init_state(root: Path) -> tuple[str, list[str]]:
    """(stage, errors) from the node's /var/lib/cloud/data, read from the host:
    booting | init-local | init | modules-config | modules-final | done | done-with-errors."""
    data = root / "var/lib/cloud/data"
    try:
        status = json.loads((data / "status.json").read_text())["v1"]
    except (OSError, ValueError, KeyError):
        return "booting", []
    errors = [f"{stage}: {e}" for stage, v in status.items() if isinstance(v, dict) for e in v.get("errors") or []]
    if (data / "result.json").exists():
        return ("done-with-errors" if errors else "done"), errors
    stage = status.get("stage")
    if not stage:
        done = [
            s
            for s in ("init-local", "init", "modules-config", "modules-final")
            if (status.get(s) or {}).get("finished")
        ]
        stage = f"after {done[-1]}" if done else "booting"
    return stage, errors
