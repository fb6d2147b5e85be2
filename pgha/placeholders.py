"""Example values that must not reach a real deployment.

The committed stacks (``Pulumi.dev.yaml``, ``Pulumi.prod.yaml``) carry documentation
address ranges (RFC 5737), example DNS zones (RFC 2606) and SSH keys whose key material is
readable text. The lab and ``python -m cloud_init render`` work with them as they are;
``pulumi preview``/``up`` refuses them (``components/config.py``), naming each key to set.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import struct

from .settings import Settings

#: RFC 5737: for documentation only, never routed.
DOCUMENTATION_NETS = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
#: RFC 2606 / RFC 6761: reserved example and test names.
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org", "example", "test", "invalid", "localhost")


def is_documentation_net(cidr: str) -> bool:
    net = ipaddress.ip_network(cidr, strict=False)
    return any(net.version == d.version and net.subnet_of(d) for d in DOCUMENTATION_NETS)  # type: ignore[arg-type]


def is_example_domain(zone: str) -> bool:
    return any(zone == d or zone.endswith("." + d) for d in EXAMPLE_DOMAINS)


def is_placeholder_key(line: str) -> bool:
    """True when the key's material is printable text: a generated key is random bytes
    (32 random bytes are all printable ASCII with a probability of about 1e-14)."""
    try:
        blob = base64.b64decode(line.split()[1], validate=True)
    except (IndexError, binascii.Error):
        return False
    fields, pos = [], 0
    while pos + 4 <= len(blob):
        (n,) = struct.unpack(">I", blob[pos : pos + 4])
        fields.append(blob[pos + 4 : pos + 4 + n])
        pos += 4 + n
    material = fields[-1] if len(fields) >= 2 else b""
    return len(material) >= 16 and all(0x20 <= b < 0x7F for b in material)


def placeholder_problems(settings: Settings) -> list[tuple[str, str]]:
    """Every example value of a stack, with its dotted path and what to set instead."""
    out: list[tuple[str, str]] = []
    for i, cidr in enumerate(settings.access.admin_cidrs):
        if is_documentation_net(cidr):
            out.append(
                (f"access.admin_cidrs[{i}]", f"{cidr} is a documentation range (RFC 5737): set your office/VPN ranges")
            )
    for i, cidr in enumerate(settings.patroni.app_cidrs):
        if is_documentation_net(cidr):
            out.append(
                (
                    f"patroni.app_cidrs[{i}]",
                    f"{cidr} is a documentation range (RFC 5737): set your application networks",
                )
            )
    dns = settings.endpoint.dns
    if dns.enabled and is_example_domain(dns.zone):
        out.append(("endpoint.dns.zone", f"{dns.zone} is an example zone (RFC 2606): set an OVH DNS zone you own"))
    for i, key in enumerate(settings.access.ssh_public_keys):
        if is_placeholder_key(key):
            out.append(
                (
                    f"access.ssh_public_keys[{i}]",
                    (
                        "an example key (its key material is readable text, not a generated key): "
                        "set your team's real OpenSSH public keys"
                    ),
                )
            )
    return out
