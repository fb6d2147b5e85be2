"""Validation: remote checks per node, after the instances, through the bastion; clear failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

import pulumi
import pytest

from components.etcd import EtcdCluster, EtcdClusterArgs
from components.patroni import PatroniCluster, PatroniClusterArgs
from components.validation import TYPE, Validation, ValidationArgs, etcd_script, patroni_script, wait_for_cloud_init
from pgha.secrets import FAKE_CA

from .mocks import BASTION_PUBLIC_IP, fake_pair, mock_host_key, static_placement, with_section

pytestmark = pytest.mark.components

COMMAND = "command:remote:Command"
DEPLOY_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nTEST-DEPLOY-KEY\n-----END OPENSSH PRIVATE KEY-----\n"


BASTION_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBastionHostKeyForTheTest bastion"


def build(h, settings, bastion_ip):
    def program():
        plan = settings.plan
        etcd = EtcdCluster(
            "etcd",
            EtcdClusterArgs(
                settings,
                static_placement(),
                FAKE_CA,
                [fake_pair(n) for n in ("a", "b", "c", "d", "e")[: len(plan.etcd)]],
            ),
        )
        pairs = [fake_pair("p")] * len(plan.patroni)
        patroni = PatroniCluster("patroni", PatroniClusterArgs(settings, static_placement(), FAKE_CA, pairs, pairs))
        key = pulumi.Output.secret(DEPLOY_KEY)
        bastion_key = BASTION_HOST_KEY if bastion_ip else None
        return Validation(
            "validation",
            ValidationArgs(
                settings,
                key,
                bastion_ip,
                etcd.instances,
                patroni.instances,
                etcd.host_keys,
                patroni.host_keys,
                bastion_key,
            ),
        )

    return h.run(program)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_one_command_per_node_after_its_instance(harness, stack):
    h = harness(stack)
    s = h.settings()
    plan = s.plan
    validation = build(h, s, BASTION_PUBLIC_IP)
    comp = h.component(TYPE)
    commands = h.children(comp)
    assert all(c.type == COMMAND for c in commands)
    etcd_names = [n.name for n in plan.etcd]
    pg_names = [n.name for n in plan.patroni]
    assert sorted(c.name for c in commands) == sorted(f"validation-{n}" for n in etcd_names + pg_names)

    etcd_ids = [h.id_of(h.named(f"etcd-{n}")) for n in etcd_names]
    pg_ids = [h.id_of(h.named(f"patroni-{n}")) for n in pg_names]
    etcd_cmds = {h.named(f"validation-{n}").urn for n in etcd_names}
    for role, names, addresses, ids in (
        ("etcd", etcd_names, plan.addresses("etcd"), etcd_ids),
        ("patroni", pg_names, plan.addresses("patroni"), pg_ids),
    ):
        for node, address in zip(names, addresses, strict=True):
            cmd = h.named(f"validation-{node}")
            inst = h.named(f"{role}-{node}")
            assert inst.urn in cmd.dependencies, f"{cmd.urn} must run after {inst.urn}"
            assert cmd.input("triggers") == ids, f"{cmd.urn}: re-run when any node of the cluster is replaced"
            assert cmd.is_secret("connection"), f"{cmd.urn}: the connection holds the deploy key"
            conn = cmd.input("connection")
            assert (conn["host"], conn["user"], conn["privateKey"]) == (address, "debian", DEPLOY_KEY)
            assert (conn["proxy"]["host"], conn["proxy"]["user"]) == (BASTION_PUBLIC_IP, "debian")
            # Host keys pinned, never trust-on-first-use: the node's own (its user-data has it).
            assert conn["proxy"]["hostKey"] == BASTION_HOST_KEY
            assert conn["hostKey"] == mock_host_key(f"{role}-{node}-host-key"), f"{cmd.urn}: pins the node's host key"
            script = cmd.input("create")
            assert "cloud-init status --wait" in script
            if role == "etcd":
                assert script == etcd_script(s, node)
                assert "sudo -u etcd /usr/local/sbin/pgha-check-etcd --config /etc/pgha/check.json --wait" in script
            else:
                assert script == patroni_script(s, node)
                assert (
                    "sudo -u postgres /usr/local/sbin/pgha-check-patroni --config /etc/pgha/check.json --wait" in script
                )
                assert etcd_cmds <= cmd.dependencies, f"{cmd.urn}: Patroni is checked once etcd passed"
    assert set(validation.reports) == set(etcd_names + pg_names)


def test_without_bastion_connects_directly(harness):
    h = harness("dev")
    s = with_section(h.settings(), "access.bastion", enabled=False)
    build(h, s, None)
    for cmd in h.of_type(COMMAND):
        assert "proxy" not in cmd.input("connection"), cmd.urn


# ------------------------------------------------------------ the scripts themselves

FAKE_CLOUD_INIT = """\
#!/bin/sh
if [ "$2" = "--long" ]; then
  echo "status: ${FAKE_CLOUD_INIT_STATUS:-done}"
  if [ "${FAKE_CLOUD_INIT_STATUS:-done}" = error ]; then echo "errors: package install failed"; fi
  exit 0
fi
sleep "${FAKE_CLOUD_INIT_SLEEP:-0}"
exit "${FAKE_CLOUD_INIT_RC:-0}"
"""
FAKE_FINDMNT = """\
#!/bin/sh
exit "${FAKE_FINDMNT_RC:-0}"
"""
FAKE_SUDO = """\
#!/bin/sh
if [ "$1" = "-u" ]; then shift 2; fi
case "$1" in
  test) exit "${FAKE_WATCHDOG_RC:-0}";;
  journalctl) echo "journal of $3";;
  */pgha-check-*)
    if [ "${FAKE_CHECK_RC:-0}" = 0 ]; then echo "OK $(basename "$1") $*"; exit 0; fi
    echo "FAILED $(basename "$1"): members missing" >&2; exit 1;;
  *) exec "$@";;
esac
"""


@pytest.fixture(params=["bash", "sh"])
def fake_node(request, tmp_path):
    """Runs a script with fake cloud-init and sudo first in PATH, under the login shell kind."""
    shell = shutil.which(request.param)
    if shell is None:
        pytest.fail(f"{request.param} is not installed: the node scripts run under it on the VMs")
    for name, text in (("cloud-init", FAKE_CLOUD_INIT), ("sudo", FAKE_SUDO), ("findmnt", FAKE_FINDMNT)):
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        p.chmod(0o755)

    def run(script: str, **env: str) -> subprocess.CompletedProcess[str]:
        path = f"{tmp_path}:{os.environ['PATH']}"
        return subprocess.run(
            [shell, "-c", script], check=False, capture_output=True, text=True, env={"PATH": path, **env}, timeout=20
        )

    run.shell = shell  # type: ignore[attr-defined]
    return run


def test_scripts_pass_fail_and_say_where(harness, fake_node):
    s = harness("dev").settings()
    for script in (etcd_script(s, "etcd1"), patroni_script(s, "pg1")):
        assert subprocess.run([fake_node.shell, "-n", "-c", script], check=False).returncode == 0

    ok = fake_node(patroni_script(s, "pg1"))
    assert ok.returncode == 0, ok.stderr
    assert "OK pgha-check-etcd" in ok.stdout
    assert "OK pgha-check-patroni" in ok.stdout

    broken_boot = fake_node(etcd_script(s, "etcd2"), FAKE_CLOUD_INIT_RC="1", FAKE_CLOUD_INIT_STATUS="error")
    assert broken_boot.returncode == 1
    assert "pgha: cloud-init failed on etcd2" in broken_boot.stderr
    assert "package install failed" in broken_boot.stderr

    degraded = fake_node(etcd_script(s, "etcd2"), FAKE_CLOUD_INIT_RC="2")
    assert degraded.returncode == 0
    assert "recoverable errors" in degraded.stderr

    failed = fake_node(patroni_script(s, "pg3"), FAKE_CHECK_RC="1")
    assert failed.returncode == 1
    assert "FAILED pgha-check-etcd: members missing" in failed.stderr
    assert "pgha: pgha-check-etcd failed on pg3" in failed.stderr


def test_scripts_check_what_cloud_init_only_logs(harness, fake_node):
    """cloud-init 22.4 can say done while a module failed; the mount and the watchdog are
    checked explicitly, each failure naming the node and showing where to look."""
    s = harness("dev").settings()
    assert s.patroni.watchdog == "required"
    quiet_error = fake_node(etcd_script(s, "etcd1"), FAKE_CLOUD_INIT_STATUS="error")
    assert quiet_error.returncode == 1
    assert "pgha: cloud-init failed on etcd1" in quiet_error.stderr

    unmounted = fake_node(patroni_script(s, "pg2"), FAKE_FINDMNT_RC="1")
    assert unmounted.returncode == 1
    assert "/var/lib/postgresql is not a mounted volume" in unmounted.stderr
    assert "OK pgha-check" not in unmounted.stdout

    no_watchdog = fake_node(patroni_script(s, "pg2"), FAKE_WATCHDOG_RC="1")
    assert no_watchdog.returncode == 1
    assert "/dev/watchdog missing or not writable by postgres" in no_watchdog.stderr

    failed = fake_node(patroni_script(s, "pg3"), FAKE_CHECK_RC="1")
    assert "journal of pgha-patroni.service" in failed.stderr


def test_cloud_init_wait_is_bounded(fake_node):
    script = "\n".join(["set -u", *wait_for_cloud_init("etcd3", timeout=1), "echo reached"])
    p = fake_node(script, FAKE_CLOUD_INIT_SLEEP="5")
    assert p.returncode == 1
    assert "cloud-init still running after 1 s on etcd3" in p.stderr
    assert "reached" not in p.stdout
