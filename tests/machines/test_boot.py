"""Every node of the dev stack booted from its exact rendered user-data in systemd-nspawn
containers, the deploy's validation over SSH through the bastion, then ``down`` leaves
nothing behind. Skips (with the reason) where the host cannot run containers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from machines import cluster as c
from machines.net import netns_exists

pytestmark = pytest.mark.machines
ROOT = Path(__file__).resolve().parents[2]
STACK = "dev"


def _unsupported() -> str | None:
    problems = c.prerequisites()
    if problems:
        return "; ".join(problems)
    probe = f"pgha-probe-{os.getpid()}"
    r = subprocess.run(check=False, args=["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(check=False, args=["ip", "netns", "del", probe], capture_output=True)
    if netns_exists(f"pgha-{STACK}"):
        return f"machines of stack {STACK} are already up on this host (python -m machines --stack {STACK} down)"
    return None


def _cli(run_dir: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "machines", "--stack", STACK, "--run-dir", str(run_dir), *args]
    return subprocess.run(check=False, args=cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_up_validate_down() -> None:
    reason = _unsupported()
    if reason:
        pytest.skip(f"machines tier not supported here: {reason}")
    run_dir = Path(tempfile.mkdtemp(prefix="pgha-machines-test-"))
    m = c.open_machines(STACK, run_dir)
    try:
        up = _cli(run_dir, "up")
        assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
        assert "validated after" in up.stdout
        for node in ("etcd1", "etcd2", "etcd3", "pg1", "pg2", "pg3"):
            assert f"PASS  {node}" in up.stdout, up.stdout
        st = _cli(run_dir, "status", timeout=120)
        assert st.returncode == 0, st.stdout + st.stderr
        assert st.stdout.count("primary/running") == 1, st.stdout
        assert st.stdout.count("replica/") == 2, st.stdout
        who = _cli(run_dir, "ssh", "pg1", "--", "hostname", timeout=60)
        assert who.stdout.strip() == "pgha-dev-pg1", who.stdout + who.stderr
        # The host key the render installed is the only one, and it is pinned: pg1 pinned
        # to etcd1's key is refused, as the deploy's validation would refuse it.
        keys = _cli(run_dir, "ssh", "pg1", "--", "ls /etc/ssh", timeout=60).stdout.split()
        assert [k for k in keys if k.startswith("ssh_host_")] == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
        pinned = dict(line.split(" ", 1) for line in (run_dir / "known_hosts").read_text().splitlines())
        wrong = run_dir / "known_hosts.wrong"
        wrong.write_text("".join(f"{n} {pinned['etcd1'] if n == 'pg1' else k}\n" for n, k in pinned.items()))
        refused = subprocess.run(
            ["ssh", "-F", str(run_dir / "ssh_config"), "-o", f"UserKnownHostsFile={wrong}", "pg1", "true"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0
        assert "Host key verification failed" in refused.stderr, refused.stderr
    finally:
        down = _cli(run_dir, "down", timeout=300)
        m = c.open_machines(STACK, run_dir)
        left = c.leftovers(m)
        if down.returncode == 0 and not left:
            shutil.rmtree(run_dir, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert left == [], left
    assert not netns_exists(f"pgha-{STACK}")
    assert not any(netns_exists(s.netns) for s in m.specs)
