"""machines/: naming, addressing and the NoCloud seed (pure)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from machines import image, seed, spec
from machines.render import CONTAINER_OVERRIDES, container_settings, with_deploy_key
from machines.ssh import ssh_config
from pgha.settings import load_stack_file

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx4cGhhZGV2b3BzZXhhbXBsZWtleWZvcmRldnN0YWNr test@pgha"


@pytest.fixture(scope="module")
def dev():
    return load_stack_file("dev", ROOT)


def test_nodes_follow_the_plan(dev):
    nodes = spec.node_specs(dev)
    plan = dev.plan
    assert [n.name for n in nodes] == ["etcd1", "etcd2", "etcd3", "pg1", "pg2", "pg3", "bastion"]
    assert [n.address for n in nodes] == [n.address for n in (*plan.cluster, plan.bastion)]
    assert {n.gateway for n in nodes} == {plan.gateway_ip}
    assert nodes[0].hostname == "pgha-dev-etcd1"
    assert [n.role for n in nodes] == ["etcd"] * 3 + ["patroni"] * 3 + ["bastion"]


def test_names_fit_linux_limits_and_are_unique(dev):
    nodes = spec.node_specs(dev)
    net = spec.stack_net(dev)
    links = [n.bridge_port for n in nodes] + [net.uplink_host, net.public_host]
    assert all(len(x) <= 15 for x in links), links
    assert len(set(links)) == len(links)
    assert len({n.netns for n in nodes} | {net.netns}) == len(nodes) + 1
    assert len({n.mac for n in nodes}) == len(nodes)
    long = spec.stack_net(type(dev)(**{**dev.__dict__, "stack": "a-very-long-stack-name"}))
    assert len(long.uplink_host) <= 15
    assert len(long.public_host) <= 15


def test_mac_is_locally_administered_unicast():
    mac = spec.mac_for("10.42.0.11")
    assert mac == "02:00:0a:2a:00:0b"
    first = int(mac.split(":")[0], 16)
    assert first & 0b10
    assert not first & 0b1


def test_transit_addresses_are_shared_space_and_not_the_plan(dev):
    net = spec.stack_net(dev)
    shared = ipaddress.ip_network("100.64.0.0/10")
    for ip in (net.uplink_host_ip, net.uplink_ns_ip, net.public_host_ip, net.public_bastion_ip):
        assert ipaddress.ip_address(ip) in shared
        assert ipaddress.ip_address(ip) not in ipaddress.ip_network(dev.plan.cidr)
    assert ipaddress.ip_network(f"{net.uplink_host_ip}/30", strict=False) == ipaddress.ip_network(
        f"{net.uplink_ns_ip}/30", strict=False
    )
    assert ipaddress.ip_network(f"{net.public_host_ip}/30", strict=False) != ipaddress.ip_network(
        f"{net.uplink_host_ip}/30", strict=False
    )
    assert spec.stack_net(dev) == net  # stable


def test_meta_data(dev):
    node = spec.node_specs(dev)[3]
    doc = yaml.safe_load(seed.meta_data(node, "i-123", [KEY]))
    assert doc == {"instance-id": "i-123", "local-hostname": "pgha-dev-pg1", "public-keys": [KEY]}


def test_network_config_gives_the_planned_fixed_address(dev):
    node = spec.node_specs(dev)[0]
    doc = yaml.safe_load(seed.network_config_yaml(node, ["192.0.2.53"]))
    assert doc["version"] == 2
    ens4 = doc["ethernets"]["ens4"]
    assert ens4["match"] == {"macaddress": node.mac}
    assert ens4["addresses"] == ["10.42.0.11/24"]
    assert ens4["gateway4"] == "10.42.0.1"
    assert ens4["nameservers"]["addresses"] == ["192.0.2.53"]
    assert "ens3" not in doc["ethernets"]


def test_bastion_has_a_public_nic_without_gateway(dev):
    bastion = spec.node_specs(dev)[-1]
    doc = seed.network_config(bastion, ["192.0.2.53"])
    ens3 = doc["ethernets"]["ens3"]
    assert ens3["addresses"] == [f"{spec.stack_net(dev).public_bastion_ip}/30"]
    assert "gateway4" not in ens3


def test_host_nameservers():
    assert seed.host_nameservers("# x\nnameserver 192.0.2.53\nnameserver fd00::1\nsearch x\n") == ["192.0.2.53"]
    with pytest.raises(ValueError, match="no IPv4 nameserver"):
        seed.host_nameservers("search example\n")


def test_deploy_key_replaces_the_stack_keys(dev):
    s = with_deploy_key(dev, KEY)
    assert s.access.ssh_public_keys == (KEY,)
    assert dev.access.ssh_public_keys != (KEY,)


def test_container_overrides_are_explicit(dev):
    s, changed = container_settings(dev)
    assert s.patroni.watchdog == CONTAINER_OVERRIDES["patroni.watchdog"]
    assert changed == [f"patroni.watchdog: {dev.patroni.watchdog} -> automatic"]
    assert container_settings(s)[1] == []


def test_ssh_config_jumps_through_the_bastion(dev):
    nodes = spec.node_specs(dev)
    cfg = ssh_config(nodes, "100.64.0.6", "/k", Path("/run/known_hosts"))
    blocks = {b.split()[1]: b for b in cfg.split("\n\n") if b.startswith("Host ")}
    assert "HostName 100.64.0.6" in blocks["bastion"]
    assert "ProxyJump" not in blocks["bastion"]
    assert "HostName 10.42.0.21" in blocks["pg1"]
    assert "ProxyJump bastion" in blocks["pg1"]
    assert "User debian" in blocks["pg1"]
    assert "IdentityFile /k" in blocks["pg1"]
    # Host keys pinned by node name, never accepted blindly.
    assert "StrictHostKeyChecking yes" in blocks["pg1"]
    assert "HostKeyAlias pg1" in blocks["pg1"]
    assert "UserKnownHostsFile /run/known_hosts" in blocks["pg1"]


def test_image_key_follows_the_package_list():
    assert image.image_key(["a", "b"]) == image.image_key(["b", "a"])
    assert image.image_key(["a", "b"]) != image.image_key(["a", "c"])
    assert image.image_dir().name == f"debian12-{image.image_key()}"


def test_extra_host_cas(tmp_path):
    pem = lambda body: f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"  # noqa: E731
    shipped = tmp_path / "share"
    (shipped / "mozilla").mkdir(parents=True)
    (shipped / "mozilla" / "a.crt").write_text(pem("AAAA"))
    bundle = tmp_path / "bundle.crt"
    bundle.write_text(pem("AAAA") + pem("BBBB"))
    assert image.extra_host_cas(bundle, shipped) == [pem("BBBB")]


def test_cloud_init_state_read_from_the_host(tmp_path):
    from machines.nodes import cloud_init_state

    assert cloud_init_state(tmp_path) == ("booting", [])
    data = tmp_path / "var/lib/cloud/data"
    data.mkdir(parents=True)
    v1: dict[str, Any] = {
        "stage": "modules-final",
        "init-local": {"finished": 1.0, "errors": []},
        "modules-final": {"finished": None, "errors": []},
    }
    (data / "status.json").write_text(json.dumps({"v1": v1}))
    assert cloud_init_state(tmp_path) == ("modules-final", [])
    v1 = {
        "stage": None,
        "init": {"finished": 2.0, "errors": []},
        "modules-final": {"finished": 3.0, "errors": ["scripts-user failed"]},
    }
    (data / "status.json").write_text(json.dumps({"v1": v1}))
    assert cloud_init_state(tmp_path) == ("after modules-final", ["modules-final: scripts-user failed"])
    (data / "result.json").write_text("{}")
    assert cloud_init_state(tmp_path)[0] == "done-with-errors"


def test_nspawn_runs_in_the_node_namespace_with_its_data_disk(dev, tmp_path):
    from machines.nodes import NodePaths, nspawn_command

    pg1 = spec.node_specs(dev)[3]
    cmd = nspawn_command(pg1, "pgha-dev-pg1", NodePaths(tmp_path), "/dev/loop7", "0117ec5b-6c3f-5b8c-b5a1-123456789abc")
    assert cmd[:3] == ["nsenter", "--net=/run/netns/pgha-dev-pg1", "systemd-nspawn"]
    assert "--boot" in cmd
    assert "--machine=pgha-dev-pg1" in cmd
    assert "--register=no" in cmd
    assert {
        "--bind=/dev/loop7",
        "--bind=/dev/loop7:/dev/disk/by-id/virtio-0117ec5b-6c3f-5b8c-b",
    } <= set(cmd)
    etcd1 = nspawn_command(spec.node_specs(dev)[0], "pgha-dev-etcd1", NodePaths(tmp_path), None, None)
    assert not any(a.startswith("--bind=/dev/") for a in etcd1)
