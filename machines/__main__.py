"""python -m machines [--stack dev] <command>: the stack's nodes as real Debian 12 systems.

up          build/reuse the Debian 12 image, boot every node (etcd, Patroni, bastion)
            from its exact rendered user-data, show cloud-init progress, then run the
            deploy's validation over SSH through the bastion (safe when running)
status      per node: up?, cloud-init status, Patroni role
down        stop every container and remove namespaces, veths, bridge, mounts, loops
ssh NODE    ssh to a node through the bastion (extra args are passed to ssh)
logs        collect every node's logs into the run dir
drill S..   failover drills on the booted nodes (node-death, switchover): writers in the
            vRack namespace, RTO, acknowledged-but-lost writes, two primaries (exit 1)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pgha.settings import SettingsError

from . import cluster as c
from . import qemu, s3


def cmd_up(args: argparse.Namespace) -> int:
    problems = c.prerequisites()
    if problems:
        print("machines cannot run here:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    m = c.open_machines(args.stack, args.run_dir, args.name, backup=args.backup)
    if args.nodes:
        wanted = args.nodes.split(",")
        unknown = sorted(set(wanted) - {s.name for s in m.specs})
        if unknown:
            print(
                f"unknown node(s) {', '.join(unknown)}; the stack has {', '.join(s.name for s in m.specs)}",
                file=sys.stderr,
            )
            return 2
        m.specs = [s for s in m.specs if s.name in wanted]
    if m.settings.backup.enabled and s3.prerequisites():
        print("machines cannot run backups here:\n  " + "\n  ".join(s3.prerequisites()), file=sys.stderr)
        return 2
    vms = vm_nodes(m, args.backend, args.vms)
    if isinstance(vms, str):
        print(vms, file=sys.stderr)
        return 2
    if vms:
        problems = qemu.prerequisites()
        try:
            qemu.host_accel(args.accel)
        except ValueError as e:
            problems.append(str(e))
        if problems:
            print("machines cannot run VMs here:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
    t0 = time.monotonic()
    if m.running():
        print(f"machines {m.stack} already running in {m.run_dir}; validating")
        if args.backup and not m.state.get("backup"):
            print("  (--backup ignored: these machines were booted without backups; down, then up --backup)")
    else:
        if m.state:
            print("cleaning up a previous run that is no longer running")
            c.down(m, log=lambda s: None)
            specs = m.specs
            m = c.open_machines(args.stack, args.run_dir, args.name, backup=args.backup)
            m.specs = specs
        c.boot(m, exact=args.exact, vms=vms, accel=args.accel)
    try:
        ok = c.wait_cloud_init(m, timeout=args.timeout or (c.VM_BOOT_TIMEOUT if vms else c.BOOT_TIMEOUT))
    except c.MachinesError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        ok = False
    booted = time.monotonic() - t0
    print(
        f"cloud-init finished on every node after {booted:.0f}s"
        if ok
        else f"cloud-init did not finish on every node after {booted:.0f}s"
    )
    results = c.validate(m) if ok or args.validate_anyway else []
    new = c.save_debs(m)
    if new:
        print(f"apt cache: +{new} packages")
    passed = ok and results and all(r.ok for r in results)
    print()
    print(c.status_table(m))
    if not passed:
        logs = c.collect_logs(m)
        print(f"\nvalidation FAILED after {time.monotonic() - t0:.0f}s; logs of every node in {logs}", file=sys.stderr)
        return 1
    print(
        f"\nvalidated after {time.monotonic() - t0:.0f}s. Next: python -m machines --stack {m.stack} ssh pg1 | status | down"
    )
    return 0


def vm_nodes(m: c.Machines, backend: str, vms: str | None) -> set[str] | str:
    """Which nodes boot as qemu VMs: every node but the bastion with ``--backend qemu``
    (its "public" NIC is a host veth: it stays a container), or those ``--vms`` names.
    A string is the error to print."""
    names = {s.name for s in m.specs}
    if vms:
        wanted = set(vms.split(","))
        bad = sorted(wanted - names)
        if bad:
            return f"--vms: unknown or not booted node(s) {', '.join(bad)}; booting {', '.join(sorted(names))}"
        if any(s.public_address for s in m.specs if s.name in wanted):
            return "--vms: the bastion runs as a container (its public NIC is a host veth); pick cluster nodes"
        return wanted
    if backend == "qemu":
        return {s.name for s in m.specs if not s.public_address}
    return set()


def cmd_status(args: argparse.Namespace) -> int:
    m = c.open_machines(args.stack, args.run_dir, args.name)
    if not m.state:
        print(f"machines {m.stack}: not running ({m.run_dir})")
        return 3
    print(c.status_table(m))
    return 0 if all(m.is_up(s.name) for s in m.specs) else 1


def cmd_down(args: argparse.Namespace) -> int:
    m = c.open_machines(args.stack, args.run_dir, args.name)
    left = c.down(m, keep_logs=not args.clean)
    if left:
        print("left behind:\n  " + "\n  ".join(left), file=sys.stderr)
        return 1
    print(f"machines {m.stack}: down, nothing left behind")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    m = c.open_machines(args.stack, args.run_dir, args.name)
    if not m.ssh_config.exists():
        print(f"machines {m.stack} not up", file=sys.stderr)
        return 3
    os.execvp("ssh", ["ssh", "-F", str(m.ssh_config), args.node, *[a for a in args.remote if a != "--"]])


def cmd_logs(args: argparse.Namespace) -> int:
    m = c.open_machines(args.stack, args.run_dir, args.name)
    print(c.collect_logs(m))
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    from . import drills

    return drills.cmd_drill(c.open_machines(args.stack, args.run_dir, args.name), args.scenarios)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m machines", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stack", default="dev")
    ap.add_argument(
        "--name",
        help="machines instance name (default: the stack's): namespaces, hostnames, run dir;"
        " boots a second copy of a stack beside one already up",
    )
    ap.add_argument(
        "--run-dir",
        type=lambda p: __import__("pathlib").Path(p),
        default=None,
        help="default /var/lib/pgha-machines/<stack>",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument(
        "--timeout",
        type=float,
        help=f"seconds for cloud-init on every node (default {c.BOOT_TIMEOUT}, {c.VM_BOOT_TIMEOUT} with VMs)",
    )
    up.add_argument("--nodes", help="boot only these nodes, e.g. etcd1,bastion (experiments: a late etcd peer, ...)")
    up.add_argument(
        "--exact", action="store_true", help="no container overrides (patroni.watchdog stays as the stack says)"
    )
    up.add_argument(
        "--backend",
        choices=("nspawn", "qemu"),
        default="nspawn",
        help="nspawn: containers (default, fast); qemu: every node but the bastion as a full VM (see docs/machines.md)",
    )
    up.add_argument("--vms", help="these nodes as qemu VMs, the rest as containers, e.g. --vms pg1")
    up.add_argument(
        "--backup",
        action="store_true",
        help="backups on (backup.enabled): pgBackRest on the Patroni nodes, the object storage a SeaweedFS"
        " server on this host (containers only; see docs/machines.md)",
    )
    up.add_argument(
        "--accel",
        choices=("auto", "kvm", "tcg"),
        default="auto",
        help="qemu accelerator: auto = KVM with hardware virtualization (vmx/svm), else TCG",
    )
    up.add_argument(
        "--validate-anyway", action="store_true", help="run the validation even if cloud-init did not finish"
    )
    sub.add_parser("status")
    d = sub.add_parser("down")
    d.add_argument("--clean", action="store_true", help="also remove the run dir (logs, deploy key)")
    s = sub.add_parser("ssh")
    s.add_argument("node")
    s.add_argument("remote", nargs=argparse.REMAINDER, help="command to run (default: a login shell)")
    sub.add_parser("logs")
    dr = sub.add_parser("drill")
    dr.add_argument("scenarios", nargs="+", choices=("node-death", "switchover", "frozen-primary"))
    args = ap.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a log file as they happen
    try:
        return {
            "up": cmd_up,
            "status": cmd_status,
            "down": cmd_down,
            "ssh": cmd_ssh,
            "logs": cmd_logs,
            "drill": cmd_drill,
        }[args.command](args)
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    except c.MachinesError as e:
        print(f"machines: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
