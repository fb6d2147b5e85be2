"""machines/qemu.py: the VM's command line, the accelerator choice, cloud-init's stage read
from a console, and which nodes ``up --backend qemu|--vms`` boots as VMs (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from machines import qemu, spec
from machines.__main__ import vm_nodes
from machines.cluster import Machines
from pgha.settings import load_stack_file

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
IMG = qemu.VmImage(kernel=Path("/c/vmlinuz-6.1"), initrd=Path("/c/initrd.img-6.1"), disk=Path("/c/root.ext4"))
VOL = "0117ec5b-6c3f-5b8c-b1a2-123456789abc"


@pytest.fixture(scope="module")
def dev():
    return load_stack_file("dev", ROOT)


def _node(dev, name):
    return next(n for n in spec.node_specs(dev) if n.name == name)


def _opt_values(cmd, opt):
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == opt]


def test_command_runs_niced_in_the_vrack_namespace(dev):
    pg1 = _node(dev, "pg1")
    cmd = qemu.qemu_command(pg1, "pgha-dev-pg1", qemu.VmPaths(Path("/r/pg1")), IMG, "pgha-dev", "tcg", VOL)
    assert cmd[:5] == ["nice", "-n", "19", "nsenter", "--net=/run/netns/pgha-dev"]
    assert cmd[5] == "qemu-system-x86_64"
    assert _opt_values(cmd, "-name") == ["pgha-dev-pg1"]
    assert _opt_values(cmd, "-machine") == ["pc,accel=tcg"]
    assert _opt_values(cmd, "-cpu") == ["max"]
    assert _opt_values(cmd, "-m") == [str(qemu.MEMORY_MB["patroni"])]
    assert _opt_values(cmd, "-kernel") == ["/c/vmlinuz-6.1"]
    assert _opt_values(cmd, "-initrd") == ["/c/initrd.img-6.1"]
    append = _opt_values(cmd, "-append")[0]
    assert "root=LABEL=pgha-root" in append
    assert "console=ttyS0" in append
    assert "clocksource=hpet" in append  # TCG: a mis-calibrated TSC would skew the softdog's and Patroni's clocks
    assert "file,id=console,path=/r/pg1/console.log,append=on" in _opt_values(cmd, "-chardev")


def test_nic_has_the_planned_mac_on_slot_4_and_the_tap_on_br0(dev):
    pg1 = _node(dev, "pg1")
    cmd = qemu.qemu_command(pg1, "pgha-dev-pg1", qemu.VmPaths(Path("/r/pg1")), IMG, "pgha-dev", "tcg", VOL)
    devices = _opt_values(cmd, "-device")
    nic = [d for d in devices if d.startswith("virtio-net-pci")]
    assert nic == [f"virtio-net-pci,netdev=vrack,mac={pg1.mac},addr=0x4"]
    assert _opt_values(cmd, "-netdev") == [f"tap,id=vrack,ifname={pg1.bridge_port},script=no,downscript=no"]


def test_data_volume_serial_is_the_volume_id_as_nova_sets_it(dev):
    """udev in the guest makes /dev/disk/by-id/virtio-<serial>: the render's fs_setup device."""
    pg1 = _node(dev, "pg1")
    cmd = qemu.qemu_command(pg1, "pgha-dev-pg1", qemu.VmPaths(Path("/r/pg1")), IMG, "pgha-dev", "tcg", VOL)
    drives = _opt_values(cmd, "-drive")
    assert "file=/r/pg1/root.qcow2,format=qcow2,if=none,id=root" in drives
    assert "file=/r/pg1/data.img,format=raw,if=none,id=data" in drives
    assert "file=/r/pg1/seed.iso,format=raw,if=none,id=seed,readonly=on" in drives
    data = [d for d in _opt_values(cmd, "-device") if "drive=data" in d]
    assert data == [f"virtio-blk-pci,drive=data,serial={VOL[:20]},addr=0x6"]
    assert len(VOL[:20]) == 20


def test_etcd_vm_has_no_data_volume_and_kvm_uses_the_host_cpu(dev):
    e1 = _node(dev, "etcd1")
    cmd = qemu.qemu_command(e1, "pgha-dev-etcd1", qemu.VmPaths(Path("/r/e")), IMG, "pgha-dev", "kvm")
    assert not any("id=data" in d for d in _opt_values(cmd, "-drive"))
    assert _opt_values(cmd, "-machine") == ["pc,accel=kvm"]
    assert _opt_values(cmd, "-cpu") == ["host"]
    assert "clocksource" not in _opt_values(cmd, "-append")[0]  # KVM: kvm-clock


def test_the_bastion_is_never_a_vm(dev):
    with pytest.raises(ValueError, match="container"):
        qemu.qemu_command(_node(dev, "bastion"), "b", qemu.VmPaths(Path("/r/b")), IMG, "pgha-dev", "tcg")


@pytest.mark.parametrize(
    "requested, flags, kvm, accel",
    [
        ("auto", {"vmx", "sse2"}, True, "kvm"),
        ("auto", {"svm"}, True, "kvm"),
        ("auto", {"hypervisor"}, True, "tcg"),  # this host: /dev/kvm is a microVM's paravirtual KVM
        ("auto", {"vmx"}, False, "tcg"),
        ("tcg", {"vmx"}, True, "tcg"),
        ("kvm", set(), True, "kvm"),
    ],
)
def test_accelerator_choice(requested, flags, kvm, accel):
    assert qemu.choose_accel(requested, flags, kvm)[0] == accel


def test_kvm_asked_without_dev_kvm_is_a_clear_error():
    with pytest.raises(ValueError, match="--accel tcg"):
        qemu.choose_accel("kvm", {"vmx"}, False)


def test_softdog_in_kernel_config():
    assert qemu.softdog_in("CONFIG_X=y\nCONFIG_SOFT_WATCHDOG=m\n")
    assert qemu.softdog_in("CONFIG_SOFT_WATCHDOG=y")
    assert not qemu.softdog_in("# CONFIG_SOFT_WATCHDOG is not set\nCONFIG_SOFT_WATCHDOG_PRETIMEOUT=y\n")


CONSOLE = """SeaBIOS
[    0.000000] Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)
[   60.1] cloud-init[301]: Cloud-init v. 22.4.2 running 'init-local' at Fri, 27 Nov 2026 20:29:01 +0000.
[   80.2] cloud-init[400]: Cloud-init v. 22.4.2 running 'init' at Fri, 27 Nov 2026 20:29:21 +0000.
"""


def test_console_stage():
    assert qemu.console_stage("") == "booting"
    assert qemu.console_stage("SeaBIOS\n") == "booting"
    assert qemu.console_stage(CONSOLE.split("[   60")[0]) == "kernel"
    assert qemu.console_stage(CONSOLE) == "init"
    more = CONSOLE + (
        "cloud-init[500]: Cloud-init v. 22.4.2 running 'modules:config' at ...\n"
        "cloud-init[600]: Cloud-init v. 22.4.2 running 'modules:final' at ...\n"
    )
    assert qemu.console_stage(more) == "modules-final"
    done = more + "cloud-init[600]: Cloud-init v. 22.4.2 finished at Fri, 27 Nov 2026. Datasource DataSourceNoCloud.\n"
    assert qemu.console_stage(done) == "finished"
    # after a reset, the stage is the new boot's
    assert qemu.console_stage(done + "[    0.000000] Linux version 6.1.0\n") == "kernel"
    assert qemu.resets(done) == 0
    assert qemu.resets(done + "[    0.000000] Linux version 6.1.0\n") == 1


def test_is_ours_matches_the_machine_name_exactly():
    cmd = "qemu-system-x86_64 -name pgha-dev-pg1 -machine pc,accel=tcg"
    assert qemu.is_ours(cmd, "pgha-dev-pg1")
    assert not qemu.is_ours(cmd.replace("pg1", "pg10"), "pgha-dev-pg1")
    assert not qemu.is_ours("systemd-nspawn --machine=pgha-dev-pg1", "pgha-dev-pg1")


def test_which_nodes_are_vms(dev):
    m = Machines(stack="dev", run_dir=Path("/x"), settings=dev, net=spec.stack_net(dev), specs=spec.node_specs(dev))
    assert vm_nodes(m, "nspawn", None) == set()
    assert vm_nodes(m, "qemu", None) == {"etcd1", "etcd2", "etcd3", "pg1", "pg2", "pg3"}
    assert vm_nodes(m, "nspawn", "pg1,pg2") == {"pg1", "pg2"}
    assert "container" in str(vm_nodes(m, "qemu", "bastion"))
    assert "unknown" in str(vm_nodes(m, "qemu", "pg9"))


def test_vms_get_patient_ssh_options(dev):
    from machines.ssh import ssh_config

    text = ssh_config(spec.node_specs(dev), "100.64.0.6", "/k", Path("/kh"), slow=frozenset({"pg1"}))
    blocks = {b.split()[0]: b for b in ("\n" + text).split("\nHost ")[1:]}
    assert "ConnectTimeout 30" in blocks["pg1"]
    assert "ServerAliveCountMax 18" in blocks["pg1"]
    assert "ConnectTimeout 5" in blocks["pg2"]
    assert "ServerAliveCountMax" not in blocks["pg2"]
