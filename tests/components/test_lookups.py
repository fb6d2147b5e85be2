"""A flavor or image the region does not have fails the program before any resource is
registered, naming its config key (components/lookups.py, called first by __main__)."""

from __future__ import annotations

import pytest

from pgha.settings import SettingsError

from .test_stack import run_main

pytestmark = pytest.mark.components


@pytest.mark.parametrize(
    "stack, missing, paths",
    [
        pytest.param("dev", {"b3-8"}, {"patroni.flavor"}, id="patroni-flavor"),
        pytest.param("dev", {"d2-4"}, {"etcd.flavor", "monitoring.flavor"}, id="etcd-and-monitoring-flavor"),
        pytest.param("dev", {"Debian 12"}, {"etcd.image", "patroni.image"}, id="image"),
        pytest.param("prod", {"d2-2"}, {"access.bastion.flavor"}, id="bastion-flavor"),
        pytest.param("prod", {"small"}, {"endpoint.load_balancer.flavor"}, id="lb-flavor"),
        pytest.param("prod", {"b3-8", "b3-32", "small"}, {
            "etcd.flavor", "patroni.flavor", "endpoint.load_balancer.flavor"}, id="all-at-once"),
    ],
)  # fmt: skip
def test_unknown_name_fails_before_anything_is_created(harness, stack, missing, paths):
    h = harness(stack)
    h.set_stack_config(h.stack_yaml())
    h.mocks.missing = missing
    with pytest.raises(SettingsError) as e:
        run_main(h)
    assert e.value.paths == paths, str(e.value)
    for name in missing:
        assert repr(name) in str(e.value)
    assert h.resources == [], [r.urn for r in h.resources]


def test_known_names_pass(harness):
    h = harness("prod")
    h.set_stack_config(h.stack_yaml())
    run_main(h)
    looked_up = {c for c in h.mocks.calls if c[0].endswith(("getFlavor", "getImage", "getFlavorV2"))}
    assert ("openstack:compute/getFlavor:getFlavor", "b3-32", "GRA11") in looked_up


@pytest.mark.parametrize(
    "flavor, region_ram, warned",
    [
        pytest.param("x9-4", 4000, False, id="flavor-unknown-to-the-table"),
        pytest.param("b3-8", 2000, True, id="table-differs-from-the-region"),
    ],
)
def test_shared_buffers_checked_against_the_ram_the_region_reports(harness, monkeypatch, flavor, region_ram, warned):
    h = harness("dev")
    doc = h.stack_yaml()
    doc["config"]["pgha:patroni"]["flavor"] = flavor
    doc["config"]["pgha:patroni"]["parameters"]["shared_buffers"] = "6GB"
    h.set_stack_config(doc)
    h.mocks.flavor_ram[flavor] = region_ram
    warnings: list[str] = []
    monkeypatch.setattr("components.lookups.pulumi.log.warn", lambda msg, *a, **k: warnings.append(msg))
    with pytest.raises(SettingsError) as e:
        run_main(h)
    assert e.value.paths == {"patroni.parameters.shared_buffers"}, str(e.value)
    assert f"({region_ram} MiB of RAM)" in str(e.value)
    assert h.resources == []
    assert any("update the table" in w for w in warnings) == warned, warnings
