"""How applications reach the primary: HAProxy's config and the libpq multi-host DSN."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgha.plan import AddressPlan
from pgha.settings import Settings
from pgha.target import Target

from .common import tpl

#: The failover clients' defaults (connect timeout, sslmode, target_session_attrs), declared
#: once for the PHP and Python clients; the stack's DSN output uses the same values.
CLIENT_DEFAULTS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "clients" / "php" / "defaults.json").read_text()
)


def render_haproxy(settings: Settings, target: Target) -> str:
    """HAProxy for application hosts (a stack output) and the lab: primary port checked
    on Patroni's /primary, read-only port on /replica."""
    pg, ep = settings.patroni, settings.endpoint
    bind = target.haproxy_bind
    listeners = [
        {
            "name": "pgha_primary",
            "bind": f"{bind}:{ep.haproxy_primary_port}",
            "check_uri": "/primary",
            "round_robin": False,
            "redispatch": True,
        },
        {
            "name": "pgha_replicas",
            "bind": f"{bind}:{ep.haproxy_replica_port}",
            "check_uri": "/replica",
            "round_robin": True,
            "redispatch": False,
        },
    ]
    servers = [f"{n.name} {n.address}:{pg.port} check port {pg.rest_port}" for n in target.plan.patroni]
    return tpl("haproxy/haproxy.cfg.j2", listeners=listeners, servers=servers, ca_file=target.haproxy_ca_file)


def libpq_dsn(settings: Settings, plan: AddressPlan, read_only: bool = False, sslrootcert: str = "ca.crt") -> str:
    """Multi-host DSN without password: libpq finds the primary itself."""
    pg = settings.patroni
    hosts = ",".join(plan.addresses("patroni"))
    ports = ",".join(str(pg.port) for _ in plan.patroni)
    d = CLIENT_DEFAULTS
    attrs = d["read_only_target_session_attrs"] if read_only else d["target_session_attrs"]
    return (
        f"host={hosts} port={ports} dbname={pg.app_database} user={pg.app_user} "
        f"target_session_attrs={attrs} sslmode={d['sslmode']} sslrootcert={sslrootcert} connect_timeout={d['connect_timeout']}"
    )
