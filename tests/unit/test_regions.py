"""network.region: OVH's real region names pass, anything else fails with its path."""

from __future__ import annotations

import pytest

from pgha.settings import SettingsError, load
from tests.unit.test_settings import with_

pytestmark = pytest.mark.unit

OVH_REGIONS = [
    "GRA11", "GRA9", "SBG5", "BHS5", "DE1", "UK1", "WAW1", "SGP1", "SYD1",
    "EU-WEST-PAR", "EU-SOUTH-MIL", "CA-EAST-TOR", "US-EAST-VA-1", "US-WEST-OR-1",
    "AP-SOUTHEAST-SYD-1", "AP-SOUTH-MUM-1", "EU-WEST-LZ-LUX-A",
]  # fmt: skip


@pytest.mark.parametrize("region", OVH_REGIONS)
def test_ovh_regions_are_accepted(region: str) -> None:
    assert load("test", with_({"network.region": region})).network.region == region


@pytest.mark.parametrize(
    "region, hint",
    [
        ("gra11", "uppercase: write GRA11"),
        ("eu-west-par", "uppercase: write EU-WEST-PAR"),
        ("GRA", "not an OVH region name"),
        ("EU-WEST-", "not an OVH region name"),
        ("US_EAST_VA_1", "not an OVH region name"),
        ("gra 11", "not an OVH region name"),
    ],
)
def test_other_names_are_refused_with_a_hint(region: str, hint: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load("test", with_({"network.region": region}))
    assert exc.value.paths == {"network.region"}
    assert hint in str(exc.value)
