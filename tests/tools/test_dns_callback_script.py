"""The rendered DNS callback script run for real (as Patroni runs it) against a local
double of the OVH API on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_init import dns_callback
from cloud_init.patroni import render_patroni_node
from pgha.secrets import OvhApiCredentials
from pgha.settings import Settings, load
from pgha.target import Target
from tests.support.ovh_double import AK, AS, CK, RECORD_ID, ZONE, OvhDouble, grant_callback_rules, make_handler
from tests.unit.test_dns_callback import node_secrets, prod_raw, tmp_layout

pytestmark = pytest.mark.tools


@pytest.fixture
def ovh() -> Iterator[OvhDouble]:
    api = OvhDouble()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(api))
    api.base = f"http://127.0.0.1:{server.server_address[1]}/1.0"
    api.records = {
        RECORD_ID: {
            "id": RECORD_ID,
            "zone": ZONE,
            "subDomain": "primary-db-prod",
            "fieldType": "A",
            "target": "10.43.0.22",
            "ttl": 60,
        },
        RECORD_ID + 1: {
            "id": RECORD_ID + 1,
            "zone": ZONE,
            "subDomain": "db-prod",
            "fieldType": "A",
            "target": "10.43.0.6",
            "ttl": 60,
        },
    }
    grant_callback_rules(api)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Node:
    """pg1 rendered into a temporary layout; run() runs its callback as Patroni does."""

    command: list[str]
    config: Path
    address: str

    def run(self, action: str, role: str, scope: str = "pgha", timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, action, role, scope], check=False, capture_output=True, text=True, timeout=timeout
        )

    def patch_config(self, **changes: Any) -> None:
        c = json.loads(self.config.read_text())
        c.update(changes)
        self.config.write_text(json.dumps(c))


@pytest.fixture
def node(ovh: OvhDouble, tmp_path: Path) -> Node:
    s: Settings = load("prod", prod_raw(primary_record=True))
    layout = tmp_layout(tmp_path)
    creds = OvhApiCredentials(application_key=AK, application_secret=AS, consumer_key=CK, endpoint=ovh.base)
    target = dataclasses.replace(Target.vm(s), layouts={n.name: layout for n in s.plan.cluster})
    rendered = render_patroni_node(s, target, s.plan.patroni[0], node_secrets(creds))
    for f in rendered.files:
        if f.path.startswith(str(tmp_path)):
            p = Path(f.path)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f.content)
            p.chmod(int(f.mode, 8))
    callbacks = yaml.safe_load(rendered.file("/patroni.yml").content)["postgresql"]["callbacks"]
    n = Node(
        shlex.split(callbacks["on_role_change"]), Path(dns_callback.config_path(layout)), s.plan.patroni[0].address
    )
    # The node's REST API is the double's /primary (plain HTTP in the test).
    n.patch_config(leader_check_url=ovh.base.removesuffix("/1.0") + "/primary", backoff_base=0.05, backoff_cap=0.2)
    return n


def assert_no_secret_logged(p: subprocess.CompletedProcess[str]) -> None:
    out = p.stdout + p.stderr
    for secret in (AS, CK, AK, "$1$"):
        assert secret not in out


@pytest.mark.parametrize("action", ["on_role_change", "on_start"])
def test_promotion_points_the_record_at_this_node(ovh: OvhDouble, node: Node, action: str) -> None:
    p = node.run(action, "primary")
    assert p.returncode == 0, p.stderr
    assert ovh.records[RECORD_ID]["target"] == node.address == "10.43.0.21"
    assert ovh.records[RECORD_ID]["ttl"] == 60
    assert ovh.records[RECORD_ID + 1]["target"] == "10.43.0.6", "touched another record"
    assert ovh.refreshed == 1
    calls = ovh.ovh_calls()
    assert [(c.method, c.path) for c in calls] == [
        ("GET", f"/1.0/domain/zone/{ZONE}/record"),
        ("GET", f"/1.0/domain/zone/{ZONE}/record/{RECORD_ID}"),
        ("PUT", f"/1.0/domain/zone/{ZONE}/record/{RECORD_ID}"),
        ("POST", f"/1.0/domain/zone/{ZONE}/refresh"),
    ]
    assert calls[0].query == {"fieldType": ["A"], "subDomain": ["primary-db-prod"]}
    assert json.loads(calls[2].body) == {"target": "10.43.0.21", "ttl": 60}
    assert all(c.signature_ok for c in calls)
    assert ("GET", "/primary") in [(c.method, c.path) for c in ovh.calls], "did not check it still leads"
    assert "primary-db-prod.example.com: 10.43.0.22 -> 10.43.0.21" in p.stderr
    assert_no_secret_logged(p)


@pytest.mark.parametrize(
    "action,role",
    [
        ("on_role_change", "replica"),
        ("on_role_change", "demoted"),
        ("on_role_change", "standby_leader"),
        ("on_start", "replica"),
        ("on_stop", "primary"),
        ("on_restart", "primary"),
        ("on_reload", "primary"),
    ],
)
def test_demotion_and_other_actions_do_nothing(ovh: OvhDouble, node: Node, action: str, role: str) -> None:
    p = node.run(action, role)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    assert ovh.calls == []
    assert ovh.records[RECORD_ID]["target"] == "10.43.0.22"


def test_signature_uses_the_ovh_server_clock(ovh: OvhDouble, node: Node) -> None:
    ovh.clock_skew = 1000  # a node clock 1000 s behind would be refused without /auth/time
    p = node.run("on_role_change", "primary")
    assert p.returncode == 0, p.stderr
    assert ovh.records[RECORD_ID]["target"] == node.address


def test_403_fails_at_once_with_a_clear_error(ovh: OvhDouble, node: Node) -> None:
    ovh.granted.discard(("PUT", f"/1.0/domain/zone/{ZONE}/record/{RECORD_ID}"))
    t0 = time.monotonic()
    p = node.run("on_role_change", "primary")
    assert p.returncode == 1
    assert time.monotonic() - t0 < 5, "a 403 must not be retried until the deadline"
    assert f"PUT /domain/zone/{ZONE}/record/{RECORD_ID}: HTTP 403 NOT_GRANTED_CALL" in p.stderr
    assert "access rule" in p.stderr
    assert f"POST /domain/zone/{ZONE}/refresh" in p.stderr
    assert ovh.records[RECORD_ID]["target"] == "10.43.0.22"
    assert ovh.refreshed == 0
    assert_no_secret_logged(p)


def test_transient_errors_are_retried(ovh: OvhDouble, node: Node) -> None:
    ovh.fail_next = [500, 503, 429]
    p = node.run("on_role_change", "primary")
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("retrying in") == 3
    assert ovh.records[RECORD_ID]["target"] == node.address
    assert ovh.refreshed == 1


def test_unreachable_api_gives_up_at_the_deadline(node: Node) -> None:
    node.patch_config(
        deadline=1,
        ovh={"endpoint": "http://127.0.0.1:9/1.0", "application_key": AK, "application_secret": AS, "consumer_key": CK},
    )
    t0 = time.monotonic()
    p = node.run("on_role_change", "primary")
    assert p.returncode == 1
    assert "gave up after" in p.stderr
    assert time.monotonic() - t0 < 1 + 3
    assert_no_secret_logged(p)


def test_former_primary_does_not_overwrite_the_record(ovh: OvhDouble, node: Node) -> None:
    ovh.leader = False  # demoted again before its callback reached the API
    p = node.run("on_role_change", "primary")
    assert p.returncode == 0, p.stderr
    assert "no longer the leader" in p.stderr
    assert ovh.records[RECORD_ID]["target"] == "10.43.0.22"
    assert "PUT" not in [c.method for c in ovh.calls]


def test_record_already_right_is_left_alone(ovh: OvhDouble, node: Node) -> None:
    ovh.records[RECORD_ID]["target"] = node.address
    p = node.run("on_start", "primary")
    assert p.returncode == 0
    assert "already points at" in p.stderr
    assert [c.method for c in ovh.ovh_calls()] == ["GET", "GET"]
    assert ovh.refreshed == 0


@pytest.mark.parametrize("count", [0, 2])
def test_missing_or_duplicate_record_is_an_error(ovh: OvhDouble, node: Node, count: int) -> None:
    ovh.records = {k: v for k, v in ovh.records.items() if v["subDomain"] != "primary-db-prod"}
    for i in range(count):
        ovh.records[100 + i] = {
            "id": 100 + i,
            "zone": ZONE,
            "subDomain": "primary-db-prod",
            "fieldType": "A",
            "target": "10.43.0.2",
            "ttl": 60,
        }
    p = node.run("on_role_change", "primary")
    assert p.returncode == 1
    assert "expected exactly one A record primary-db-prod.example.com" in p.stderr
    assert "PUT" not in [c.method for c in ovh.calls]


def test_bad_config_exits_2(node: Node) -> None:
    node.config.write_text("{}")
    p = node.run("on_role_change", "primary")
    assert p.returncode == 2
    assert "missing key" in p.stderr
