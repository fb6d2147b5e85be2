"""Stack settings: the ONE loader from structured stack config to frozen dataclasses.

Input is the plain mapping of a stack's ``pgha:*`` config (section name -> value), as
read by ``components/config.py`` inside the Pulumi engine or by :func:`load_stack_file`
from ``Pulumi.<stack>.yaml`` outside it (lab, render command). Every default is
resolved here; every problem is collected with its dotted path and raised once as
:class:`SettingsError`. This module never imports pulumi.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

PROJECT = "pgha"
SECTIONS = ("network", "etcd", "patroni", "endpoint", "access")
SUPPORTED_POSTGRES = (15,)  # Debian 12's distribution PostgreSQL
PATRONI_MIN_TTL = 20  # Patroni clamps ttl to >= 20

#: Named timing profiles (ttl, loop_wait, retry_timeout). See README "Timing".
TIMING_PROFILES: dict[str, dict[str, int]] = {
    "fast": {"ttl": 20, "loop_wait": 2, "retry_timeout": 9},
    "patroni-defaults": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
}

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

SSH_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/=]+( .*)?$")
REGION_RE = re.compile(r"^[A-Z]{2,5}[0-9]{0,2}$")
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
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


# ---------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class NetworkSettings:
    region: str  #: OVH/OpenStack region, e.g. GRA11
    cidr: str  #: private IPv4 subnet of the vRack network, e.g. 10.42.0.0/24
    vlan_id: int  #: vRack VLAN id (0-4000)
    gateway: bool  #: create an OVH Public Cloud gateway for egress (nodes have no public IP)
    gateway_model: str  #: gateway size: s, m or l
    vrack_service_name: str  #: vRack service to attach the project to ("" = already attached)
    etcd_first_host: int  #: host number of the first etcd member in the subnet
    patroni_first_host: int  #: host number of the first Patroni node
    bastion_host: int  #: host number of the bastion
    lb_host: int  #: host number of the load balancer's VIP
    dhcp_first_host: int  #: first host number of the DHCP pool (never used by fixed IPs)
    dhcp_last_host: int  #: last host number of the DHCP pool


@dataclass(frozen=True)
class EtcdSettings:
    members: int  #: 3 or 5
    flavor: str  #: OVH flavor of the etcd VMs
    image: str  #: image name
    client_port: int  #: etcd client port
    peer_port: int  #: etcd peer port
    heartbeat_interval_ms: int  #: etcd --heartbeat-interval
    election_timeout_ms: int  #: etcd --election-timeout


@dataclass(frozen=True)
class PatroniSettings:
    nodes: int  #: number of PostgreSQL nodes (3 recommended)
    flavor: str  #: OVH flavor of the database VMs
    image: str  #: image name
    volume_size_gb: int  #: size of each node's data volume
    volume_type: str  #: Cinder volume type: classic, high-speed, high-speed-gen2
    postgres_version: int  #: PostgreSQL major version
    scope: str  #: Patroni cluster name (etcd key prefix)
    port: int  #: PostgreSQL port
    rest_port: int  #: Patroni REST API port
    parameters: dict[str, Any]  #: extra postgresql.conf parameters
    synchronous_mode: bool  #: synchronous replication (Patroni synchronous_mode)
    synchronous_mode_strict: bool  #: refuse writes when no sync standby is available
    timing_profile: str  #: fast or patroni-defaults; explicit values below override it
    ttl: int  #: leader lease in seconds (>= 20)
    loop_wait: int  #: seconds between Patroni HA loops
    retry_timeout: int  #: DCS and PostgreSQL retry timeout
    primary_start_timeout: int  #: seconds before failing over a crashed primary
    maximum_lag_on_failover: int  #: bytes a replica may lag and still be promoted
    watchdog: str  #: off, automatic or required
    app_user: str  #: application role created at bootstrap
    app_database: str  #: application database created at bootstrap
    app_cidrs: tuple[str, ...]  #: extra CIDRs allowed to reach PostgreSQL (5432)


@dataclass(frozen=True)
class DnsSettings:
    enabled: bool  #: manage DNS records in an OVH zone
    zone: str  #: OVH DNS zone, e.g. example.com
    name: str  #: record name inside the zone, e.g. db-dev
    ttl: int  #: record TTL (OVH minimum 60)
    primary_record: bool  #: keep <primary_record_name>.<zone> pointed at the current primary (Patroni callback)
    primary_record_name: str  #: name of that record inside the zone ("" = primary-<name>)


@dataclass(frozen=True)
class LoadBalancerSettings:
    enabled: bool  #: create an Octavia load balancer in front of the primary
    flavor: str  #: Octavia flavor: small, medium, large
    read_only_listener: bool  #: add a listener on replica_port checked on /replica
    primary_port: int  #: listener port routed to the primary
    replica_port: int  #: listener port routed to replicas


@dataclass(frozen=True)
class EndpointSettings:
    dns: DnsSettings
    load_balancer: LoadBalancerSettings
    haproxy_primary_port: int  #: HAProxy port for the primary (application hosts, lab)
    haproxy_replica_port: int  #: HAProxy port for replicas


@dataclass(frozen=True)
class BastionSettings:
    enabled: bool  #: create a bastion with a public IP (SSH from admin_cidrs only)
    flavor: str  #: OVH flavor of the bastion


@dataclass(frozen=True)
class AccessSettings:
    ssh_public_keys: tuple[str, ...]  #: OpenSSH public keys allowed on every node
    admin_cidrs: tuple[str, ...]  #: CIDRs allowed to SSH to the bastion
    allow_world_admin: bool  #: explicitly allow 0.0.0.0/0 in admin_cidrs
    bastion: BastionSettings
    host_firewall: bool  #: render nftables rules into every node's cloud-init


@dataclass(frozen=True)
class Settings:
    stack: str
    network: NetworkSettings
    etcd: EtcdSettings
    patroni: PatroniSettings
    endpoint: EndpointSettings
    access: AccessSettings
    plan: AddressPlan


@dataclass(frozen=True)
class AddressPlan:
    """Every fixed address, known before any VM exists."""

    cidr: str
    gateway_ip: str
    etcd: tuple[str, ...]
    patroni: tuple[str, ...]
    bastion: str
    lb: str
    dhcp_start: str
    dhcp_end: str

    def etcd_name(self, i: int) -> str:
        return f"etcd{i + 1}"

    def patroni_name(self, i: int) -> str:
        return f"pg{i + 1}"


# ---------------------------------------------------------------- schema


@dataclass(frozen=True)
class Opt:
    """One config key: its type, default (``REQUIRED`` if none) and checks."""

    kind: Any  # int, str, bool, "str_list", "mapping", or a dict of Opts (section)
    default: Any = None
    choices: tuple[Any, ...] = ()
    min: int | None = None
    max: int | None = None
    check: Callable[[Any], str | None] | None = None
    required: bool = False


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


SCHEMA: dict[str, dict[str, Opt]] = {
    "network": {
        "region": Opt(str, required=True, check=_regex(REGION_RE, "must look like an OVH region, e.g. GRA11")),
        "cidr": Opt(str, required=True, check=_private_cidr),
        "vlan_id": Opt(int, default=0, min=0, max=4000),
        "gateway": Opt(bool, default=True),
        "gateway_model": Opt(str, default="s", choices=("s", "m", "l")),
        "vrack_service_name": Opt(str, default=""),
        "etcd_first_host": Opt(int, default=11, min=2),
        "patroni_first_host": Opt(int, default=21, min=2),
        "bastion_host": Opt(int, default=5, min=2),
        "lb_host": Opt(int, default=6, min=2),
        "dhcp_first_host": Opt(int, default=100, min=2),
        "dhcp_last_host": Opt(int, default=200, min=2),
    },
    "etcd": {
        "members": Opt(int, default=3),
        "flavor": Opt(str, default="b3-8"),
        "image": Opt(str, default="Debian 12"),
        "client_port": Opt(int, default=2379, min=1, max=65535),
        "peer_port": Opt(int, default=2380, min=1, max=65535),
        "heartbeat_interval_ms": Opt(int, default=100, min=10, max=5000),
        "election_timeout_ms": Opt(int, default=1000, min=100, max=50000),
    },
    "patroni": {
        "nodes": Opt(int, default=3, min=2, max=9),
        "flavor": Opt(str, default="b3-8"),
        "image": Opt(str, default="Debian 12"),
        "volume_size_gb": Opt(int, default=50, min=10, max=4000),
        "volume_type": Opt(str, default="high-speed", choices=("classic", "high-speed", "high-speed-gen2")),
        "postgres_version": Opt(int, default=15, choices=SUPPORTED_POSTGRES),
        "scope": Opt(str, default="pgha", check=_regex(re.compile(r"^[a-z][a-z0-9-]{0,62}$"), "lowercase letters, digits and '-'")),
        "port": Opt(int, default=5432, min=1, max=65535),
        "rest_port": Opt(int, default=8008, min=1, max=65535),
        "parameters": Opt("mapping", default={}),
        "synchronous_mode": Opt(bool, default=False),
        "synchronous_mode_strict": Opt(bool, default=False),
        "timing_profile": Opt(str, default="fast", choices=tuple(TIMING_PROFILES)),
        "ttl": Opt(int, min=1),
        "loop_wait": Opt(int, min=1),
        "retry_timeout": Opt(int, min=1),
        "primary_start_timeout": Opt(int, default=300, min=0),
        "maximum_lag_on_failover": Opt(int, default=1048576, min=0),
        "watchdog": Opt(str, default="required", choices=("off", "automatic", "required")),
        "app_user": Opt(str, default="app", check=_regex(NAME_RE, "a PostgreSQL identifier: lowercase, digits, _")),
        "app_database": Opt(str, default="app", check=_regex(NAME_RE, "a PostgreSQL identifier: lowercase, digits, _")),
        "app_cidrs": Opt("str_list", default=[]),
    },
    "endpoint": {
        "dns": Opt(
            {
                "enabled": Opt(bool, default=False),
                "zone": Opt(str, default=""),
                "name": Opt(str, default="db"),
                "ttl": Opt(int, default=60),
                "primary_record": Opt(bool, default=False),
                "primary_record_name": Opt(str, default=""),
            },
            default={},
        ),
        "load_balancer": Opt(
            {
                "enabled": Opt(bool, default=False),
                "flavor": Opt(str, default="small", choices=("small", "medium", "large", "xl")),
                "read_only_listener": Opt(bool, default=False),
                "primary_port": Opt(int, default=5432, min=1, max=65535),
                "replica_port": Opt(int, default=5433, min=1, max=65535),
            },
            default={},
        ),
        "haproxy_primary_port": Opt(int, default=5000, min=1, max=65535),
        "haproxy_replica_port": Opt(int, default=5001, min=1, max=65535),
    },
    "access": {
        "ssh_public_keys": Opt("str_list", required=True, check=_ssh_key),
        "admin_cidrs": Opt("str_list", default=[]),
        "allow_world_admin": Opt(bool, default=False),
        "bastion": Opt({"enabled": Opt(bool, default=True), "flavor": Opt(str, default="d2-2")}, default={}),
        "host_firewall": Opt(bool, default=True),
    },
}

_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false", "str_list": "a list of strings", "mapping": "a mapping"}


def _typecheck(kind: Any, value: Any) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is bool:
        return isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if kind == "str_list":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if kind == "mapping" or isinstance(kind, dict):
        return isinstance(value, dict)
    raise AssertionError(kind)


def _resolve(schema: dict[str, Opt], raw: Any, path: str, problems: list[tuple[str, str]]) -> dict[str, Any]:
    """Type-check ``raw`` against ``schema``; return values with defaults (None if broken)."""
    out: dict[str, Any] = {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append((path, f"must be a mapping, got {type(raw).__name__}"))
        raw = {}
    for key in sorted(set(raw) - set(schema)):
        close = difflib.get_close_matches(str(key).replace("-", "_").lower(), list(schema), n=1, cutoff=0.75)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(schema))}"
        problems.append((f"{path}.{key}", f"unknown key{hint}"))
    for key, opt in schema.items():
        p = f"{path}.{key}"
        if key not in raw or raw[key] is None:
            if opt.required:
                problems.append((p, "required value is missing"))
                out[key] = None
                continue
            value = opt.default
            if isinstance(opt.kind, dict):
                out[key] = _resolve(opt.kind, value, p, problems)
                continue
            out[key] = value
            continue
        value = raw[key]
        if not _typecheck(opt.kind, value):
            problems.append((p, f"must be {_TYPE_NAMES.get(opt.kind, 'a mapping')}, got {type(value).__name__} {value!r}"))
            out[key] = None
            continue
        if isinstance(opt.kind, dict):
            out[key] = _resolve(opt.kind, value, p, problems)
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
            items = value if opt.kind == "str_list" else [value]
            for i, item in enumerate(items):
                msg = opt.check(item)
                if msg:
                    problems.append((f"{p}[{i}]" if opt.kind == "str_list" else p, msg))
                    bad = True
        out[key] = None if bad else value
    return out


# ---------------------------------------------------------------- semantic checks


def _plan(net: dict[str, Any], members: int | None, nodes: int | None, problems: list[tuple[str, str]]) -> AddressPlan | None:
    if net["cidr"] is None or members is None or nodes is None:
        return None
    subnet = ipaddress.ip_network(net["cidr"])
    last_host = subnet.num_addresses - 2  # highest usable host number (broadcast excluded)
    ranges = {
        "etcd_first_host": (net["etcd_first_host"], members),
        "patroni_first_host": (net["patroni_first_host"], nodes),
        "bastion_host": (net["bastion_host"], 1),
        "lb_host": (net["lb_host"], 1),
    }
    if None in [v for v, _ in ranges.values()] or net["dhcp_first_host"] is None or net["dhcp_last_host"] is None:
        return None
    ok = True
    if net["dhcp_first_host"] > net["dhcp_last_host"]:
        problems.append(("network.dhcp_first_host", "must be <= network.dhcp_last_host"))
        ok = False
    spans = dict(ranges, dhcp_first_host=(net["dhcp_first_host"], net["dhcp_last_host"] - net["dhcp_first_host"] + 1))
    for key, (start, count) in spans.items():
        end = start + count - 1
        if end > last_host:
            problems.append(
                ("network.cidr", f"{subnet} is too small for the address plan: network.{key} needs host {end}, the subnet's last host is {last_host}")
            )
            ok = False
    keys = list(spans)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            (sa, ca), (sb, cb) = spans[a], spans[b]
            if sa <= sb + cb - 1 and sb <= sa + ca - 1:
                problems.append((f"network.{a}", f"hosts {sa}-{sa + ca - 1} overlap network.{b} (hosts {sb}-{sb + cb - 1})"))
                ok = False
    if not ok:
        return None
    base = subnet.network_address

    def at(n: int) -> str:
        return str(base + n)

    return AddressPlan(
        cidr=str(subnet),
        gateway_ip=at(1),
        etcd=tuple(at(net["etcd_first_host"] + i) for i in range(members)),
        patroni=tuple(at(net["patroni_first_host"] + i) for i in range(nodes)),
        bastion=at(net["bastion_host"]),
        lb=at(net["lb_host"]),
        dhcp_start=at(net["dhcp_first_host"]),
        dhcp_end=at(net["dhcp_last_host"]),
    )


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
    prof = TIMING_PROFILES.get(pg["timing_profile"] or "fast", TIMING_PROFILES["fast"])
    for k in ("ttl", "loop_wait", "retry_timeout"):
        if pg[k] is None:
            pg[k] = prof[k]
    ttl, lw, rt = pg["ttl"], pg["loop_wait"], pg["retry_timeout"]
    if ttl < PATRONI_MIN_TTL:
        problems.append(("patroni.ttl", f"must be >= {PATRONI_MIN_TTL} (Patroni clamps lower values), got {ttl}"))
    if lw + 2 * rt > ttl:
        problems.append(("patroni.ttl", f"loop_wait + 2*retry_timeout must be <= ttl ({lw} + 2*{rt} > {ttl})"))
    if pg["synchronous_mode"] and pg["nodes"] is not None and pg["nodes"] < 3:
        problems.append(("patroni.synchronous_mode", f"needs at least 3 nodes so one replica can fail without blocking writes, got {pg['nodes']}"))
    if pg["synchronous_mode_strict"] and not pg["synchronous_mode"]:
        problems.append(("patroni.synchronous_mode_strict", "requires patroni.synchronous_mode: true"))
    if pg["port"] is not None and pg["port"] == pg["rest_port"]:
        problems.append(("patroni.rest_port", "must differ from patroni.port"))
    if pg["app_user"] is not None and pg["app_user"] in ("postgres", "replicator", "rewind_user"):
        problems.append(("patroni.app_user", f"'{pg['app_user']}' is reserved for Patroni's own roles"))
    for key, value in sorted((pg["parameters"] or {}).items()):
        if key in MANAGED_PARAMETERS:
            problems.append((f"patroni.parameters.{key}", "is managed by pgha's templates; remove it"))
        elif not isinstance(value, (str, int, float, bool)):
            problems.append((f"patroni.parameters.{key}", f"must be a scalar, got {type(value).__name__}"))
    for i, c in enumerate(pg["app_cidrs"] or []):
        msg = _cidr(c)
        if msg:
            problems.append((f"patroni.app_cidrs[{i}]", msg))
        elif ipaddress.ip_network(c).prefixlen == 0:
            problems.append((f"patroni.app_cidrs[{i}]", "0.0.0.0/0 would open PostgreSQL to the world; list your application networks"))

    dns = ep["dns"]
    if dns["enabled"] and not dns["zone"]:
        problems.append(("endpoint.dns.zone", "required when endpoint.dns.enabled is true (an OVH zone you own, e.g. example.com)"))
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
        problems.append(("endpoint.dns.primary_record", "requires endpoint.dns.enabled: true and endpoint.dns.zone (the record lives in that OVH zone)"))
    prn = dns["primary_record_name"]
    if prn is not None and (explicit or dns["primary_record"]):
        if not DNS_LABEL_RE.match(prn):
            problems.append(("endpoint.dns.primary_record_name", f"not a DNS label: {prn!r}"))
        elif prn == dns["name"]:
            problems.append(
                ("endpoint.dns.primary_record_name", f"must differ from endpoint.dns.name ({prn!r} is Pulumi's record for the load balancer or every node)")
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
            problems.append((f"access.admin_cidrs[{i}]", "0.0.0.0/0 opens SSH to the world; list your office/VPN ranges or set access.allow_world_admin: true"))
    if acc["bastion"]["enabled"] and acc["admin_cidrs"] == []:
        problems.append(("access.admin_cidrs", "required when access.bastion.enabled is true (who may SSH to the bastion)"))
    net = v["network"]
    if net["vlan_id"] is not None and net["vrack_service_name"] and not re.match(r"^pn-\d+$", net["vrack_service_name"]):
        problems.append(("network.vrack_service_name", f"must look like pn-123456, got {net['vrack_service_name']!r}"))


def load(stack: str, raw: dict[str, Any]) -> Settings:
    """Validate the ``pgha:*`` config of ``stack`` (section -> value) into Settings."""
    problems: list[tuple[str, str]] = []
    for key in sorted(set(raw) - set(SECTIONS)):
        problems.append((str(key), f"unknown section; known sections: {', '.join(SECTIONS)}"))
    values = {s: _resolve(SCHEMA[s], raw.get(s), s, problems) for s in SECTIONS}
    _semantic(values, problems)
    plan = _plan(values["network"], values["etcd"]["members"], values["patroni"]["nodes"], problems)
    if problems:
        raise SettingsError(problems)
    assert plan is not None
    pg = values["patroni"]
    ep = values["endpoint"]
    acc = values["access"]
    return Settings(
        stack=stack,
        network=NetworkSettings(**values["network"]),
        etcd=EtcdSettings(**values["etcd"]),
        patroni=PatroniSettings(**{**pg, "app_cidrs": tuple(pg["app_cidrs"]), "parameters": dict(pg["parameters"])}),
        endpoint=EndpointSettings(
            dns=DnsSettings(**ep["dns"]),
            load_balancer=LoadBalancerSettings(**ep["load_balancer"]),
            haproxy_primary_port=ep["haproxy_primary_port"],
            haproxy_replica_port=ep["haproxy_replica_port"],
        ),
        access=AccessSettings(
            ssh_public_keys=tuple(acc["ssh_public_keys"]),
            admin_cidrs=tuple(acc["admin_cidrs"]),
            allow_world_admin=acc["allow_world_admin"],
            bastion=BastionSettings(**acc["bastion"]),
            host_firewall=acc["host_firewall"],
        ),
        plan=plan,
    )


def sections_from_stack_yaml(doc: Any) -> dict[str, Any]:
    """The ``pgha:*`` sections of a parsed ``Pulumi.<stack>.yaml`` (other namespaces ignored)."""
    config = (doc or {}).get("config") or {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = str(key).partition(":")
        if ns == PROJECT:
            out[name] = value
    return out


def load_stack_file(stack: str, root: Path | None = None) -> Settings:
    """Load and validate ``Pulumi.<stack>.yaml`` without the Pulumi engine."""
    root = root or Path(__file__).resolve().parent.parent
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise SettingsError([("stack", f"{path.name} not found in {root}; known stacks: {', '.join(known_stacks(root)) or 'none'}")])
    return load(stack, sections_from_stack_yaml(yaml.safe_load(path.read_text())))


def known_stacks(root: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def describe_schema() -> list[tuple[str, str, str]]:
    """(dotted key, type, default) for every key: the README's configuration table."""
    rows: list[tuple[str, str, str]] = []

    def walk(schema: dict[str, Opt], prefix: str) -> None:
        for key, opt in schema.items():
            p = f"{prefix}.{key}"
            if isinstance(opt.kind, dict):
                walk(opt.kind, p)
                continue
            kind = {int: "int", str: "string", bool: "bool", "str_list": "list of strings", "mapping": "mapping"}[opt.kind]
            if opt.required:
                default = "required"
            elif opt.default is None:
                default = "from timing_profile"
            else:
                default = f"`{yaml.safe_dump(opt.default, default_flow_style=True).strip().removesuffix('...').strip()}`"
            if opt.choices:
                kind += " (" + " \\| ".join(map(str, opt.choices)) + ")"
            rows.append((p, kind, default))

    for section in SECTIONS:
        walk(SCHEMA[section], section)
    return rows


def dataclass_keys() -> set[str]:
    """Dotted keys as the dataclasses define them (to keep the schema honest)."""
    keys: set[str] = set()
    section_types = {
        "network": NetworkSettings,
        "etcd": EtcdSettings,
        "patroni": PatroniSettings,
        "endpoint": EndpointSettings,
        "access": AccessSettings,
    }

    nested = {"dns": DnsSettings, "load_balancer": LoadBalancerSettings, "bastion": BastionSettings}

    def walk(cls: Any, prefix: str) -> None:
        for name in (f.name for f in fields(cls)):
            if name in nested:
                walk(nested[name], f"{prefix}.{name}")
            else:
                keys.add(f"{prefix}.{name}")

    for s, cls in section_types.items():
        walk(cls, s)
    return keys


__all__ = [
    "AccessSettings",
    "AddressPlan",
    "EtcdSettings",
    "NetworkSettings",
    "PatroniSettings",
    "Settings",
    "SettingsError",
    "load",
    "load_stack_file",
]
