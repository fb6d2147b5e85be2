"""The deploy key reaches every instance through cloud-init, never as a Nova keypair: a
keypair is visible only to the OpenStack user who created it, so another user (a
teammate, CI) rolling a node later would be refused it (#12 item 7)."""

from __future__ import annotations

import pytest
import yaml

from .mocks import INSTANCE, mock_host_key
from .test_stack import run_main

pytestmark = pytest.mark.components


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_instance_gets_the_deploy_key_from_cloud_init(harness, stack):
    h = harness(stack)
    h.set_stack_config(h.stack_yaml())
    run_main(h)
    assert h.of_type("openstack:compute/keypair:Keypair") == []
    deploy_key = mock_host_key("access-deploy-key")
    operators = h.settings().access.ssh_public_keys
    instances = h.of_type(INSTANCE)
    assert len(instances) == 8  # 3 etcd + 3 Patroni + the bastion + the monitoring host
    for inst in instances:
        assert inst.input("keyPair") is None, inst.urn
        doc = yaml.safe_load(inst.user_data())
        assert doc["ssh_authorized_keys"] == [*operators, deploy_key], inst.urn
