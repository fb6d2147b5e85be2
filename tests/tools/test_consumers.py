"""Every render checked by its consumer's own tool: `haproxy -c`, `cloud-init schema`.

Each check is paired with a broken render that the same tool must reject, so a check
that passes whatever the tool says goes red.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cloud_init.__main__ import main
from cloud_init.endpoint import render_haproxy
from lab.pki import LabCA
from pgha.settings import load_stack_file
from pgha.target import Target

pytestmark = pytest.mark.tools
ROOT = Path(__file__).resolve().parents[2]
STACKS = ["dev", "prod"]


def need(tool: str) -> None:
    if not shutil.which(tool):
        pytest.fail(f"{tool} is not installed: run scripts/setup.sh")


def haproxy_check(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    need("haproxy")
    (tmp_path / "ca.crt").write_text(LabCA("test").pem)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config.replace("/etc/haproxy/pgha-ca.crt", str(tmp_path / "ca.crt")))
    return subprocess.run(["haproxy", "-c", "-f", str(cfg)], check=False, capture_output=True, text=True)


@pytest.mark.parametrize("stack", STACKS)
def test_haproxy_accepts_the_rendered_config(stack: str, tmp_path: Path) -> None:
    s = load_stack_file(stack, ROOT)
    p = haproxy_check(tmp_path, render_haproxy(s, Target.vm(s)))
    assert p.returncode == 0, p.stdout + p.stderr


def test_haproxy_rejects_a_typo(tmp_path: Path) -> None:
    s = load_stack_file("prod", ROOT)
    config = render_haproxy(s, Target.vm(s))
    assert "balance roundrobin" in config
    p = haproxy_check(tmp_path, config.replace("balance roundrobin", "balanse roundrobin"))
    assert p.returncode != 0
    assert "balanse" in p.stdout + p.stderr


def cloud_init_schema(path: Path) -> subprocess.CompletedProcess[str]:
    need("cloud-init")
    return subprocess.run(["cloud-init", "schema", "-c", str(path)], check=False, capture_output=True, text=True)


@pytest.mark.parametrize("stack", STACKS)
def test_render_command_output_passes_cloud_init_schema(stack: str, tmp_path: Path) -> None:
    assert main(["render", "--stack", stack, "--out", str(tmp_path / "out")]) == 0
    user_data = sorted((tmp_path / "out").rglob("user-data"))
    s = load_stack_file(stack, ROOT)
    assert len(user_data) == s.etcd.members + s.patroni.nodes + (1 if s.monitoring.enabled else 0)
    for f in user_data:
        p = cloud_init_schema(f)
        assert p.returncode == 0, f"{f}: {p.stdout}{p.stderr}"
        assert "Valid cloud-config" in p.stdout + p.stderr


def test_cloud_init_schema_rejects_a_broken_user_data(tmp_path: Path) -> None:
    """The schema check above can fail: a wrong key in write_files is caught."""
    assert main(["render", "--stack", "dev", "--out", str(tmp_path / "out")]) == 0
    good = (tmp_path / "out" / "etcd" / "etcd1" / "user-data").read_text()
    f = tmp_path / "user-data"
    f.write_text(good.replace("permissions:", "permission:", 1))
    assert cloud_init_schema(f).returncode != 0
