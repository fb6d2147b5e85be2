"""Regenerate the configuration table (docs/configuration.md) from the settings schema.

python scripts/readme_config.py          # rewrite docs/configuration.md between the markers
python scripts/readme_config.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgha.settings import describe_schema

README = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"


def table() -> str:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    rows += [f"| `{k}` | {t} | {d} | {doc} |" for k, t, d, doc in describe_schema()]
    return "\n".join(rows)


def main() -> int:
    text = README.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if "--check" in sys.argv:
        return 0 if new == text else 1
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
