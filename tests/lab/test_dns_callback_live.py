"""The DNS primary record, for real: Patroni itself runs the rendered callback on
bootstrap and on promotion, and the record follows the primary. The OVH API is the
local double of tests/unit/test_dns_callback.py (the only stand-in: no machine here
reaches OVH)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import ThreadingHTTPServer

import pytest

from lab import observe
from lab.topology import Topology
from pgha.secrets import OvhApiCredentials
from tests.support import ovh_double as ovh

from .conftest import running_lab, wait_for

pytestmark = pytest.mark.lab


@dataclass
class Api:
    double: ovh.OvhDouble

    def target(self) -> str:
        return str(self.double.records[ovh.RECORD_ID]["target"])


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    """The OVH API double, serving on an ephemeral port of 127.0.0.1."""
    double = ovh.OvhDouble()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), ovh.make_handler(double))
    double.base = f"http://127.0.0.1:{srv.server_address[1]}/1.0"
    double.records = {
        ovh.RECORD_ID: {
            "id": ovh.RECORD_ID,
            "zone": ovh.ZONE,
            "subDomain": "primary-db-prod",
            "fieldType": "A",
            "target": "10.0.0.1",
            "ttl": 60,
        }
    }
    ovh.grant_callback_rules(double)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield Api(double)
    finally:
        srv.shutdown()


@pytest.fixture(scope="module")
def dns_lab(api: Api) -> Iterator[tuple[Topology, Api]]:
    """The prod stack with the DNS primary record on, its callback calling the double."""

    def with_dns_record(topo: Topology) -> None:
        s = topo.settings
        topo.settings = replace(s, endpoint=replace(s.endpoint, dns=replace(s.endpoint.dns, primary_record=True)))
        topo.dns_api = OvhApiCredentials(ovh.AK, ovh.AS, ovh.CK, endpoint=api.double.base)

    with running_lab("dns", "prod", configure=with_dns_record) as topo:
        yield topo, api


def test_record_points_at_the_bootstrapped_primary(dns_lab: tuple[Topology, Api]) -> None:
    topo, api = dns_lab
    leader = observe.leader(topo)
    assert leader
    wait_for(lambda: api.target() == topo.address(leader), 30, "the record to name the first primary")


def test_record_follows_a_switchover(dns_lab: tuple[Topology, Api]) -> None:
    topo, api = dns_lab
    old = observe.leader(topo)
    assert old
    cand = observe.switchover_candidate(topo, old)
    code, body = observe.rest_post(topo, old, "/switchover", {"leader": old, "candidate": cand})
    assert code == 200, body
    wait_for(lambda: api.target() == topo.address(cand), 60, f"the record to follow {cand}")
    calls = api.double.calls
    assert calls
    assert all(x.signature_ok for x in calls if x.signature_ok is not None), "an OVH call was not signed correctly"
    assert api.double.refreshed >= 2  # bootstrap and switchover


def test_callback_logs_hold_no_api_secret(dns_lab: tuple[Topology, Api]) -> None:
    topo, _ = dns_lab
    logs = "".join((topo.run_dir / "logs" / f"{n}.log").read_text(errors="replace") for n in topo.pg_names)
    assert "pgha-dns-callback: on_start primary" in logs  # bootstrap
    assert "pgha-dns-callback: on_role_change primary" in logs  # promotion by switchover
    assert "pgha-dns-callback: FAILED" not in logs
    for secret in (ovh.AS, ovh.CK):
        assert secret not in logs
