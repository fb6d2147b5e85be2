"""The PHP and the Python clients expose the same defaults, because both read
clients/php/defaults.json (tests/unit/test_client_defaults.py shows Python reads that
file; here the php CLI shows what the PHP client makes of it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgha_client import Config, conninfo, defaults

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"hosts": [{"host": "pg1"}], "dbname": "app", "user": "app"}

PHP = """
require $argv[1];
use Pgha\\Failover\\{Config, DsnBuilder};
$c = Config::fromArray(json_decode($argv[2], true));
parse_str(str_replace(';', '&', substr(DsnBuilder::build($c), strlen('pgsql:'))), $rw);
parse_str(str_replace(';', '&', substr(DsnBuilder::build($c, true), strlen('pgsql:'))), $ro);
echo json_encode([
    'file' => realpath(Config::DEFAULTS_FILE),
    'defaults' => Config::defaults(),
    'config' => [$c->hosts[0]->port, $c->sslmode, $c->connectTimeout, $c->deadline, $c->backoffBase, $c->backoffCap],
    'attrs' => [$rw['target_session_attrs'], $ro['target_session_attrs']],
], JSON_PRESERVE_ZERO_FRACTION);
"""


def test_php_and_python_expose_the_same_defaults() -> None:
    if not shutil.which("php"):
        pytest.fail("php is not installed: run scripts/setup.sh")
    bootstrap = ROOT / "clients" / "php" / "tests" / "bootstrap.php"
    p = subprocess.run(
        ["php", "-r", PHP, str(bootstrap), json.dumps(MINIMAL)], check=False, capture_output=True, text=True, timeout=30
    )
    assert p.returncode == 0, p.stdout + p.stderr
    php = json.loads(p.stdout)
    assert Path(php["file"]).samefile(str(defaults.DEFAULTS_FILE))
    assert php["defaults"] == defaults.DEFAULTS
    c = Config.from_dict(MINIMAL)
    assert php["config"] == [c.hosts[0].port, c.sslmode, c.connect_timeout, c.deadline, c.backoff_base, c.backoff_cap]
    py_attrs = [conninfo_to_dict(conninfo(c, read_only=ro))["target_session_attrs"] for ro in (False, True)]
    assert php["attrs"] == py_attrs == [defaults.READ_WRITE, defaults.PREFER_STANDBY]
