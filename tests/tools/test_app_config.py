"""scripts/app_config.py's output, validated by its consumer: the PHP connector
(clients/php's Config::fromJsonFile and DsnBuilder, run by the php CLI)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_app_config import ROOT, app_config, write_sample

pytestmark = pytest.mark.tools


def test_the_php_connector_accepts_the_config(tmp_path: Path) -> None:
    """Validated by its consumer: clients/php's Config::fromJsonFile and DsnBuilder."""
    if not shutil.which("php"):
        pytest.fail("php is not installed: run scripts/setup.sh")
    out = tmp_path / "pg.json"
    assert app_config.main(["--stack-output", str(write_sample(tmp_path)), "--out", str(out)]) == 0
    code = (
        f"require '{ROOT}/clients/php/tests/bootstrap.php';"
        "$c = Pgha\\Failover\\Config::fromJsonFile($argv[1]);"
        "echo json_encode(['dsn' => Pgha\\Failover\\DsnBuilder::build($c), 'pw' => $c->password() === trim(file_get_contents($argv[2]))]);"
    )
    p = subprocess.run(
        ["php", "-r", code, str(out), str(out.with_name("pg.password"))], check=False, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr
    got = json.loads(p.stdout)
    assert got["pw"] is True
    assert got["dsn"].startswith(
        "pgsql:host=10.43.0.21,10.43.0.22,10.43.0.23;port=5432,5432,5432;dbname=app;target_session_attrs=read-write"
    )
    assert f"sslrootcert={tmp_path}/pg.ca.crt" in got["dsn"]
