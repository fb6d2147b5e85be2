"""Endpoint: Octavia LB checked on Patroni's /primary (and /replica), DNS; absent when off."""

from __future__ import annotations

import pytest

from components.endpoint import TYPE, Endpoint, EndpointArgs

from .mocks import SUBNET_ID, with_section

pytestmark = pytest.mark.components

LB = "openstack:loadbalancer/loadBalancer:LoadBalancer"
LISTENER = "openstack:loadbalancer/listener:Listener"
POOL = "openstack:loadbalancer/pool:Pool"
MONITOR = "openstack:loadbalancer/monitor:Monitor"
MEMBER = "openstack:loadbalancer/member:Member"
RECORD = "ovh:Domain/zoneRecord:ZoneRecord"


def build(h, settings):
    return h.run(lambda: Endpoint("endpoint", EndpointArgs(settings=settings, subnet_id=SUBNET_ID)))


def test_dev_has_no_endpoint_resources(harness):
    h = harness("dev")
    endpoint = build(h, h.settings())
    assert h.children(h.component(TYPE)) == []
    assert endpoint.lb_address is None
    assert endpoint.dns_name is None


def test_prod_load_balancer_and_dns(harness):
    h = harness("prod")
    s = h.settings()
    lb_settings = s.endpoint.load_balancer
    endpoint = build(h, s)
    children = h.children(h.component(TYPE))
    assert all(c.name.startswith("endpoint-") for c in children), [c.urn for c in children]
    n = len(s.plan.patroni)
    counts = {t: sum(1 for c in children if c.type == t) for t in {c.type for c in children}}
    assert counts == {LB: 1, LISTENER: 2, POOL: 2, MONITOR: 2, MEMBER: 2 * n, RECORD: 1}

    (lb,) = h.of_type(LB)
    assert (lb.input("vipAddress"), lb.input("vipSubnetId"), lb.input("flavorId")) == (
        s.plan.lb,
        SUBNET_ID,
        "lb-flavor-small",
    )
    for role, port, path in (
        ("primary", lb_settings.primary_port, "/primary"),
        ("replica", lb_settings.replica_port, "/replica"),
    ):
        listener = h.named(f"endpoint-{role}")
        assert (listener.input("protocol"), listener.input("protocolPort")) == ("TCP", port)
        assert listener.input("allowedCidrs") == [s.plan.cidr, *s.patroni.app_cidrs], "never open to 0.0.0.0/0"
        pool = h.named(f"endpoint-{role}-pool")
        assert pool.input("listenerId") == h.id_of(listener)
        monitor = h.named(f"endpoint-{role}-monitor")
        assert monitor.input("poolId") == h.id_of(pool)
        # Patroni's REST API is TLS-only: an HTTPS probe (status code only) on its role endpoint.
        assert (
            monitor.input("type"),
            monitor.input("httpMethod"),
            monitor.input("urlPath"),
            monitor.input("expectedCodes"),
        ) == (
            "HTTPS",
            "GET",
            path,
            "200",
        )
        members = [h.named(f"endpoint-{role}-{s.plan.patroni[i].name}") for i in range(n)]
        assert [m.input("address") for m in members] == s.plan.addresses("patroni")
        for m in members:
            assert (m.input("poolId"), m.input("protocolPort"), m.input("monitorPort")) == (
                h.id_of(pool),
                s.patroni.port,
                s.patroni.rest_port,
            )

    (record,) = h.of_type(RECORD)
    dns = s.endpoint.dns
    assert (record.input("zone"), record.input("subdomain"), record.input("fieldtype")) == (dns.zone, dns.name, "A")
    assert (record.input("target"), record.input("ttl")) == (s.plan.lb, dns.ttl)
    assert endpoint.dns_name == f"{dns.name}.{dns.zone}"
    assert h.resolve(endpoint.lb_address)[0] == s.plan.lb


def test_dns_without_load_balancer_points_at_every_node(harness):
    h = harness("prod")
    s = with_section(h.settings(), "endpoint.load_balancer", enabled=False, read_only_listener=False)
    build(h, s)
    assert not h.of_type(LB)
    assert not h.of_type(LISTENER)
    records = h.of_type(RECORD)
    assert sorted(r.input("target") for r in records) == sorted(s.plan.addresses("patroni"))
    assert {r.input("subdomain") for r in records} == {s.endpoint.dns.name}


def test_load_balancer_without_read_only_listener(harness):
    h = harness("prod")
    s = with_section(h.settings(), "endpoint.load_balancer", read_only_listener=False)
    s = with_section(s, "endpoint.dns", enabled=False)
    build(h, s)
    assert [r.name for r in h.of_type(LISTENER)] == ["endpoint-primary"]
    assert [r.input("urlPath") for r in h.of_type(MONITOR)] == ["/primary"]
    assert not h.of_type(RECORD)
