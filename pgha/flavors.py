"""OVH flavors' memory, and the PostgreSQL memory settings that cannot fit it.

The table is data (``pgha/data/ovh-flavors.json``, with its source and the date it was
checked). What is refused is what surely cannot start, so no working stack is ever
refused on a heuristic:

- ``shared_buffers`` at or above the flavor's RAM: PostgreSQL maps its shared memory in
  one piece at start; the kernel refuses a mapping larger than RAM (OVH images have no
  swap) and the postmaster exits with "could not map anonymous shared memory".
- ``huge_pages: on``: the nodes reserve no huge pages (``vm.nr_hugepages`` is 0 on
  Debian's cloud image), so the same mapping fails; ``try`` falls back to normal pages.

What starts but is unwise is a warning at ``pulumi preview`` (:func:`memory_warnings`,
shown by ``components/config.py``): ``shared_buffers`` above 40 % of RAM (PostgreSQL's
documentation: 25 % is the usual start, more than 40 % is unlikely to help, and the rest
is needed by connections, maintenance and the OS page cache the planner counts on),
``effective_cache_size`` above the RAM, and a flavor missing from the table (OVH adds
families; the flavor lookup at preview proves the name exists, so it is not blocked).
Never imports pulumi.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .postgres_parameters import parameter_bytes

DATA = Path(__file__).resolve().parent / "data" / "ovh-flavors.json"
MIB = 1024**2
#: PostgreSQL's own default shared_buffers.
DEFAULT_SHARED_BUFFERS = "128MB"
#: Above this share of RAM, shared_buffers is a warning (PostgreSQL docs, "Resource Consumption").
SHARED_BUFFERS_WARN = 0.40


@functools.cache
def flavor_ram_mib() -> dict[str, int]:
    """flavor name -> RAM in MiB, as Nova reports it."""
    doc = json.loads(DATA.read_text())
    table: dict[str, int] = doc["ram_mib"]
    return table


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


def memory_problems(
    flavor: str | None, parameters: Mapping[str, Any], major: int, ram_mib: int | None = None
) -> list[tuple[str, str]]:
    """Memory settings that cannot start on ``flavor`` (``patroni.flavor``), with their paths;
    ``ram_mib``: the flavor's RAM as the cloud reports it (default: the table's)."""
    problems: list[tuple[str, str]] = []
    if str(parameters.get("huge_pages", "")).strip().lower() == "on":
        problems.append(
            (
                "patroni.parameters.huge_pages",
                (
                    "on: the nodes reserve no huge pages (vm.nr_hugepages is 0), so PostgreSQL would refuse to start; "
                    "use try (the default) to use them when available"
                ),
            )
        )
    ram = ram_mib if ram_mib is not None else flavor_ram_mib().get(flavor or "")
    value = parameters.get("shared_buffers", DEFAULT_SHARED_BUFFERS)
    shared = parameter_bytes("shared_buffers", value, major)
    if ram is not None and shared is not None and shared >= ram * MIB:
        problems.append(
            (
                "patroni.parameters.shared_buffers",
                (
                    f"{value} ({_gib(shared)}) cannot fit patroni.flavor {flavor} ({ram} MiB of RAM): PostgreSQL "
                    f"could not map its shared memory and would not start; about 25 % of RAM "
                    f"({ram // 4} MB) is the usual value, or choose a larger flavor"
                ),
            )
        )
    return problems


def memory_warnings(flavor: str, parameters: Mapping[str, Any], major: int) -> list[tuple[str, str]]:
    """What starts on ``flavor`` but is unwise, or cannot be checked, with its path."""
    ram = flavor_ram_mib().get(flavor)
    if ram is None:
        return [
            (
                "patroni.flavor",
                (
                    f"{flavor} is not in pgha's table of OVH flavors (pgha/data/ovh-flavors.json): only "
                    "shared_buffers is checked, against the RAM the flavor lookup reports; add it to the table"
                ),
            )
        ]
    warnings: list[tuple[str, str]] = []
    value = parameters.get("shared_buffers", DEFAULT_SHARED_BUFFERS)
    shared = parameter_bytes("shared_buffers", value, major)
    if shared is not None and SHARED_BUFFERS_WARN * ram * MIB < shared < ram * MIB:
        warnings.append(
            (
                "patroni.parameters.shared_buffers",
                (
                    f"{value} is {shared / (ram * MIB):.0%} of {flavor}'s RAM: above 40 % the rest may not cover "
                    "connections, maintenance and the page cache (the kernel's OOM killer ends PostgreSQL, "
                    "a failover follows); about 25 % is the usual value"
                ),
            )
        )
    cache = parameters.get("effective_cache_size")
    cache_bytes = None if cache is None else parameter_bytes("effective_cache_size", cache, major)
    if cache_bytes is not None and cache_bytes > ram * MIB:
        warnings.append(
            (
                "patroni.parameters.effective_cache_size",
                (
                    f"{cache} is more than {flavor}'s RAM ({ram} MiB): the planner would count on cache that "
                    "does not exist"
                ),
            )
        )
    return warnings
