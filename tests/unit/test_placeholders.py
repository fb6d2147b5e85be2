"""Example values a deployment must refuse: each detector with positive and negative cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from pgha.placeholders import is_documentation_net, is_example_domain, is_placeholder_key

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def openssh(key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " me@host"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_keys_are_placeholders(stack: str) -> None:
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    for key in doc["config"]["pgha:access"]["ssh_public_keys"]:
        assert is_placeholder_key(key)


def test_generated_keys_are_not_placeholders() -> None:
    for _ in range(20):
        assert not is_placeholder_key(openssh(ed25519.Ed25519PrivateKey.generate().public_key()))
    assert not is_placeholder_key(openssh(rsa.generate_private_key(65537, 2048).public_key()))
    assert not is_placeholder_key("ssh-ed25519 not-base64!")


@pytest.mark.parametrize(
    "cidr, expected",
    [("203.0.113.0/24", True), ("198.51.100.0/28", True), ("192.0.2.7/32", True), ("192.168.77.0/24", False)],
)
def test_documentation_ranges(cidr: str, expected: bool) -> None:
    assert is_documentation_net(cidr) is expected


@pytest.mark.parametrize(
    "zone, expected",
    [
        ("example.com", True),
        ("db.example.org", True),
        ("corp.test", True),
        ("acme-corp.fr", False),
        ("example.fr", False),
    ],
)
def test_example_zones(zone: str, expected: bool) -> None:
    assert is_example_domain(zone) is expected
