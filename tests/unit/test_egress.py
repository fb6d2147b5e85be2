"""network.gateway: false leaves the nodes without egress at boot (cloud-init installs
packages) unless the operator declares their own: network.external_egress: true."""

from __future__ import annotations

from typing import Any

import pytest

from pgha.settings import SettingsError, load
from tests.unit.test_settings import with_

pytestmark = pytest.mark.unit
NO_BASTION = {"access.bastion.enabled": False}


@pytest.mark.parametrize(
    "changes, paths",
    [
        pytest.param({"network.gateway": False}, {"network.gateway"}, id="no-gateway-no-egress"),
        pytest.param({"network.external_egress": True}, {"network.external_egress"}, id="egress-with-gateway"),
        pytest.param({"network.gateway": False, "network.external_egress": True}, set(), id="declared-egress"),
        pytest.param({}, set(), id="default-gateway"),
    ],
)
def test_egress_must_be_declared(changes: dict[str, Any], paths: set[str]) -> None:
    raw = with_({**NO_BASTION, **changes})
    if not paths:
        load("test", raw)
        return
    with pytest.raises(SettingsError) as exc:
        load("test", raw)
    assert exc.value.paths == paths, str(exc.value)


def test_the_message_names_the_fix() -> None:
    with pytest.raises(SettingsError) as exc:
        load("test", with_({**NO_BASTION, "network.gateway": False}))
    assert "set network.external_egress: true" in str(exc.value)
