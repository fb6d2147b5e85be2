"""PrivateNetwork: vRack network + subnet from the plan; vRack attachment and gateway optional."""

from __future__ import annotations

import pytest

from components.network import TYPE, PrivateNetwork, PrivateNetworkArgs

from .mocks import OPENSTACK_NETWORK_ID, PROJECT_ID, with_section

pytestmark = pytest.mark.components

NET = "ovh:CloudProject/networkPrivate:NetworkPrivate"
SUBNET = "ovh:CloudProject/networkPrivateSubnetV2:NetworkPrivateSubnetV2"
GATEWAY = "ovh:CloudProject/gateway:Gateway"
VRACK = "ovh:Vrack/cloudProject:CloudProject"


def build(h, settings):
    return h.run(lambda: PrivateNetwork("network", PrivateNetworkArgs(settings=settings, service_name=PROJECT_ID)))


def test_dev_network_subnet_and_gateway(harness):
    h = harness("dev")
    s = h.settings()
    net = build(h, s)
    comp = h.component(TYPE)
    children = h.children(comp)
    assert sorted(c.type for c in children) == sorted([NET, SUBNET, GATEWAY])
    for c in children:
        assert c.name.startswith("network-"), c.urn

    (pn,) = h.of_type(NET)
    assert pn.input("regions") == [s.network.region]
    assert pn.input("vlanId") == s.network.vlan_id
    assert pn.input("serviceName") == PROJECT_ID

    (sub,) = h.of_type(SUBNET)
    assert sub.input("cidr") == s.plan.cidr
    assert sub.input("gatewayIp") == s.plan.gateway_ip
    assert sub.input("allocationPools") == [{"start": s.plan.dhcp_start, "end": s.plan.dhcp_end}]
    assert sub.input("networkId") == OPENSTACK_NETWORK_ID, "the subnet needs the OpenStack id of the region, not pn-..."
    assert sub.input("region") == s.network.region

    (gw,) = h.of_type(GATEWAY)
    assert gw.input("model") == s.network.gateway_model
    assert gw.input("subnetId") == h.id_of(sub)
    assert gw.input("networkId") == OPENSTACK_NETWORK_ID

    assert h.resolve(net.network_id)[0] == OPENSTACK_NETWORK_ID
    assert h.resolve(net.subnet_id)[0] == h.id_of(sub)
    assert net.egress == [net.gateway]
    assert not h.of_type(VRACK), "vrack_service_name is empty: the project is already attached"


def test_vrack_attachment_and_no_gateway(harness):
    h = harness("dev")
    s = with_section(h.settings(), "network", vrack_service_name="pn-123456", gateway=False)
    net = build(h, s)
    assert not h.of_type(GATEWAY)
    assert net.egress == []
    (vrack,) = h.of_type(VRACK)
    assert vrack.input("serviceName") == "pn-123456"
    assert vrack.input("projectId") == PROJECT_ID
    assert vrack.parent == h.component(TYPE).urn
    (pn,) = h.of_type(NET)
    assert vrack.urn in pn.dependencies, "the network is created after the project joins the vRack"
