"""The qemu backend: a node as a full VM (its own kernel, udev, softdog), on the same vRack
bridge as the containers, booted from the same NoCloud data.

- **Image**: the cached mmdebstrap rootfs of image.py in its ``debian12vm`` flavor (the
  same package list plus ``linux-image-cloud-amd64`` and ``initramfs-tools``), written
  once into an ext4 file system image (``mkfs.ext4 -d``, label ``pgha-root``). Each node
  boots a qcow2 overlay backed by it (the base is shared, read-only) with direct kernel
  boot (``-kernel/-initrd`` of the image's /boot), console on ttyS0 into the node's
  console.log.
- **Seed**: a ``cidata`` ISO 9660 volume with the SAME meta-data / user-data /
  network-config the container backend writes (machines/seed.py, machines/render.py):
  cloud-init's NoCloud datasource finds it by its label, as it finds a config drive.
- **NIC**: virtio-net with the planned MAC, PCI slot 4 (the guest names it ``ens4``, as on
  OVH), on a tap that is a port of the vRack bridge; qemu runs inside the vRack namespace.
- **Data volume** (Patroni): a virtio-blk disk with ``serial=<volume id[:20]>``: the
  guest's udev makes ``/dev/disk/by-id/virtio-<serial>``, exactly as Nova's volumes on OVH.
- **Accelerator**: KVM where the CPU has hardware virtualization (vmx/svm) and /dev/kvm is
  usable, else TCG (software emulation); ``--accel tcg|kvm`` forces one. A /dev/kvm
  without vmx/svm (a microVM host's paravirtual KVM) hangs Debian's stock kernel: TCG.
- Every qemu runs under ``nice -n 19`` (a shared build host).

Pure parts (command line, accelerator choice, cloud-init stage from the console) are
unit-tested in tests/unit/test_machines_qemu.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import image
from .spec import NodeSpec, StackNet

FLAVOR = "debian12vm"
VM_PACKAGES = ["linux-image-cloud-amd64", "initramfs-tools"]
ROOT_LABEL = "pgha-root"
ROOT_DISK_GB = 8  #: each node's overlay; cloud-init's resizefs grows / to it, as on OVH
MEMORY_MB = {"etcd": 1024, "patroni": 3072, "bastion": 512}
NICE = 19
NIC_SLOT = 4  #: PCI slot of the private NIC: the guest's predictable name is ens4
KERNEL_ARGS = f"root=LABEL={ROOT_LABEL} rw console=ttyS0,115200n8"
#: Under TCG on a loaded host the guest calibrates its TSC against the emulated PIT and can
#: get it wrong by ~100x (seen: "tsc: PIT calibration deviates from HPET: 30027 2594065",
#: "Detected 30.027 MHz processor"): its clock, timers (the softdog's) and Patroni's ttl then
#: run at the wrong speed. HPET is emulated on the host's clock: keep the guest on it.
TCG_KERNEL_ARGS = "clocksource=hpet tsc=unstable"
FSTAB = f"# pgha machines (qemu): the root file system image\nLABEL={ROOT_LABEL} / ext4 rw,errors=remount-ro 0 1\n"
TOOLS = ("qemu-system-x86_64", "qemu-img", "genisoimage", "mkfs.ext4")


def packages() -> list[str]:
    return image.PACKAGES + VM_PACKAGES


# ------------------------------------------------------------------ accelerator


def choose_accel(requested: str, cpu_flags: set[str], kvm_usable: bool) -> tuple[str, str]:
    """(accel, why). ``auto``: KVM only with hardware virtualization (vmx or svm in the
    CPU flags) and a usable /dev/kvm; else TCG. ``kvm`` without /dev/kvm is an error."""
    if requested == "tcg":
        return "tcg", "asked for (--accel tcg)"
    if requested == "kvm":
        if not kvm_usable:
            raise ValueError("--accel kvm: /dev/kvm is missing or not usable by this user; use --accel tcg")
        return "kvm", "asked for (--accel kvm)"
    if requested != "auto":
        raise ValueError(f"--accel must be auto, kvm or tcg, got {requested!r}")
    hw = cpu_flags & {"vmx", "svm"}
    if hw and kvm_usable:
        return "kvm", f"hardware virtualization ({'/'.join(sorted(hw))}) and /dev/kvm"
    if kvm_usable:
        return "tcg", "/dev/kvm exists but the CPU has no vmx/svm (paravirtual KVM: stock kernels hang): TCG"
    return "tcg", "no /dev/kvm: TCG (software emulation, slow)"


def host_accel(requested: str = "auto") -> tuple[str, str]:
    flags: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
    return choose_accel(requested, flags, os.access("/dev/kvm", os.R_OK | os.W_OK))


def prerequisites() -> list[str]:
    missing = [t for t in TOOLS if not shutil.which(t)]
    return [f"qemu backend: missing {' '.join(missing)}: run scripts/setup-machines.sh"] if missing else []


# ------------------------------------------------------------------ image


@dataclass(frozen=True)
class VmImage:
    kernel: Path
    initrd: Path
    disk: Path  #: raw ext4 image of the rootfs (read-only base of every node's overlay)


def kernel_files(root: Path) -> tuple[Path, Path]:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise RuntimeError(f"no kernel in {root / 'boot'}: the {FLAVOR} image lacks linux-image-cloud-amd64")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = root / "boot" / f"initrd.img-{version}"
    if not initrd.exists():
        raise RuntimeError(f"no {initrd}: initramfs-tools did not build one")
    return kernels[-1], initrd


def softdog_in(config_text: str) -> bool:
    """The kernel config builds the software watchdog (module or built in)."""
    return bool(re.search(r"^CONFIG_SOFT_WATCHDOG=[ym]$", config_text, re.MULTILINE))


def build_image(log: Callable[[str], None] = print) -> VmImage:
    """The VM flavor's rootfs (image.build) and, once, its ext4 disk image."""
    root = image.build(packages(), log=log, flavor=FLAVOR)
    d = root.parent
    kernel, initrd = kernel_files(root)
    config = root / "boot" / f"config-{kernel.name.removeprefix('vmlinuz-')}"
    if not softdog_in(config.read_text() if config.exists() else ""):
        raise RuntimeError(f"{kernel.name} has no CONFIG_SOFT_WATCHDOG ({config}): Patroni's watchdog needs softdog")
    disk = d / "root.ext4"
    if not (d / "disk-ok").exists():
        t0 = time.monotonic()
        (root / "etc/fstab").write_text(FSTAB)
        used = int(
            subprocess.run(["du", "-sxb", str(root)], capture_output=True, text=True, check=True).stdout.split()[0]
        )
        size_mb = used // 2**20 + 1024
        disk.unlink(missing_ok=True)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root), str(disk), f"{size_mb}M"],
            check=True,
            capture_output=True,
        )
        os.chmod(disk, 0o444)
        (d / "disk-ok").write_text(f"{time.time():.0f}\n")
        log(f"image: VM disk {disk} ({size_mb} MiB) in {time.monotonic() - t0:.0f}s")
    return VmImage(kernel=kernel, initrd=initrd, disk=disk)


# ------------------------------------------------------------------ a node


@dataclass
class VmPaths:
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "root.qcow2"

    @property
    def seed(self) -> Path:
        return self.dir / "seed.iso"

    @property
    def data_img(self) -> Path:
        return self.dir / "data.img"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.dir / "qemu.log"


def prepare(paths: VmPaths, img: VmImage) -> None:
    """The node's copy-on-write root disk over the shared base."""
    paths.dir.mkdir(parents=True, exist_ok=True)
    if not paths.disk.exists():
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                str(img.disk),
                str(paths.disk),
                f"{ROOT_DISK_GB}G",
            ],
            check=True,
            capture_output=True,
        )


def write_seed(paths: VmPaths, meta_data: str, user_data: bytes, network_config: str) -> None:
    """NoCloud ``cidata`` ISO with the three files (0600: user-data holds secrets);
    ``user_data``: the bytes OVH's metadata serves (gzip), as nodes.write_seed gets them."""
    with tempfile.TemporaryDirectory(dir=paths.dir) as tmp:
        files = []
        for name, content in (
            ("meta-data", meta_data.encode()),
            ("user-data", user_data),
            ("network-config", network_config.encode()),
        ):
            f = Path(tmp) / name
            f.write_bytes(content)
            files.append(str(f))
        fd = os.open(paths.seed, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        subprocess.run(
            ["genisoimage", "-quiet", "-output", str(paths.seed), "-volid", "cidata", "-joliet", "-rock", *files],
            check=True,
            capture_output=True,
        )
    os.chmod(paths.seed, 0o600)


def data_disk(paths: VmPaths, size_gb: int) -> Path:
    if not paths.data_img.exists():
        with open(paths.data_img, "wb") as f:
            f.truncate(size_gb * 1024**3)
    return paths.data_img


def add_tap(net: StackNet, node: NodeSpec) -> None:
    """The node's tap (named like a container's bridge port) on the vRack bridge."""
    run = ["ip", "-n", net.netns]
    if subprocess.run([*run, "link", "show", node.bridge_port], capture_output=True, check=False).returncode == 0:
        subprocess.run([*run, "link", "del", node.bridge_port], capture_output=True, check=False)
    subprocess.run([*run, "tuntap", "add", "dev", node.bridge_port, "mode", "tap"], check=True, capture_output=True)
    subprocess.run([*run, "link", "set", node.bridge_port, "master", net.bridge, "up"], check=True, capture_output=True)


def qemu_command(
    node: NodeSpec,
    machine: str,
    paths: VmPaths,
    img: VmImage,
    netns: str,
    accel: str,
    volume_id: str | None = None,
) -> list[str]:
    """nice -n 19, inside the vRack namespace, qemu with: the node's overlay (label
    pgha-root), its data volume (serial = 20 chars of the volume id, as Nova sets it), the
    cidata seed, a virtio NIC with the planned MAC in slot 4 (ens4), console to a file."""
    if node.public_address:
        raise ValueError(f"{node.name}: a node with a public NIC (the bastion) runs as a container")
    cmd = [
        "nice", "-n", str(NICE), "nsenter", f"--net=/run/netns/{netns}",
        "qemu-system-x86_64", "-name", machine,
        "-machine", f"pc,accel={accel}", "-cpu", "max" if accel == "tcg" else "host",
        "-smp", "1", "-m", str(MEMORY_MB.get(node.role, 1024)),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", str(img.kernel), "-initrd", str(img.initrd),
        "-append", f"{KERNEL_ARGS} {TCG_KERNEL_ARGS}" if accel == "tcg" else KERNEL_ARGS,
        "-chardev", f"file,id=console,path={paths.console},append=on", "-serial", "chardev:console",
        "-object", "rng-random,id=rng,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng",
        "-netdev", f"tap,id=vrack,ifname={node.bridge_port},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=vrack,mac={node.mac},addr={NIC_SLOT:#x}",
        "-drive", f"file={paths.disk},format=qcow2,if=none,id=root",
        "-device", "virtio-blk-pci,drive=root,addr=0x5",
    ]  # fmt: skip
    if volume_id:
        cmd += ["-drive", f"file={paths.data_img},format=raw,if=none,id=data"]
        cmd += ["-device", f"virtio-blk-pci,drive=data,serial={volume_id[:20]},addr=0x6"]
    cmd += ["-drive", f"file={paths.seed},format=raw,if=none,id=seed,readonly=on"]
    cmd += ["-device", "virtio-blk-pci,drive=seed,addr=0x7"]
    return cmd


def start(cmd: list[str], paths: VmPaths) -> int:
    """qemu in the background (nice and nsenter exec it: the pid is qemu's)."""
    with open(paths.qemu_log, "ab") as out, open(os.devnull, "rb") as devnull:
        p = subprocess.Popen(cmd, stdin=devnull, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return p.pid


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_ours(cmdline: str, machine: str) -> bool:
    return "qemu-system" in cmdline and f" -name {machine} " in f" {cmdline} "


def alive(pid: int | None, machine: str) -> bool:
    """The pid still runs OUR qemu for ``machine`` (not a recycled pid, not a zombie)."""
    if not pid or not is_ours(_cmdline(pid), machine):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop(pid: int | None, machine: str, timeout: float = 15.0) -> str:
    """SIGTERM (qemu exits at once: the VM loses power), SIGKILL after ``timeout``."""
    if not alive(pid, machine):
        return "not running"
    assert pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not alive(pid, machine):
            return "stopped"
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    return "killed"


def our_processes(stack: str) -> list[str]:
    """qemu processes of this stack still running (``down`` leaves none)."""
    out = []
    for pid in (int(x) for x in os.listdir("/proc") if x.isdigit()):
        cmd = _cmdline(pid)
        if "qemu-system" in cmd and f" -name pgha-{stack}-" in f" {cmd}":
            out.append(f"process {pid} {cmd[:80]}")
    return out


# ------------------------------------------------------------------ cloud-init, seen on the console

_STAGES = (
    ("running 'init-local'", "init-local"),
    ("running 'init'", "init"),
    ("running 'modules:config'", "modules-config"),
    ("running 'modules:final'", "modules-final"),
    (" finished at ", "finished"),
)


def console_stage(console_text: str) -> str:
    """The VM's cloud-init stage from the last boot on its console: booting | kernel |
    init-local | init | modules-config | modules-final | finished (then ask the node's
    status.json for errors). Stages print ``Cloud-init v. X running 'init'`` lines."""
    boot = console_text.rfind("Linux version ")
    if boot < 0:
        return "booting"
    stage = "kernel"
    for line in console_text[boot:].splitlines():
        if "Cloud-init v." not in line:
            continue
        for marker, name in _STAGES:
            if marker in line:
                stage = name
    return stage


def resets(console_text: str) -> int:
    """How many times the VM's kernel booted again after the first boot."""
    return max(0, console_text.count("Linux version ") - 1)
