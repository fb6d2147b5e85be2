"""Render the bastion's #cloud-config: operators' keys, no password login, its SSH host key."""

from __future__ import annotations

from pgha.secrets import SshHostKey
from pgha.settings import Settings

from .common import dump_yaml, host_key_config, hostname


def render_bastion(settings: Settings, host_key: SshHostKey | None = None) -> str:
    """The bastion's #cloud-config; ``host_key``: its SSH host key (the only secret it holds)."""
    doc = {
        "hostname": hostname(settings, "bastion"),
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        "ssh_authorized_keys": list(settings.access.ssh_public_keys),
        "ssh_pwauth": False,
        "disable_root": True,
        "package_update": True,
        "package_upgrade": True,
        **host_key_config(host_key),
    }
    return "#cloud-config\n# pgha bastion, rendered by cloud_init/render.py\n" + dump_yaml(doc)
