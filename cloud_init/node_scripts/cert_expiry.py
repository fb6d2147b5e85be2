#!/usr/bin/env python3
"""pgha-cert-expiry: write the expiry time of TLS certificates as a node-exporter textfile metric.

Usage: pgha-cert-expiry --out /var/lib/prometheus/node-exporter/pgha-certificates.prom CERT...

Writes ``pgha_certificate_expiry_timestamp_seconds{path="..."} <unix time>`` for each
certificate (``openssl x509 -enddate``), atomically (a temporary file, then rename), so
node-exporter never reads half a file. A certificate it cannot read is reported as
``pgha_certificate_read_error{path}`` 1 rather than dropped silently. Installed verbatim by
cloud_init (monitoring); run hourly by a systemd timer, and by the lab at start.
"""

from __future__ import annotations

import argparse
import calendar
import os
import subprocess
import sys
import time
from pathlib import Path


def not_after(path: str) -> float | None:
    p = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", path], check=False, capture_output=True, text=True
    )
    if p.returncode != 0 or not p.stdout.startswith("notAfter="):
        return None
    # e.g. notAfter=Nov 27 20:30:00 2027 GMT
    return float(calendar.timegm(time.strptime(p.stdout.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")))


def render(paths: list[str]) -> str:
    lines = [
        "# HELP pgha_certificate_expiry_timestamp_seconds Unix time the certificate expires.",
        "# TYPE pgha_certificate_expiry_timestamp_seconds gauge",
    ]
    errors = []
    for path in paths:
        when = not_after(path)
        if when is None:
            errors.append(path)
        else:
            lines.append(f'pgha_certificate_expiry_timestamp_seconds{{path="{path}"}} {when:.0f}')
    lines += [
        "# HELP pgha_certificate_read_error 1 if the certificate could not be read.",
        "# TYPE pgha_certificate_read_error gauge",
    ]
    lines += [f'pgha_certificate_read_error{{path="{p}"}} 1' for p in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="the .prom file in node-exporter's textfile directory")
    ap.add_argument("certs", nargs="+")
    args = ap.parse_args(argv)
    text = render(args.certs)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
