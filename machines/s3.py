"""The machines tier's object storage (``up --backup``): a real S3 server (SeaweedFS, the
lab's ``weed``, lab/s3.py) on the HOST in place of OVH Object Storage, so the booted
nodes archive WAL and take backups with the exact rendered pgbackrest.conf.

The user-data stays byte for byte what Nova gets: it names
``https://s3.<region>.io.cloud.ovh.net`` with virtual-host URIs
(``<bucket>.s3.<region>.io.cloud.ovh.net``) and the system CA store. Everything that
makes those names reach this server is outside it, like the host CAs of image.py:

- SeaweedFS's S3 API listens on the host end of the vRack uplink (``StackNet.uplink_host_ip``,
  T.1: the host's address on the nodes' network; they reach it through their gateway,
  as a VM reaches Object Storage through the vRack gateway), port 443 as OVH's, TLS with
  a certificate for both names (and T.1, for the host's own requests) signed by a CA of
  this run, with ``-s3.domainName`` so ``<bucket>.<endpoint>`` is the bucket;
- in each Patroni node's root, before it boots: cloud-init's ``/etc/hosts`` template
  (``manage_etc_hosts: true`` rewrites /etc/hosts from it at every boot) gets a line
  mapping both names to T.1, and the CA goes into the system trust store
  (/usr/local/share/ca-certificates + ``update-ca-certificates``), where OVH's public CA
  is on a VM;
- the bucket and an S3 key are created here, and handed to the renderer as the stack's
  :class:`~pgha.secrets.BackupSecrets`, as components/backup.py hands OVH's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import zlib
from pathlib import Path

from lab import s3 as lab_s3
from lab.errors import LabError
from lab.pki import LabCA
from pgha.backup import ObjectStorage, ovh_endpoint, vm_object_storage
from pgha.secrets import BackupSecrets
from pgha.settings import Settings

from .spec import StackNet


def overrides(settings: Settings) -> dict[str, dict[str, object]]:
    """``up --backup``: backups on over the stack file; a bucket name only when the stack has none."""
    bk: dict[str, object] = {"enabled": True}
    if not settings.backup.bucket:
        bk["bucket"] = f"pgha-{settings.stack}-machines"
    return {"backup": bk}


S3_PORT = 443  #: OVH Object Storage's (pgbackrest.conf names no port: 443)
BASE_PORT = 20000  #: SeaweedFS's other ports: a block of ten per machines name (the lab uses 30000+)
#: Where the CA goes in a node's root (update-ca-certificates adds it to the system store).
TRUST_FILE = "usr/local/share/ca-certificates/pgha-machines-object-storage.crt"
HOSTS_TEMPLATE = "etc/cloud/templates/hosts.debian.tmpl"
HOSTS_MARK = "# pgha machines (not user-data): the stack's Object Storage endpoint is this host's SeaweedFS"


def prerequisites() -> list[str]:
    """What this host lacks to run the object storage (empty: good to go)."""
    try:
        lab_s3.weed_binary()
    except LabError as e:
        return [str(e)]
    return []


def storage_dir(run_dir: Path) -> Path:
    return lab_s3.storage_dir(run_dir)


def ports(name: str) -> dict[str, int]:
    """SeaweedFS's internal ports for machines instance ``name`` (bound to T.1 only)."""
    base = BASE_PORT + 10 * (zlib.crc32(name.encode()) % 1000)
    names = ("master", "volume", "filer", "master_grpc", "volume_grpc", "filer_grpc", "s3_grpc", "metrics")
    return {n: base + i for i, n in enumerate(names)}


def host_names(settings: Settings) -> tuple[str, str]:
    """(endpoint, the bucket's virtual host): what the rendered pgbackrest.conf makes pgBackRest connect to."""
    s3 = vm_object_storage(settings)
    return s3.endpoint, f"{settings.backup.bucket}.{s3.endpoint}"


def hosts_line(net: StackNet, settings: Settings) -> str:
    return f"{net.uplink_host_ip} {' '.join(host_names(settings))}"


def hosts_template(text: str, net: StackNet, settings: Settings) -> str:
    """cloud-init's /etc/hosts template with the endpoint line appended (once)."""
    if HOSTS_MARK in text:
        return text
    return text.rstrip("\n") + f"\n\n{HOSTS_MARK}\n{hosts_line(net, settings)}\n"


def host_storage(run_dir: Path, net: StackNet, settings: Settings) -> ObjectStorage:
    """How the host itself talks to the server (bucket creation): T.1, path-style, the run's CA."""
    return ObjectStorage(
        endpoint=net.uplink_host_ip,
        port=S3_PORT,
        region=settings.backup.region,
        uri_style="path",
        repo_path="/",
        ca_file=str(storage_dir(run_dir) / "ca.crt"),
        bucket=settings.backup.bucket,
    )


def prepare(run_dir: Path, net: StackNet, settings: Settings) -> tuple[BackupSecrets, str]:
    """The server's files (identities, TLS pair, CA) and the S3 key in ``<run>/s3``, 0600:
    (the stack's backup secrets, the CA certificate the nodes must trust)."""
    secrets = lab_s3.new_secrets()
    ca = LabCA(f"pgha-{settings.stack}-machines-object-storage-ca")
    pair = ca.issue(f"s3.{settings.backup.region}", [net.uplink_host_ip], client=False, dns_names=host_names(settings))
    lab_s3.write_files(run_dir, secrets, pair.cert, pair.key, "root")
    (storage_dir(run_dir) / "ca.crt").write_text(ca.pem)
    path = storage_dir(run_dir) / "backup-secrets.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(secrets.__dict__, f)
    return secrets, ca.pem


def load_secrets(run_dir: Path) -> BackupSecrets:
    return BackupSecrets(**json.loads((storage_dir(run_dir) / "backup-secrets.json").read_text()))


def command(run_dir: Path, net: StackNet, settings: Settings) -> list[str]:
    """``weed server`` with its S3 API on T.1:443, every other listener on T.1 too."""
    d, ip = storage_dir(run_dir), net.uplink_host_ip
    return [
        *lab_s3.weed_server(d / "data", ip, ports(settings.stack), ip, S3_PORT, volumes=16),
        f"-s3.domainName={ovh_endpoint(settings.backup.region)}",
    ]


def _stale_sockets(name: str) -> None:
    """weed puts gRPC sockets in /tmp named by port: a killed run leaves them and the next start fails to bind."""
    for port in ports(name).values():
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            sock.unlink(missing_ok=True)


def start(run_dir: Path, net: StackNet, settings: Settings) -> int:
    """Start the server in the background (its log: ``<run>/s3/weed.log``); its pid."""
    _stale_sockets(settings.stack)
    log = storage_dir(run_dir) / "weed.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command(run_dir, net, settings),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def wait_bucket(run_dir: Path, net: StackNet, settings: Settings, timeout: float = 120) -> None:
    """Wait for the S3 API, then create the stack's bucket (what the stack's Pulumi resources do on OVH)."""
    try:
        lab_s3.wait_bucket(host_storage(run_dir, net, settings), load_secrets(run_dir), timeout=timeout)
    except LabError as e:
        raise RuntimeError(f"{e}; see {storage_dir(run_dir) / 'weed.log'}") from e


def is_ours(pid: int | None, run_dir: Path) -> bool:
    if not pid:
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "weed" in cmd and f"-dir={storage_dir(run_dir) / 'data'}" in cmd


def stop(pid: int | None, run_dir: Path, name: str, grace: float = 5) -> str:
    """SIGTERM, SIGKILL after ``grace`` s (weed did not exit within 15 s of a SIGTERM here; its data is thrown
    away with the run); only when the pid is still this run's weed."""
    if not is_ours(pid, run_dir):
        return "not running"
    assert pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and is_ours(pid, run_dir):
        time.sleep(0.2)
        _reap(pid)
    how = "stopped"
    if is_ours(pid, run_dir):
        os.kill(pid, signal.SIGKILL)
        how = "killed"
        time.sleep(0.5)
        _reap(pid)
    _stale_sockets(name)
    return how


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def leftovers(run_dir: Path) -> list[str]:
    """This run's weed processes still alive."""
    out = []
    for pid in (int(x) for x in os.listdir("/proc") if x.isdigit()):
        if is_ours(pid, run_dir):
            out.append(f"process {pid} weed (object storage of {run_dir})")
    return out


def install_into_root(root: Path, net: StackNet, settings: Settings, ca_pem: str) -> None:
    """Make a node (its root, before it boots) resolve the endpoint names to T.1 and trust the run's CA."""
    tmpl = root / HOSTS_TEMPLATE
    tmpl.write_text(hosts_template(tmpl.read_text(), net, settings))
    trust = root / TRUST_FILE
    trust.parent.mkdir(parents=True, exist_ok=True)
    trust.write_text(ca_pem)
    subprocess.run(["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True)
