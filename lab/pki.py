"""A throwaway lab CA and node certificates (ECDSA P-256, IP SANs), like the cloud's
pulumi-tls resources. Generated at ``lab up``; never leaves the run directory."""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgha.secrets import KeyPair

VALIDITY_DAYS = 365  # > monitoring.certificate_days: a healthy lab raises no PghaCertificateExpiring


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class LabCA:
    def __init__(self, name: str, days: int = VALIDITY_DAYS, existing: tuple[str, str] | None = None):
        self.days = days
        if existing:  # (cert PEM, key PEM) of a CA made earlier: rotate leaves under it
            self.cert = x509.load_pem_x509_certificate(existing[0].encode())
            key = serialization.load_pem_private_key(existing[1].encode(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self.key = key
            return
        self.key = _key()
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def key_pem(self) -> str:
        return _pem_key(self.key)

    @property
    def pem(self) -> str:
        return _pem_cert(self.cert)

    def issue(
        self,
        common_name: str,
        ips: list[str],
        server: bool = True,
        client: bool = True,
        dns_names: tuple[str, ...] = (),
    ) -> KeyPair:
        """A leaf certificate; ``dns_names``: DNS SANs besides the IP SANs (pgBackRest 2.45
        checks an S3 server's certificate by name only)."""
        key = _key()
        now = dt.datetime.now(dt.UTC)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return KeyPair(cert=_pem_cert(builder.sign(self.key, hashes.SHA256())), key=_pem_key(key))
