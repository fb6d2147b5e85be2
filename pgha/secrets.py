"""Secrets a node needs, as plain values (Pulumi resolves them inside Output.apply).

Also: obviously fake placeholders for the render command and golden files, and the
SCRAM-SHA-256 verifier so role passwords never reach a node's files in plaintext
where PostgreSQL only needs the verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Passwords:
    superuser: str  #: postgres role (local socket only)
    replication: str  #: replicator role (replication connections only)
    rewind: str  #: rewind_user role (pg_rewind)
    rest_api: str  #: Patroni REST API unsafe endpoints
    app: str  #: application role


@dataclass(frozen=True)
class KeyPair:
    cert: str  #: PEM certificate
    key: str  #: PEM private key


@dataclass(frozen=True)
class EtcdNodeSecrets:
    ca_cert: str
    node: KeyPair  #: server + client auth, IP SAN = the member's address; peers and clients


@dataclass(frozen=True)
class OvhApiCredentials:
    """OVH API keys of the DNS primary-record callback (endpoint.dns.primary_record).
    Request them with access rules limited to that one record (README "Connecting applications")."""

    application_key: str
    application_secret: str
    consumer_key: str
    endpoint: str = (
        "https://eu.api.ovh.com/1.0"  #: API base URL (ovh-eu); ca.api.ovh.com, api.us.ovhcloud.com elsewhere
    )


@dataclass(frozen=True)
class PatroniNodeSecrets:
    ca_cert: str
    server: KeyPair  #: PostgreSQL and Patroni REST API server certificate
    etcd_client: KeyPair  #: client certificate for etcd
    passwords: Passwords
    dns_api: OvhApiCredentials | None = None  #: only with endpoint.dns.primary_record


def fake_keypair(name: str) -> KeyPair:
    return KeyPair(
        cert=f"-----BEGIN CERTIFICATE-----\nFAKE-PLACEHOLDER-CERTIFICATE-FOR-{name}\n-----END CERTIFICATE-----\n",
        # Not PEM on purpose: nothing here may look like key material.
        key=f"FAKE PLACEHOLDER: the private key of {name} is generated at deploy time and never rendered here\n",
    )


FAKE_CA = "-----BEGIN CERTIFICATE-----\nFAKE-PLACEHOLDER-CA-CERTIFICATE\n-----END CERTIFICATE-----\n"


def fake_passwords() -> Passwords:
    return Passwords(
        superuser="FAKE-superuser-password",
        replication="FAKE-replication-password",
        rewind="FAKE-rewind-password",
        rest_api="FAKE-rest-api-password",
        app="FAKE-app-password",
    )


def fake_ovh_api_credentials() -> OvhApiCredentials:
    return OvhApiCredentials(
        application_key="FAKE-ovh-application-key",
        application_secret="FAKE-ovh-application-secret",
        consumer_key="FAKE-ovh-consumer-key",
    )


def scram_sha256(role: str, password: str, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier. The salt is derived from role and password
    so renders are reproducible; it stays unique per (role, password)."""
    salt = hashlib.sha256(f"pgha-salt:{role}:{password}".encode()).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
