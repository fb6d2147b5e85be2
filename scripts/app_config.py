"""Stack outputs (or a running lab) -> the PHP connector's config (clients/php).

    pulumi stack output --json --show-secrets | python scripts/app_config.py --stack-output - --out /etc/app/pg.json
    python scripts/app_config.py --lab RUN_DIR --out pg.json            # the lab, same outputs
    python scripts/app_config.py --stack-output out.json --out pg.json --via haproxy   # or lb, dns, primary-record

Writes three files side by side and never puts the password into the config:

    pg.json          hosts, dbname, user, sslmode, ... and "password_file": "pg.password"
    pg.password      the application password, mode 0600 (not written with --password-env)
    pg.ca.crt        the cluster CA (sslrootcert)

``deadline`` defaults to the stack's ``client_deadline`` output: Patroni's ttl + loop_wait
+ a margin (``pgha.timing.client_deadline``), so a node death does not surface an error
to a request in flight; ``connect_timeout`` (and ``deadline`` for an older stack without
that output) default to the clients' own defaults (``clients/php/defaults.json``, read
through ``pgha_client.defaults``).

Relative paths in the config are resolved by the connector against the config's
directory, so the three files move together. ``--via`` picks how the connector reaches
the primary (README "Connecting applications"): ``nodes`` (default) lists every node and lets libpq
find the primary (target_session_attrs=read-write, sslmode verify-full); ``haproxy``,
``lb``, ``dns`` and ``primary-record`` give one address in front of the primary, with
sslmode verify-ca because the server certificate names the node, not that address.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pgha_client import defaults

ROOT = Path(__file__).resolve().parent.parent
VIAS = ("nodes", "haproxy", "lb", "dns", "primary-record")
#: Stack outputs every config needs (pulumi stack output --json --show-secrets).
REQUIRED = ("libpq_dsn", "patroni_addresses", "app_user", "app_password", "ca_certificate")
#: Output holding the single address, per --via.
VIA_OUTPUT = {"haproxy": "haproxy_config", "lb": "lb_address", "dns": "dns_name", "primary-record": "dns_primary_name"}
DEFAULT_APPLICATION_NAME = "pgha-app"
#: Octavia's primary listener port (endpoint.load_balancer.primary_port default).
DEFAULT_LB_PORT = 5432


class AppConfigError(ValueError):
    """Every problem with the inputs, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("cannot build the connector config:\n" + "\n".join(f"  {p}" for p in problems))


def parse_conninfo(dsn: str) -> dict[str, str]:
    """``key=value ...`` (pgha's libpq_dsn never quotes values) -> dict."""
    out: dict[str, str] = {}
    for part in dsn.split():
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise AppConfigError([f"libpq_dsn: not a key=value item: {part!r}"])
        out[key] = value
    return out


def haproxy_primary_bind(haproxy_config: str) -> tuple[str, int]:
    """(address, port) of the ``listen pgha_primary`` section's bind line."""
    m = re.search(r"^listen pgha_primary\n(?:[ \t]+.*\n)*?[ \t]+bind (\S+):(\d+)\s*$", haproxy_config, re.MULTILINE)
    if not m:
        raise AppConfigError(["haproxy_config: no 'bind ADDRESS:PORT' in a 'listen pgha_primary' section"])
    return m.group(1), int(m.group(2))


def lab_outputs(run_dir: Path) -> dict[str, Any]:
    """A running lab's equivalent of the stack outputs (lab.json, secrets.json, ca.crt)."""
    sys.path.insert(0, str(ROOT))
    from cloud_init.endpoint import libpq_dsn
    from lab.rundir import open_lab
    from pgha.timing import client_deadline

    topo = open_lab(run_dir)
    return {
        "libpq_dsn": libpq_dsn(topo.settings, topo.plan),
        "patroni_addresses": list(topo.plan.addresses("patroni")),
        "app_user": topo.settings.patroni.app_user,
        "app_password": topo.passwords().app,
        "ca_certificate": topo.ca_file.read_text(),
        "haproxy_config": (run_dir / "haproxy" / "haproxy.cfg").read_text(),
        "client_deadline": client_deadline(topo.settings.patroni.ttl, topo.settings.patroni.loop_wait),
    }


def connector_config(
    outputs: Mapping[str, Any],
    via: str = "nodes",
    host: str | None = None,
    port: int | None = None,
    application_name: str = DEFAULT_APPLICATION_NAME,
    connect_timeout: int = defaults.CONNECT_TIMEOUT,
    deadline: float | None = None,
) -> dict[str, Any]:
    """The connector config, without any password key and without sslrootcert (the
    caller adds where it stored the secret and the CA). Raises with every problem.
    ``deadline``: None = the stack's ``client_deadline`` output (else the clients' default)."""
    problems: list[str] = []
    for name in REQUIRED:
        if outputs.get(name) in (None, "", []):
            problems.append(f"{name}: missing from the stack outputs (is the stack deployed?)")
    if outputs.get("app_password") == "[secret]":
        problems.append("app_password: shown as [secret]; run pulumi stack output --json --show-secrets")
    if via not in VIAS:
        problems.append(f"--via: must be one of {', '.join(VIAS)}, got {via!r}")
    elif via in VIA_OUTPUT and not outputs.get(VIA_OUTPUT[via]):
        hint = {
            "lb": "enable endpoint.load_balancer",
            "dns": "enable endpoint.dns",
            "primary-record": "enable endpoint.dns.primary_record",
            "haproxy": "an older stack without it?",
        }[via]
        problems.append(f"{VIA_OUTPUT[via]}: not in the stack outputs, needed by --via {via} ({hint})")
    if problems:
        raise AppConfigError(problems)
    params = parse_conninfo(outputs["libpq_dsn"])
    hosts = params.get("host", "").split(",")
    ports = [int(p) for p in params.get("port", "").split(",")] if params.get("port") else [defaults.PORT] * len(hosts)
    if hosts != list(outputs["patroni_addresses"]):
        problems.append(f"libpq_dsn: hosts {hosts} differ from patroni_addresses {list(outputs['patroni_addresses'])}")
    if len(ports) != len(hosts):
        problems.append(f"libpq_dsn: {len(hosts)} hosts but {len(ports)} ports")
    if params.get("user") != outputs["app_user"]:
        problems.append(f"libpq_dsn: user {params.get('user')!r} is not app_user {outputs['app_user']!r}")
    if "dbname" not in params:
        problems.append("libpq_dsn: no dbname")
    if problems:
        raise AppConfigError(problems)

    if via == "nodes":
        endpoints = [{"host": h, "port": port or p} for h, p in zip(hosts, ports, strict=True)]
        sslmode = "verify-full"  # each node's certificate carries its address
    else:
        if via == "haproxy":
            bind_host, bind_port = haproxy_primary_bind(outputs["haproxy_config"])
            single = {"host": host or bind_host, "port": port or bind_port}
        elif via == "lb":
            single = {"host": host or outputs["lb_address"], "port": port or DEFAULT_LB_PORT}
        else:
            single = {"host": host or outputs[VIA_OUTPUT[via]], "port": port or ports[0]}
        endpoints = [single]
        sslmode = "verify-ca"  # TLS is end to end to a node whose certificate names the node
    return {
        "hosts": endpoints,
        "dbname": params["dbname"],
        "user": outputs["app_user"],
        "sslmode": sslmode,
        "connect_timeout": connect_timeout,
        "deadline": deadline if deadline is not None else float(outputs.get("client_deadline") or defaults.DEADLINE),
        "application_name": application_name,
    }


def _write(path: Path, content: str, mode: int) -> None:
    """Atomic write with ``mode`` from the first byte (no window with a wider mode)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    tmp.replace(path)


def write_files(
    config: dict[str, Any], outputs: Mapping[str, Any], out: Path, password_env: str | None = None
) -> list[Path]:
    """Write config (0644), password (0600, unless password_env) and CA next to each other."""
    out.parent.mkdir(parents=True, exist_ok=True)
    ca = out.with_suffix(".ca.crt")
    written = []
    config = dict(config)
    if password_env:
        config["password_env"] = password_env
    else:
        pw = out.with_suffix(".password")
        _write(pw, str(outputs["app_password"]) + "\n", 0o600)
        config["password_file"] = pw.name
        written.append(pw)
    _write(ca, str(outputs["ca_certificate"]), 0o644)
    written.append(ca)
    config["sslrootcert"] = ca.name
    _write(out, json.dumps(config, indent=4) + "\n", 0o644)
    return [out, *written]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="app_config.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--stack-output", metavar="FILE", help="JSON of `pulumi stack output --json --show-secrets` ('-' = stdin)"
    )
    src.add_argument("--lab", metavar="RUN_DIR", type=Path, help="a lab run directory (lab.json, secrets.json, ca.crt)")
    ap.add_argument("--out", required=True, type=Path, help="config file to write (password and CA go next to it)")
    ap.add_argument(
        "--via", choices=VIAS, default="nodes", help="how to reach the primary (default: nodes, the multi-host DSN)"
    )
    ap.add_argument("--host", help="override the single address of --via haproxy/lb/dns/primary-record")
    ap.add_argument(
        "--port", type=int, help="override the port (haproxy: from its bind line; lb: 5432; others: the nodes' port)"
    )
    ap.add_argument(
        "--password-env", metavar="NAME", help="reference this environment variable instead of writing a password file"
    )
    ap.add_argument("--application-name", default=DEFAULT_APPLICATION_NAME)
    ap.add_argument(
        "--connect-timeout",
        type=int,
        default=defaults.CONNECT_TIMEOUT,
        help="seconds per host (default: %(default)s, the clients' default)",
    )
    ap.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds one connect()/run() may take in total (default: the stack's client_deadline output, "
        "ttl + loop_wait + margin; the clients' default, "
        f"{defaults.DEADLINE:g}, for a stack without it)",
    )
    args = ap.parse_args(argv)
    try:
        if args.lab:
            outputs = lab_outputs(args.lab)
        else:
            text = sys.stdin.read() if args.stack_output == "-" else Path(args.stack_output).read_text()
            outputs = json.loads(text)
            if not isinstance(outputs, dict):
                raise AppConfigError(["stack output: expected a JSON object (pulumi stack output --json)"])
        config = connector_config(
            outputs,
            via=args.via,
            host=args.host,
            port=args.port,
            application_name=args.application_name,
            connect_timeout=args.connect_timeout,
            deadline=args.deadline,
        )
        files = write_files(config, outputs, args.out, args.password_env)
    except AppConfigError as e:
        print(e, file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"app_config.py: {e}", file=sys.stderr)
        return 2
    hosts = ", ".join(f"{h['host']}:{h['port']}" for h in config["hosts"])
    print(f"wrote {', '.join(str(f) for f in files)} ({args.via}: {hosts}, sslmode {config['sslmode']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
