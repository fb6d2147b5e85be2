"""Every node of the dev stack booted from its exact rendered user-data in systemd-nspawn
containers, with backups on (``up --backup``: the repository on the tier's SeaweedFS as
OVH Object Storage), the deploy's validation over SSH through the bastion, the backups
the nodes take themselves, then ``down`` leaves nothing behind. Skips (with the reason)
where the host cannot run containers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cloud_init.backup import TEXTFILE, TIMERS
from components.validation import patroni_script
from machines import cluster as c
from machines.net import netns_exists
from pgha.backup import PGBACKREST, stanza
from pgha.target import Target

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
        up = _cli(run_dir, "up", "--backup")
        assert up.returncode == 0, f"up failed:\n{up.stdout}\n{up.stderr}"
        assert "validated after" in up.stdout
        for node in ("etcd1", "etcd2", "etcd3", "pg1", "pg2", "pg3"):
            assert f"PASS  {node}" in up.stdout, up.stdout
        st = _cli(run_dir, "status", timeout=120)
        assert st.stdout.count("primary/running") == 1, st.stdout
        assert st.stdout.count("replica/") == 2, st.stdout
        assert st.returncode == 0, st.stdout + st.stderr
        leader = next(line.split()[0] for line in st.stdout.splitlines() if "primary/running" in line)
        _check_backups(run_dir, leader)
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


def _ssh(run_dir: Path, node: str, cmd: str) -> str:
    r = _cli(run_dir, "ssh", node, "--", cmd, timeout=300)
    assert r.returncode == 0, f"{node}: {cmd}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _check_backups(run_dir: Path, leader: str) -> None:
    """The booted nodes' own backups against the tier's S3 server: the stanza their
    post-bootstrap made, the timers active, a full backup by the job the watch timer runs,
    WAL archived after pg_switch_wal(), the node check, file modes and the textfile metrics.
    Few SSH round trips (each goes through the bastion): 3 to the leader, 1 per replica."""
    m = c.open_machines(STACK, run_dir)
    assert m.settings.backup.enabled
    replicas = [n.name for n in m.settings.plan.patroni if n.name != leader]
    target = Target.vm(m.settings)
    conf = target.layout(m.settings.plan.node(leader)).pgbackrest_conf
    info = f"sudo -u postgres {PGBACKREST} --config={conf} --stanza={stanza(m.settings)} --output=json info"
    textfile_dir = target.monitoring.textfile_dir
    psql = "sudo -u postgres psql -XAtq -d postgres"
    # Debian's prometheus-node-exporter ships the directory 0755 root:root; the rendered
    # runcmd gives it to group postgres, sticky; the jobs' metrics file is there.
    textfile = (
        f"stat -c '%a %U:%G' {textfile_dir}; sudo -u postgres test -w {textfile_dir} && echo writable;"
        f" stat -c '%U' {textfile_dir}/{TEXTFILE}; cat {textfile_dir}/{TEXTFILE}"
    )

    def check_textfile(node: str, lines: list[str]) -> None:
        assert lines[:3] == ["1775 root:postgres", "writable", "postgres"], (node, lines)
        stamp = [x for x in lines if x.startswith("pgha_backup_last_success_timestamp_seconds{")]
        assert len(stamp) == 1, (node, lines)
        assert stamp[0].startswith('pgha_backup_last_success_timestamp_seconds{type="full"} '), (node, stamp)
        assert time.time() - 600 < float(stamp[0].split()[-1]) <= time.time() + 5, (node, stamp)
        assert "pgha_archive_failing 0" in lines, (node, lines)

    out = _ssh(
        run_dir, leader, f"stat -c '%a %U:%G' {conf}; systemctl is-active {' '.join(TIMERS)}; {info}"
    ).splitlines()
    assert out[0] == "640 root:postgres", out  # the repository's keys and passphrase
    assert out[1:4] == ["active"] * 3, out  # started at first boot, not only enabled
    status = json.loads(out[4])[0]["status"]
    assert status["code"] in (0, 2), status  # 2: "no valid backups": the stanza exists (post-bootstrap)

    # The unit the watch timer runs (OnCalendar every 5 min: too long to wait for here), on
    # the leader first (it acts), then on the replicas (nothing to do; they write their
    # metrics from the repository as they find it). Then WAL archiving: the segment
    # pg_switch_wal() closes must reach the repository without a failure.
    out = _ssh(
        run_dir,
        leader,
        f'sudo systemctl start pgha-backup@watch.service && {psql} -c "SELECT failed_count FROM pg_stat_archiver"'
        ' -c "CREATE TABLE machines_probe ()" -c "DROP TABLE machines_probe" -c "SELECT pg_walfile_name(pg_switch_wal())"',
    ).split()
    assert out[0] == "0", out
    segment = out[1]
    for node in replicas:
        lines = _ssh(
            run_dir, node, f"sudo systemctl start pgha-backup@watch.service && {info} && echo; {textfile}"
        ).splitlines()
        stanzas = json.loads(lines[0])  # any node reads the repository
        assert stanzas[0]["status"]["code"] == 0, (node, stanzas)
        assert [b["type"] for b in stanzas[0]["backup"]] == ["full"], (node, stanzas)
        check_textfile(node, lines[1:])

    archived = f"{psql} -c \"SELECT coalesce(last_archived_wal >= '{segment}', false) FROM pg_stat_archiver\""
    wait = f'for i in $(seq 120); do [ "$({archived})" = t ] && break; sleep 1; done'
    archiver = f'{psql} -c "SELECT last_archived_wal, failed_count FROM pg_stat_archiver"'
    script = patroni_script(m.settings_for(leader), leader)  # the deploy's node check, as `up` runs it
    # node-exporter (user prometheus) serves the file: the textfile collector could read it.
    address = m.settings.plan.node(leader).address
    scrape = f"curl -s http://{address}:{m.settings.monitoring.node_exporter_port}/metrics | grep ^pgha_backup_"
    lines = _ssh(run_dir, leader, f"{wait}; {archiver}; {textfile}; {scrape}; {script}").splitlines()
    last, failed = lines[0].split("|")
    assert last >= segment, (segment, lines[0])
    assert failed == "0", lines[0]
    file_part = lines[1 : lines.index("pgha_archive_failing 0") + 1]
    check_textfile(leader, file_part)
    scraped = [x.split() for x in lines[len(file_part) + 1 :] if x.startswith("pgha_backup_last_success")]
    stamp = next(x.split() for x in file_part if x.startswith("pgha_backup_last_success"))
    assert [(k, float(v)) for k, v in scraped] == [(stamp[0], float(stamp[1]))], lines  # node-exporter serves it
    assert any("archiving OK" in line for line in lines), lines
