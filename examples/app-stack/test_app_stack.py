"""The example app stack under Pulumi mocks: StackReference outputs -> the app's DB config.

Runs on its own (``pytest examples/app-stack``) and from the component suite.
"""

from __future__ import annotations

import asyncio
import runpy
from pathlib import Path

import pulumi
import pytest
from app_config import app_dsn, db_config, parse_conninfo
from pulumi.runtime.settings import get_root_resource, set_root_resource
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

HERE = Path(__file__).resolve().parent
DSN = (
    "host=10.43.0.21,10.43.0.22,10.43.0.23 port=5432,5432,5432 dbname=app user=app "
    "target_session_attrs=read-write sslmode=verify-full sslrootcert=ca.crt connect_timeout=2"
)
PGHA_OUTPUTS = {
    "libpq_dsn": DSN,
    "patroni_addresses": ["10.43.0.21", "10.43.0.22", "10.43.0.23"],
    "app_user": "app",
    "app_password": "s3cretAppPassw0rdFromPghaStack00",
    "ca_certificate": "-----BEGIN CERTIFICATE-----\nMOCK\n-----END CERTIFICATE-----\n",
    "dns_name": "db-prod.example.com",
    "lb_address": "10.43.0.6",
}


class StackReferenceMocks(pulumi.runtime.Mocks):
    def __init__(self, outputs: dict):
        self.outputs = outputs
        self.referenced: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if args.typ == "pulumi:pulumi:StackReference":
            self.referenced.append(args.inputs["name"])
            return args.inputs["name"], {
                "name": args.inputs["name"],
                "outputs": self.outputs,
                "secretOutputNames": ["app_password"],
            }
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}, []


@pytest.fixture
def run_app(monkeypatch):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def run(outputs: dict) -> tuple[StackReferenceMocks, dict]:
        set_root_resource(None)  # type: ignore[arg-type]
        pulumi.runtime.set_all_config({"pgha-app-stack:pghaStack": "my-org/pgha/prod"})
        mocks = StackReferenceMocks(outputs)
        pulumi.runtime.set_mocks(mocks, project="pgha-app-stack", stack="dev", preview=False)
        loop.run_until_complete(wait_for_rpcs())
        monkeypatch.syspath_prepend(str(HERE))

        @pulumi.runtime.test
        def program():
            runpy.run_path(str(HERE / "__main__.py"), run_name="app_main")

        program()
        root = get_root_resource()
        assert root is not None
        exported = {}
        for name, value in root.outputs.items():  # type: ignore[attr-defined]
            exported[name] = (_sync_await(value.future()), _sync_await(value.is_secret()))
        return mocks, exported

    yield run
    pulumi.runtime.set_all_config({})
    set_root_resource(None)  # type: ignore[arg-type]
    loop.close()
    asyncio.set_event_loop(None)


def test_db_config_from_stack_reference(run_app):
    mocks, exported = run_app(PGHA_OUTPUTS)
    assert mocks.referenced == ["my-org/pgha/prod"]
    config, secret = exported["db_config"]
    assert secret, "db_config holds the password"
    assert config == db_config(PGHA_OUTPUTS, "/etc/app/pgha-ca.crt")
    assert config["password"] == PGHA_OUTPUTS["app_password"]
    assert config["endpoint"] == "db-prod.example.com"
    dsn, dsn_secret = exported["db_dsn"]
    assert not dsn_secret
    assert "password" not in dsn
    assert "sslrootcert=/etc/app/pgha-ca.crt" in dsn
    assert exported["db_endpoint"] == ("db-prod.example.com", False)


def test_stack_without_dns_or_lb(run_app):
    outputs = {k: v for k, v in PGHA_OUTPUTS.items() if k not in ("dns_name", "lb_address")}
    _, exported = run_app(outputs)
    assert exported["db_config"][0]["endpoint"] is None
    assert exported["db_endpoint"] == (None, False)


def test_pure_function():
    cfg = db_config(PGHA_OUTPUTS, "ca.pem")
    assert parse_conninfo(cfg["dsn"]) == {**parse_conninfo(DSN), "sslrootcert": "ca.pem"}
    assert cfg["hosts"] == PGHA_OUTPUTS["patroni_addresses"]
    assert cfg["dbname"] == "app"
    assert app_dsn(DSN, "x.crt").endswith("sslrootcert=x.crt connect_timeout=2")
    with pytest.raises(KeyError, match="app_password"):
        db_config({**PGHA_OUTPUTS, "app_password": None})
    with pytest.raises(ValueError, match="not a key=value"):
        parse_conninfo("host=a oops")
