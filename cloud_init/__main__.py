"""``python -m cloud_init render --stack dev --out DIR``: what every VM will receive.

Writes, per node, ``user-data`` (the exact #cloud-config) and ``files/<path>`` (each
file it installs), with obviously fake placeholder secrets, plus ``haproxy.cfg`` for
application hosts. A broken stack file prints every problem and writes nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from pgha.secrets import (
    FAKE_CA,
    EtcdNodeSecrets,
    PatroniNodeSecrets,
    fake_backup_secrets,
    fake_host_key,
    fake_keypair,
    fake_ovh_api_credentials,
    fake_passwords,
)
from pgha.settings import ROOT, Settings, SettingsError, load_stack_file
from pgha.target import Target

from .endpoint import render_haproxy
from .monitoring import render_monitoring_node
from .render import render_cluster


def fake_render(settings: Settings) -> dict[str, str]:
    """Relative path -> content for every rendered artefact of a stack."""
    target = Target.vm(settings)
    etcd = {n.name: EtcdNodeSecrets(FAKE_CA, fake_keypair(n.name), fake_host_key(n.name)) for n in target.plan.etcd}
    pg = {
        n.name: PatroniNodeSecrets(
            FAKE_CA,
            fake_keypair(f"{n.name}-server"),
            fake_keypair(f"{n.name}-etcd-client"),
            fake_passwords(),
            dns_api=fake_ovh_api_credentials() if settings.endpoint.dns.primary_record else None,
            host_key=fake_host_key(n.name),
            backup=fake_backup_secrets() if settings.backup.enabled else None,
        )
        for n in target.plan.patroni
    }
    nodes = render_cluster(settings, target, etcd, pg)
    if settings.monitoring.enabled:
        smtp = "FAKE-smtp-password" if settings.monitoring.alertmanager.smtp_username else None
        nodes.append(render_monitoring_node(settings, target, FAKE_CA, smtp, fake_host_key("monitoring")))
    out: dict[str, str] = {}
    for node in nodes:
        out[f"{node.role}/{node.name}/user-data"] = node.user_data
        for f in node.files:
            out[f"{node.role}/{node.name}/files{f.path}"] = f.content
    out["haproxy/haproxy.cfg"] = render_haproxy(settings, target)
    return out


def write_tree(files: dict[str, str], out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    for rel, content in sorted(files.items()):
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m cloud_init", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="render every node's user-data and files for a stack")
    r.add_argument("--stack", default="dev")
    r.add_argument("--out", required=True, type=Path, help="output directory (replaced)")
    r.add_argument("--root", type=Path, default=ROOT, help="directory holding Pulumi.<stack>.yaml")
    args = ap.parse_args(argv)
    try:
        settings = load_stack_file(args.stack, args.root)
    except SettingsError as e:
        print(f"Pulumi.{args.stack}.yaml: {e}", file=sys.stderr)
        return 2
    files = fake_render(settings)
    write_tree(files, args.out)
    n = sum(1 for k in files if k.endswith("/user-data"))
    print(f"rendered {n} nodes of stack {args.stack} into {args.out} (placeholder secrets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
