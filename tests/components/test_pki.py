"""Pki: one ECDSA P-256 CA, per-node certificates with IP SANs from the plan, keys secret."""

from __future__ import annotations

import pytest

from components.pki import TYPE, Pki, PkiArgs

pytestmark = pytest.mark.components

KEY = "tls:index/privateKey:PrivateKey"
CA = "tls:index/selfSignedCert:SelfSignedCert"
CSR = "tls:index/certRequest:CertRequest"
CERT = "tls:index/locallySignedCert:LocallySignedCert"
SERVER = {"digital_signature", "key_encipherment", "server_auth", "client_auth"}
CLIENT = {"digital_signature", "key_encipherment", "client_auth"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_ca_and_node_certificates(harness, stack):
    h = harness(stack)
    s = h.settings()
    plan = s.plan
    pki = h.run(lambda: Pki("pki", PkiArgs(settings=s)))
    comp = h.component(TYPE)
    children = h.children(comp)
    assert all(c.parent == comp.urn and c.name.startswith("pki-") for c in children)
    leaves = len(plan.etcd) + 2 * len(plan.patroni)
    counts = {t: sum(1 for c in children if c.type == t) for t in (KEY, CA, CSR, CERT)}
    assert counts == {KEY: leaves + 1, CA: 1, CSR: leaves, CERT: leaves}
    assert len(children) == sum(counts.values())

    for key in h.of_type(KEY):
        assert (key.input("algorithm"), key.input("ecdsaCurve")) == ("ECDSA", "P256"), key.urn
    (ca,) = h.of_type(CA)
    assert ca.input("isCaCertificate") is True
    assert ca.is_secret("privateKeyPem"), "the CA key must reach the provider as a secret"

    expected = {}
    for i, ip in enumerate(plan.addresses("etcd")):
        expected[f"pki-{plan.etcd[i].name}"] = (plan.etcd[i].name, ip, SERVER)
    for i, ip in enumerate(plan.addresses("patroni")):
        expected[f"pki-{plan.patroni[i].name}-server"] = (plan.patroni[i].name, ip, SERVER)
        expected[f"pki-{plan.patroni[i].name}-etcd-client"] = (f"{plan.patroni[i].name}-etcd-client", ip, CLIENT)
    for res, (cn, ip, uses) in expected.items():
        csr = h.named(f"{res}-csr")
        assert csr.input("subject")["commonName"] == cn, csr.urn
        assert csr.input("ipAddresses") == [ip], csr.urn
        assert csr.is_secret("privateKeyPem"), csr.urn
        cert = h.named(f"{res}-cert")
        assert set(cert.input("allowedUses")) == uses, cert.urn
        assert cert.input("caCertPem") == h.resolve(pki.ca_cert)[0], cert.urn
        assert cert.is_secret("caPrivateKeyPem"), cert.urn
        assert (
            cert.input("certRequestPem")
            == f"-----BEGIN CERTIFICATE REQUEST-----\nMOCK-CSR-{res}-csr\n-----END CERTIFICATE REQUEST-----\n"
        )

    pairs = [*pki.etcd, *pki.patroni_server, *pki.patroni_etcd_client]
    assert len(pairs) == leaves
    for pair in pairs:
        cert, cert_secret = h.resolve(pair.cert)
        key, key_secret = h.resolve(pair.key)
        assert "MOCK-CERT-" in cert
        assert not cert_secret
        assert key in h.mocks.secrets
        assert key_secret
    assert h.resolve(pki.ca_cert) == ("-----BEGIN CERTIFICATE-----\nMOCK-CA-pki-ca\n-----END CERTIFICATE-----\n", False)
