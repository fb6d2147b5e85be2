import json

import pulumi
import pytest
import yaml

from cloud_init.common import read_user_data
from components.config import DnsApiKeys
from components.network import PrivateNetwork, PrivateNetworkArgs
from components.patroni import PatroniCluster, PatroniClusterArgs
from pgha.secrets import FAKE_CA

from .mocks import PROJECT_ID, fake_pair, static_placement, with_section

pytestmark = pytest.mark.components


def test_callback_in_user_data(harness):
    h = harness("prod")
    s = with_section(h.settings(), "endpoint.dns", primary_record=True)
    keys = DnsApiKeys(
        pulumi.Output.secret("AK1"),
        pulumi.Output.secret("AS1"),
        pulumi.Output.secret("CK1"),
        "https://eu.api.ovh.com/1.0",
    )

    def program():
        network = PrivateNetwork("network", PrivateNetworkArgs(settings=s, service_name=PROJECT_ID))
        names = [n.name for n in s.plan.patroni]
        return PatroniCluster(
            "patroni",
            PatroniClusterArgs(
                s,
                static_placement(tuple(network.egress)),
                FAKE_CA,
                [fake_pair(f"{n}-server") for n in names],
                [fake_pair(f"{n}-etcd-client") for n in names],
                keys,
            ),
        )

    p = h.run(program)
    ud, secret = h.resolve(p.user_data[0])
    assert secret
    doc = yaml.safe_load(read_user_data(ud))
    files = {f["path"]: f for f in doc["write_files"]}
    cb = json.loads(files["/etc/pgha/dns-callback.json"]["content"])
    assert cb["ovh"]["consumer_key"] == "CK1"
    assert files["/etc/pgha/dns-callback.json"]["permissions"] == "0600"
    assert "callbacks" in yaml.safe_load(files["/etc/pgha/patroni.yml"]["content"])["postgresql"]


def test_config_requires_and_reads_the_keys(harness):
    from components.config import load_stack_config
    from pgha.settings import SettingsError

    h = harness("prod")
    doc = h.stack_yaml()
    doc["config"]["pgha:endpoint"]["dns"]["primary_record"] = True
    h.set_stack_config(doc)
    with pytest.raises(SettingsError) as e:
        load_stack_config()
    assert e.value.paths == {
        "pgha-dns-api:applicationKey",
        "pgha-dns-api:applicationSecret",
        "pgha-dns-api:consumerKey",
    }
    doc["config"].update(
        {"pgha-dns-api:applicationKey": "AK", "pgha-dns-api:applicationSecret": "AS", "pgha-dns-api:consumerKey": "CK"}
    )
    h.set_stack_config(doc)
    cfg = load_stack_config()
    assert cfg.dns_api is not None
    assert h.resolve(cfg.dns_api.consumer_key) == ("CK", True)
