"""up / status / down / logs of a stack's machines. See machines/__init__.py."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cloud_init.common import nova_user_data, served_user_data
from components.validation import etcd_script, patroni_script
from lab.topology import new_passwords
from pgha.secrets import Passwords
from pgha.settings import Settings

from . import image, net, nodes, qemu, render, s3, seed, ssh
from .spec import NodeSpec, StackNet, machine_name, node_specs, stack_net

RUN_ROOT = Path(os.environ.get("PGHA_MACHINES_RUN", "/var/lib/pgha-machines"))
REQUIRED_TOOLS = (
    "systemd-nspawn",
    "mmdebstrap",
    "nsenter",
    "losetup",
    "nft",
    "ip",
    "ssh",
    "ssh-keygen",
    "curl",
    "journalctl",
)
BOOT_TIMEOUT = 900  #: seconds for every node's cloud-init to finish
VM_BOOT_TIMEOUT = 3600  #: the same with qemu VMs (TCG: ~10x slower than a container)

Log = Callable[[str], None]


class MachinesError(RuntimeError):
    pass


def prerequisites() -> list[str]:
    """What this host lacks to run machines (empty: good to go)."""
    out = []
    if os.geteuid() != 0:
        out.append("must run as root (network namespaces, overlay mounts, loop devices, nspawn)")
    missing = [t for t in REQUIRED_TOOLS if not shutil.which(t)]
    if missing:
        out.append(f"missing commands {' '.join(missing)}: run scripts/setup-machines.sh")
    if not Path("/dev/loop-control").exists():
        out.append("no /dev/loop-control: Patroni data disks need loop devices")
    return out


@dataclass
class Machines:
    stack: str
    run_dir: Path
    settings: Settings
    net: StackNet
    specs: list[NodeSpec]
    state: dict[str, Any] = field(default_factory=dict)
    #: the stack's settings as they are (no container override): what a VM node boots with
    exact: Settings | None = None

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def ssh_config(self) -> Path:
        return self.run_dir / "ssh_config"

    def paths(self, node: str) -> nodes.NodePaths:
        return nodes.NodePaths(self.run_dir / "nodes" / node)

    def machine(self, node: str) -> str:
        return machine_name(self.settings, node)

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)

    def pid(self, node: str) -> int | None:
        return (self.state.get("nodes", {}).get(node) or {}).get("pid")

    def backend(self, node: str) -> str:
        """``nspawn`` (container) or ``qemu`` (VM): per node, recorded by ``boot``."""
        return str((self.state.get("nodes", {}).get(node) or {}).get("backend", "nspawn"))

    def vm_paths(self, node: str) -> qemu.VmPaths:
        return qemu.VmPaths(self.run_dir / "nodes" / node)

    def settings_for(self, node: str) -> Settings:
        """What the node was booted with: VMs get the stack's settings unchanged."""
        return self.exact if self.backend(node) == "qemu" and self.exact else self.settings

    def is_up(self, node: str) -> bool:
        if self.backend(node) == "qemu":
            return qemu.alive(self.pid(node), self.machine(node))
        return nodes.alive(self.pid(node), self.machine(node))

    def running(self) -> bool:
        return any(self.is_up(s.name) for s in self.specs)


def open_machines(stack: str, run_dir: Path | None = None, name: str | None = None, backup: bool = False) -> Machines:
    """``name``: the machines' instance name (default: the stack's, or the one the run dir
    was booted with): namespaces, hostnames, machine names and the default run dir derive
    from it, so a second copy of a stack can run beside another (``--name``).
    ``backup``: backups on (``up --backup``, machines/s3.py); a run booted so keeps them."""
    run_dir = run_dir or RUN_ROOT / (name or stack)
    state = json.loads((run_dir / "state.json").read_text()) if (run_dir / "state.json").exists() else {}
    name = name or state.get("name") or stack
    settings = render.load_settings(stack)
    if backup or state.get("backup"):
        settings = render.load_settings(stack, overrides=s3.overrides(replace(settings, stack=name)))
    if name != stack:
        settings = replace(settings, stack=name)
    m = Machines(stack=stack, run_dir=run_dir, settings=settings, net=stack_net(settings), specs=node_specs(settings))
    m.exact = settings
    if state:
        m.state = state
        if m.state.get("container_overrides"):
            m.settings = render.container_settings(settings)[0]
    return m


# ------------------------------------------------------------------ up


def save_passwords(run_dir: Path, passwords: Passwords) -> None:
    """<run>/secrets.json, mode 0600 from its creation: the passwords the nodes were rendered with."""
    path = run_dir / "secrets.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dataclasses.asdict(passwords), f)
    os.chmod(path, 0o600)


def load_passwords(run_dir: Path) -> Passwords:
    path = run_dir / "secrets.json"
    if not path.exists():
        raise MachinesError(f"no {path}: these machines were booted before passwords were kept; down, then up")
    return Passwords(**json.loads(path.read_text()))


def boot(m: Machines, log: Log = print, exact: bool = False, vms: set[str] | None = None, accel: str = "auto") -> None:
    """Build/reuse the image, render, wire the network, start every node at once.
    ``exact``: the stack's settings as they are (no CONTAINER_OVERRIDES) on containers too.
    ``vms``: nodes booted as qemu VMs (the rest are containers); a VM always boots the
    stack's settings as they are (it has a kernel watchdog)."""
    vms = vms or set()
    backup = m.settings.backup.enabled
    if backup and vms:
        raise MachinesError(
            "backups (--backup) run on containers only: a VM's root cannot be given the object storage's"
            " host names and CA before it boots; drop --vms/--backend qemu"
        )
    base = image.build(log=log)
    vm_image = vm_accel = None
    if vms:
        vm_image = qemu.build_image(log=log)
        vm_accel, why = qemu.host_accel(accel)
        log(f"qemu: {len(vms)} VM(s) ({', '.join(sorted(vms))}), accel {vm_accel}: {why}; nice -n {qemu.NICE}")
    m.run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(m.run_dir, 0o700)
    key, pub = render.deploy_key(m.run_dir / "deploy_key")
    settings = render.with_deploy_key(m.settings, pub)
    container = settings
    if not exact and any(s.role == "patroni" and s.name not in vms for s in m.specs):
        container, changed = render.container_settings(settings)
        for c in changed:
            log(f"container override (a container has no kernel watchdog): {c}")
    passwords = new_passwords()
    # Host keys generated here and pinned by SSH, as the stack generates and the deploy pins them.
    host_keys = {spec.name: render.new_host_key() for spec in m.specs}
    ca = render.new_ca(settings)
    backup_secrets, storage_ca = s3.prepare(m.run_dir, m.net, settings) if backup else (None, "")
    user_data, ca_pem = render.render_nodes(container, passwords, host_keys, ca, backup_secrets)
    if vms:
        user_data.update(
            {n: u for n, u in render.render_nodes(settings, passwords, host_keys, ca)[0].items() if n in vms}
        )
    (m.run_dir / "ca.crt").write_text(ca_pem)
    (m.run_dir / "known_hosts").write_text("".join(f"{n} {k.public}\n" for n, k in host_keys.items()))
    save_passwords(m.run_dir, passwords)  # the drills' writers connect as the app user
    m.ssh_config.write_text(
        ssh.ssh_config(
            m.specs,
            m.net.public_bastion_ip if settings.access.bastion.enabled else None,
            key,
            m.run_dir / "known_hosts",
            slow=frozenset(vms),
        )
    )
    # Validate against what was booted (the deploy's checks read settings: watchdog mode).
    m.exact = m.settings
    m.settings = render.container_settings(m.settings)[0] if not exact else m.settings
    m.state = {
        "stack": m.stack,
        "name": m.settings.stack,
        "base": str(base),
        "nodes": {},
        "started": time.time(),
        "container_overrides": not exact,
        "accel": vm_accel,
        "backup": backup,
    }
    m.state["ip_forward_before"] = net.setup(m.net)
    m.save()
    if backup:
        m.state["s3"] = {"pid": s3.start(m.run_dir, m.net, m.settings)}
        m.save()
        names = " ".join(s3.host_names(m.settings))
        log(
            f"object storage (outside the user-data, machines/s3.py): SeaweedFS on {m.net.uplink_host_ip}:{s3.S3_PORT}"
            f" for {names}, bucket {m.settings.backup.bucket}"
        )
    nameservers = seed.host_nameservers(Path("/etc/resolv.conf").read_text())
    run_id = f"{int(time.time())}"
    for spec in m.specs:
        p = m.paths(spec.name)
        instance = f"i-{m.settings.stack}-{spec.name}-{run_id}"
        files = (
            seed.meta_data(spec, instance, [pub]),
            served_user_data(nova_user_data(user_data[spec.name])),
            seed.network_config_yaml(spec, nameservers),
        )
        vol = nodes.volume_id(spec.name, m.settings.stack) if spec.role == "patroni" else None
        loop = None
        if spec.name in vms:
            assert vm_image
            vp = m.vm_paths(spec.name)
            qemu.prepare(vp, vm_image)
            qemu.write_seed(vp, *files)
            qemu.add_tap(m.net, spec)
            if vol:
                qemu.data_disk(vp, m.settings.patroni.volume_size_gb)
        else:
            net.add_node(m.net, spec)
            nodes.prepare(p, base, image.apt_cache_dir())
            if backup and spec.role == "patroni":
                s3.install_into_root(p.root, m.net, m.settings, storage_ca)
            nodes.write_seed(p, *files)
            if vol:
                loop = nodes.attach_data_disk(p, m.settings.patroni.volume_size_gb)
        (p.dir / "user-data").write_text(user_data[spec.name])
        os.chmod(p.dir / "user-data", 0o600)
        m.state["nodes"][spec.name] = {
            "machine": m.machine(spec.name),
            "backend": "qemu" if spec.name in vms else "nspawn",
            "loop": loop,
            "volume_id": vol,
            "root": str(p.root),
        }
        m.save()
    # Started together, last: etcd's first start blocks until a quorum of members is up.
    for spec in m.specs:
        m.state["nodes"][spec.name]["pid"] = start_node(m, spec, vm_image)
        m.save()
    log(f"started {len(m.specs)} nodes: {', '.join(f'{s.name}={m.pid(s.name)}' for s in m.specs)}")
    if backup:
        t0 = time.monotonic()
        try:
            s3.wait_bucket(m.run_dir, m.net, m.settings)
        except RuntimeError as e:
            raise MachinesError(f"object storage: {e}") from e
        log(f"object storage: bucket {m.settings.backup.bucket} created ({time.monotonic() - t0:.1f}s)")


def start_node(m: Machines, spec: NodeSpec, vm_image: qemu.VmImage | None = None) -> int:
    """Start (or start again, after a power loss) a node that ``boot`` prepared."""
    st = m.state["nodes"][spec.name]
    if st.get("backend") == "qemu":
        img = vm_image or qemu.build_image(log=lambda s: None)
        vp = m.vm_paths(spec.name)
        cmd = qemu.qemu_command(
            spec, m.machine(spec.name), vp, img, m.net.netns, m.state.get("accel") or "tcg", st["volume_id"]
        )
        return qemu.start(cmd, vp)
    p = m.paths(spec.name)
    nodes.remove_cgroups(m.machine(spec.name))  # a dead container's empty cgroups
    return nodes.start(
        nodes.nspawn_command(spec, m.machine(spec.name), p, st["loop"], st["volume_id"]),
        p.console,
        m.machine(spec.name),
    )


def vm_cloud_init_state(m: Machines, node: str) -> tuple[str, list[str]]:
    """A VM's disk cannot be read from the host while it runs: the stage comes from its
    console; once cloud-init says it finished, its status.json is read over SSH (cached)."""
    cache = m.state.setdefault("vm_cloud_init", {})
    if node in cache:
        return cache[node][0], cache[node][1]
    console = m.vm_paths(node).console
    stage = qemu.console_stage(console.read_text(errors="replace") if console.exists() else "")
    if stage != "finished":
        return stage, []
    r = ssh.run(
        m.ssh_config,
        node,
        "sudo cat /var/lib/cloud/data/status.json; echo; sudo test -e /var/lib/cloud/data/result.json && echo RESULT",
        timeout=60,
    )
    status_text, _, rest = r.stdout.partition("\n\n")
    if r.returncode not in (0, 1) or not status_text.strip():
        return "finished (status.json: no SSH yet)", []
    state = nodes.parse_cloud_init_status(status_text, "RESULT" in rest)
    if state[0].startswith("done"):
        cache[node] = list(state)
    return state


def cloud_init_state(m: Machines, node: str) -> tuple[str, list[str]]:
    if m.backend(node) == "qemu":
        return vm_cloud_init_state(m, node)
    return nodes.cloud_init_state(m.paths(node).root)


def progress_line(m: Machines, t0: float) -> tuple[str, bool]:
    parts, done = [], True
    for s in m.specs:
        stage, errs = cloud_init_state(m, s.name)
        if not m.is_up(s.name):
            stage = "DEAD"
        if not stage.startswith("done"):
            done = False
        parts.append(f"{s.name}:{stage}{'(!' + str(len(errs)) + ')' if errs else ''}")
    return f"[{time.monotonic() - t0:5.0f}s] " + "  ".join(parts), done


def wait_cloud_init(m: Machines, timeout: float = BOOT_TIMEOUT, log: Log = print, every: float = 5.0) -> bool:
    t0 = time.monotonic()
    last = ""
    seen_dead: set[str] = set()
    while True:
        line, done = progress_line(m, t0)
        now_dead = {s.name for s in m.specs if not m.is_up(s.name)}
        dead = sorted(now_dead & seen_dead)  # dead at two polls in a row
        seen_dead = now_dead
        if line.split("] ", 1)[1] != last or done:
            log(line)
            last = line.split("] ", 1)[1]
        if done:
            return True
        if dead:
            raise MachinesError(
                f"node(s) {', '.join(dead)} stopped while booting; see {m.run_dir}/nodes/<node>/console.log"
            )
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(every)


@dataclass
class Check:
    node: str
    ok: bool
    output: str
    seconds: float


def _validate_node(m: Machines, spec: NodeSpec) -> Check:
    t0 = time.monotonic()
    err = ssh.wait_reachable(m.ssh_config, spec.name, timeout=300)
    if err:
        return Check(spec.name, False, f"ssh to {spec.name} failed: {err}", time.monotonic() - t0)
    settings = m.settings_for(spec.name)
    script = etcd_script(settings, spec.name) if spec.role == "etcd" else patroni_script(settings, spec.name)
    r = ssh.run(m.ssh_config, spec.name, script)
    out = (r.stdout + r.stderr).strip()
    return Check(spec.name, r.returncode == 0, out, time.monotonic() - t0)


def validate(m: Machines, log: Log = print) -> list[Check]:
    """The deploy's validation commands, over SSH through the bastion: every etcd member
    (in parallel), then, when all passed, every Patroni node (in parallel)."""
    results: list[Check] = []
    for role in ("etcd", "patroni"):
        group = [s for s in m.specs if s.role == role]
        if not group:
            continue
        with ThreadPoolExecutor(len(group)) as ex:
            checks = list(ex.map(lambda s: _validate_node(m, s), group))
        for c in checks:
            log(
                f"  {'PASS' if c.ok else 'FAIL'}  {c.node:6} ({c.seconds:4.0f}s) "
                + c.output.replace("\n", "\n" + " " * 22)
            )
        results += checks
        if not all(c.ok for c in checks):
            break
    return results


def save_debs(m: Machines) -> int:
    """Hard-link the .debs the nodes downloaded into the shared apt cache."""
    cache = image.apt_cache_dir()
    n = 0
    for s in m.specs:
        for deb in (m.paths(s.name).upper / "var/cache/apt/archives").glob("*.deb"):
            target = cache / deb.name
            if not target.exists():
                try:
                    os.link(deb, target)
                    n += 1
                except OSError:
                    pass
    return n


def collect_logs(m: Machines) -> Path:
    """cloud-init logs, console and journal of every node into <run>/logs-<time>/."""
    out = m.run_dir / f"logs-{time.strftime('%Y%m%d-%H%M%S')}"
    for s in m.specs:
        p = m.paths(s.name)
        d = out / s.name
        d.mkdir(parents=True, exist_ok=True)
        if m.backend(s.name) == "qemu":
            collect_vm_logs(m, s.name, d)
            continue
        for rel in (
            "var/log/cloud-init.log",
            "var/log/cloud-init-output.log",
            "var/lib/cloud/data/status.json",
            "var/lib/cloud/data/result.json",
        ):
            src = p.root / rel
            if src.exists():
                shutil.copyfile(src, d / Path(rel).name)
        if p.console.exists():
            shutil.copyfile(p.console, d / "console.log")
        jdir = p.root / "var/log/journal"
        if jdir.exists():
            with open(d / "journal.txt", "w") as f:
                subprocess.run(
                    check=False,
                    args=["journalctl", "-D", str(jdir), "--no-pager", "-o", "short-monotonic"],
                    stdout=f,
                    stderr=subprocess.STDOUT,
                )
    return out


VM_LOGS = (
    "var/log/cloud-init.log var/log/cloud-init-output.log var/lib/cloud/data/status.json var/lib/cloud/data/result.json"
)


def collect_vm_logs(m: Machines, node: str, d: Path) -> None:
    """A VM's console and qemu output from the host; its cloud-init files and journal over
    SSH (its disk is in use), when it answers."""
    vp = m.vm_paths(node)
    for src in (vp.console, vp.qemu_log):
        if src.exists():
            shutil.copyfile(src, d / src.name)
    if not m.is_up(node):
        return
    r = subprocess.run(
        ["ssh", "-F", str(m.ssh_config), node, f"cd / && sudo tar -cf - --ignore-failed-read {VM_LOGS} 2>/dev/null"],
        check=False,
        capture_output=True,
        timeout=120,
    )
    if r.stdout:
        subprocess.run(["tar", "-C", str(d), "--transform=s,.*/,,", "-xf", "-"], input=r.stdout, check=False)
    with open(d / "journal.txt", "w") as f:
        subprocess.run(
            ["ssh", "-F", str(m.ssh_config), node, "sudo journalctl -b --no-pager -o short-monotonic"],
            check=False,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=120,
        )


# ------------------------------------------------------------------ status


def patroni_role(m: Machines, spec: NodeSpec) -> str:
    """Patroni's REST API as seen from the vRack gateway (allowed: it is in the subnet)."""
    url = f"https://{spec.address}:{m.settings.patroni.rest_port}/patroni"
    r = subprocess.run(
        check=False,
        args=["ip", "netns", "exec", m.net.netns, "curl", "-sk", "--max-time", "3", url],
        capture_output=True,
        text=True,
    )
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        return "-"
    return f"{doc.get('role', '?')}/{doc.get('state', '?')}"


def status_rows(m: Machines) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for s in m.specs:
        up = m.is_up(s.name)
        stage = cloud_init_state(m, s.name)[0] if up else "-"
        role = patroni_role(m, s) if up and s.role == "patroni" else "-"
        rows.append((s.name, s.address, "up" if up else "down", stage, role))
    return rows


def status_table(m: Machines) -> str:
    lines = [f"{'node':8} {'address':12} {'state':5} {'cloud-init':18} patroni"]
    lines += [f"{n:8} {a:12} {u:5} {c:18} {r}" for n, a, u, c, r in status_rows(m)]
    return "\n".join(lines)


# ------------------------------------------------------------------ down


def leftovers(m: Machines) -> list[str]:
    """Everything of this stack still on the host (empty after ``down``)."""
    out = net.leftovers(m.net, m.specs)
    out += [f"mount {p}" for p in nodes.mounts_under(m.run_dir)] if m.run_dir.exists() else []
    r = subprocess.run(check=False, args=["losetup", "-a"], capture_output=True, text=True).stdout
    out += [f"loop {line.split(':')[0]}" for line in r.splitlines() if str(m.run_dir) in line]
    out += [f"cgroup {d}" for s in m.specs for d in nodes.cgroup_dirs(m.machine(s.name)) if d.exists()]
    prefix = f"--machine=pgha-{m.settings.stack}-"
    for pid in (int(x) for x in os.listdir("/proc") if x.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "systemd-nspawn" in cmd and prefix in cmd:
            out.append(f"process {pid} {cmd[:80]}")
    return out + qemu.our_processes(m.settings.stack) + s3.leftovers(m.run_dir)


def stop_node(m: Machines, node: str) -> str:
    if m.backend(node) == "qemu":
        return qemu.stop(m.pid(node), m.machine(node))
    return nodes.stop(m.pid(node), m.machine(node))


def down(m: Machines, log: Log = print, keep_logs: bool = True) -> list[str]:
    """Stop every container (TERM, then KILL), unmount, detach loops, remove namespaces,
    veths, bridge and nft tables, delete node dirs. Returns what is still left (verified)."""
    node_state = m.state.get("nodes", {})
    with ThreadPoolExecutor(max(1, len(m.specs))) as ex:
        results = list(ex.map(lambda s: (s.name, stop_node(m, s.name)), m.specs))
    for name, what in results:
        if what != "not running":
            log(f"  {name}: {what}")
    for s in m.specs:
        nodes.remove_cgroups(m.machine(s.name))
    what = s3.stop((m.state.get("s3") or {}).get("pid"), m.run_dir, m.settings.stack)
    if what != "not running":
        log(f"  object storage: {what}")
    if s3.storage_dir(m.run_dir).exists() and not s3.leftovers(m.run_dir):
        shutil.rmtree(s3.storage_dir(m.run_dir), ignore_errors=True)  # a new `up` makes a new key, CA and bucket
    if m.state.get("nodes"):
        save_debs(m)
    for mp in sorted(nodes.mounts_under(m.run_dir) if m.run_dir.exists() else [], key=len, reverse=True):
        subprocess.run(check=False, args=["umount", mp], capture_output=True)
        if nodes.is_mounted(Path(mp)):
            subprocess.run(check=False, args=["umount", "-l", mp], capture_output=True)
    r = subprocess.run(check=False, args=["losetup", "-a"], capture_output=True, text=True).stdout
    loops = {line.split(":")[0] for line in r.splitlines() if str(m.run_dir) in line}
    loops |= {st["loop"] for st in node_state.values() if st.get("loop") and st["loop"] in r}
    for loop in loops:
        subprocess.run(check=False, args=["losetup", "-d", loop], capture_output=True)
    problems = net.teardown(m.net, m.specs, m.state.get("ip_forward_before"))
    if (m.run_dir / "nodes").exists() and not nodes.mounts_under(m.run_dir):
        subprocess.run(["rm", "-rf", "--one-file-system", str(m.run_dir / "nodes")], check=False)
    if m.state_file.exists():
        m.state_file.unlink()
    if not keep_logs and m.run_dir.exists() and not nodes.mounts_under(m.run_dir):
        shutil.rmtree(m.run_dir, ignore_errors=True)
    return problems + leftovers(m)


def fail(msg: str) -> None:
    print(msg, file=sys.stderr)
