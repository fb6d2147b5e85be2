"""PatroniCluster: protected data volumes attached at boot, passwords, secret user-data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cloud_init.common import hostname
from cloud_init.patroni import render_patroni_node
from components.network import PrivateNetwork, PrivateNetworkArgs
from components.nodes import with_deploy_key
from components.patroni import PASSWORD_ROLES, TYPE, PatroniCluster, PatroniClusterArgs
from pgha.secrets import FAKE_CA, Passwords, PatroniNodeSecrets, fake_keypair
from pgha.target import Target

from .mocks import (
    DEPLOY_KEY,
    HOST_KEY,
    IMAGE_ID,
    INSTANCE,
    PASSWORD,
    PORT,
    PROJECT_ID,
    ROLLED_ONLY_INPUTS,
    SUBNET_ID,
    fake_pair,
    mock_ssh_host_key,
    static_placement,
)

pytestmark = pytest.mark.components

GROUP = "openstack:compute/serverGroup:ServerGroup"
VOLUME = "openstack:blockstorage/volume:Volume"


def build(h, settings, roll=frozenset()):
    def program():
        network = PrivateNetwork("network", PrivateNetworkArgs(settings=settings, service_name=PROJECT_ID))
        names = [n.name for n in settings.plan.patroni]
        args = PatroniClusterArgs(
            settings=settings,
            placement=replace(static_placement(tuple(network.egress)), roll=roll),
            ca_cert=FAKE_CA,
            server_certs=[fake_pair(f"{n}-server") for n in names],
            etcd_client_certs=[fake_pair(f"{n}-etcd-client") for n in names],
        )
        return PatroniCluster("patroni", args)

    return h.run(program)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_nodes(harness, stack):
    h = harness(stack)
    s = h.settings()
    plan, pg = s.plan, s.patroni
    patroni = build(h, s)
    comp = h.component(TYPE)
    children = h.children(comp)
    n = pg.nodes
    assert sorted(c.type for c in children) == sorted([GROUP, *[PASSWORD] * 5, *[VOLUME, PORT, INSTANCE, HOST_KEY] * n])
    assert all(c.name.startswith("patroni-") for c in children), [c.urn for c in children]
    (group,) = h.of_type(GROUP)
    assert group.input("policies") == "anti-affinity"

    passwords = {role: h.resolve(patroni.passwords[role]) for role in PASSWORD_ROLES}
    assert all(secret for _, secret in passwords.values())
    plain = Passwords(**{role: value for role, (value, _) in passwords.items()})
    assert h.resolve(patroni.app_password) == (plain.app, True)

    for i, ip in enumerate(plan.addresses("patroni")):
        node = plan.patroni[i].name
        volume = h.named(f"patroni-{node}-data")
        assert volume.protect, f"{volume.urn}: PostgreSQL data must survive any replacement or destroy"
        assert (volume.input("size"), volume.input("volumeType")) == (pg.volume_size_gb, pg.volume_type)
        port = h.named(f"patroni-{node}-port")
        assert port.input("fixedIps") == [{"subnetId": SUBNET_ID, "ipAddress": ip}], port.urn
        inst = h.named(f"patroni-{node}")
        assert inst.input("name") == hostname(s, node)
        assert inst.input("networks") == [{"port": h.id_of(port)}], f"{inst.urn}: only the private port, no public IP"
        assert inst.input("schedulerHints") == [{"group": h.id_of(group)}]
        assert inst.input("flavorName") == pg.flavor
        boot, data = inst.input("blockDevices")
        assert (boot["sourceType"], boot["uuid"], boot["bootIndex"]) == ("image", IMAGE_ID, 0)
        assert (data["sourceType"], data["uuid"], data["destinationType"]) == ("volume", h.id_of(volume), "volume")
        assert data["deleteOnTermination"] is False, f"{inst.urn}: deleting the instance must keep the data volume"
        assert inst.urn not in volume.dependencies, "the volume outlives instances: it must not depend on one"
        assert inst.delete_before_replace
        assert "blockDevices" in inst.ignore_changes
        assert "userData" in inst.ignore_changes
        assert h.named("network-gateway").urn in inst.dependencies
        assert inst.is_secret("userData"), inst.urn
        secrets = PatroniNodeSecrets(
            FAKE_CA,
            fake_keypair(f"{node}-server"),
            fake_keypair(f"{node}-etcd-client"),
            plain,
            host_key=mock_ssh_host_key(f"patroni-{node}-host-key"),
        )
        target = Target.vm(s, volume_ids={node: h.id_of(volume)})
        with_key = with_deploy_key(s, DEPLOY_KEY)
        assert inst.user_data() == render_patroni_node(with_key, target, plan.patroni[i], secrets).user_data, inst.urn
        assert inst.input("keyPair") is None, "no Nova keypair: the deploy key comes with cloud-init"
        serial = h.id_of(volume)[:20]
        assert f"device: /dev/disk/by-id/virtio-{serial}" in inst.user_data(), "the data disk by its serial"


def test_passwords_are_safe_for_yaml_and_libpq(harness):
    h = harness("dev")
    build(h, h.settings())
    resources = h.of_type(PASSWORD)
    assert sorted(r.name for r in resources) == sorted(
        f"patroni-{role.replace('_', '-')}-password" for role in PASSWORD_ROLES
    )
    for r in resources:
        assert r.input("length") == 32, r.urn
        assert r.input("special") is False, r.urn


def test_certificate_count_must_match_the_plan(harness):
    h = harness("dev")
    s = h.settings()
    with pytest.raises(ValueError, match="1 server certificates for 3 Patroni nodes"):
        h.run(
            lambda: PatroniCluster(
                "patroni", PatroniClusterArgs(s, static_placement(), FAKE_CA, [fake_pair("a")], [fake_pair("b")] * 3)
            )
        )


def test_rolling_one_node_lets_only_it_follow_user_data(harness):
    """PGHA_ROLL=pg2: pg2 follows user-data, image, flavor, key pair and group changes; pg1 and pg3 wait."""
    h = harness("prod")
    build(h, h.settings(), roll=frozenset({"pg2"}))
    assert h.named("patroni-pg2").ignore_changes == []
    for node in ("pg1", "pg3"):
        assert set(h.named(f"patroni-{node}").ignore_changes) == ROLLED_ONLY_INPUTS
    assert all(h.named(f"patroni-{n}").delete_before_replace for n in ("pg1", "pg2", "pg3"))
