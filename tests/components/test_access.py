"""Access: deploy key, security groups (= the nftables allow-list), optional bastion."""

from __future__ import annotations

import ipaddress
import re

import pytest
import yaml

from cloud_init.etcd import render_etcd_node
from cloud_init.patroni import render_patroni_node
from components.access import PUBLIC_NETWORK, TYPE, Access, AccessArgs, ingress_rules
from pgha.secrets import FAKE_CA, EtcdNodeSecrets, PatroniNodeSecrets, fake_keypair, fake_passwords
from pgha.target import Target

from .mocks import (
    BASTION_PUBLIC_IP,
    IMAGE_ID,
    INSTANCE,
    OPENSTACK_NETWORK_ID,
    PORT,
    ROLLED_ONLY_INPUTS,
    SUBNET_ID,
    mock_host_key,
    with_section,
)

pytestmark = pytest.mark.components

RULE = "openstack:networking/secGroupRule:SecGroupRule"
GROUP = "openstack:networking/secGroup:SecGroup"
KEYPAIR = "openstack:compute/keypair:Keypair"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
FLOATING_IP = "openstack:networking/floatingIp:FloatingIp"
FLOATING_IP_ASSOCIATE = "openstack:networking/floatingIpAssociate:FloatingIpAssociate"
DATABASE_PORTS = {5432, 2379, 2380, 8008}
NFT_RULE = re.compile(r"ip saddr \{ (?P<sources>[^}]+) \} tcp dport (?P<port>\d+) accept")


def build(h, settings):
    return h.run(
        lambda: Access("access", AccessArgs(settings=settings, network_id=OPENSTACK_NETWORK_ID, subnet_id=SUBNET_ID))
    )


def registered_rules(h) -> dict[str, set[tuple[int, str]]]:
    """Security group name -> {(port, source cidr)} as registered."""
    groups = {h.id_of(g): g.input("name").rsplit("-", 1)[-1] for g in h.of_type(GROUP)}
    out: dict[str, set[tuple[int, str]]] = {}
    for r in h.of_type(RULE):
        assert r.input("direction") == "ingress", r.urn
        assert r.input("protocol") == "tcp", r.urn
        assert r.input("portRangeMin") == r.input("portRangeMax"), r.urn
        out.setdefault(groups[r.input("securityGroupId")], set()).add(
            (r.input("portRangeMin"), r.input("remoteIpPrefix"))
        )
    return out


def nftables_rules(settings) -> dict[str, set[tuple[int, str]]]:
    """Role -> {(port, source cidr)} from the rendered host firewall of node 0 of each role."""
    target = Target.vm(settings)
    etcd = render_etcd_node(settings, target, settings.plan.etcd[0], EtcdNodeSecrets(FAKE_CA, fake_keypair("etcd")))
    pg = render_patroni_node(
        settings,
        target,
        settings.plan.patroni[0],
        PatroniNodeSecrets(FAKE_CA, fake_keypair("s"), fake_keypair("c"), fake_passwords()),
    )
    out = {}
    for role, node in (("etcd", etcd), ("patroni", pg)):
        text = node.file("/etc/nftables.conf").content
        out[role] = {
            (int(m["port"]), str(ipaddress.ip_network(src.strip())))
            for m in NFT_RULE.finditer(text)
            for src in m["sources"].split(",")
        }
    return out


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_security_groups_mirror_the_host_firewall(harness, stack):
    """Security groups (enforced on OVH's vRack ports) and nftables filter in turn: both say the same."""
    h = harness(stack)
    s = h.settings()
    assert s.access.host_firewall
    build(h, s)
    registered = registered_rules(h)
    nft = nftables_rules(s)
    assert registered["etcd"] == nft["etcd"]
    assert registered["patroni"] == nft["patroni"]
    assert registered["bastion"] == {(22, c) for c in s.access.admin_cidrs}
    assert {(r.role, r.port, r.cidr) for r in ingress_rules(s)} == {
        (g, p, c) for g, rules in registered.items() for p, c in rules
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_database_port_open_to_the_world(harness, stack):
    h = harness(stack)
    s = with_section(h.settings(), "access", admin_cidrs=("0.0.0.0/0",), allow_world_admin=True)
    build(h, s)
    subnet = ipaddress.IPv4Network(s.plan.cidr)
    rules = h.of_type(RULE)
    assert len(rules) == len(ingress_rules(s)) > 0
    for r in rules:
        prefix = ipaddress.IPv4Network(r.input("remoteIpPrefix"))
        if r.input("portRangeMin") in DATABASE_PORTS:
            assert prefix.prefixlen > 0, f"{r.urn} opens {r.input('portRangeMin')} to the world"
            assert prefix.subnet_of(subnet) or str(prefix) in s.patroni.app_cidrs, r.urn
        elif prefix.prefixlen == 0:
            assert (r.input("portRangeMin"), r.name) == (22, "access-bastion-22-0.0.0.0_0"), r.urn


def test_children_names_and_deploy_key(harness):
    h = harness("dev")
    s = h.settings()
    access = build(h, s)
    comp = h.component(TYPE)
    children = h.children(comp)
    assert all(c.name.startswith("access-") for c in children), [c.urn for c in children]
    counts = {t: sum(1 for c in children if c.type == t) for t in {c.type for c in children}}
    assert counts == {
        PRIVATE_KEY: 2,
        GROUP: 4,  # etcd, patroni, bastion, monitoring
        RULE: len(ingress_rules(s)),
        PORT: 1,
        INSTANCE: 1,
        FLOATING_IP: 1,
        FLOATING_IP_ASSOCIATE: 1,
    }  # deploy key, bastion host key

    keys = {k.name: k for k in h.of_type(PRIVATE_KEY)}
    assert set(keys) == {"access-deploy-key", "access-bastion-host-key"}
    assert all(k.input("algorithm") == "ED25519" for k in keys.values())
    bastion = h.named("access-bastion")
    assert bastion.is_secret("userData"), "the bastion's user-data now holds its host key"
    assert h.resolve(access.bastion_host_key)[0] == mock_host_key("access-bastion-host-key")
    assert h.of_type(KEYPAIR) == [], "a Nova keypair belongs to one OpenStack user: the key comes with cloud-init"
    value, secret = h.resolve(access.private_key)
    assert secret
    assert value in h.mocks.secrets
    assert h.resolve(access.deploy_public_key)[0] == mock_host_key("access-deploy-key")


def test_bastion(harness):
    h = harness("dev")
    s = h.settings()
    access = build(h, s)
    bastion = h.named("access-bastion")
    assert bastion.type == INSTANCE
    assert bastion.input("flavorName") == s.access.bastion.flavor
    # One interface (the private port) and a floating IP: never two default routes.
    port = h.named("access-bastion-port")
    assert bastion.input("networks") == [{"port": h.id_of(port)}]
    assert port.input("fixedIps") == [{"subnetId": SUBNET_ID, "ipAddress": s.plan.bastion.address}]
    assert port.input("securityGroupIds"), "the bastion group (SSH from admin_cidrs) is on its only port"
    assert bastion.input("imageId") == IMAGE_ID, "the same image lookup as the nodes"
    assert set(bastion.ignore_changes) == ROLLED_ONLY_INPUTS
    fip = h.named("access-bastion-ip")
    assert fip.input("pool") == PUBLIC_NETWORK
    assoc = h.named("access-bastion-ip-association")
    assert (assoc.input("floatingIp"), assoc.input("portId")) == (BASTION_PUBLIC_IP, h.id_of(port))
    assert bastion.input("keyPair") is None
    user_data = yaml.safe_load(bastion.user_data())
    deploy_key = h.resolve(access.deploy_public_key)[0]
    assert user_data["ssh_authorized_keys"] == [*s.access.ssh_public_keys, deploy_key]
    assert user_data["ssh_pwauth"] is False
    assert h.resolve(access.bastion_ip)[0] == BASTION_PUBLIC_IP


def test_no_bastion(harness):
    h = harness("dev")
    s = with_section(h.settings(), "access.bastion", enabled=False)
    access = build(h, s)
    assert access.bastion is None
    assert access.bastion_ip is None
    assert not h.of_type(INSTANCE)
    assert not h.of_type(PORT)
    assert not h.of_type(FLOATING_IP)
    assert "bastion" not in registered_rules(h)
    ssh = {c for role, rules in registered_rules(h).items() for p, c in rules if p == 22}
    assert ssh == {s.plan.cidr}, "without a bastion, SSH comes from the private subnet (VPN / peered hosts)"
