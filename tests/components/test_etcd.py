"""EtcdCluster: fixed-IP ports from the plan, anti-affinity, secret user-data = the renderer's."""

from __future__ import annotations

import pytest

from cloud_init.common import hostname
from cloud_init.etcd import render_etcd_node
from components.etcd import TYPE, EtcdCluster, EtcdClusterArgs
from components.network import PrivateNetwork, PrivateNetworkArgs
from components.nodes import ROLLED_ONLY, with_deploy_key
from pgha.secrets import FAKE_CA, EtcdNodeSecrets, fake_keypair
from pgha.target import Target

from .mocks import (
    DEPLOY_KEY,
    HOST_KEY,
    IMAGE_ID,
    INSTANCE,
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


def build(h, settings):
    def program():
        network = PrivateNetwork("network", PrivateNetworkArgs(settings=settings, service_name=PROJECT_ID))
        certs = [fake_pair(settings.plan.etcd[i].name) for i in range(len(settings.plan.etcd))]
        args = EtcdClusterArgs(
            settings=settings, placement=static_placement(tuple(network.egress)), ca_cert=FAKE_CA, certs=certs
        )
        return EtcdCluster("etcd", args)

    return h.run(program)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_members(harness, stack):
    h = harness(stack)
    s = h.settings()
    plan = s.plan
    etcd = build(h, s)
    comp = h.component(TYPE)
    children = h.children(comp)
    n = s.etcd.members
    assert sorted(c.type for c in children) == sorted([GROUP] + [PORT, INSTANCE, HOST_KEY] * n)
    assert all(c.name.startswith("etcd-") for c in children), [c.urn for c in children]
    (group,) = h.of_type(GROUP)
    assert group.input("policies") == "anti-affinity"
    gateway = h.named("network-gateway")

    for i, ip in enumerate(plan.addresses("etcd")):
        member = plan.etcd[i].name
        port = h.named(f"etcd-{member}-port")
        assert port.input("fixedIps") == [{"subnetId": SUBNET_ID, "ipAddress": ip}], port.urn
        assert port.input("securityGroupIds") == ["sg-id"]
        inst = h.named(f"etcd-{member}")
        assert inst.input("name") == hostname(s, member)
        assert inst.input("networks") == [{"port": h.id_of(port)}], f"{inst.urn}: only the private port, no public IP"
        assert inst.input("schedulerHints") == [{"group": h.id_of(group)}]
        assert (inst.input("flavorName"), inst.input("imageId")) == (s.etcd.flavor, IMAGE_ID)
        assert inst.input("keyPair") is None, "no Nova keypair: the deploy key comes with cloud-init"
        assert inst.is_secret("userData"), inst.urn
        kp = fake_keypair(member)
        assert (
            inst.user_data()
            == render_etcd_node(
                with_deploy_key(s, DEPLOY_KEY),
                Target.vm(s),
                plan.etcd[i],
                EtcdNodeSecrets(FAKE_CA, kp, mock_ssh_host_key(f"etcd-{member}-host-key")),
            ).user_data
        ), inst.urn
        assert gateway.urn in inst.dependencies, (
            f"{inst.urn} must boot after egress exists (cloud-init installs packages)"
        )
        assert inst.delete_before_replace, "the fixed-IP port can only be bound to one instance at a time"
        assert set(inst.ignore_changes) == ROLLED_ONLY_INPUTS == {_camel(k) for k in ROLLED_ONLY}
        assert h.resolve(etcd.user_data[i])[1]
    assert etcd.addresses == plan.addresses("etcd")
    assert etcd.names == [n.name for n in plan.etcd]


def test_certificate_count_must_match_the_plan(harness):
    h = harness("dev")
    s = h.settings()
    with pytest.raises(ValueError, match="2 certificates for 3 etcd members"):
        h.run(
            lambda: EtcdCluster(
                "etcd", EtcdClusterArgs(s, static_placement(), FAKE_CA, [fake_pair("a"), fake_pair("b")])
            )
        )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)
