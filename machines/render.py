"""THE one call site of the stack's renderer for machines: user-data exactly as the stack
renders it, with real secrets generated the way the stack does.

- a throwaway CA + per-node certificates with the node's IP as SAN (lab/pki.py's LabCA,
  ECDSA P-256 like the stack's pulumi-tls resources), random passwords;
- ``access.ssh_public_keys`` replaced by a fresh ed25519 deploy key (Pulumi.<stack>.yaml
  carries fake keys), via dataclasses.replace on the settings;
- ``Target.vm``: the VM plan and layouts, with each Patroni node's data volume id (the
  container sees its loop device at ``/dev/disk/by-id/virtio-<id[:20]>``, as on OVH).
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud_init.bastion import render_bastion
from cloud_init.render import render_cluster
from lab.pki import LabCA
from lab.topology import new_passwords
from pgha.secrets import BackupSecrets, EtcdNodeSecrets, Passwords, PatroniNodeSecrets, SshHostKey
from pgha.settings import Settings, load, load_stack_file, sections_from_stack_yaml
from pgha.target import Target

from .nodes import volume_id

ROOT = Path(__file__).resolve().parent.parent


def load_settings(stack: str, root: Path = ROOT, overrides: dict[str, dict[str, object]] | None = None) -> Settings:
    """The stack file's settings; ``overrides`` (section -> key -> value, ``up --backup``)
    merged over its sections and validated like the stack file itself."""
    if not overrides:
        return load_stack_file(stack, root)
    raw = sections_from_stack_yaml(yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text()))
    for section, values in overrides.items():
        raw[section] = {**(raw.get(section) or {}), **values}
    return load(stack, raw)


def deploy_key(path: Path) -> tuple[str, str]:
    """(private key path, public key line): a fresh ed25519 key, created once per run dir."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"pgha-machines-deploy@{path.parent.name}",
                "-f",
                str(path),
            ],
            check=True,
        )
    return str(path), Path(f"{path}.pub").read_text().strip()


def with_deploy_key(settings: Settings, public_key: str) -> Settings:
    return replace(settings, access=replace(settings.access, ssh_public_keys=(public_key,)))


#: What a container cannot provide, so the machines tier sets it (printed by ``up``, listed
#: in docs/machines.md; ``up --exact`` keeps the stack's values and shows the failure):
#: no kernel modules in a container -> no softdog -> no /dev/watchdog. With
#: ``watchdog: required`` Patroni cancels its bootstrap ("Configuration requires watchdog,
#: but watchdog could not be configured"); ``automatic`` tries it and goes on without.
CONTAINER_OVERRIDES = {"patroni.watchdog": "automatic"}


def container_settings(settings: Settings) -> tuple[Settings, list[str]]:
    """Settings with CONTAINER_OVERRIDES applied; and what changed, for the record."""
    changed = []
    for key, value in CONTAINER_OVERRIDES.items():
        section, name = key.split(".")
        current = getattr(getattr(settings, section), name)
        if current != value:
            settings = replace(settings, **{section: replace(getattr(settings, section), **{name: value})})
            changed.append(f"{key}: {current} -> {value}")
    return settings, changed


def new_host_key() -> SshHostKey:
    """An ed25519 SSH host key, as the stack generates one per node (pulumi-tls)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return SshHostKey(private=private.decode(), public=public.decode())


def new_ca(settings: Settings) -> LabCA:
    return LabCA(f"pgha-{settings.stack}-machines-ca")


def render_nodes(
    settings: Settings,
    passwords: Passwords | None = None,
    host_keys: dict[str, SshHostKey] | None = None,
    ca: LabCA | None = None,
    backup: BackupSecrets | None = None,
) -> tuple[dict[str, str], str]:
    """({node name: user-data}, CA certificate PEM) for every etcd member and Patroni node,
    plus ``"bastion"`` when the stack has one. ``passwords``: fresh random ones by default
    (``boot`` makes them first and keeps them in the run dir for the drills). ``ca``: a
    fresh one by default; ``boot`` passes one when it renders twice (containers with
    CONTAINER_OVERRIDES, VMs without) so every node trusts the same CA. ``backup``: the
    repository's credentials (backup.enabled; the tier's S3 server's, machines/s3.py)."""
    plan = settings.plan
    target = Target.vm(settings, volume_ids={n.name: volume_id(n.name, settings.stack) for n in plan.patroni})
    ca = ca or new_ca(settings)
    passwords = passwords or new_passwords()
    keys = host_keys or {}
    etcd = {n.name: EtcdNodeSecrets(ca.pem, ca.issue(n.name, target.cert_sans(n)), keys.get(n.name)) for n in plan.etcd}
    patroni = {
        n.name: PatroniNodeSecrets(
            ca.pem,
            ca.issue(n.name, target.cert_sans(n)),
            ca.issue(f"{n.name}-etcd-client", target.cert_sans(n), server=False),
            passwords,
            host_key=keys.get(n.name),
            backup=backup,
        )
        for n in plan.patroni
    }
    out = {n.name: n.user_data for n in render_cluster(settings, target, etcd, patroni)}
    if settings.access.bastion.enabled:
        out["bastion"] = render_bastion(settings, keys.get("bastion"))
    return out, ca.pem
