"""Every etcd and Patroni node's rendered host firewall is a ruleset nft accepts (``nft -c``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cloud_init.__main__ import fake_render
from pgha.settings import load_stack_file

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
NFT = shutil.which("nft") or "/usr/sbin/nft"


def nft_check(path: Path) -> subprocess.CompletedProcess[str]:
    """``nft -c -f``: parse and validate against the kernel, apply nothing (needs CAP_NET_ADMIN)."""
    if not Path(NFT).exists():
        pytest.fail("nft (Debian package nftables) is not installed: run scripts/setup.sh")
    if os.geteuid() != 0:
        pytest.skip("nft -c asks the kernel to validate the ruleset: needs root (CAP_NET_ADMIN)")
    return subprocess.run([NFT, "-c", "-f", str(path)], check=False, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_node_firewall_is_valid_nft(stack: str, tmp_path: Path) -> None:
    files = fake_render(load_stack_file(stack, ROOT))
    rulesets = {k: v for k, v in files.items() if k.endswith("/files/etc/nftables.conf")}
    assert sorted(k.split("/")[0] for k in rulesets) == ["etcd"] * 3 + ["monitoring"] + ["patroni"] * 3
    for key, text in rulesets.items():
        path = tmp_path / key.replace("/", "_")
        path.write_text(text)
        p = nft_check(path)
        assert p.returncode == 0, f"{key}:\n{p.stderr}"


def test_nft_check_rejects_a_broken_ruleset(tmp_path: Path) -> None:
    """The check above can fail: a typo in a rule is refused."""
    files = fake_render(load_stack_file("dev", ROOT))
    text = files["patroni/pg1/files/etc/nftables.conf"].replace(" reject\n", " rejectt\n")
    assert "rejectt" in text
    path = tmp_path / "broken.conf"
    path.write_text(text)
    p = nft_check(path)
    assert p.returncode != 0
    assert "rejectt" in p.stderr
