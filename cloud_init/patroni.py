"""Render a Patroni node: patroni.yml, TLS files, bootstrap SQL, checks, units and #cloud-config."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from pgha.backup import RestoreSpec
from pgha.plan import AddressPlan, Node
from pgha.secrets import PatroniNodeSecrets, scram_sha256
from pgha.settings import Settings
from pgha.target import Target

from . import backup, dns_callback, monitoring
from .common import (
    REPLICATION_USER,
    REST_USER,
    REWIND_USER,
    SUPERUSER,
    NodeFile,
    RenderedNode,
    check_config,
    cloud_config,
    dump_yaml,
    etcd_hosts,
    firewall_file,
    hostname,
    install_dirs,
    node_script,
    tpl,
)

PATRONI_REQUIREMENTS = (Path(__file__).parent / "patroni-requirements.txt").read_text()


def pg_hba(settings: Settings, plan: AddressPlan) -> list[str]:
    """hostssl + scram-sha-256 only; replication role only for replication; the exporter
    over the local socket as its OS user (peer: no password exists)."""
    pg = settings.patroni
    lines = [
        f"local all {SUPERUSER} peer map=pgha",
        f"local replication {SUPERUSER} peer map=pgha",
        f"local postgres {monitoring.MONITOR_USER} peer map=pgha-monitor",
        f"hostssl replication {REPLICATION_USER} {plan.cidr} scram-sha-256",
        f"hostssl postgres {REWIND_USER} {plan.cidr} scram-sha-256",
    ]
    for cidr in (plan.cidr, *pg.app_cidrs):
        lines.append(f"hostssl {pg.app_database} {pg.app_user} {cidr} scram-sha-256")
    lines.append("host all all 0.0.0.0/0 reject")
    lines.append("host all all ::/0 reject")
    return lines


def patroni_config(
    settings: Settings,
    target: Target,
    node: Node,
    secrets: PatroniNodeSecrets,
    restore: RestoreSpec | None = None,
) -> dict[str, Any]:
    plan, layout = target.plan, target.layout(node)
    pg = settings.patroni
    name = node.name
    ip = node.address
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
            "initdb": [
                {"encoding": "UTF8"},
                {"locale": "C.UTF-8"},
                "data-checksums",
                {"auth-local": "peer"},
                {"auth-host": "scram-sha-256"},
            ],
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
            "pg_hba": pg_hba(settings, plan),
            "pg_ident": [
                f"pgha {layout.pg_os_user} {SUPERUSER}",
                f"pgha-monitor {layout.exporter_os_user} {monitoring.MONITOR_USER}",
            ],
        },
        "watchdog": {"mode": pg.watchdog if layout.watchdog else "off", "device": "/dev/watchdog", "safety_margin": 5},
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }
    if settings.endpoint.dns.primary_record:
        config["postgresql"]["callbacks"] = dns_callback.patroni_callbacks(layout)
    if settings.backup.enabled:
        backup.apply_to_patroni(config, settings, layout, restore)
    return config


def render_patroni_node(
    settings: Settings,
    target: Target,
    node: Node,
    secrets: PatroniNodeSecrets,
    restore: RestoreSpec | None = None,
) -> RenderedNode:
    plan, layout = target.plan, target.layout(node)
    pg = settings.patroni
    name = node.name
    tls = f"{layout.etc_dir}/tls"
    owner = f"{layout.pg_os_user}:{layout.pg_os_user}"
    config = patroni_config(settings, target, node, secrets, restore)
    check = check_config(
        settings,
        plan,
        layout,
        node,
        {"ca": f"{tls}/ca.crt", "cert": f"{tls}/etcd-client.crt", "key": f"{tls}/etcd-client.key"},
    )
    check["patroni"]["archiving"] = settings.backup.enabled
    bootstrap_sql = tpl(
        "patroni/bootstrap.sql.j2",
        app_user=pg.app_user,
        app_database=pg.app_database,
        app_verifier=scram_sha256(pg.app_user, secrets.passwords.app),
        monitor_user=monitoring.MONITOR_USER,
    )
    restoring = backup.restore_spec(settings, restore) if settings.backup.enabled else None
    restore_sql = (
        [
            NodeFile(
                backup.restore_sql_path(layout),
                tpl(
                    "patroni/restore-bootstrap.sql.j2",
                    app_user=pg.app_user,
                    app_verifier=scram_sha256(pg.app_user, secrets.passwords.app),
                    monitor_user=monitoring.MONITOR_USER,
                ),
                mode="0600",
                owner=owner,
            )
        ]
        if restoring
        else []
    )
    patroni_bin = f"{layout.patroni_venv}/bin/patroni"
    files = [
        *restore_sql,
        NodeFile(
            f"{layout.etc_dir}/patroni.yml",
            "# Patroni config, rendered by cloud_init/patroni.py\n" + dump_yaml(config),
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
        node_script(layout, "pgha-check-etcd", "check_etcd.py"),
        node_script(layout, "pgha-check-patroni", "check_patroni.py"),
        NodeFile(
            f"{layout.bin_dir}/pgha-post-bootstrap",
            tpl(
                "patroni/pgha-post-bootstrap.sh.j2",
                psql=f"{layout.pg_bin_dir}/psql",
                stanza_create=backup.stanza_create_cmd(layout) if settings.backup.enabled else "",
            ),
            mode="0755",
        ),
        NodeFile(
            "/etc/systemd/system/pgha-patroni.service",
            tpl(
                "patroni/pgha-patroni.service.j2",
                user=layout.pg_os_user,
                patroni=patroni_bin,
                config=f"{layout.etc_dir}/patroni.yml",
                check_etcd=f"{layout.bin_dir}/pgha-check-etcd",
                check_json=f"{layout.etc_dir}/check.json",
                data_mount=layout.data_mount,
                watchdog_chown=(
                    f"/bin/chown {layout.pg_os_user}:{layout.pg_os_user} /dev/watchdog"
                    if layout.watchdog and pg.watchdog != "off"
                    else ""
                ),
            ),
        ),
        NodeFile("/etc/postgresql-common/createcluster.d/pgha.conf", tpl("patroni/createcluster.conf.j2")),
    ]
    if settings.endpoint.dns.primary_record:
        if secrets.dns_api is None:
            raise ValueError(
                f"{name}: endpoint.dns.primary_record is on but no OVH API credentials were given (PatroniNodeSecrets.dns_api)"
            )
        callback = dns_callback.callback_config(settings, node, secrets.dns_api, layout)
        files.append(
            NodeFile(
                dns_callback.config_path(layout),
                json.dumps(callback, indent=2, sort_keys=True) + "\n",
                mode="0600",
                owner=owner,
                secret=True,
            )
        )
        files.append(node_script(layout, "pgha-dns-callback", "dns_callback.py"))
    if settings.backup.enabled:
        if secrets.backup is None:
            raise ValueError(
                f"{name}: backup.enabled is on but no repository credentials were given (PatroniNodeSecrets.backup)"
            )
        files += backup.node_files(settings, target, node, secrets.backup, restore)
    if layout.watchdog and pg.watchdog != "off":
        files.append(
            NodeFile(
                "/etc/modules-load.d/softdog.conf", "# Patroni watchdog, rendered by cloud_init/render.py\nsoftdog\n"
            )
        )
        files.append(
            NodeFile(
                "/etc/udev/rules.d/61-pgha-watchdog.rules",
                tpl("patroni/61-pgha-watchdog.rules.j2", user=layout.pg_os_user),
            )
        )
    files += monitoring.exporter_files(settings, target, node)
    files += monitoring.cert_expiry_files(
        target, node, [f"{tls}/ca.crt", f"{tls}/server.crt", f"{tls}/etcd-client.crt"]
    )
    if settings.access.host_firewall:
        files.append(firewall_file(settings, plan, "patroni"))
    runcmd: list[list[str] | str] = []
    if settings.access.host_firewall:
        runcmd.append(["systemctl", "enable", "--now", "nftables.service"])
    if layout.watchdog and pg.watchdog != "off":
        # /dev/watchdog is in the "misc" subsystem, /dev/watchdog0 in "watchdog": re-apply the
        # rule to both by name, whether the device appeared before the rule was written or not.
        # required: no softdog, no Patroni (fail here, loudly); automatic: best effort.
        # Reload first: udevd read the rule at write_files time, before the postgresql
        # package created its user, and dropped it ("Unknown user 'postgres', ignoring";
        # found booting a VM: /dev/watchdog stayed root-only).
        # automatic: best effort, as for modprobe (a container runs no udevd to reload).
        required = pg.watchdog == "required"
        modprobe: list[str] | str = ["modprobe", "softdog"] if required else "modprobe softdog || true"
        reload: list[str] | str = ["udevadm", "control", "--reload"] if required else "udevadm control --reload || true"
        runcmd += [
            modprobe,
            reload,
            ["udevadm", "trigger", "--action=add", "--sysname-match=watchdog*"],
            ["udevadm", "settle"],
        ]
    runcmd += [
        ["python3", "-m", "venv", layout.patroni_venv],
        [
            f"{layout.patroni_venv}/bin/pip",
            "install",
            "--no-cache-dir",
            "-r",
            f"{layout.etc_dir}/patroni-requirements.txt",
        ],
        # The parent too: Patroni renames a failed data dir aside, and needs to write there.
        install_dirs(layout.pg_os_user, "0755", str(PurePosixPath(layout.pg_data_dir).parent)),
        ["install", "-d", "-o", layout.pg_os_user, "-g", layout.pg_os_user, "-m", "0700", layout.pg_data_dir],
        *(backup.runcmd(target, layout) if settings.backup.enabled else []),
        ["systemctl", "daemon-reload"],
        # --no-block: Patroni starts once etcd answers (ExecStartPre); cloud-init must not wait.
        # The exporters started at install with the drop-ins already there; restart once more
        # so a changed drop-in is read (postgres-exporter retries until PostgreSQL is up).
        ["systemctl", "restart", *monitoring.exporter_units(node)],
        ["systemctl", "enable", "pgha-cert-expiry.timer"],
        ["systemctl", "start", "--no-block", "pgha-cert-expiry.timer"],
        *([["systemctl", "start", "--no-block", *backup.TIMERS]] if settings.backup.enabled else []),
        ["systemctl", "enable", "pgha-patroni.service"],
        ["systemctl", "start", "--no-block", "pgha-patroni.service"],
    ]
    extra: dict[str, Any] = {}
    if layout.data_device:
        # The data volume: formatted once (never overwritten), mounted before PostgreSQL installs.
        extra = {
            "fs_setup": [
                {
                    "label": "pgdata",
                    "filesystem": "ext4",
                    "device": layout.data_device,
                    "partition": "none",
                    "overwrite": False,
                }
            ],
            "mounts": [
                [
                    "LABEL=pgdata",
                    layout.data_mount,
                    "ext4",
                    "defaults,noatime,nofail,x-systemd.device-timeout=120",
                    "0",
                    "2",
                ]
            ],
        }
    user_data = cloud_config(
        settings,
        node,
        packages=[
            f"postgresql-{pg.postgres_version}",
            "python3-venv",
            "etcd-client",
            "nftables",
            *(["pgbackrest"] if settings.backup.enabled else []),
            *monitoring.exporter_packages(node),
        ],
        files=files,
        runcmd=runcmd,
        extra=extra,
        deferred_owners=(layout.pg_os_user,),
        host_key=secrets.host_key,
    )
    return RenderedNode(node=node, hostname=hostname(settings, name), files=tuple(files), user_data=user_data)
