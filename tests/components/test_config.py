"""components/config.py: the engine's config -> validated settings, every problem at once."""

from __future__ import annotations

import json

import pytest

from components.config import CLOUD_PROJECT_ENV, NO_BACKUP_WARNING, ROLL_ENV, load_stack_config
from pgha.settings import SettingsError, load_stack_file

from .mocks import PROJECT_ID

pytestmark = pytest.mark.components


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_load_like_the_offline_loader(harness, stack):
    h = harness(stack)
    h.set_stack_config(h.stack_yaml())
    cfg = load_stack_config()
    assert cfg.settings == h.settings()
    assert cfg.cloud_project == PROJECT_ID


def test_config_from_the_language_host_environment(harness, monkeypatch):
    """The real engine passes config as JSON in PULUMI_CONFIG; unknown keys are seen there too."""
    h = harness("dev")
    doc = h.stack_yaml()["config"]
    env = {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(env))
    assert load_stack_config().settings == h.settings()
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({**env, "pgha:patroini": "{}"}))
    with pytest.raises(SettingsError) as e:
        load_stack_config()
    assert e.value.paths == {"patroini"}


def _dev_with(h, **sections):
    doc = h.stack_yaml()
    for key, value in sections.items():
        if value is None:
            doc["config"].pop(f"pgha:{key}")
        else:
            doc["config"][f"pgha:{key}"] = value
    return doc


CASES = [
    # (id, changes to Pulumi.dev.yaml's pgha sections, env project id, expected failing paths)
    ("typo-section", {"patroini": {"nodes": 3}}, PROJECT_ID, {"patroini"}),
    ("typo-key", {"etcd": {"member": 3}}, PROJECT_ID, {"etcd.member"}),
    ("even-etcd", {"etcd": {"members": 2}}, PROJECT_ID, {"etcd.members"}),
    ("section-not-object", {"network": "10.42.0.0/24"}, PROJECT_ID, {"network", "network.region", "network.cidr"}),
    ("missing-access", {"access": None}, PROJECT_ID, {"access.ssh_public_keys", "access.admin_cidrs"}),
    ("no-project", {}, "", {CLOUD_PROJECT_ENV}),
    ("bad-project", {}, "my-project", {CLOUD_PROJECT_ENV}),
    (
        "everything-at-once",
        {"etcd": {"members": 4}, "patroini": {}, "patroni": {"app_cidrs": ["0.0.0.0/0"]}},
        "",
        {"etcd.members", "patroini", "patroni.app_cidrs[0]", CLOUD_PROJECT_ENV},
    ),
]


@pytest.mark.parametrize("changes, project, paths", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_lists_every_problem(harness, monkeypatch, changes, project, paths):
    h = harness("dev")
    monkeypatch.setenv(CLOUD_PROJECT_ENV, project)
    h.set_stack_config(_dev_with(h, **changes))
    with pytest.raises(SettingsError) as e:
        load_stack_config()
    assert e.value.paths == paths, str(e.value)
    assert str(e.value).startswith(f"stack config has {len(e.value.problems)} problem")


def test_nodes_to_roll(harness, monkeypatch):
    h = harness("prod")
    h.set_stack_config(h.stack_yaml())
    assert load_stack_config().roll == frozenset()
    monkeypatch.setenv(ROLL_ENV, "pg2, etcd3")
    assert load_stack_config().roll == {"pg2", "etcd3"}
    monkeypatch.setenv(ROLL_ENV, "pg2,bastion")
    assert load_stack_config().roll == {"pg2", "bastion"}, "the bastion rolls like a node"
    monkeypatch.setenv(ROLL_ENV, "pg2,pg9,etcd7")
    with pytest.raises(SettingsError) as e:
        load_stack_config()
    assert e.value.paths == {ROLL_ENV}
    assert "unknown node(s) etcd7, pg9; nodes of this stack: etcd1, etcd2, etcd3, pg1, pg2, pg3, bastion" in str(
        e.value
    )


@pytest.mark.parametrize(
    "stack, paths",
    [
        ("dev", {"access.admin_cidrs[0]", "access.ssh_public_keys[0]"}),
        ("prod", {"access.admin_cidrs[0]", "access.ssh_public_keys[0]", "endpoint.dns.zone"}),
    ],
)
def test_committed_example_values_fail_at_preview(harness, stack, paths):
    """Pulumi.<stack>.yaml as committed (documentation ranges, example.com, text keys):
    preview names every key to set, before any resource; the lab's loader accepts it."""
    h = harness(stack)
    h.set_stack_config(h.committed_stack_yaml())
    with pytest.raises(SettingsError) as e:
        load_stack_config()
    assert e.value.paths == paths, str(e.value)
    assert "set your" in str(e.value)
    assert load_stack_file(stack).stack == stack


def test_memory_warnings_are_shown_at_preview(harness, monkeypatch):
    """shared_buffers above 40 % of the flavor's RAM starts, so it is a warning, not an error."""
    h = harness("dev")
    doc = h.stack_yaml()
    doc["config"]["pgha:patroni"]["parameters"]["shared_buffers"] = "5GB"  # of b3-8's 8000 MiB
    h.set_stack_config(doc)
    warned: list[str] = []
    monkeypatch.setattr("components.config.pulumi.log.warn", lambda msg, *a, **k: warned.append(msg))
    load_stack_config()
    assert warned[0].startswith("patroni.parameters.shared_buffers: 5GB is 64% of b3-8's RAM")
    assert warned[1:] == [NO_BACKUP_WARNING]


def test_a_stack_without_backups_is_warned_at_preview(harness, monkeypatch):
    h = harness("prod")
    warned: list[str] = []
    monkeypatch.setattr("components.config.pulumi.log.warn", lambda msg, *a, **k: warned.append(msg))
    h.set_stack_config(h.stack_yaml())
    load_stack_config()
    assert warned == [NO_BACKUP_WARNING]
    doc = h.stack_yaml()
    doc["config"]["pgha:backup"] = {"enabled": True, "bucket": "acme-corp-pgha-prod-backups"}
    h.set_stack_config(doc)
    warned.clear()
    load_stack_config()
    assert warned == []


def test_postgres_parameters_fail_at_preview_with_their_paths(harness):
    h = harness("dev")
    doc = h.stack_yaml()
    doc["config"]["pgha:patroni"]["parameters"] = {"shared_buffer": "2GB", "shared_buffers": "64GB"}
    h.set_stack_config(doc)
    with pytest.raises(SettingsError) as e:
        load_stack_config()
    assert e.value.paths == {"patroni.parameters.shared_buffer", "patroni.parameters.shared_buffers"}


@pytest.mark.parametrize(
    "openstack_region, env_region, network_region, paths",
    [
        pytest.param("SBG5", None, "GRA11", {"openstack:region"}, id="config-mismatch"),
        pytest.param(None, "SBG5", "GRA11", {"OS_REGION_NAME"}, id="openrc-mismatch"),
        pytest.param("GRA11", "SBG5", "GRA11", set(), id="config-wins-over-openrc"),
        pytest.param("EU-WEST-PAR", None, "EU-WEST-PAR", set(), id="3az-region"),
        pytest.param("US-EAST-VA-1", None, "US-EAST-VA-1", set(), id="us-region"),
        pytest.param("gra11", None, "gra11", {"network.region"}, id="lowercase"),
    ],
)
def test_openstack_region_must_match_network_region(
    harness, monkeypatch, openstack_region, env_region, network_region, paths
):
    h = harness("dev")
    doc = h.stack_yaml()
    doc["config"]["pgha:network"]["region"] = network_region
    doc["config"].pop("openstack:region")
    if openstack_region is not None:
        doc["config"]["openstack:region"] = openstack_region
    if env_region is None:
        monkeypatch.delenv("OS_REGION_NAME", raising=False)
    else:
        monkeypatch.setenv("OS_REGION_NAME", env_region)
    h.set_stack_config(doc)
    if not paths:
        assert load_stack_config().settings.network.region == network_region
        return
    with pytest.raises(SettingsError) as e:
        load_stack_config()
    assert e.value.paths == paths, str(e.value)
    if "network.region" not in paths:
        assert "pgha:network.region 'GRA11'" in str(e.value)
