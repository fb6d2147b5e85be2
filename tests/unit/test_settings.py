"""Settings: every mistake rejected with its dotted path, all at once (table-driven)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgha.settings import (
    SettingsError,
    describe_schema,
    load,
    load_stack_file,
    sections_from_stack_yaml,
)

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx4cGhhZGV2b3BzZXhhbXBsZWtleWZvcmRldnN0YWNr ops@test"


def base() -> dict[str, Any]:
    return {
        "network": {"region": "GRA11", "cidr": "10.42.0.0/24"},
        "access": {"ssh_public_keys": [KEY], "admin_cidrs": ["203.0.113.0/24"]},
    }


def with_(changes: dict[str, Any]) -> dict[str, Any]:
    """base() with dotted-path changes applied; a value of DELETE removes the key."""
    raw = base()
    for path, value in changes.items():
        node = raw
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return raw


DELETE = object()

# (case id, changes, expected set of failing paths)
BAD: list[tuple[str, dict[str, Any], set[str]]] = [
    ("unknown key", {"etcd.memebrs": 3}, {"etcd.memebrs"}),
    ("unknown section", {"databse": {}}, {"databse"}),
    ("unknown nested key", {"endpoint.dns.zonee": "x.com"}, {"endpoint.dns.zonee"}),
    ("wrong type int", {"etcd.members": "three"}, {"etcd.members"}),
    ("wrong type bool", {"patroni.synchronous_mode": "yes"}, {"patroni.synchronous_mode"}),
    ("wrong type list", {"access.admin_cidrs": "203.0.113.0/24"}, {"access.admin_cidrs"}),
    ("missing region", {"network.region": DELETE}, {"network.region"}),
    ("missing cidr", {"network.cidr": DELETE}, {"network.cidr"}),
    ("missing ssh keys", {"access.ssh_public_keys": DELETE}, {"access.ssh_public_keys"}),
    ("empty ssh keys", {"access.ssh_public_keys": []}, {"access.ssh_public_keys"}),
    ("bad ssh key", {"access.ssh_public_keys": ["hello"]}, {"access.ssh_public_keys[0]"}),
    ("public cidr", {"network.cidr": "8.8.8.0/24"}, {"network.cidr"}),
    ("malformed cidr", {"network.cidr": "10.42.0.0/33"}, {"network.cidr"}),
    ("host bits set", {"network.cidr": "10.42.0.1/24"}, {"network.cidr"}),
    ("cidr too small", {"network.cidr": "10.42.0.0/28"}, {"network.cidr"}),
    ("overlapping ranges", {"network.patroni_first_host": 12}, {"network.etcd_first_host"}),
    ("fixed ip in dhcp pool", {"network.patroni_first_host": 150}, {"network.patroni_first_host"}),
    (
        "dhcp range inverted",
        {"network.dhcp_first_host": 220, "network.dhcp_last_host": 210},
        {"network.dhcp_first_host"},
    ),
    ("vlan out of range", {"network.vlan_id": 5000}, {"network.vlan_id"}),
    ("bad region", {"network.region": "gra 11"}, {"network.region"}),
    ("even etcd", {"etcd.members": 4}, {"etcd.members"}),
    ("one etcd", {"etcd.members": 1}, {"etcd.members"}),
    ("timing rule", {"patroni.ttl": 20, "patroni.loop_wait": 5, "patroni.retry_timeout": 10}, {"patroni.ttl"}),
    ("ttl below 20", {"patroni.ttl": 10, "patroni.loop_wait": 2, "patroni.retry_timeout": 3}, {"patroni.ttl"}),
    ("sync with 2 nodes", {"patroni.nodes": 2, "patroni.synchronous_mode": True}, {"patroni.synchronous_mode"}),
    ("strict without sync", {"patroni.synchronous_mode_strict": True}, {"patroni.synchronous_mode_strict"}),
    ("unsupported postgres", {"patroni.postgres_version": 12}, {"patroni.postgres_version"}),
    ("managed parameter", {"patroni.parameters": {"port": 5433, "work_mem": "8MB"}}, {"patroni.parameters.port"}),
    ("non-scalar parameter", {"patroni.parameters": {"work_mem": ["8MB"]}}, {"patroni.parameters.work_mem"}),
    ("small volume", {"patroni.volume_size_gb": 5}, {"patroni.volume_size_gb"}),
    ("bad volume type", {"patroni.volume_type": "ssd"}, {"patroni.volume_type"}),
    ("reserved app user", {"patroni.app_user": "postgres"}, {"patroni.app_user"}),
    ("same pg and rest port", {"patroni.rest_port": 5432}, {"patroni.rest_port"}),
    ("world app cidr", {"patroni.app_cidrs": ["0.0.0.0/0"]}, {"patroni.app_cidrs[0]"}),
    ("bad timing profile", {"patroni.timing_profile": "turbo"}, {"patroni.timing_profile"}),
    ("bad watchdog", {"patroni.watchdog": "maybe"}, {"patroni.watchdog"}),
    ("dns without zone", {"endpoint.dns.enabled": True}, {"endpoint.dns.zone"}),
    (
        "dns ttl below 60",
        {"endpoint.dns.enabled": True, "endpoint.dns.zone": "example.com", "endpoint.dns.ttl": 30},
        {"endpoint.dns.ttl"},
    ),
    (
        "ro listener without lb",
        {"endpoint.load_balancer.read_only_listener": True},
        {"endpoint.load_balancer.read_only_listener"},
    ),
    ("world admin cidr", {"access.admin_cidrs": ["0.0.0.0/0"]}, {"access.admin_cidrs[0]"}),
    ("bastion without admin cidrs", {"access.admin_cidrs": []}, {"access.admin_cidrs"}),
    ("bad vrack service", {"network.vrack_service_name": "my-vrack"}, {"network.vrack_service_name"}),
    ("etcd same ports", {"etcd.peer_port": 2379}, {"etcd.peer_port"}),
    ("section not a mapping", {"etcd": [1, 2]}, {"etcd"}),
]


@pytest.mark.parametrize("changes,paths", [pytest.param(c, p, id=i) for i, c, p in BAD])
def test_bad_config_is_rejected_with_its_paths(changes: dict[str, Any], paths: set[str]) -> None:
    with pytest.raises(SettingsError) as exc:
        load("test", with_(changes))
    assert exc.value.paths == paths, str(exc.value)
    for p in paths:
        assert p in str(exc.value)


def test_every_problem_is_reported_at_once() -> None:
    raw = with_(
        {"etcd.members": 2, "patroni.ttl": 10, "endpoint.dns.enabled": True, "network.region": DELETE, "etcd.typo": 1}
    )
    with pytest.raises(SettingsError) as exc:
        load("test", raw)
    assert {"etcd.members", "patroni.ttl", "endpoint.dns.zone", "network.region", "etcd.typo"} <= exc.value.paths
    assert str(exc.value).startswith(f"stack config has {len(exc.value.problems)} problems:")


def test_world_admin_cidr_allowed_with_explicit_override() -> None:
    s = load("test", with_({"access.admin_cidrs": ["0.0.0.0/0"], "access.allow_world_admin": True}))
    assert s.access.admin_cidrs == ("0.0.0.0/0",)


def test_defaults_resolved_and_frozen() -> None:
    s = load("test", base())
    assert (s.patroni.ttl, s.patroni.loop_wait, s.patroni.retry_timeout) == (20, 2, 9)
    assert s.etcd.members == 3
    assert s.patroni.nodes == 3
    with pytest.raises(AttributeError):
        s.patroni.ttl = 30  # type: ignore[misc]


def test_patroni_defaults_profile_and_overrides() -> None:
    s = load("test", with_({"patroni.timing_profile": "patroni-defaults"}))
    assert (s.patroni.ttl, s.patroni.loop_wait, s.patroni.retry_timeout) == (30, 10, 10)
    s = load("test", with_({"patroni.timing_profile": "patroni-defaults", "patroni.loop_wait": 5}))
    assert (s.patroni.ttl, s.patroni.loop_wait) == (30, 5)


def test_address_plan_from_subnet() -> None:
    s = load("test", with_({"network.cidr": "10.9.8.0/24", "etcd.members": 5}))
    p = s.plan
    assert p.gateway_ip == "10.9.8.1"
    assert p.addresses("etcd") == ["10.9.8.11", "10.9.8.12", "10.9.8.13", "10.9.8.14", "10.9.8.15"]
    assert [(n.name, n.role, n.address) for n in p.patroni] == [
        ("pg1", "patroni", "10.9.8.21"),
        ("pg2", "patroni", "10.9.8.22"),
        ("pg3", "patroni", "10.9.8.23"),
    ]
    assert p.bastion.address == "10.9.8.5"
    assert p.node("etcd5").address == "10.9.8.15"
    assert len({n.address for n in (*p.cluster, p.bastion)} | {p.lb, p.gateway_ip}) == 11


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_stacks_are_valid(stack: str) -> None:
    s = load_stack_file(stack, ROOT)
    assert s.stack == stack


def test_stacks_differ_as_designed() -> None:
    dev, prod = load_stack_file("dev", ROOT), load_stack_file("prod", ROOT)
    assert not dev.patroni.synchronous_mode
    assert prod.patroni.synchronous_mode
    assert prod.endpoint.load_balancer.enabled
    assert prod.endpoint.dns.enabled


def test_other_namespaces_are_ignored_by_the_loader() -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    sections = sections_from_stack_yaml(doc)
    assert set(sections) == {"network", "etcd", "patroni", "endpoint", "access"}


def test_missing_stack_file_names_known_stacks(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as exc:
        load_stack_file("staging", ROOT)
    assert "dev" in str(exc.value)
    assert "prod" in str(exc.value)


def test_every_key_has_a_description() -> None:
    rows = describe_schema()
    assert len(rows) > 40
    for key, _, _, doc in rows:
        assert doc, f"{key}: one-line description missing"
        assert "\n" not in doc, f"{key}: description must be one line"


def test_configuration_table_in_docs_is_current() -> None:
    """docs/configuration.md's table, between its markers, is exactly what the schema gives."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    table = doc.split("<!-- config-table:begin -->\n", 1)[1].split("<!-- config-table:end -->", 1)[0]
    rows = table.splitlines()[2:]
    expected = [f"| `{key}` | {kind} | {default} | {doc} |" for key, kind, default, doc in describe_schema()]
    assert rows == expected, "docs/configuration.md configuration table is stale: run make readme-config"


def test_input_is_not_mutated() -> None:
    raw = with_({"patroni.parameters": {"work_mem": "8MB"}})
    before = copy.deepcopy(raw)
    load("test", raw)
    assert raw == before


def test_unknown_key_suggests_the_closest_known_key() -> None:
    with pytest.raises(SettingsError) as exc:
        load("test", with_({"patroni.synchronous_mod": True}))
    assert exc.value.problems == [("patroni.synchronous_mod", "unknown key; did you mean 'synchronous_mode'?")]


def test_bastion_needs_the_gateway_for_its_floating_ip() -> None:
    with pytest.raises(SettingsError) as exc:
        load("test", with_({"network.gateway": False, "network.external_egress": True}))
    assert exc.value.paths == {"access.bastion.enabled"}
    load("test", with_({"network.gateway": False, "network.external_egress": True, "access.bastion.enabled": False}))
