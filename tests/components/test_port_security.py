"""Every port the stack creates has port security on and one security group: OVH enforces
groups on vRack ports, and the stack says so instead of relying on the network's default."""

from __future__ import annotations

import pytest

from .mocks import PORT
from .test_stack import run_main

pytestmark = pytest.mark.components


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_port_is_filtered_by_its_group(harness, stack):
    h = harness(stack)
    h.set_stack_config(h.stack_yaml())
    run_main(h)
    ports = h.of_type(PORT)
    assert len(ports) == 8  # 3 etcd + 3 Patroni + the bastion + the monitoring host
    for p in ports:
        assert p.inputs.get("portSecurityEnabled") is True, p.urn
        assert len(p.inputs["securityGroupIds"]) == 1, p.urn
