"""scripts/app_config.py: stack outputs -> the PHP connector's config, password kept out."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from cloud_init.endpoint import libpq_dsn, render_haproxy
from pgha.settings import load_stack_file
from pgha.target import Target
from pgha.timing import CLIENT_DEADLINE_MARGIN, client_deadline
from pgha_client import defaults

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import app_config  # noqa: E402

PASSWORD = "s3cretAppPassw0rdFromPulumiRandom"
CA = "-----BEGIN CERTIFICATE-----\nMIIBsample\n-----END CERTIFICATE-----\n"

#: `pulumi stack output --json --show-secrets` of a prod stack (values as __main__.py exports them).
SAMPLE_PROD_OUTPUT = """{
  "app_password": "s3cretAppPassw0rdFromPulumiRandom",
  "app_user": "app",
  "bastion_ip": "203.0.113.10",
  "client_deadline": 32.0,
  "ca_certificate": "-----BEGIN CERTIFICATE-----\\nMIIBsample\\n-----END CERTIFICATE-----\\n",
  "dns_name": "db-prod.example.com",
  "etcd_addresses": ["10.43.0.11", "10.43.0.12", "10.43.0.13"],
  "lb_address": "10.43.0.6",
  "libpq_dsn": "host=10.43.0.21,10.43.0.22,10.43.0.23 port=5432,5432,5432 dbname=app user=app target_session_attrs=read-write sslmode=verify-full sslrootcert=ca.crt connect_timeout=2",
  "patroni_addresses": ["10.43.0.21", "10.43.0.22", "10.43.0.23"],
  "haproxy_config": HAPROXY
}"""


def sample() -> dict[str, Any]:
    s = load_stack_file("prod", ROOT)
    return json.loads(SAMPLE_PROD_OUTPUT.replace("HAPROXY", json.dumps(render_haproxy(s, Target.vm(s)))))


def test_sample_matches_what_the_stack_exports() -> None:
    s = load_stack_file("prod", ROOT)
    out = sample()
    assert out["libpq_dsn"] == libpq_dsn(s, s.plan)
    assert out["patroni_addresses"] == s.plan.addresses("patroni")
    assert out["lb_address"] == s.plan.lb
    assert out["client_deadline"] == client_deadline(s.patroni.ttl, s.patroni.loop_wait)


def test_deadline_rides_through_a_node_death() -> None:
    """The generated config's deadline outlasts the time a node death leaves without a
    primary (leader key expiry + one HA loop), by the margin; the clients' own default
    (for web requests that should fail fast) does not."""
    s = load_stack_file("prod", ROOT)
    no_primary = s.patroni.ttl + s.patroni.loop_wait
    assert app_config.connector_config(sample())["deadline"] == no_primary + CLIENT_DEADLINE_MARGIN
    assert no_primary > defaults.DEADLINE
    older = {k: v for k, v in sample().items() if k != "client_deadline"}  # a stack from before the output
    assert app_config.connector_config(older)["deadline"] == defaults.DEADLINE


def test_nodes_config_password_in_a_0600_file(tmp_path: Path) -> None:
    out = tmp_path / "etc" / "pg.json"
    assert app_config.main(["--stack-output", str(write_sample(tmp_path)), "--out", str(out)]) == 0
    cfg = json.loads(out.read_text())
    assert cfg == {
        "hosts": [
            {"host": "10.43.0.21", "port": 5432},
            {"host": "10.43.0.22", "port": 5432},
            {"host": "10.43.0.23", "port": 5432},
        ],
        "dbname": "app",
        "user": "app",
        "sslmode": "verify-full",
        "connect_timeout": defaults.CONNECT_TIMEOUT,
        "deadline": 32.0,
        "application_name": "pgha-app",
        "password_file": "pg.password",
        "sslrootcert": "pg.ca.crt",
    }
    assert PASSWORD not in out.read_text()
    pw = out.with_name("pg.password")
    assert pw.read_text() == PASSWORD + "\n"
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600
    assert out.with_name("pg.ca.crt").read_text() == CA


@pytest.mark.parametrize(
    "via,host,port",
    [("haproxy", "127.0.0.1", 5000), ("lb", "10.43.0.6", 5432), ("dns", "db-prod.example.com", 5432)],
)
def test_single_address_configs_verify_the_ca(via: str, host: str, port: int) -> None:
    cfg = app_config.connector_config(sample(), via=via)
    assert cfg["hosts"] == [{"host": host, "port": port}]
    assert cfg["sslmode"] == "verify-ca"  # the server certificate names the node, not this address


def test_overrides() -> None:
    cfg = app_config.connector_config(
        sample(), via="haproxy", host="10.43.8.5", application_name="shop", deadline=30, connect_timeout=1
    )
    assert (cfg["hosts"], cfg["application_name"], cfg["deadline"], cfg["connect_timeout"]) == (
        [{"host": "10.43.8.5", "port": 5000}],
        "shop",
        30,
        1,
    )


def test_password_env_writes_no_password_file(tmp_path: Path) -> None:
    out = tmp_path / "pg.json"
    app_config.write_files(app_config.connector_config(sample()), sample(), out, password_env="PGHA_APP_PASSWORD")
    assert json.loads(out.read_text())["password_env"] == "PGHA_APP_PASSWORD"
    assert not out.with_name("pg.password").exists()
    assert PASSWORD not in out.read_text()


def test_every_problem_at_once() -> None:
    bad = sample()
    bad["app_password"] = "[secret]"
    del bad["ca_certificate"], bad["dns_name"]
    with pytest.raises(app_config.AppConfigError) as exc:
        app_config.connector_config(bad, via="dns")
    text = str(exc.value)
    assert "--show-secrets" in text
    assert "ca_certificate" in text
    assert "dns_name" in text
    assert len(exc.value.problems) == 3


def test_primary_record_needs_its_output() -> None:
    with pytest.raises(app_config.AppConfigError, match=r"endpoint\.dns\.primary_record"):
        app_config.connector_config(sample(), via="primary-record")
    out = dict(sample(), dns_primary_name="primary-db-prod.example.com")
    assert app_config.connector_config(out, via="primary-record")["hosts"] == [
        {"host": "primary-db-prod.example.com", "port": 5432}
    ]


def test_inconsistent_dsn_is_refused() -> None:
    bad = dict(sample(), patroni_addresses=["10.43.0.21"])
    with pytest.raises(app_config.AppConfigError, match="differ from patroni_addresses"):
        app_config.connector_config(bad)


def test_stdin_and_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(sample())))
    assert app_config.main(["--stack-output", "-", "--out", str(tmp_path / "a.json"), "--via", "haproxy"]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["hosts"] == [{"host": "127.0.0.1", "port": 5000}]
    monkeypatch.setattr(sys, "stdin", io.StringIO("[1, 2]"))
    assert app_config.main(["--stack-output", "-", "--out", str(tmp_path / "b.json")]) == 2
    assert "expected a JSON object" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def write_sample(tmp_path: Path) -> Path:
    p = tmp_path / "stack-output.json"
    p.write_text(json.dumps(sample()))
    return p
