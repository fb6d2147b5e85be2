"""PostgreSQL's own description of its settings -> ``pgha/data/postgres-<major>-settings.json``.

    .venv/bin/python scripts/pg_settings_data.py            # regenerate the committed file
    .venv/bin/python scripts/pg_settings_data.py --check    # exit 1 if it differs from the installed server

The loader (``pgha/postgres_parameters.py``) checks ``patroni.parameters`` against this
file: names, types, units, ranges, enum values, contexts. It is generated, never
edited by hand, so a new PostgreSQL minor release that changes a setting shows up as a
diff (``tests/tools/test_postgres_parameters.py`` fails until the file is regenerated).

Where it comes from: ``postgres --describe-config`` prints names, contexts, types and
ranges but neither units (is ``shared_buffers`` counted in 8 kB pages or bytes?) nor enum
values, and it leaves out developer and preset settings. ``pg_settings`` of the same
binary has all of them, so the script initdb's a throwaway cluster in a temporary
directory, starts it on a Unix socket only (``listen_addresses=''``), reads
``pg_settings`` and stops it. PostgreSQL refuses to run as root: as root, the script runs
the binaries as the lab user (``PGHA_LAB_USER``, default ``pgha``, created by
``scripts/setup.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "pgha" / "data"
LAB_USER = os.environ.get("PGHA_LAB_USER", "pgha")

QUERY = """
select json_agg(json_build_object(
    'name', name, 'type', vartype, 'context', context, 'unit', unit,
    'min', min_val, 'max', max_val, 'enum', enumvals) order by name)
from pg_settings
"""


def data_path(major: int) -> Path:
    return DATA_DIR / f"postgres-{major}-settings.json"


def _as_user(argv: list[str]) -> list[str]:
    """``argv`` run as the lab user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", LAB_USER, "--", *argv]


def _run(program: Path, *args: str) -> str:
    """Run a PostgreSQL program (as the lab user when root); its stdout, or raise with its stderr."""
    p = subprocess.run(_as_user([str(program), *args]), check=False, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{program.name} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def _number(vartype: str, text: str | None) -> int | float | None:
    if text is None:
        return None
    return int(text) if vartype == "integer" else float(text)


def describe(major: int) -> dict[str, Any]:
    """The settings of the installed PostgreSQL ``major``, as committed in the data file."""
    bin_dir = Path(f"/usr/lib/postgresql/{major}/bin")
    if not (bin_dir / "postgres").exists():
        raise SystemExit(f"{bin_dir}/postgres not found: run scripts/setup.sh (it installs PostgreSQL {major})")
    version = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="pgha-pg-settings-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(tmp, LAB_USER)
        data, sock = tmp / "data", str(tmp)
        _run(bin_dir / "initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        opts = f"-c listen_addresses='' -k {sock} -c fsync=off"
        _run(bin_dir / "pg_ctl", "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start")
        try:
            out = _run(bin_dir / "psql", "-h", sock, "-U", "postgres", "-d", "postgres", "-At", "-c", QUERY)
        finally:
            _run(bin_dir / "pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    settings: dict[str, dict[str, Any]] = {}
    for row in json.loads(out):
        entry: dict[str, Any] = {"type": row["type"], "context": row["context"]}
        if row["unit"]:
            entry["unit"] = row["unit"]
        if row["type"] in ("integer", "real"):
            entry["min"] = _number(row["type"], row["min"])
            entry["max"] = _number(row["type"], row["max"])
        if row["enum"]:
            entry["enum"] = row["enum"]
        settings[row["name"]] = entry
    return {"postgres_major": major, "generated_from": version, "settings": settings}


def render(doc: dict[str, Any]) -> str:
    """JSON with one line per setting, so a regenerated file reviews as a line diff."""
    lines = [
        "{",
        '  "source": "pg_settings of a throwaway cluster of the installed server: scripts/pg_settings_data.py",',
        f'  "postgres_major": {doc["postgres_major"]},',
        f'  "generated_from": {json.dumps(doc["generated_from"])},',
        '  "settings": {',
    ]
    items = sorted(doc["settings"].items())
    for i, (name, entry) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"    {json.dumps(name)}: {json.dumps(entry, separators=(', ', ': '))}{comma}")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--major", type=int, default=15, help="PostgreSQL major version (default 15)")
    parser.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = parser.parse_args(argv)
    path = data_path(args.major)
    doc = describe(args.major)
    if args.check:
        committed = json.loads(path.read_text())
        if committed["settings"] != doc["settings"]:
            print(f"{path} differs from {doc['generated_from']}: run scripts/pg_settings_data.py", file=sys.stderr)
            return 1
        print(f"{path.name} matches {doc['generated_from']}")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(doc))
    print(f"wrote {path} ({len(doc['settings'])} settings, {doc['generated_from']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
