"""Memory settings against the OVH flavor's RAM (pgha/data/ovh-flavors.json): what cannot
start is an error with its path, what is unwise or unknown a warning at preview."""

from __future__ import annotations

from typing import Any

import pytest

from pgha.flavors import flavor_ram_mib, memory_problems, memory_warnings
from pgha.settings import SettingsError, load
from tests.unit.test_settings import with_

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "flavor,params,paths",
    [
        pytest.param("b3-8", {"shared_buffers": "64GB"}, {"patroni.parameters.shared_buffers"}, id="64GB on 8GB"),
        pytest.param("d2-2", {"shared_buffers": "2000MB"}, {"patroni.parameters.shared_buffers"}, id="exactly the RAM"),
        pytest.param("b3-8", {"huge_pages": "on"}, {"patroni.parameters.huge_pages"}, id="huge pages without reserve"),
        pytest.param(
            "d2-2",
            {"huge_pages": "ON", "shared_buffers": "4GB"},
            {"patroni.parameters.huge_pages", "patroni.parameters.shared_buffers"},
            id="both at once",
        ),
    ],
)
def test_what_cannot_start_is_rejected_with_its_path(flavor: str, params: dict[str, Any], paths: set[str]) -> None:
    with pytest.raises(SettingsError) as exc:
        load("test", with_({"patroni.flavor": flavor, "patroni.parameters": params}))
    assert exc.value.paths == paths, str(exc.value)


def test_the_message_names_the_flavor_and_a_fix() -> None:
    ((path, msg),) = memory_problems("b3-8", {"shared_buffers": "64GB"}, 15)
    assert path == "patroni.parameters.shared_buffers"
    assert "patroni.flavor b3-8 (8000 MiB of RAM)" in msg
    assert "2000 MB" in msg


@pytest.mark.parametrize(
    "flavor,params",
    [
        ("b3-8", {"shared_buffers": "2GB"}),
        ("b3-8", {}),  # PostgreSQL's default 128MB
        ("d2-2", {"shared_buffers": "1900MB"}),  # starts; a warning, not an error
        ("x9-1", {"shared_buffers": "64GB"}),  # unknown flavor: not blocked
        ("b3-8", {"huge_pages": "try"}),
    ],
)
def test_what_starts_is_accepted(flavor: str, params: dict[str, Any]) -> None:
    assert memory_problems(flavor, params, 15) == []
    load("test", with_({"patroni.flavor": flavor, "patroni.parameters": params}))


def test_warnings() -> None:
    assert [p for p, _ in memory_warnings("b3-8", {"shared_buffers": "4GB"}, 15)] == [
        "patroni.parameters.shared_buffers"
    ]
    assert memory_warnings("b3-8", {"shared_buffers": "2GB", "effective_cache_size": "6GB"}, 15) == []
    assert [p for p, _ in memory_warnings("b3-8", {"effective_cache_size": "16GB"}, 15)] == [
        "patroni.parameters.effective_cache_size"
    ]
    ((path, msg),) = memory_warnings("x9-1", {}, 15)
    assert path == "patroni.flavor"
    assert "not in pgha's table" in msg


def test_table_covers_the_families_and_the_committed_stacks() -> None:
    table = flavor_ram_mib()
    for family in ("b2", "b3", "c2", "c3", "r2", "r3", "d2"):
        assert any(name.startswith(f"{family}-") for name in table), family
    # An OVH flavor's name carries its RAM in GB; Nova reports GB x 1000 MiB.
    for name, mib in table.items():
        assert mib == int(name.split("-")[1]) * 1000, name
    for flavor in ("b3-8", "b3-32", "d2-4", "d2-2"):  # Pulumi.dev.yaml, Pulumi.prod.yaml, defaults
        assert flavor in table
