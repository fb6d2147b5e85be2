"""DNS primary record: settings, rendering, and the rendered callback script run for
real (as Patroni runs it) against a local double of the OVH API on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from cloud_init import dns_callback
from cloud_init.patroni import render_patroni_node
from pgha.secrets import FAKE_CA, OvhApiCredentials, PatroniNodeSecrets, fake_keypair, fake_ovh_api_credentials, fake_passwords
from pgha.settings import Settings, SettingsError, load, sections_from_stack_yaml
from pgha.target import Layout, Target

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ZONE = "example.com"
RECORD_ID = 5081234567
AK, AS, CK = "test-ak-7f3a", "test-as-SECRET-91c2", "test-ck-SECRET-d4e8"


def prod_raw(**dns: Any) -> dict[str, Any]:
    raw = sections_from_stack_yaml(yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text()))
    raw["endpoint"]["dns"].update(dns)
    return raw


# ------------------------------------------------------------------ settings

BAD: list[tuple[str, dict[str, Any], set[str]]] = [
    ("primary record without dns", {"enabled": False, "primary_record": True}, {"endpoint.dns.primary_record"}),
    ("explicit name not a label", {"primary_record_name": "Primary_DB"}, {"endpoint.dns.primary_record_name"}),
    ("same name as the pulumi record", {"primary_record": True, "primary_record_name": "db-prod"}, {"endpoint.dns.primary_record_name"}),
    ("derived name too long", {"primary_record": True, "name": "d" * 60}, {"endpoint.dns.primary_record_name"}),
    ("wrong type", {"primary_record": "yes"}, {"endpoint.dns.primary_record"}),
]


@pytest.mark.parametrize("dns,paths", [pytest.param(d, p, id=i) for i, d, p in BAD])
def test_bad_primary_record_settings(dns: dict[str, Any], paths: set[str]) -> None:
    with pytest.raises(SettingsError) as exc:
        load("prod", prod_raw(**dns))
    assert exc.value.paths == paths, str(exc.value)


def test_primary_record_defaults() -> None:
    s = load("prod", prod_raw())
    assert s.endpoint.dns.primary_record is False
    assert s.endpoint.dns.primary_record_name == "primary-db-prod"
    s = load("prod", prod_raw(primary_record=True, primary_record_name="pg-rw"))
    assert (s.endpoint.dns.primary_record, s.endpoint.dns.primary_record_name) == (True, "pg-rw")
    assert dns_callback.record_fqdn(s) == "pg-rw.example.com"


# ------------------------------------------------------------------ rendering


def tmp_layout(base: Path) -> Layout:
    return Layout(
        etc_dir=str(base / "etc"),
        bin_dir=str(base / "bin"),
        etcd_data_dir=str(base / "etcd"),
        pg_data_dir=str(base / "data"),
        pg_bin_dir="/usr/lib/postgresql/15/bin",
        socket_dir=str(base / "sock"),
        patroni_venv="/opt/pgha/patroni",
        python="/usr/bin/python3",
        pg_os_user="postgres",
        pgpass=str(base / "pgpass"),
        etcd_os_user="etcd",
        watchdog=False,
    )


def node_secrets(creds: OvhApiCredentials | None) -> PatroniNodeSecrets:
    return PatroniNodeSecrets(FAKE_CA, fake_keypair("s"), fake_keypair("c"), fake_passwords(), dns_api=creds)


def test_render_off_by_default() -> None:
    s = load("prod", prod_raw())
    node = render_patroni_node(s, Target.vm(s), s.plan.patroni[0], node_secrets(fake_ovh_api_credentials()))
    assert "callbacks" not in yaml.safe_load(node.file("/patroni.yml").content)["postgresql"]
    assert not [f for f in node.files if "dns-callback" in f.path]


def test_render_callback_files_and_patroni_callbacks() -> None:
    s = load("prod", prod_raw(primary_record=True))
    node = render_patroni_node(s, Target.vm(s), s.plan.patroni[1], node_secrets(fake_ovh_api_credentials()))
    cfg = yaml.safe_load(node.file("/patroni.yml").content)
    cmd = "/usr/bin/timeout --kill-after=2 30 /usr/local/sbin/pgha-dns-callback --config /etc/pgha/dns-callback.json"
    assert cfg["postgresql"]["callbacks"] == {"on_start": cmd, "on_role_change": cmd}
    script = node.file("/usr/local/sbin/pgha-dns-callback")
    assert script.mode == "0755" and script.content.startswith("#!/usr/bin/python3\n")
    conf = node.file("/etc/pgha/dns-callback.json")
    assert (conf.mode, conf.owner, conf.secret) == ("0600", "postgres:postgres", True)
    c = json.loads(conf.content)
    assert (c["node"], c["address"], c["zone"], c["record"], c["ttl"]) == ("pg2", s.plan.patroni[1].address, "example.com", "primary-db-prod", 60)
    assert c["leader_check_url"] == f"https://{s.plan.patroni[1].address}:8008/primary" and c["cacert"] == "/etc/pgha/tls/ca.crt"
    assert c["ovh"]["endpoint"] == "https://eu.api.ovh.com/1.0" and c["ovh"]["consumer_key"] == "FAKE-ovh-consumer-key"
    # Stdlib only: the node runs it with the system python, outside Patroni's venv.
    imports = {line.split()[1].split(".")[0] for line in script.content.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"argparse", "hashlib", "http", "json", "ssl", "sys", "time", "urllib"}


def test_render_refuses_primary_record_without_credentials() -> None:
    s = load("prod", prod_raw(primary_record=True))
    with pytest.raises(ValueError, match="no OVH API credentials"):
        render_patroni_node(s, Target.vm(s), s.plan.patroni[0], node_secrets(None))


def test_access_rules_are_limited_to_the_record() -> None:
    assert dns_callback.access_rules("example.com", 42) == [
        {"method": "GET", "path": "/domain/zone/example.com/record"},
        {"method": "GET", "path": "/domain/zone/example.com/record/42"},
        {"method": "PUT", "path": "/domain/zone/example.com/record/42"},
        {"method": "POST", "path": "/domain/zone/example.com/refresh"},
    ]
    doc = (ROOT / "docs" / "applications.md").read_text()  # the access rules an operator copies
    for rule in dns_callback.access_rules("<zone>", "<record-id>"):
        assert f'{{"method": "{rule["method"]}", "path": "{rule["path"]}"}}' in doc, rule


# ------------------------------------------------------------------ the OVH API double


def ovh_signature(method: str, url: str, body: str, ts: str) -> str:
    """Computed here independently of the script: $1$ + sha1(AS+CK+METHOD+URL+BODY+TS)."""
    return "$1$" + hashlib.sha1(f"{AS}+{CK}+{method}+{url}+{body}+{ts}".encode()).hexdigest()


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: str
    signature_ok: bool | None  # None: unsigned call (/auth/time, Patroni's /primary)


@dataclass
class OvhDouble:
    """The slice of the OVH API the callback uses, plus the node's Patroni /primary."""

    base: str = ""
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    granted: set[tuple[str, str]] = field(default_factory=set)
    fail_next: list[int] = field(default_factory=list)  #: HTTP statuses for the next OVH calls
    leader: bool = True
    clock_skew: int = 0  #: server clock minus local clock
    calls: list[Call] = field(default_factory=list)
    refreshed: int = 0

    def ovh_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.startswith("/1.0/domain/")]


def grant_callback_rules(api: OvhDouble, record_id: int = RECORD_ID) -> None:
    api.granted = {(r["method"], "/1.0" + r["path"]) for r in dns_callback.access_rules(ZONE, record_id)}


def make_handler(api: OvhDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self) -> None:
            u = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if u.path == "/primary":
                api.calls.append(Call(self.command, u.path, {}, body, None))
                return self.reply(200 if api.leader else 503, {"role": "primary" if api.leader else "replica"})
            if u.path == "/1.0/auth/time":
                api.calls.append(Call(self.command, u.path, {}, body, None))
                return self.reply(200, int(time.time()) + api.clock_skew)
            ts = self.headers.get("X-Ovh-Timestamp", "")
            sig_ok = self.headers.get("X-Ovh-Signature") == ovh_signature(self.command, api.base.removesuffix("/1.0") + self.path, body, ts)
            api.calls.append(Call(self.command, u.path, parse_qs(u.query), body, sig_ok))
            if self.headers.get("X-Ovh-Application") != AK or not sig_ok:
                return self.reply(400, {"errorCode": "INVALID_SIGNATURE", "message": "Invalid signature"})
            if abs(int(ts) - (int(time.time()) + api.clock_skew)) > 5:
                return self.reply(400, {"errorCode": "QUERY_TIME_OUT", "message": "Query out of time"})
            if api.fail_next:
                status = api.fail_next.pop(0)
                return self.reply(status, {"errorCode": f"HTTP_{status}", "message": "injected"})
            route = "/1.0/domain/zone/" + ZONE
            if (self.command, u.path) not in api.granted:
                return self.reply(403, {"errorCode": "NOT_GRANTED_CALL", "message": "This call has not been granted"})
            if self.command == "GET" and u.path == f"{route}/record":
                q = parse_qs(u.query)
                ids = [i for i, r in api.records.items() if [r["fieldType"]] == q.get("fieldType") and [r["subDomain"]] == q.get("subDomain")]
                return self.reply(200, ids)
            if u.path.startswith(f"{route}/record/"):
                rid = int(u.path.rsplit("/", 1)[1])
                if rid not in api.records:
                    return self.reply(404, {"message": "This service does not exist"})
                if self.command == "GET":
                    return self.reply(200, api.records[rid])
                if self.command == "PUT":
                    api.records[rid].update(json.loads(body))
                    return self.reply(200, None)
            if self.command == "POST" and u.path == f"{route}/refresh":
                api.refreshed += 1
                return self.reply(200, None)
            return self.reply(404, {"message": "no such route in the double"})

        do_GET = do_PUT = do_POST = handle_any

    return Handler


@pytest.fixture
def ovh() -> Iterator[OvhDouble]:
    api = OvhDouble()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(api))
    api.base = f"http://127.0.0.1:{server.server_address[1]}/1.0"
    api.records = {
        RECORD_ID: {"id": RECORD_ID, "zone": ZONE, "subDomain": "primary-db-prod", "fieldType": "A", "target": "10.43.0.22", "ttl": 60},
        RECORD_ID + 1: {"id": RECORD_ID + 1, "zone": ZONE, "subDomain": "db-prod", "fieldType": "A", "target": "10.43.0.6", "ttl": 60},
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
        return subprocess.run([*self.command, action, role, scope], capture_output=True, text=True, timeout=timeout)

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
    n = Node(shlex.split(callbacks["on_role_change"]), Path(dns_callback.config_path(layout)), s.plan.patroni[0].address)
    # The node's REST API is the double's /primary (plain HTTP in the test).
    n.patch_config(leader_check_url=ovh.base.removesuffix("/1.0") + "/primary", backoff_base=0.05, backoff_cap=0.2)
    return n


def assert_no_secret_logged(p: subprocess.CompletedProcess[str]) -> None:
    out = p.stdout + p.stderr
    for secret in (AS, CK, AK, "$1$"):
        assert secret not in out


# ------------------------------------------------------------------ the script, for real


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
    assert "access rule" in p.stderr and f"POST /domain/zone/{ZONE}/refresh" in p.stderr
    assert ovh.records[RECORD_ID]["target"] == "10.43.0.22" and ovh.refreshed == 0
    assert_no_secret_logged(p)


def test_transient_errors_are_retried(ovh: OvhDouble, node: Node) -> None:
    ovh.fail_next = [500, 503, 429]
    p = node.run("on_role_change", "primary")
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("retrying in") == 3
    assert ovh.records[RECORD_ID]["target"] == node.address and ovh.refreshed == 1


def test_unreachable_api_gives_up_at_the_deadline(node: Node) -> None:
    node.patch_config(deadline=1, ovh={"endpoint": "http://127.0.0.1:9/1.0", "application_key": AK, "application_secret": AS, "consumer_key": CK})
    t0 = time.monotonic()
    p = node.run("on_role_change", "primary")
    assert p.returncode == 1 and "gave up after" in p.stderr
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
    assert p.returncode == 0 and "already points at" in p.stderr
    assert [c.method for c in ovh.ovh_calls()] == ["GET", "GET"] and ovh.refreshed == 0


@pytest.mark.parametrize("count", [0, 2])
def test_missing_or_duplicate_record_is_an_error(ovh: OvhDouble, node: Node, count: int) -> None:
    ovh.records = {k: v for k, v in ovh.records.items() if v["subDomain"] != "primary-db-prod"}
    for i in range(count):
        ovh.records[100 + i] = {"id": 100 + i, "zone": ZONE, "subDomain": "primary-db-prod", "fieldType": "A", "target": "10.43.0.2", "ttl": 60}
    p = node.run("on_role_change", "primary")
    assert p.returncode == 1 and "expected exactly one A record primary-db-prod.example.com" in p.stderr
    assert "PUT" not in [c.method for c in ovh.calls]


def test_bad_config_exits_2(node: Node) -> None:
    node.config.write_text("{}")
    p = node.run("on_role_change", "primary")
    assert p.returncode == 2 and "missing key" in p.stderr
