"""Render the bastion's #cloud-config: operators' keys, no password login. Holds no secret."""

from __future__ import annotations

from pgha.settings import Settings

from .common import dump_yaml, hostname


def render_bastion(settings: Settings) -> str:
    doc = {
        "hostname": hostname(settings, "bastion"),
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        "ssh_authorized_keys": list(settings.access.ssh_public_keys),
        "ssh_pwauth": False,
        "disable_root": True,
        "package_update": True,
        "package_upgrade": True,
    }
    return "#cloud-config\n# pgha bastion, rendered by cloud_init/render.py\n" + dump_yaml(doc)
