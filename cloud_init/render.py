"""Render a node: validated settings + node context + secrets -> files + user-data.

Structured files (etcd.yml, patroni.yml, check.json, the #cloud-config itself) are
built as dicts and dumped; jinja2 templates only substitute prepared values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from . import dns_callback
from .layout import Layout, vm_layout
from .secrets import EtcdNodeSecrets, PatroniNodeSecrets, scram_sha256
from .settings import AddressPlan, Settings

TEMPLATES = Path(__file__).parent / "templates"
PATRONI_REQUIREMENTS = (Path(__file__).parent / "patroni-requirements.txt").read_text()

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)

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
    name: str
    role: str  #: "etcd" or "patroni"
    address: str
    hostname: str
    files: tuple[NodeFile, ...]
    user_data: str

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


def _tpl(name: str, **ctx: Any) -> str:
    return ENV.get_template(name).render(**ctx)


def etcd_urls(settings: Settings, plan: AddressPlan) -> list[str]:
    return [f"https://{ip}:{settings.etcd.client_port}" for ip in plan.etcd]


def etcd_hosts(settings: Settings, plan: AddressPlan) -> list[str]:
    return [f"{ip}:{settings.etcd.client_port}" for ip in plan.etcd]


def hostname(settings: Settings, name: str) -> str:
    return f"pgha-{settings.stack}-{name}"


# ------------------------------------------------------------------ common


def _firewall(allow: list[tuple[str, int, list[str]]]) -> str:
    """nftables ruleset: default drop on input, then (comment, port, sources)."""
    rules = [{"comment": c, "port": p, "sources": ", ".join(s)} for c, p, s in allow if s]
    return _tpl("common/nftables.conf.j2", rules=rules)


def _cloud_config(
    settings: Settings,
    name: str,
    packages: list[str],
    files: list[NodeFile],
    runcmd: list[list[str]],
    extra: dict[str, Any] | None = None,
    deferred_owners: tuple[str, ...] = (),
) -> str:
    """The node's #cloud-config, built as a dict."""
    write_files = []
    for f in files:
        entry: dict[str, Any] = {"path": f.path, "owner": f.owner, "permissions": f.mode, "content": f.content}
        # Files owned by users that packages create are written after packages install.
        if f.owner.split(":")[0] in deferred_owners:
            entry["defer"] = True
        write_files.append(entry)
    doc: dict[str, Any] = {
        "hostname": hostname(settings, name),
        "preserve_hostname": False,
        "ssh_authorized_keys": list(settings.access.ssh_public_keys),
        "ssh_pwauth": False,
        "disable_root": True,
        "package_update": True,
        "packages": packages,
    }
    doc.update(extra or {})
    doc["write_files"] = write_files
    doc["runcmd"] = runcmd
    return "#cloud-config\n" + dump_yaml(doc)


def _check_config(settings: Settings, plan: AddressPlan, layout: Layout, role: str, name: str, tls: dict[str, str]) -> dict[str, Any]:
    """check.json: what the validation scripts expect, for both roles."""
    cfg: dict[str, Any] = {
        "node": name,
        "role": role,
        "etcd": {
            "endpoints": etcd_urls(settings, plan),
            "members": [plan.etcd_name(i) for i in range(len(plan.etcd))],
            "cacert": tls["ca"],
            "cert": tls["cert"],
            "key": tls["key"],
        },
    }
    if role == "patroni":
        i = [plan.patroni_name(j) for j in range(len(plan.patroni))].index(name)
        cfg["patroni"] = {
            "rest_url": f"https://{plan.patroni[i]}:{settings.patroni.rest_port}",
            "cacert": tls["ca"],
            "members": [plan.patroni_name(j) for j in range(len(plan.patroni))],
            "synchronous_mode": settings.patroni.synchronous_mode,
            "psql": f"{layout.pg_bin_dir}/psql",
            "socket_dir": layout.socket_dir,
            "port": settings.patroni.port,
            "superuser": SUPERUSER,
        }
    return cfg


# ------------------------------------------------------------------ etcd


def render_etcd_node(
    settings: Settings,
    index: int,
    secrets: EtcdNodeSecrets,
    plan: AddressPlan | None = None,
    layout: Layout | None = None,
    cluster_state: str = "new",
) -> RenderedNode:
    """``cluster_state="existing"`` for a member that replaces one removed from a running
    cluster (``etcdctl member add`` first); ``"new"`` when the cluster is created."""
    if cluster_state not in ("new", "existing"):
        raise ValueError(f"cluster_state must be 'new' or 'existing', got {cluster_state!r}")
    plan = plan or settings.plan
    layout = layout or vm_layout(settings.patroni.postgres_version)
    e = settings.etcd
    name = plan.etcd_name(index)
    ip = plan.etcd[index]
    tls_dir = f"{layout.etc_dir}/tls"
    owner = f"{layout.etcd_os_user}:{layout.etcd_os_user}"
    ca, crt, key = f"{tls_dir}/ca.crt", f"{tls_dir}/etcd.crt", f"{tls_dir}/etcd.key"
    security = {"cert-file": crt, "key-file": key, "client-cert-auth": True, "trusted-ca-file": ca, "auto-tls": False}
    config = {
        "name": name,
        "data-dir": layout.etcd_data_dir,
        "listen-peer-urls": f"https://{ip}:{e.peer_port}",
        "listen-client-urls": f"https://{ip}:{e.client_port}",
        "initial-advertise-peer-urls": f"https://{ip}:{e.peer_port}",
        "advertise-client-urls": f"https://{ip}:{e.client_port}",
        "initial-cluster": ",".join(f"{plan.etcd_name(i)}=https://{a}:{e.peer_port}" for i, a in enumerate(plan.etcd)),
        "initial-cluster-state": cluster_state,
        "initial-cluster-token": f"pgha-{settings.stack}-{settings.patroni.scope}",
        "heartbeat-interval": e.heartbeat_interval_ms,
        "election-timeout": e.election_timeout_ms,
        "enable-v2": False,
        "enable-grpc-gateway": True,  # Patroni speaks etcd3 over its HTTP gateway (off by default with --config-file)
        "auto-compaction-mode": "periodic",
        "auto-compaction-retention": "1h",
        "quota-backend-bytes": 2 * 1024**3,
        "logger": "zap",
        "log-outputs": ["stderr"],
        "client-transport-security": security,
        "peer-transport-security": security,
    }
    check = _check_config(settings, plan, layout, "etcd", name, {"ca": ca, "cert": crt, "key": key})
    files = [
        NodeFile(f"{layout.etc_dir}/etcd.yml", "# etcd member config, rendered by cloud_init/render.py\n" + dump_yaml(config)),
        NodeFile(ca, secrets.ca_cert),
        NodeFile(crt, secrets.node.cert),
        NodeFile(key, secrets.node.key, mode="0600", owner=owner, secret=True),
        NodeFile(f"{layout.etc_dir}/check.json", json.dumps(check, indent=2, sort_keys=True) + "\n"),
        NodeFile(f"{layout.bin_dir}/pgha-check-etcd", _tpl("common/pgha-check-etcd.py.j2", python=layout.python), mode="0755"),
        NodeFile(
            "/etc/systemd/system/pgha-etcd.service",
            _tpl("etcd/pgha-etcd.service.j2", user=layout.etcd_os_user, config=f"{layout.etc_dir}/etcd.yml", data_dir=layout.etcd_data_dir),
        ),
    ]
    if settings.access.host_firewall:
        ssh_from = [plan.bastion] if settings.access.bastion.enabled else [plan.cidr]
        files.append(
            NodeFile(
                "/etc/nftables.conf",
                _firewall(
                    [
                        ("ssh from the bastion", 22, ssh_from),
                        ("etcd clients: Patroni nodes and etcd peers", e.client_port, list(plan.patroni) + list(plan.etcd)),
                        ("etcd peers", e.peer_port, list(plan.etcd)),
                    ]
                ),
                mode="0755",
            )
        )
    runcmd = [
        ["systemctl", "disable", "--now", "etcd.service"],
        ["install", "-d", "-o", layout.etcd_os_user, "-g", layout.etcd_os_user, "-m", "0700", layout.etcd_data_dir],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "pgha-etcd.service"],
    ]
    if settings.access.host_firewall:
        runcmd.insert(0, ["systemctl", "enable", "--now", "nftables.service"])
    user_data = _cloud_config(
        settings,
        name,
        packages=["etcd-server", "etcd-client", "nftables", "python3"],
        files=files,
        runcmd=runcmd,
        deferred_owners=(layout.etcd_os_user,),
    )
    return RenderedNode(name=name, role="etcd", address=ip, hostname=hostname(settings, name), files=tuple(files), user_data=user_data)


# ------------------------------------------------------------------ patroni


def pg_hba(settings: Settings, plan: AddressPlan, layout: Layout) -> list[str]:
    """hostssl + scram-sha-256 only; replication role only for replication."""
    pg = settings.patroni
    lines = [
        f"local all {SUPERUSER} peer map=pgha",
        f"local replication {SUPERUSER} peer map=pgha",
        f"hostssl replication {REPLICATION_USER} {plan.cidr} scram-sha-256",
        f"hostssl postgres {REWIND_USER} {plan.cidr} scram-sha-256",
    ]
    for cidr in (plan.cidr, *pg.app_cidrs):
        lines.append(f"hostssl {pg.app_database} {pg.app_user} {cidr} scram-sha-256")
    lines.append("host all all 0.0.0.0/0 reject")
    lines.append("host all all ::/0 reject")
    return lines


def patroni_config(settings: Settings, index: int, secrets: PatroniNodeSecrets, plan: AddressPlan, layout: Layout) -> dict[str, Any]:
    pg = settings.patroni
    name = plan.patroni_name(index)
    ip = plan.patroni[index]
    tls = f"{layout.etc_dir}/tls"
    pw = secrets.passwords
    parameters: dict[str, Any] = {
        "wal_level": "replica",
        "hot_standby": "on",
        "wal_log_hints": "on",
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "wal_keep_size": "256MB",
        "password_encryption": "scram-sha-256",
        "ssl_min_protocol_version": "TLSv1.2",
        **pg.parameters,
        **layout.pg_parameters,
    }
    dcs: dict[str, Any] = {
        "ttl": pg.ttl,
        "loop_wait": pg.loop_wait,
        "retry_timeout": pg.retry_timeout,
        "primary_start_timeout": pg.primary_start_timeout,
        "maximum_lag_on_failover": pg.maximum_lag_on_failover,
        "synchronous_mode": pg.synchronous_mode,
        "synchronous_mode_strict": pg.synchronous_mode_strict,
        "failsafe_mode": True,
        "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": parameters},
    }
    replica_ssl = {"sslmode": "verify-full", "sslrootcert": f"{tls}/ca.crt"}
    config: dict[str, Any] = {
        "scope": pg.scope,
        "namespace": "/service/",
        "name": name,
        "log": {"level": "INFO"},
        "restapi": {
            "listen": f"{ip}:{pg.rest_port}",
            "connect_address": f"{ip}:{pg.rest_port}",
            "certfile": f"{tls}/server.crt",
            "keyfile": f"{tls}/server.key",
            "verify_client": "none",
            "authentication": {"username": REST_USER, "password": pw.rest_api},
        },
        "ctl": {"insecure": False, "cacert": f"{tls}/ca.crt"},
        "etcd3": {
            "hosts": etcd_hosts(settings, plan),
            "protocol": "https",
            "cacert": f"{tls}/ca.crt",
            "cert": f"{tls}/etcd-client.crt",
            "key": f"{tls}/etcd-client.key",
        },
        "bootstrap": {
            "dcs": dcs,
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums", {"auth-local": "peer"}, {"auth-host": "scram-sha-256"}],
            "post_bootstrap": f"{layout.bin_dir}/pgha-post-bootstrap {layout.etc_dir}/bootstrap.sql",
        },
        "postgresql": {
            "listen": f"{ip}:{pg.port}",
            "connect_address": f"{ip}:{pg.port}",
            "data_dir": layout.pg_data_dir,
            "bin_dir": layout.pg_bin_dir,
            "pgpass": layout.pgpass,
            "use_unix_socket": True,
            "use_unix_socket_repl": False,
            # A new replica must not wait for a spread checkpoint on the primary.
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": pw.superuser},
                "replication": {"username": REPLICATION_USER, "password": pw.replication, **replica_ssl},
                "rewind": {"username": REWIND_USER, "password": pw.rewind, **replica_ssl},
            },
            "parameters": {
                "unix_socket_directories": layout.socket_dir,
                "ssl": "on",
                "ssl_cert_file": f"{tls}/server.crt",
                "ssl_key_file": f"{tls}/server.key",
                "ssl_ca_file": f"{tls}/ca.crt",
            },
            "pg_hba": pg_hba(settings, plan, layout),
            "pg_ident": [f"pgha {layout.pg_os_user} {SUPERUSER}"],
        },
        "watchdog": {"mode": pg.watchdog if layout.watchdog else "off", "device": "/dev/watchdog", "safety_margin": 5},
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }
    if settings.endpoint.dns.primary_record:
        config["postgresql"]["callbacks"] = dns_callback.patroni_callbacks(layout)
    return config


def render_patroni_node(
    settings: Settings,
    index: int,
    secrets: PatroniNodeSecrets,
    plan: AddressPlan | None = None,
    layout: Layout | None = None,
) -> RenderedNode:
    plan = plan or settings.plan
    layout = layout or vm_layout(settings.patroni.postgres_version)
    pg = settings.patroni
    name = plan.patroni_name(index)
    ip = plan.patroni[index]
    tls = f"{layout.etc_dir}/tls"
    owner = f"{layout.pg_os_user}:{layout.pg_os_user}"
    config = patroni_config(settings, index, secrets, plan, layout)
    check = _check_config(settings, plan, layout, "patroni", name, {"ca": f"{tls}/ca.crt", "cert": f"{tls}/etcd-client.crt", "key": f"{tls}/etcd-client.key"})
    bootstrap_sql = _tpl(
        "patroni/bootstrap.sql.j2",
        app_user=pg.app_user,
        app_database=pg.app_database,
        app_verifier=scram_sha256(pg.app_user, secrets.passwords.app),
    )
    patroni_bin = f"{layout.patroni_venv}/bin/patroni"
    files = [
        NodeFile(
            f"{layout.etc_dir}/patroni.yml",
            "# Patroni config, rendered by cloud_init/render.py\n" + dump_yaml(config),
            mode="0600",
            owner=owner,
            secret=True,
        ),
        NodeFile(f"{tls}/ca.crt", secrets.ca_cert),
        NodeFile(f"{tls}/server.crt", secrets.server.cert),
        NodeFile(f"{tls}/server.key", secrets.server.key, mode="0600", owner=owner, secret=True),
        NodeFile(f"{tls}/etcd-client.crt", secrets.etcd_client.cert),
        NodeFile(f"{tls}/etcd-client.key", secrets.etcd_client.key, mode="0600", owner=owner, secret=True),
        NodeFile(f"{layout.etc_dir}/bootstrap.sql", bootstrap_sql, mode="0600", owner=owner),
        NodeFile(f"{layout.etc_dir}/check.json", json.dumps(check, indent=2, sort_keys=True) + "\n"),
        NodeFile(f"{layout.etc_dir}/patroni-requirements.txt", PATRONI_REQUIREMENTS),
        NodeFile(f"{layout.bin_dir}/pgha-check-etcd", _tpl("common/pgha-check-etcd.py.j2", python=layout.python), mode="0755"),
        NodeFile(f"{layout.bin_dir}/pgha-check-patroni", _tpl("common/pgha-check-patroni.py.j2", python=layout.python), mode="0755"),
        NodeFile(
            f"{layout.bin_dir}/pgha-post-bootstrap",
            _tpl("patroni/pgha-post-bootstrap.sh.j2", psql=f"{layout.pg_bin_dir}/psql"),
            mode="0755",
        ),
        NodeFile(
            "/etc/systemd/system/pgha-patroni.service",
            _tpl(
                "patroni/pgha-patroni.service.j2",
                user=layout.pg_os_user,
                patroni=patroni_bin,
                config=f"{layout.etc_dir}/patroni.yml",
                check_etcd=f"{layout.bin_dir}/pgha-check-etcd",
                check_json=f"{layout.etc_dir}/check.json",
                data_mount=layout.data_mount,
            ),
        ),
        NodeFile("/etc/postgresql-common/createcluster.d/pgha.conf", _tpl("patroni/createcluster.conf.j2")),
    ]
    if settings.endpoint.dns.primary_record:
        if secrets.dns_api is None:
            raise ValueError(f"{name}: endpoint.dns.primary_record is on but no OVH API credentials were given (PatroniNodeSecrets.dns_api)")
        callback = dns_callback.callback_config(settings, index, secrets.dns_api, plan, layout)
        files.append(NodeFile(dns_callback.config_path(layout), json.dumps(callback, indent=2, sort_keys=True) + "\n", mode="0600", owner=owner, secret=True))
        files.append(NodeFile(dns_callback.script_path(layout), _tpl("patroni/pgha-dns-callback.py.j2", python=layout.python), mode="0755"))
    if layout.watchdog and pg.watchdog != "off":
        files.append(NodeFile("/etc/modules-load.d/softdog.conf", "# Patroni watchdog, rendered by cloud_init/render.py\nsoftdog\n"))
        files.append(
            NodeFile(
                "/etc/udev/rules.d/61-pgha-watchdog.rules",
                _tpl("patroni/61-pgha-watchdog.rules.j2", user=layout.pg_os_user),
            )
        )
    if settings.access.host_firewall:
        ssh_from = [plan.bastion] if settings.access.bastion.enabled else [plan.cidr]
        files.append(
            NodeFile(
                "/etc/nftables.conf",
                _firewall(
                    [
                        ("ssh from the bastion", 22, ssh_from),
                        ("PostgreSQL from the subnet and application networks", pg.port, [plan.cidr, *pg.app_cidrs]),
                        ("Patroni REST API from the subnet (peers, load balancer health checks)", pg.rest_port, [plan.cidr]),
                    ]
                ),
                mode="0755",
            )
        )
    runcmd: list[list[str]] = []
    if settings.access.host_firewall:
        runcmd.append(["systemctl", "enable", "--now", "nftables.service"])
    if layout.watchdog and pg.watchdog != "off":
        runcmd += [["modprobe", "softdog"], ["udevadm", "trigger", "--subsystem-match=watchdog"]]
    runcmd += [
        ["python3", "-m", "venv", layout.patroni_venv],
        [f"{layout.patroni_venv}/bin/pip", "install", "--no-cache-dir", "-r", f"{layout.etc_dir}/patroni-requirements.txt"],
        ["install", "-d", "-o", layout.pg_os_user, "-g", layout.pg_os_user, "-m", "0700", layout.pg_data_dir],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "pgha-patroni.service"],
    ]
    extra = {
        # The data volume: formatted once (never overwritten), mounted before PostgreSQL installs.
        "fs_setup": [{"label": "pgdata", "filesystem": "ext4", "device": layout.data_device, "partition": "none", "overwrite": False}],
        "mounts": [["LABEL=pgdata", layout.data_mount, "ext4", "defaults,noatime,nofail,x-systemd.device-timeout=120", "0", "2"]],
    }
    user_data = _cloud_config(
        settings,
        name,
        packages=[f"postgresql-{pg.postgres_version}", "python3-venv", "etcd-client", "nftables"],
        files=files,
        runcmd=runcmd,
        extra=extra,
        deferred_owners=(layout.pg_os_user,),
    )
    return RenderedNode(name=name, role="patroni", address=ip, hostname=hostname(settings, name), files=tuple(files), user_data=user_data)


# ------------------------------------------------------------------ bastion


def render_bastion(settings: Settings) -> str:
    """The bastion's #cloud-config: operators' keys, no password login. Holds no secret."""
    doc = {
        "hostname": hostname(settings, "bastion"),
        "preserve_hostname": False,
        "ssh_authorized_keys": list(settings.access.ssh_public_keys),
        "ssh_pwauth": False,
        "disable_root": True,
        "package_update": True,
        "package_upgrade": True,
    }
    return "#cloud-config\n# pgha bastion, rendered by cloud_init/render.py\n" + dump_yaml(doc)


# ------------------------------------------------------------------ application side


def render_haproxy(
    settings: Settings, plan: AddressPlan | None = None, ca_file: str = "/etc/haproxy/pgha-ca.crt", bind: str = "127.0.0.1", extra_global: tuple[str, ...] = ()
) -> str:
    """HAProxy for application hosts (a stack output) and the lab: primary port checked
    on Patroni's /primary, read-only port on /replica."""
    plan = plan or settings.plan
    pg, ep = settings.patroni, settings.endpoint
    listeners = [
        {"name": "pgha_primary", "bind": f"{bind}:{ep.haproxy_primary_port}", "check_uri": "/primary", "round_robin": False, "redispatch": True},
        {"name": "pgha_replicas", "bind": f"{bind}:{ep.haproxy_replica_port}", "check_uri": "/replica", "round_robin": True, "redispatch": False},
    ]
    servers = [f"{plan.patroni_name(i)} {ip}:{pg.port} check port {pg.rest_port}" for i, ip in enumerate(plan.patroni)]
    return _tpl("haproxy/haproxy.cfg.j2", listeners=listeners, servers=servers, ca_file=ca_file, extra_global=list(extra_global))


def libpq_dsn(settings: Settings, plan: AddressPlan | None = None, read_only: bool = False, sslrootcert: str = "ca.crt") -> str:
    """Multi-host DSN without password: libpq finds the primary itself."""
    plan = plan or settings.plan
    pg = settings.patroni
    hosts = ",".join(plan.patroni)
    ports = ",".join(str(pg.port) for _ in plan.patroni)
    attrs = "prefer-standby" if read_only else "read-write"
    return (
        f"host={hosts} port={ports} dbname={pg.app_database} user={pg.app_user} "
        f"target_session_attrs={attrs} sslmode=verify-full sslrootcert={sslrootcert} connect_timeout=2"
    )


def render_cluster(
    settings: Settings,
    etcd_secrets: list[EtcdNodeSecrets],
    patroni_secrets: list[PatroniNodeSecrets],
    plan: AddressPlan | None = None,
    layouts: dict[str, Layout] | None = None,
) -> list[RenderedNode]:
    """Every node of the stack, etcd members first."""
    plan = plan or settings.plan
    layouts = layouts or {}
    out = [render_etcd_node(settings, i, s, plan, layouts.get(plan.etcd_name(i))) for i, s in enumerate(etcd_secrets)]
    out += [render_patroni_node(settings, i, s, plan, layouts.get(plan.patroni_name(i))) for i, s in enumerate(patroni_secrets)]
    return out
