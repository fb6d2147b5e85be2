"""DNS primary record: a Patroni callback keeps ONE A record pointed at the primary.

With ``endpoint.dns.primary_record: true`` every Patroni node also receives:

- ``<bin_dir>/pgha-dns-callback`` (``node_scripts/dns_callback.py``, Python
  stdlib only, installed verbatim), run by Patroni as ``on_start`` and ``on_role_change`` callback under
  coreutils ``timeout``, so a hung API call never outlives :data:`HARD_TIMEOUT`;
- ``<etc_dir>/dns-callback.json`` (0600, owned by the Patroni user): the record, this
  node's address, its REST API ``/primary`` URL and the OVH API keys.

``on_start`` is registered too because Patroni does not call ``on_role_change`` for the
primary it bootstraps (it calls ``on_start``); without it a new cluster's record would
stay wherever Pulumi created it until the first failover. The script acts only when the
role is ``primary`` (Patroni 4; ``master`` before), so replicas' ``on_start`` is a no-op.

Everything here is plain values for ``patroni.py``.
"""

from __future__ import annotations

from typing import Any

from pgha.plan import Node
from pgha.secrets import OvhApiCredentials
from pgha.settings import Settings
from pgha.target import Layout

#: Seconds the script keeps retrying transient failures (network, 5xx, 429).
DEADLINE = 20
#: Seconds one HTTP request may take (capped by what is left of DEADLINE).
REQUEST_TIMEOUT = 5
#: Retry delays: first BACKOFF_BASE seconds, doubling up to BACKOFF_CAP.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 4.0
#: coreutils timeout around the script: TERM after this many seconds, KILL 2 s later.
HARD_TIMEOUT = DEADLINE + 10
TIMEOUT_BIN = "/usr/bin/timeout"
#: Patroni callbacks that run the script (see the module docstring for on_start).
CALLBACKS = ("on_start", "on_role_change")


def record_fqdn(settings: Settings) -> str:
    dns = settings.endpoint.dns
    return f"{dns.primary_record_name}.{dns.zone}"


def script_path(layout: Layout) -> str:
    return f"{layout.bin_dir}/pgha-dns-callback"


def config_path(layout: Layout) -> str:
    return f"{layout.etc_dir}/dns-callback.json"


def command(layout: Layout) -> str:
    """The callback command line; Patroni appends ACTION ROLE SCOPE."""
    return f"{TIMEOUT_BIN} --kill-after=2 {HARD_TIMEOUT} {script_path(layout)} --config {config_path(layout)}"


def patroni_callbacks(layout: Layout) -> dict[str, str]:
    """``postgresql.callbacks`` of patroni.yml."""
    return {name: command(layout) for name in CALLBACKS}


def callback_config(settings: Settings, node: Node, credentials: OvhApiCredentials, layout: Layout) -> dict[str, Any]:
    """dns-callback.json: everything the script needs, secrets included (the file is 0600)."""
    dns, pg = settings.endpoint.dns, settings.patroni
    ip = node.address
    return {
        "node": node.name,
        "address": ip,
        "zone": dns.zone,
        "record": dns.primary_record_name,
        "fqdn": record_fqdn(settings),
        "ttl": dns.ttl,
        "leader_check_url": f"https://{ip}:{pg.rest_port}/primary",
        "cacert": f"{layout.etc_dir}/tls/ca.crt",
        "deadline": DEADLINE,
        "request_timeout": REQUEST_TIMEOUT,
        "backoff_base": BACKOFF_BASE,
        "backoff_cap": BACKOFF_CAP,
        "ovh": {
            "endpoint": credentials.endpoint.rstrip("/"),
            "application_key": credentials.application_key,
            "application_secret": credentials.application_secret,
            "consumer_key": credentials.consumer_key,
        },
    }


def access_rules(zone: str, record_id: int | str = "<record-id>") -> list[dict[str, str]]:
    """The OVH API access rules the callback's consumer key needs, and no more
    (``accessRules`` of ``POST /auth/credential``; README "Connecting applications")."""
    return [
        {"method": "GET", "path": f"/domain/zone/{zone}/record"},
        {"method": "GET", "path": f"/domain/zone/{zone}/record/{record_id}"},
        {"method": "PUT", "path": f"/domain/zone/{zone}/record/{record_id}"},
        {"method": "POST", "path": f"/domain/zone/{zone}/refresh"},
    ]
