"""What every node's render shares: the jinja2 environment, the file and node values,
the #cloud-config skeleton, check.json and the host firewall.

Structured files (etcd.yml, patroni.yml, check.json, the #cloud-config itself) are
built as dicts and dumped; jinja2 templates only substitute prepared values. Programs
that run on a node are Python files under ``node_scripts/``, installed verbatim.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from pgha.firewall import METADATA_ADDRESS, METADATA_ADDRESS_V6, allow_list
from pgha.plan import AddressPlan, Node
from pgha.secrets import SshHostKey
from pgha.settings import Settings
from pgha.target import Layout

TEMPLATES = Path(__file__).parent / "templates"
NODE_SCRIPTS = Path(__file__).parent / "node_scripts"

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)

#: Nova refuses user-data longer than this once base64-encoded.
NOVA_USER_DATA_LIMIT = 65535


def nova_user_data(user_data: str) -> str:
    """The user-data as the stack hands it to Nova: gzip, then base64.

    Nova's limit (``NOVA_USER_DATA_LIMIT``) applies to the base64 text; gzip makes the
    node scripts and configuration about a quarter of their size. The OpenStack provider
    (gophercloud) passes a string that is already base64 through unchanged, the metadata
    service serves the gzip bytes, and cloud-init recognises the gzip magic and
    decompresses (any datasource; NoCloud on the machines tier reads the same bytes).
    ``mtime=0``: the same text gives the same bytes, so a re-render shows no diff."""
    return base64.b64encode(gzip.compress(user_data.encode(), mtime=0)).decode()


def served_user_data(nova: str) -> bytes:
    """What the metadata service serves for ``nova_user_data(...)`` (the gzip bytes)."""
    return base64.b64decode(nova, validate=True)


def read_user_data(nova: str) -> str:
    """The #cloud-config text back from ``nova_user_data(...)`` (tests, debugging)."""
    return gzip.decompress(served_user_data(nova)).decode()


REPLICATION_USER = "replicator"
REWIND_USER = "rewind_user"
SUPERUSER = "postgres"
REST_USER = "patroni"


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: str
    mode: str = "0644"
    owner: str = "root:root"
    secret: bool = False  #: holds a key or password (0600/0640)


@dataclass(frozen=True)
class RenderedNode:
    node: Node
    hostname: str
    files: tuple[NodeFile, ...]
    user_data: str

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def role(self) -> str:
        return self.node.role

    @property
    def address(self) -> str:
        return self.node.address

    def file(self, suffix: str) -> NodeFile:
        matches = [f for f in self.files if f.path.endswith(suffix)]
        if len(matches) != 1:
            raise KeyError(f"{self.name}: {len(matches)} files end with {suffix!r}")
        return matches[0]


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks so reviewers read files, not escapes."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_LiteralDumper.add_representer(str, _str_representer)


def dump_yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_LiteralDumper, sort_keys=False, default_flow_style=False, width=1000)


def tpl(name: str, **ctx: Any) -> str:
    return ENV.get_template(name).render(**ctx)


def node_script(layout: Layout, name: str, source: str) -> NodeFile:
    """``<bin_dir>/<name>``: a program from node_scripts/, installed verbatim."""
    return NodeFile(f"{layout.bin_dir}/{name}", (NODE_SCRIPTS / source).read_text(), mode="0755")


def install_dirs(owner: str, mode: str, *paths: str) -> list[str]:
    """The runcmd entry making ``paths`` (and their parents) owned by ``owner`` with ``mode``."""
    return ["install", "-d", "-o", owner, "-g", owner, "-m", mode, *paths]


def etcd_urls(settings: Settings, plan: AddressPlan) -> list[str]:
    return [f"https://{n.address}:{settings.etcd.client_port}" for n in plan.etcd]


def etcd_hosts(settings: Settings, plan: AddressPlan) -> list[str]:
    return [f"{n.address}:{settings.etcd.client_port}" for n in plan.etcd]


def hostname(settings: Settings, name: str) -> str:
    return f"pgha-{settings.stack}-{name}"


def firewall_file(settings: Settings, plan: AddressPlan, role: str) -> NodeFile:
    """/etc/nftables.conf: input drops all but the role's allow-list; only root may reach the metadata service."""
    rules = [
        {"comment": a.why, "port": a.port, "sources": ", ".join(a.sources)}
        for a in allow_list(settings, plan)
        if a.role == role
    ]
    return NodeFile(
        "/etc/nftables.conf",
        tpl(
            "common/nftables.conf.j2",
            rules=rules,
            metadata_address=METADATA_ADDRESS,
            metadata_address_v6=METADATA_ADDRESS_V6,
        ),
        mode="0755",
    )


def host_key_config(host_key: SshHostKey | None) -> dict[str, Any]:
    """cloud-init's ``ssh_keys``: the node's host key, generated by the stack and pinned by
    the deploy's validation (cloud-init then generates no other host key)."""
    if host_key is None:
        return {}
    return {"ssh_keys": {"ed25519_private": host_key.private, "ed25519_public": host_key.public}}


def cloud_config(
    settings: Settings,
    node: Node,
    packages: list[str],
    files: list[NodeFile],
    runcmd: Sequence[list[str] | str],
    extra: dict[str, Any] | None = None,
    deferred_owners: tuple[str, ...] = (),
    host_key: SshHostKey | None = None,
) -> str:
    """The node's #cloud-config, built as a dict."""
    write_files = []
    for f in files:
        entry: dict[str, Any] = {"path": f.path, "owner": f.owner, "permissions": f.mode, "content": f.content}
        # Files owned by users (or groups) that packages create are written after packages install.
        if any(part in deferred_owners for part in f.owner.split(":")):
            entry["defer"] = True
        write_files.append(entry)
    doc: dict[str, Any] = {
        "hostname": hostname(settings, node.name),
        "preserve_hostname": False,
        "manage_etc_hosts": True,  # the hostname resolves (sudo, PostgreSQL tools)
        "ssh_authorized_keys": list(settings.access.ssh_public_keys),
        "ssh_pwauth": False,
        "disable_root": True,
        "package_update": True,
        "packages": packages,
    }
    doc.update(host_key_config(host_key))
    doc.update(extra or {})
    doc["write_files"] = write_files
    # cloud-init runs runcmd as one /bin/sh script, and only its last command's status
    # counted: with set -eu the first failing command fails the script, and
    # `cloud-init status` reports the node as failed instead of passing silently.
    doc["runcmd"] = ["set -eu", *runcmd]
    return "#cloud-config\n" + dump_yaml(doc)


def check_config(
    settings: Settings, plan: AddressPlan, layout: Layout, node: Node, tls: dict[str, str]
) -> dict[str, Any]:
    """check.json: what the validation scripts expect, for both roles."""
    cfg: dict[str, Any] = {
        "node": node.name,
        "role": node.role,
        "etcd": {
            "endpoints": etcd_urls(settings, plan),
            "members": [n.name for n in plan.etcd],
            "cacert": tls["ca"],
            "cert": tls["cert"],
            "key": tls["key"],
        },
    }
    if node.role == "patroni":
        cfg["patroni"] = {
            "rest_url": f"https://{node.address}:{settings.patroni.rest_port}",
            "cacert": tls["ca"],
            "members": [n.name for n in plan.patroni],
            "synchronous_mode": settings.patroni.synchronous_mode,
            "psql": f"{layout.pg_bin_dir}/psql",
            "socket_dir": layout.socket_dir,
            "port": settings.patroni.port,
            "superuser": SUPERUSER,
            # A mount point the data must be on (VMs); None where there is no separate volume (lab).
            "data_mount": layout.data_mount if layout.data_device else None,
        }
    return cfg
