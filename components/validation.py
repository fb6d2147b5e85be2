"""Validation: prove the deployed cluster works before ``pulumi up`` reports success.

One ``pulumi_command.remote.Command`` per node, over SSH with the deploy key (through
the bastion when there is one). Each waits for cloud-init to finish, then runs the
check script the renderer installed on the node:

- etcd members: ``pgha-check-etcd`` (every member started, every endpoint healthy);
- Patroni nodes, after every etcd check passed: ``pgha-check-etcd`` with the node's
  client certificate, then ``pgha-check-patroni`` (all members present, one leader,
  replicas streaming; on the leader, pg_stat_replication and the synchronous standby).

A failing check fails the deployment with the script's message, prefixed with the
node. Commands re-run when any instance of their cluster is replaced (triggers).
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_openstack as openstack

from pgha.settings import Settings
from pgha.target import vm_layout

from .access import SSH_USER

TYPE = "pgha:index:Validation"
ETCD_WAIT_SECONDS = 600
PATRONI_WAIT_SECONDS = 900
#: Seconds the validation waits for cloud-init (packages, pip install of Patroni) on a node.
CLOUD_INIT_WAIT_SECONDS = 1200
#: SSH dial retries while VMs boot: up to ~DIAL_ERROR_LIMIT * (PER_DIAL_TIMEOUT + backoff).
DIAL_ERROR_LIMIT = 60
PER_DIAL_TIMEOUT = 10


def fail(node: str, what: str, *diagnostics: str) -> list[str]:
    """Shell lines: print what failed on the node, then diagnostics (each may fail), exit 1."""
    return [f'  echo "pgha: {what} on {node}" >&2', *(f"  {d} >&2 2>&1 || true" for d in diagnostics), "  exit 1"]


CLOUD_INIT_LOGS = ("cloud-init status --long", "sudo tail -n 30 /var/log/cloud-init-output.log")


def wait_for_cloud_init(node: str, timeout: int = CLOUD_INIT_WAIT_SECONDS) -> list[str]:
    """Shell lines: wait (bounded) for cloud-init; fail with its status and log tail if it
    failed or is still running. Debian 12's cloud-init (22.4) returns only 0 or 1 from
    ``status --wait``; its status is also asked for explicitly."""
    return [
        f"rc=0; timeout {timeout} cloud-init status --wait >/dev/null || rc=$?",
        'if [ "$rc" -eq 124 ]; then',
        *fail(node, f"cloud-init still running after {timeout} s", *CLOUD_INIT_LOGS),
        'elif [ "$rc" -eq 2 ]; then',
        f'  echo "pgha: cloud-init on {node} finished with recoverable errors (see /var/log/cloud-init.log)" >&2',
        'elif [ "$rc" -ne 0 ] || cloud-init status --long 2>/dev/null | grep -q "^status: error"; then',
        *fail(node, "cloud-init failed", *CLOUD_INIT_LOGS),
        "fi",
    ]


def check_line(node: str, os_user: str, script: str, config: str, wait: int, unit: str) -> str:
    """Run a check script as the service's user; on failure say where and show the unit's journal."""
    cmd = shlex.join(["sudo", "-u", os_user, script, "--config", config, "--wait", str(wait)])
    journal = shlex.join(["sudo", "journalctl", "-u", unit, "-n", "30", "--no-pager"])
    return (
        f'{cmd} || {{ echo "pgha: {posixpath.basename(script)} failed on {node}; last lines of {unit}:" >&2; '
        f"{journal} >&2 2>&1 || true; exit 1; }}"
    )


def etcd_script(settings: Settings, node: str) -> str:
    lay = vm_layout(settings.patroni.postgres_version)
    script, config = f"{lay.bin_dir}/pgha-check-etcd", f"{lay.etc_dir}/check.json"
    check = check_line(node, lay.etcd_os_user, script, config, ETCD_WAIT_SECONDS, "pgha-etcd.service")
    return "\n".join(["set -u", *wait_for_cloud_init(node), check, ""])


def patroni_script(settings: Settings, node: str) -> str:
    lay = vm_layout(settings.patroni.postgres_version)
    config = f"{lay.etc_dir}/check.json"
    unit = "pgha-patroni.service"
    lines = ["set -u", *wait_for_cloud_init(node)]
    # What cloud-init only logs: the data volume mounted, the watchdog there when required.
    lines += [
        f"if ! findmnt -n {shlex.quote(lay.data_mount)} >/dev/null; then",
        *fail(
            node,
            f"{lay.data_mount} is not a mounted volume (data volume not attached or not formatted)",
            "lsblk",
            "ls -l /dev/disk/by-id/",
            "sudo grep -iE 'fs_setup|mounts|disk_setup' /var/log/cloud-init.log | tail -n 20",
        ),
        "fi",
    ]
    if settings.patroni.watchdog == "required":
        lines += [
            f"if ! sudo -u {lay.pg_os_user} test -w /dev/watchdog; then",
            *fail(
                node,
                f"/dev/watchdog missing or not writable by {lay.pg_os_user} (patroni.watchdog: required)",
                "ls -l /dev/watchdog /dev/watchdog0",
                "lsmod | grep -i dog",
            ),
            "fi",
        ]
    lines += [
        check_line(node, lay.pg_os_user, f"{lay.bin_dir}/pgha-check-etcd", config, ETCD_WAIT_SECONDS, unit),
        check_line(node, lay.pg_os_user, f"{lay.bin_dir}/pgha-check-patroni", config, PATRONI_WAIT_SECONDS, unit),
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class ValidationArgs:
    settings: Settings
    """Validated stack settings: node names, addresses and the on-node layout."""
    private_key: pulumi.Input[str]
    """OpenSSH private key of the deploy key (secret); its public half is in every node's cloud-init."""
    bastion_ip: pulumi.Input[str] | None
    """Public address of the bastion to jump through; None: connect to nodes directly."""
    etcd_instances: Sequence[openstack.compute.Instance]
    """etcd member instances, in plan order."""
    patroni_instances: Sequence[openstack.compute.Instance]
    """Patroni node instances, in plan order."""
    etcd_host_keys: Sequence[pulumi.Input[str]]
    """etcd members' SSH host keys (public), in plan order: pinned, never trust-on-first-use."""
    patroni_host_keys: Sequence[pulumi.Input[str]]
    """Patroni nodes' SSH host keys (public), in plan order."""
    bastion_host_key: pulumi.Input[str] | None
    """The bastion's SSH host key (public); None without a bastion."""


class Validation(pulumi.ComponentResource):
    """Remote checks on every node; fails ``pulumi up`` with the failing node's message."""

    reports: dict[str, pulumi.Output[str]]
    """Node name -> what its checks printed (the ``OK ...`` lines)."""

    def __init__(self, name: str, args: ValidationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        s = args.settings
        plan = s.plan
        self.commands: dict[str, command.remote.Command] = {}

        etcd_ids = [i.id for i in args.etcd_instances]
        etcd_cmds = []
        for node, inst, key in zip(plan.etcd, args.etcd_instances, args.etcd_host_keys, strict=True):
            etcd_cmds.append(
                self._command(name, node.name, node.address, key, etcd_script(s, node.name), etcd_ids, [inst], args)
            )

        patroni_ids = [i.id for i in args.patroni_instances]
        for node, inst, key in zip(plan.patroni, args.patroni_instances, args.patroni_host_keys, strict=True):
            script = patroni_script(s, node.name)
            self._command(name, node.name, node.address, key, script, patroni_ids, [inst, *etcd_cmds], args)

        self.reports = {node: cmd.stdout for node, cmd in self.commands.items()}
        self.register_outputs({"reports": self.reports})

    def _command(
        self,
        name: str,
        node: str,
        address: str,
        host_key: pulumi.Input[str],
        script: str,
        triggers: list[pulumi.Output[str]],
        depends_on: list[pulumi.Resource],
        args: ValidationArgs,
    ) -> command.remote.Command:
        proxy = None
        if args.bastion_ip is not None:
            proxy = command.remote.ProxyConnectionArgs(
                host=args.bastion_ip,
                user=SSH_USER,
                private_key=args.private_key,
                host_key=args.bastion_host_key,
                dial_error_limit=DIAL_ERROR_LIMIT,
                per_dial_timeout=PER_DIAL_TIMEOUT,
            )
        cmd = command.remote.Command(
            f"{name}-{node}",
            connection=command.remote.ConnectionArgs(
                host=address,
                user=SSH_USER,
                private_key=args.private_key,
                host_key=host_key,
                dial_error_limit=DIAL_ERROR_LIMIT,
                per_dial_timeout=PER_DIAL_TIMEOUT,
                proxy=proxy,
            ),
            create=script,
            triggers=triggers,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=depends_on, custom_timeouts=pulumi.CustomTimeouts(create="30m")
            ),
        )
        self.commands[node] = cmd
        return cmd
