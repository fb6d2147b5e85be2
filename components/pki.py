"""Pki: one CA (ECDSA P-256) and every node certificate, with pulumi-tls.

The same shapes as the lab's ``lab/pki.py``: etcd members get serverAuth+clientAuth with
an IP SAN of their address (peers and clients); each Patroni node gets a server
certificate for PostgreSQL and its REST API (serverAuth+clientAuth, IP SAN of its
address) and an etcd client certificate (clientAuth). Private keys live only in the
(encrypted) stack state and in the nodes' secret user-data.

Certificates are long-lived and never renewed early: a renewal would change user-data,
which nodes only read at first boot (see README "Deploy to OVH", "Day 2").
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from pgha.settings import Settings

TYPE = "pgha:index:Pki"
CA_VALIDITY_HOURS = 10 * 365 * 24
NODE_VALIDITY_HOURS = 5 * 365 * 24
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
CLIENT_USES = ["digital_signature", "key_encipherment", "client_auth"]


@dataclass(frozen=True)
class TlsKeyPair:
    """A node certificate and its private key (the key is always a secret Output)."""

    cert: pulumi.Output[str]
    """PEM certificate."""
    key: pulumi.Output[str]
    """PEM private key (PKCS#8), secret."""


@dataclass(frozen=True)
class PkiArgs:
    settings: Settings
    """Validated stack settings: node names and addresses come from ``settings.plan``."""


class Pki(pulumi.ComponentResource):
    """CA + per-node certificates, all with IP SANs from the address plan."""

    ca_cert: pulumi.Output[str]
    """PEM of the cluster CA (public: clients verify PostgreSQL with it)."""
    etcd: list[TlsKeyPair]
    """One per etcd member, in plan order (etcd1, etcd2, ...)."""
    patroni_server: list[TlsKeyPair]
    """One per Patroni node, in plan order: PostgreSQL + Patroni REST API server certificate."""
    patroni_etcd_client: list[TlsKeyPair]
    """One per Patroni node, in plan order: client certificate for etcd."""

    def __init__(self, name: str, args: PkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        s = args.settings
        plan = s.plan
        child = pulumi.ResourceOptions(parent=self)

        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        self._ca_key_pem: pulumi.Output[str] = pulumi.Output.secret(ca_key.private_key_pem)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=self._ca_key_pem,
            is_ca_certificate=True,
            max_path_length=0,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"pgha-{s.stack} CA", organization="pgha"),
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            validity_period_hours=CA_VALIDITY_HOURS,
            opts=child,
        )
        self.ca_cert = ca.cert_pem

        self.etcd = [self._issue(f"{name}-{n.name}", n.name, [n.address], SERVER_USES) for n in plan.etcd]
        self.patroni_server = [
            self._issue(f"{name}-{n.name}-server", n.name, [n.address], SERVER_USES) for n in plan.patroni
        ]
        self.patroni_etcd_client = [
            self._issue(f"{name}-{n.name}-etcd-client", f"{n.name}-etcd-client", [n.address], CLIENT_USES)
            for n in plan.patroni
        ]
        self.register_outputs({"ca_cert": self.ca_cert})

    def _issue(self, res: str, common_name: str, ips: list[str], uses: list[str]) -> TlsKeyPair:
        child = pulumi.ResourceOptions(parent=self)
        key = tls.PrivateKey(f"{res}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        key_pem: pulumi.Output[str] = pulumi.Output.secret(key.private_key_pem_pkcs8)
        csr = tls.CertRequest(
            f"{res}-csr",
            private_key_pem=key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=common_name, organization="pgha"),
            ip_addresses=ips,
            opts=child,
        )
        cert = tls.LocallySignedCert(
            f"{res}-cert",
            cert_request_pem=csr.cert_request_pem,
            ca_cert_pem=self.ca_cert,
            ca_private_key_pem=self._ca_key_pem,
            allowed_uses=uses,
            validity_period_hours=NODE_VALIDITY_HOURS,
            opts=child,
        )
        return TlsKeyPair(cert=cert.cert_pem, key=key_pem)
