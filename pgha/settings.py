"""Stack settings: the ONE loader from structured stack config to frozen dataclasses.

Input is the plain mapping of a stack's ``pgha:*`` config (section name -> value), as
read by ``components/config.py`` inside the Pulumi engine or by :func:`load_stack_file`
from ``Pulumi.<stack>.yaml`` outside it (lab, render command). Each key is declared
once, as a dataclass field carrying its default, range, choices and a one-line
description (:func:`setting`); the loader and the generated configuration table read
those fields. Every default is resolved here; every problem is collected with its
dotted path and raised once as :class:`SettingsError`. Never imports pulumi.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import ipaddress
import re
import shutil
import subprocess
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .backup import VM_REPO_PATH
from .flavors import memory_problems
from .plan import AddressPlan, subnet_plan
from .postgres_parameters import parameter_problems, replication_problems
from .timing import DEFAULT_PROFILE, PATRONI_MIN_TTL, TIMING_PROFILES

PROJECT = "pgha"
SUPPORTED_POSTGRES = (15,)  # Debian 12's distribution PostgreSQL

#: PostgreSQL parameters the templates own; setting them in config is an error.
MANAGED_PARAMETERS = frozenset(
    {
        "listen_addresses",
        "port",
        "data_directory",
        "hba_file",
        "ident_file",
        "config_file",
        "unix_socket_directories",
        "ssl",
        "ssl_cert_file",
        "ssl_key_file",
        "ssl_ca_file",
        "password_encryption",
        "wal_level",
        "hot_standby",
        "wal_log_hints",
        "synchronous_standby_names",
        "cluster_name",
    }
)

SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/=]+( .*)?$"
)
#: OVH's OpenStack region names, uppercase as OpenStack wants them: one-AZ regions
#: (GRA11, SBG5, BHS5, DE1, UK1, WAW1, SGP1, SYD1), 3-AZ and newer regions (EU-WEST-PAR,
#: EU-SOUTH-MIL, CA-EAST-TOR, US-EAST-VA-1, US-WEST-OR-1, AP-SOUTHEAST-SYD-1) and Local
#: Zones (EU-WEST-LZ-LUX-A).
REGION_RE = re.compile(r"^([A-Z]{2,5}[0-9]{1,2}|[A-Z]{2}(-[A-Z]{2,9}){1,3}(-[0-9]{1,2}|-[A-Z])?)$")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SCOPE_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
DNS_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}$")


class SettingsError(ValueError):
    """Every problem in a stack config, each with its dotted path."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = sorted(set(problems))
        lines = [f"  {path}: {msg}" for path, msg in self.problems]
        n = len(self.problems)
        super().__init__(f"stack config has {n} problem{'s' if n != 1 else ''}:\n" + "\n".join(lines))

    @property
    def paths(self) -> set[str]:
        return {p for p, _ in self.problems}


# ---------------------------------------------------------------- declaring a key

REQUIRED: Any = object()  #: a key without a default
FROM_PROFILE: Any = object()  #: a timing key whose default comes from patroni.timing_profile


@dataclass(frozen=True)
class Setting:
    """What a config key accepts: the field's metadata."""

    doc: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] = ()
    min: int | None = None
    max: int | None = None
    check: Callable[[Any], str | None] | None = None


def setting(
    doc: str,
    default: Any = REQUIRED,
    *,
    choices: tuple[Any, ...] = (),
    min: int | None = None,  # noqa: A002 - the constraint's own name
    max: int | None = None,  # noqa: A002
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A settings field: default, constraints and a one-line description, declared once."""
    return field(metadata={"setting": Setting(doc, default, choices, min, max, check)})


def section(doc: str) -> Any:
    """A nested section (a dataclass of settings); absent means every default."""
    return field(metadata={"section": doc})


def _private_cidr(value: str) -> str | None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        return f"not a valid network ({e}); write it like 10.42.0.0/24"
    if net.version != 4:
        return "must be an IPv4 network"
    if not net.is_private or net.is_loopback or net.is_link_local:
        return f"{value} is not a private (RFC 1918) network; use e.g. 10.42.0.0/24"
    return None


def _cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        return f"not a valid network ({e})"
    return None


def _ssh_key(value: str) -> str | None:
    if not SSH_KEY_RE.match(value.strip()):
        return "not an OpenSSH public key (expected 'ssh-ed25519 AAAA... comment')"
    return None


def _regex(rx: re.Pattern[str], hint: str) -> Callable[[Any], str | None]:
    return lambda v: None if rx.match(v) else hint


def _region(value: str) -> str | None:
    if REGION_RE.match(value):
        return None
    if REGION_RE.match(value.upper()):
        return f"OpenStack region names are uppercase: write {value.upper()}"
    return f"{value!r} is not an OVH region name (e.g. GRA11, SBG5, BHS5, EU-WEST-PAR, US-EAST-VA-1)"


_IDENT = _regex(NAME_RE, "a PostgreSQL identifier: lowercase, digits, _")

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def _bucket(value: str) -> str | None:
    """S3 bucket naming rules (3-63 characters: lowercase letters, digits, '-'; starts and
    ends with a letter or digit). Dots are refused: with virtual-host URIs a dotted name
    no longer matches the endpoint's wildcard TLS certificate."""
    if value == "":
        return None  # checked with backup.enabled (_semantic)
    if "." in value:
        return f"no dots in the bucket name (they break TLS with virtual-host URIs), got {value!r}"
    if not BUCKET_RE.match(value) or value.startswith("xn--") or value.endswith("-s3alias"):
        return f"not an S3 bucket name: 3-63 lowercase letters, digits and '-', starting and ending with a letter or digit, got {value!r}"
    return None


@lru_cache(maxsize=64)
def systemd_calendar_problem(expression: str) -> str | None:
    """None when ``systemd-analyze calendar`` accepts ``expression`` (the timers' own parser)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return "cannot check the calendar expression: systemd-analyze not found (install systemd, or scripts/setup.sh)"
    p = subprocess.run([tool, "calendar", expression], capture_output=True, text=True, check=False, timeout=10)
    if p.returncode != 0:
        why = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1] if (p.stderr or p.stdout).strip() else ""
        return f"not a systemd calendar expression ({why}); e.g. 'Sun *-*-* 01:00:00' (see man systemd.time)"
    return None


# ---------------------------------------------------------------- the settings


@dataclass(frozen=True)
class NetworkSettings:
    region: str = setting("OVH/OpenStack region, e.g. GRA11 or EU-WEST-PAR (same as openstack:region)", check=_region)
    cidr: str = setting("private IPv4 subnet of the vRack network, e.g. 10.42.0.0/24", check=_private_cidr)
    vlan_id: int = setting("vRack VLAN id (0-4000)", 0, min=0, max=4000)
    gateway: bool = setting("create an OVH Public Cloud gateway for egress (nodes have no public IP)", True)
    gateway_model: str = setting("gateway size", "s", choices=("s", "m", "l"))
    external_egress: bool = setting(
        "with gateway: false, your own router at the subnet's .1 gives the nodes egress (apt, PyPI at boot)", False
    )
    vrack_service_name: str = setting("vRack service to attach the project to, pn-123456 (empty: already attached)", "")
    etcd_first_host: int = setting("host number of the first etcd member in the subnet", 11, min=2)
    patroni_first_host: int = setting("host number of the first Patroni node", 21, min=2)
    bastion_host: int = setting("host number of the bastion", 5, min=2)
    monitoring_host: int = setting("host number of the monitoring host (Prometheus, Alertmanager)", 7, min=2)
    lb_host: int = setting("host number of the load balancer's VIP", 6, min=2)
    dhcp_first_host: int = setting("first host number of the DHCP pool (never used by fixed IPs)", 100, min=2)
    dhcp_last_host: int = setting("last host number of the DHCP pool", 200, min=2)


@dataclass(frozen=True)
class EtcdSettings:
    members: int = setting("etcd members: 3 (tolerates 1 loss) or 5 (tolerates 2)", 3)
    flavor: str = setting("OVH flavor of the etcd VMs", "b3-8")
    image: str = setting("image name", "Debian 12")
    client_port: int = setting("etcd client port", 2379, min=1, max=65535)
    peer_port: int = setting("etcd peer port", 2380, min=1, max=65535)
    heartbeat_interval_ms: int = setting("etcd --heartbeat-interval", 100, min=10, max=5000)
    election_timeout_ms: int = setting("etcd --election-timeout (>= 5 x heartbeat)", 1000, min=100, max=50000)


@dataclass(frozen=True)
class PatroniSettings:
    nodes: int = setting("number of PostgreSQL nodes (3 recommended)", 3, min=2, max=9)
    flavor: str = setting("OVH flavor of the database VMs", "b3-8")
    image: str = setting("image name", "Debian 12")
    volume_size_gb: int = setting("size of each node's data volume", 50, min=10, max=4000)
    volume_type: str = setting("Cinder volume type", "high-speed", choices=("classic", "high-speed", "high-speed-gen2"))
    postgres_version: int = setting("PostgreSQL major version", 15, choices=SUPPORTED_POSTGRES)
    scope: str = setting(
        "Patroni cluster name (etcd key prefix)", "pgha", check=_regex(SCOPE_RE, "lowercase letters, digits and '-'")
    )
    port: int = setting("PostgreSQL port", 5432, min=1, max=65535)
    rest_port: int = setting("Patroni REST API port", 8008, min=1, max=65535)
    parameters: dict[str, Any] = setting("extra postgresql.conf parameters (scalars; pgha-managed ones refused)", {})
    synchronous_mode: bool = setting("synchronous replication (Patroni synchronous_mode)", False)
    synchronous_mode_strict: bool = setting("refuse writes when no synchronous standby is available", False)
    timing_profile: str = setting(
        "ttl/loop_wait/retry_timeout preset; explicit values below override it",
        DEFAULT_PROFILE,
        choices=tuple(TIMING_PROFILES),
    )
    ttl: int = setting("leader lease in seconds (>= 20)", FROM_PROFILE, min=1)
    loop_wait: int = setting("seconds between Patroni HA loops", FROM_PROFILE, min=1)
    retry_timeout: int = setting("DCS and PostgreSQL retry timeout in seconds", FROM_PROFILE, min=1)
    primary_start_timeout: int = setting("seconds before failing over a crashed primary", 300, min=0)
    maximum_lag_on_failover: int = setting("bytes a replica may lag and still be promoted", 1048576, min=0)
    watchdog: str = setting("Patroni watchdog mode", "required", choices=("off", "automatic", "required"))
    app_user: str = setting("application role created at bootstrap", "app", check=_IDENT)
    app_database: str = setting("application database created at bootstrap", "app", check=_IDENT)
    app_cidrs: tuple[str, ...] = setting("extra CIDRs allowed to reach PostgreSQL", ())


@dataclass(frozen=True)
class DnsSettings:
    enabled: bool = setting("manage DNS records in an OVH zone", False)
    zone: str = setting("OVH DNS zone you own, e.g. example.com", "")
    name: str = setting("record name inside the zone, e.g. db-dev", "db")
    ttl: int = setting("record TTL (OVH minimum 60)", 60)
    primary_record: bool = setting(
        "keep <primary_record_name>.<zone> pointed at the current primary (Patroni callback)", False
    )
    primary_record_name: str = setting("name of that record inside the zone (empty: primary-<name>)", "")


@dataclass(frozen=True)
class LoadBalancerSettings:
    enabled: bool = setting("create an Octavia load balancer in front of the primary", False)
    flavor: str = setting("Octavia flavor", "small", choices=("small", "medium", "large", "xl"))
    read_only_listener: bool = setting("add a listener on replica_port checked on /replica", False)
    primary_port: int = setting("listener port routed to the primary", 5432, min=1, max=65535)
    replica_port: int = setting("listener port routed to replicas", 5433, min=1, max=65535)


@dataclass(frozen=True)
class EndpointSettings:
    dns: DnsSettings = section("DNS records in an OVH zone")
    load_balancer: LoadBalancerSettings = section("Octavia load balancer")
    haproxy_primary_port: int = setting("HAProxy port for the primary (application hosts, lab)", 5000, min=1, max=65535)
    haproxy_replica_port: int = setting("HAProxy port for replicas", 5001, min=1, max=65535)


@dataclass(frozen=True)
class BastionSettings:
    enabled: bool = setting("create a bastion with a public IP (SSH from admin_cidrs only)", True)
    flavor: str = setting("OVH flavor of the bastion", "d2-2")


@dataclass(frozen=True)
class AccessSettings:
    ssh_public_keys: tuple[str, ...] = setting("OpenSSH public keys allowed on every node", check=_ssh_key)
    admin_cidrs: tuple[str, ...] = setting("CIDRs allowed to SSH to the bastion", ())
    allow_world_admin: bool = setting("explicitly allow 0.0.0.0/0 in admin_cidrs", False)
    bastion: BastionSettings = section("the SSH bastion")
    host_firewall: bool = setting("render nftables rules into every node's cloud-init", True)


def _restore_time(value: str) -> str | None:
    """A restore target time: ISO 8601 WITH its UTC offset (never the machine's zone)."""
    if value == "":
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError as e:
        return f"not an ISO 8601 time ({e}); e.g. '2026-11-27 20:15:00+00:00'"
    if t.tzinfo is None:
        return f"add the UTC offset, e.g. '{value}+00:00' (a restore target must not depend on a machine's time zone)"
    return None


def _restore_name(value: str) -> str | None:
    """A restore point name as pg_create_restore_point takes it (< 64 bytes), quotable as is."""
    if len(value.encode()) > 63 or any(c in value for c in "'\\\n\r"):
        return f"a restore point name: at most 63 bytes, no quote, backslash or newline, got {value!r}"
    return None


@dataclass(frozen=True)
class RestoreFromSettings:
    bucket: str = setting(
        "the SOURCE stack's backup.bucket: bootstrap this NEW cluster from its repository (empty: an empty cluster;"
        " its passphrase: secret pgha-restore-from:cipherPass)",
        "",
        check=_bucket,
    )
    region: str = setting(
        "Object Storage region of the source bucket (empty: backup.region)",
        "",
        check=_regex(re.compile(r"^([a-z]{2,5})?$"), "lowercase letters only, e.g. gra, sbg, de"),
    )
    stanza: str = setting(
        "the source cluster's pgBackRest stanza, i.e. its patroni.scope (required with bucket)",
        "",
        check=_regex(re.compile(r"^([a-z][a-z0-9-]{0,62})?$"), "a patroni.scope: lowercase letters, digits and '-'"),
    )
    repo_path: str = setting(
        "pgBackRest repository path inside the source bucket",
        VM_REPO_PATH,
        check=_regex(re.compile(r"^/[A-Za-z0-9._/-]*$"), "an absolute path such as /pgbackrest"),
    )
    time: str = setting(
        "restore to this time, ISO 8601 with its UTC offset (empty, with xid and name empty: the latest point)",
        "",
        check=_restore_time,
    )
    xid: str = setting(
        "restore to just after this transaction id commits", "", check=_regex(re.compile(r"^([1-9][0-9]*)?$"), "digits")
    )
    name: str = setting("restore to this named restore point (pg_create_restore_point)", "", check=_restore_name)


@dataclass(frozen=True)
class BackupSettings:
    enabled: bool = setting(
        "pgBackRest: continuous WAL archiving and scheduled backups to an OVH Object Storage bucket", False
    )
    bucket: str = setting(
        "bucket of the repository, created per stack (S3 rules; required when enabled)", "", check=_bucket
    )
    region: str = setting(
        "Object Storage region, e.g. gra or sbg (empty: network.region's letters; another region survives the loss of this one)",
        "",
        check=_regex(re.compile(r"^([a-z]{2,5})?$"), "lowercase letters only, e.g. gra, sbg, de"),
    )
    full_calendar: str = setting("systemd OnCalendar of full backups", "Sun *-*-* 01:00:00")
    diff_calendar: str = setting("systemd OnCalendar of differential backups", "Mon..Sat *-*-* 01:00:00")
    retention_full: int = setting("full backups kept (older ones and their WAL are expired)", 2, min=1, max=100)
    retention_diff: int = setting("differential backups kept", 7, min=1, max=100)
    archive_timeout: int = setting(
        "seconds after which PostgreSQL switches to a new WAL segment (bounds the data lost with every node)",
        60,
        min=10,
        max=3600,
    )
    process_max: int = setting("pgBackRest parallel processes (backup, restore, async archiving)", 2, min=1, max=16)
    restore_from: RestoreFromSettings = section(
        "bootstrap a NEW cluster from another stack's repository (docs/backups.md, Restoring into a NEW cluster)"
    )


@dataclass(frozen=True)
class AlertmanagerSettings:
    webhook_url: str = setting(
        "Alertmanager webhook receiver URL (empty: none), e.g. https://hooks.example.com/pgha", ""
    )
    email_to: tuple[str, ...] = setting("addresses Alertmanager e-mails alerts to (empty: no e-mail)", ())
    email_from: str = setting("sender address of alert e-mails", "")
    smarthost: str = setting("SMTP relay host:port for alert e-mails, e.g. smtp.example.com:587", "")
    smtp_username: str = setting("SMTP login (its password: secret pgha-monitoring:smtpPassword)", "")
    repeat_interval_hours: int = setting("hours before a still-firing alert is sent again", 4, min=1, max=168)


@dataclass(frozen=True)
class MonitoringSettings:
    enabled: bool = setting("create the monitoring host (Prometheus + Alertmanager)", True)
    flavor: str = setting("OVH flavor of the monitoring host", "d2-4")
    retention_days: int = setting("Prometheus TSDB retention in days", 15, min=1, max=365)
    scrape_interval_seconds: int = setting("Prometheus scrape interval", 15, min=1, max=300)
    evaluation_interval_seconds: int = setting("Prometheus rule evaluation interval", 15, min=1, max=300)
    replication_lag_bytes: int = setting("alert when a replica replays this many bytes behind", 16777216, min=1)
    replication_lag_seconds: int = setting("alert when a replica's replay lag exceeds this", 30, min=1)
    disk_free_percent: int = setting("alert when a filesystem has less free space (percent)", 10, min=1, max=90)
    disk_full_hours: int = setting("alert when a filesystem is predicted full within this many hours", 6, min=1)
    wal_size_mb: int = setting("alert when pg_wal exceeds this size (MiB) and keeps growing", 4096, min=16)
    backup_max_age_hours: int = setting("alert when the last successful backup is older (hours)", 26, min=1)
    certificate_days: int = setting("alert when a TLS certificate expires within this many days", 30, min=1)
    failover_window_minutes: int = setting(
        "how long the failover notice stays firing after a timeline change", 10, min=1
    )
    prometheus_port: int = setting("Prometheus' port on the monitoring host", 9090, min=1, max=65535)
    alertmanager_port: int = setting("Alertmanager's port on the monitoring host", 9093, min=1, max=65535)
    etcd_metrics_port: int = setting("etcd's plain-HTTP /metrics and /health listener", 2381, min=1, max=65535)
    postgres_exporter_port: int = setting(
        "prometheus-postgres-exporter's port on each Patroni node", 9187, min=1, max=65535
    )
    node_exporter_port: int = setting("prometheus-node-exporter's port on every node", 9100, min=1, max=65535)
    alertmanager: AlertmanagerSettings = section("Alertmanager receivers")


@dataclass(frozen=True)
class Settings:
    stack: str
    network: NetworkSettings = section("private network")
    etcd: EtcdSettings = section("etcd cluster")
    patroni: PatroniSettings = section("Patroni/PostgreSQL cluster")
    endpoint: EndpointSettings = section("how applications reach the primary")
    access: AccessSettings = section("SSH, firewall, bastion")
    backup: BackupSettings = section("backups and point-in-time recovery (pgBackRest, Object Storage)")
    monitoring: MonitoringSettings = section("Prometheus, Alertmanager, exporters and alert thresholds")
    plan: AddressPlan = field(default=None)  # type: ignore[assignment] # always set by load()


SECTIONS = tuple(f.name for f in dataclasses.fields(Settings) if "section" in f.metadata)


# ---------------------------------------------------------------- reading the fields

_KIND_NAMES = {int: "an integer", str: "a string", bool: "true or false", tuple: "a list of strings", dict: "a mapping"}


def _kind(tp: Any) -> Any:
    """int, str, bool, tuple (list of strings), dict (mapping) or a section dataclass."""
    origin = typing.get_origin(tp)
    if origin in (tuple, dict):
        return origin
    return tp


def _fields(cls: type) -> list[tuple[str, Any, dataclasses.Field[Any]]]:
    hints = typing.get_type_hints(cls)
    return [
        (f.name, _kind(hints[f.name]), f)
        for f in dataclasses.fields(cls)
        if "setting" in f.metadata or "section" in f.metadata
    ]


def _typecheck(kind: Any, value: Any) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is bool:
        return isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if kind is tuple:
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    return isinstance(value, dict)


def _resolve(cls: type, raw: Any, path: str, problems: list[tuple[str, str]]) -> dict[str, Any]:
    """Type-check ``raw`` against the fields of ``cls``; values with defaults (None where broken)."""
    out: dict[str, Any] = {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append((path, f"must be a mapping, got {type(raw).__name__}"))
        raw = {}
    declared = _fields(cls)
    names = [name for name, _, _ in declared]
    for key in sorted(set(raw) - set(names), key=str):
        close = difflib.get_close_matches(str(key).replace("-", "_").lower(), names, n=1, cutoff=0.75)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(names))}"
        problems.append((f"{path}.{key}", f"unknown key{hint}"))
    for key, kind, f in declared:
        p = f"{path}.{key}"
        value = raw.get(key)
        if "section" in f.metadata:
            if value is not None and not isinstance(value, dict):
                problems.append((p, f"must be a mapping, got {type(value).__name__} {value!r}"))
                value = None
            out[key] = _resolve(kind, value, p, problems)
            continue
        opt: Setting = f.metadata["setting"]
        if value is None:
            if opt.default is REQUIRED:
                problems.append((p, "required value is missing"))
                out[key] = None
            else:
                out[key] = None if opt.default is FROM_PROFILE else opt.default
            continue
        if not _typecheck(kind, value):
            problems.append((p, f"must be {_KIND_NAMES[kind]}, got {type(value).__name__} {value!r}"))
            out[key] = None
            continue
        bad = False
        if opt.choices and value not in opt.choices:
            problems.append((p, f"must be one of {', '.join(map(str, opt.choices))}, got {value!r}"))
            bad = True
        if opt.min is not None and value < opt.min:
            problems.append((p, f"must be >= {opt.min}, got {value}"))
            bad = True
        if opt.max is not None and value > opt.max:
            problems.append((p, f"must be <= {opt.max}, got {value}"))
            bad = True
        if opt.check is not None and not bad:
            items = value if kind is tuple else [value]
            for i, item in enumerate(items):
                msg = opt.check(item)
                if msg:
                    problems.append((f"{p}[{i}]" if kind is tuple else p, msg))
                    bad = True
        out[key] = None if bad else value
    return out


def _build(cls: type, values: dict[str, Any]) -> Any:
    """The frozen dataclass from resolved values (lists become tuples, mappings copied)."""
    kwargs: dict[str, Any] = {}
    for key, kind, f in _fields(cls):
        v = values[key]
        if "section" in f.metadata:
            kwargs[key] = _build(kind, v)
        elif kind is tuple:
            kwargs[key] = tuple(v)
        elif kind is dict:
            kwargs[key] = dict(v)
        else:
            kwargs[key] = v
    return cls(**kwargs)


# ---------------------------------------------------------------- semantic checks


def _semantic(v: dict[str, dict[str, Any]], problems: list[tuple[str, str]]) -> None:
    etcd, pg, ep, acc = v["etcd"], v["patroni"], v["endpoint"], v["access"]
    m = etcd["members"]
    if m is not None and m not in (3, 5):
        kind = "an even number cannot outvote a split" if m % 2 == 0 else "use 3 (tolerates 1 loss) or 5 (tolerates 2)"
        problems.append(("etcd.members", f"must be 3 or 5 ({kind}), got {m}"))
        etcd["members"] = None
    if etcd["client_port"] is not None and etcd["client_port"] == etcd["peer_port"]:
        problems.append(("etcd.peer_port", "must differ from etcd.client_port"))
    hb, el = etcd["heartbeat_interval_ms"], etcd["election_timeout_ms"]
    if hb is not None and el is not None and el < 5 * hb:
        problems.append(("etcd.election_timeout_ms", f"must be >= 5 x heartbeat_interval_ms ({5 * hb}), got {el}"))

    # Patroni timing: profile values, overridden key by key.
    prof = TIMING_PROFILES.get(pg["timing_profile"] or DEFAULT_PROFILE, TIMING_PROFILES[DEFAULT_PROFILE])
    for k in ("ttl", "loop_wait", "retry_timeout"):
        if pg[k] is None:
            pg[k] = prof[k]
    ttl, lw, rt = pg["ttl"], pg["loop_wait"], pg["retry_timeout"]
    if ttl < PATRONI_MIN_TTL:
        problems.append(("patroni.ttl", f"must be >= {PATRONI_MIN_TTL} (Patroni clamps lower values), got {ttl}"))
    if lw + 2 * rt > ttl:
        problems.append(("patroni.ttl", f"loop_wait + 2*retry_timeout must be <= ttl ({lw} + 2*{rt} > {ttl})"))
    if pg["synchronous_mode"] and pg["nodes"] is not None and pg["nodes"] < 3:
        problems.append(
            (
                "patroni.synchronous_mode",
                f"needs at least 3 nodes so one replica can fail without blocking writes, got {pg['nodes']}",
            )
        )
    if pg["synchronous_mode_strict"] and not pg["synchronous_mode"]:
        problems.append(("patroni.synchronous_mode_strict", "requires patroni.synchronous_mode: true"))
    if pg["port"] is not None and pg["port"] == pg["rest_port"]:
        problems.append(("patroni.rest_port", "must differ from patroni.port"))
    if pg["app_user"] is not None and pg["app_user"] in ("postgres", "replicator", "rewind_user"):
        problems.append(("patroni.app_user", f"'{pg['app_user']}' is reserved for Patroni's own roles"))
    # Names, types, units, ranges against PostgreSQL's own description (pgha/data/).
    problems += parameter_problems(pg["parameters"] or {}, pg["postgres_version"] or 15, MANAGED_PARAMETERS)
    problems += memory_problems(pg["flavor"], pg["parameters"] or {}, pg["postgres_version"] or 15)
    problems += replication_problems(pg["parameters"] or {}, pg["nodes"])
    for i, c in enumerate(pg["app_cidrs"] or []):
        msg = _cidr(c)
        if msg:
            problems.append((f"patroni.app_cidrs[{i}]", msg))
        elif ipaddress.ip_network(c).prefixlen == 0:
            problems.append(
                (
                    f"patroni.app_cidrs[{i}]",
                    "0.0.0.0/0 would open PostgreSQL to the world; list your application networks",
                )
            )

    dns = ep["dns"]
    if dns["enabled"] and not dns["zone"]:
        problems.append(
            ("endpoint.dns.zone", "required when endpoint.dns.enabled is true (an OVH zone you own, e.g. example.com)")
        )
    if dns["zone"] and not DOMAIN_RE.match(dns["zone"]):
        problems.append(("endpoint.dns.zone", f"not a domain name: {dns['zone']!r}"))
    if dns["name"] is not None and not DNS_LABEL_RE.match(dns["name"]):
        problems.append(("endpoint.dns.name", f"not a DNS label: {dns['name']!r}"))
    if dns["ttl"] is not None and dns["ttl"] < 60:
        problems.append(("endpoint.dns.ttl", f"OVH's minimum TTL is 60, got {dns['ttl']}"))
    explicit = bool(dns["primary_record_name"])
    if not explicit and dns["name"] is not None:
        dns["primary_record_name"] = f"primary-{dns['name']}"
    if dns["primary_record"] and not dns["enabled"]:
        problems.append(
            (
                "endpoint.dns.primary_record",
                "requires endpoint.dns.enabled: true and endpoint.dns.zone (the record lives in that OVH zone)",
            )
        )
    prn = dns["primary_record_name"]
    if prn is not None and (explicit or dns["primary_record"]):
        if not DNS_LABEL_RE.match(prn):
            problems.append(("endpoint.dns.primary_record_name", f"not a DNS label: {prn!r}"))
        elif prn == dns["name"]:
            problems.append(
                (
                    "endpoint.dns.primary_record_name",
                    f"must differ from endpoint.dns.name ({prn!r} is Pulumi's record for the load balancer or every node)",
                )
            )
    lb = ep["load_balancer"]
    if lb["read_only_listener"] and not lb["enabled"]:
        problems.append(("endpoint.load_balancer.read_only_listener", "requires endpoint.load_balancer.enabled: true"))
    if lb["primary_port"] is not None and lb["primary_port"] == lb["replica_port"]:
        problems.append(("endpoint.load_balancer.replica_port", "must differ from primary_port"))
    if ep["haproxy_primary_port"] is not None and ep["haproxy_primary_port"] == ep["haproxy_replica_port"]:
        problems.append(("endpoint.haproxy_replica_port", "must differ from haproxy_primary_port"))

    keys = acc["ssh_public_keys"]
    if keys is not None and not keys:
        problems.append(("access.ssh_public_keys", "at least one key is required"))
    for i, c in enumerate(acc["admin_cidrs"] or []):
        msg = _cidr(c)
        if msg:
            problems.append((f"access.admin_cidrs[{i}]", msg))
        elif ipaddress.ip_network(c).prefixlen == 0 and not acc["allow_world_admin"]:
            problems.append(
                (
                    f"access.admin_cidrs[{i}]",
                    "0.0.0.0/0 opens SSH to the world; list your office/VPN ranges or set access.allow_world_admin: true",
                )
            )
    if v["network"]["gateway"] is False and not v["network"]["external_egress"]:
        problems.append(
            (
                "network.gateway",
                (
                    "false leaves the nodes without egress: cloud-init installs PostgreSQL, etcd and Patroni from "
                    "Debian and PyPI at boot; keep true, or route the subnet's .1 through your own router on the "
                    "vRack and set network.external_egress: true"
                ),
            )
        )
    if v["network"]["external_egress"] and v["network"]["gateway"]:
        problems.append(
            ("network.external_egress", "only with network.gateway: false (the OVH gateway already gives egress)")
        )
    if acc["bastion"]["enabled"] and v["network"]["gateway"] is False:
        problems.append(
            (
                "access.bastion.enabled",
                "needs network.gateway: true (the bastion's floating IP is routed through the Public Cloud gateway)",
            )
        )
    if acc["bastion"]["enabled"] and acc["admin_cidrs"] is not None and not acc["admin_cidrs"]:
        problems.append(
            ("access.admin_cidrs", "required when access.bastion.enabled is true (who may SSH to the bastion)")
        )
    net = v["network"]
    if (
        net["vlan_id"] is not None
        and net["vrack_service_name"]
        and not re.match(r"^pn-\d+$", net["vrack_service_name"])
    ):
        problems.append(("network.vrack_service_name", f"must look like pn-123456, got {net['vrack_service_name']!r}"))


def _backup_semantic(v: dict[str, dict[str, Any]], problems: list[tuple[str, str]]) -> None:
    bk = v["backup"]
    if bk["enabled"] and bk["bucket"] == "":
        problems.append(
            ("backup.bucket", "required when backup.enabled is true (e.g. pgha-<stack>-backups-<your suffix>)")
        )
    for key in ("full_calendar", "diff_calendar"):
        if bk[key] is not None:
            msg = systemd_calendar_problem(bk[key])
            if msg:
                problems.append((f"backup.{key}", msg))
    if bk["region"] == "" and v["network"]["region"] is not None:
        bk["region"] = re.sub(r"[0-9]+$", "", v["network"]["region"]).lower()
    _restore_from_semantic(bk, problems)


#: backup.restore_from's restore target keys: at most one (none: the latest point).
RESTORE_TARGETS = ("time", "xid", "name")


def _restore_from_semantic(bk: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """restore_from needs backups on (the new cluster archives into ITS OWN bucket, never the
    source's), a stanza, and one target at most."""
    rf, p = bk["restore_from"], "backup.restore_from"
    targets = [k for k in RESTORE_TARGETS if rf[k]]
    if rf["bucket"] == "":
        others = [k for k in ("stanza", "region", *RESTORE_TARGETS) if rf[k]]
        if others:
            problems.append(
                (f"{p}.bucket", f"required when {', '.join(f'{p}.{k}' for k in others)} is set (the source's bucket)")
            )
        return
    if rf["bucket"] is None:
        return
    if not bk["enabled"]:
        problems.append(
            (
                "backup.enabled",
                f"must be true with {p}.bucket: the restored cluster archives into its own backup.bucket",
            )
        )
    if rf["bucket"] == bk["bucket"]:
        problems.append(
            (
                f"{p}.bucket",
                (
                    f"must differ from backup.bucket ({bk['bucket']}): the new cluster must never write into the "
                    "source's history; give this stack a bucket of its own"
                ),
            )
        )
    if rf["stanza"] == "":
        problems.append(
            (f"{p}.stanza", f"required with {p}.bucket: the source cluster's patroni.scope (pgbackrest info lists it)")
        )
    if len(targets) > 1:
        for k in targets:
            problems.append(
                (f"{p}.{k}", f"set one restore target at most, got {' and '.join(targets)} (none: the latest point)")
            )
    if rf["region"] == "" and bk["region"] is not None:
        rf["region"] = bk["region"]


EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HOSTPORT_RE = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")


def _semantic_monitoring(mon: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """monitoring.*: receivers complete and well-formed (e-mail needs a relay and a sender)."""
    am = mon["alertmanager"]
    url = am["webhook_url"]
    if url and not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
        problems.append(("monitoring.alertmanager.webhook_url", f"must be an http(s):// URL, got {url!r}"))
    for i, addr in enumerate(am["email_to"] or []):
        if not EMAIL_RE.match(addr):
            problems.append((f"monitoring.alertmanager.email_to[{i}]", f"not an e-mail address: {addr!r}"))
    if am["email_from"] and not EMAIL_RE.match(am["email_from"]):
        problems.append(("monitoring.alertmanager.email_from", f"not an e-mail address: {am['email_from']!r}"))
    if am["smarthost"] and not HOSTPORT_RE.match(am["smarthost"]):
        problems.append(
            (
                "monitoring.alertmanager.smarthost",
                f"must be host:port, e.g. smtp.example.com:587, got {am['smarthost']!r}",
            )
        )
    if am["email_to"]:
        for key in ("email_from", "smarthost"):
            if not am[key]:
                problems.append(
                    (f"monitoring.alertmanager.{key}", "required when monitoring.alertmanager.email_to is set")
                )
    ev, sc = mon["evaluation_interval_seconds"], mon["scrape_interval_seconds"]
    if ev is not None and sc is not None and ev < sc:
        problems.append(
            (
                "monitoring.evaluation_interval_seconds",
                f"must be >= monitoring.scrape_interval_seconds ({sc}): rules would evaluate the same samples twice",
            )
        )


def load(stack: str, raw: dict[str, Any]) -> Settings:
    """Validate the ``pgha:*`` config of ``stack`` (section -> value) into Settings."""
    problems: list[tuple[str, str]] = []
    for key in sorted(set(raw) - set(SECTIONS), key=str):
        problems.append((str(key), f"unknown section; known sections: {', '.join(SECTIONS)}"))
    hints = typing.get_type_hints(Settings)
    values = {s: _resolve(hints[s], raw.get(s), s, problems) for s in SECTIONS}
    _semantic(values, problems)
    _backup_semantic(values, problems)
    _semantic_monitoring(values["monitoring"], problems)
    net = values["network"]
    hosts = {k: v for k, v in net.items() if k.endswith("_host")}
    plan = None
    members, nodes_ = values["etcd"]["members"], values["patroni"]["nodes"]
    if net["cidr"] is not None and members is not None and nodes_ is not None and None not in hosts.values():
        plan = subnet_plan(net["cidr"], members, nodes_, hosts, problems)
    if problems:
        raise SettingsError(problems)
    assert plan is not None
    return Settings(stack=stack, plan=plan, **{s: _build(hints[s], values[s]) for s in SECTIONS})


def sections_from_stack_yaml(doc: Any) -> dict[str, Any]:
    """The ``pgha:*`` sections of a parsed ``Pulumi.<stack>.yaml`` (other namespaces ignored)."""
    config = (doc or {}).get("config") or {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = str(key).partition(":")
        if ns == PROJECT:
            out[name] = value
    return out


ROOT = Path(__file__).resolve().parent.parent


def load_stack_file(stack: str, root: Path | None = None) -> Settings:
    """Load and validate ``Pulumi.<stack>.yaml`` without the Pulumi engine."""
    root = root or ROOT
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise SettingsError(
            [("stack", f"{path.name} not found in {root}; known stacks: {', '.join(known_stacks(root)) or 'none'}")]
        )
    return load(stack, sections_from_stack_yaml(yaml.safe_load(path.read_text())))


def known_stacks(root: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def describe_schema() -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every key: the configuration table."""
    rows: list[tuple[str, str, str, str]] = []
    type_names = {int: "int", str: "string", bool: "bool", tuple: "list of strings", dict: "mapping"}

    def walk(cls: type, prefix: str) -> None:
        for key, kind, f in _fields(cls):
            p = f"{prefix}.{key}"
            if "section" in f.metadata:
                walk(kind, p)
                continue
            opt: Setting = f.metadata["setting"]
            type_name = type_names[kind]
            if opt.default is REQUIRED:
                default = "required"
            elif opt.default is FROM_PROFILE:
                default = "from timing_profile"
            else:
                plain = list(opt.default) if isinstance(opt.default, tuple) else opt.default
                default = f"`{yaml.safe_dump(plain, default_flow_style=True).strip().removesuffix('...').strip()}`"
            if opt.choices:
                type_name += " (" + " \\| ".join(map(str, opt.choices)) + ")"
            rows.append((p, type_name, default, opt.doc))

    for name in SECTIONS:
        walk(typing.get_type_hints(Settings)[name], name)
    return rows
