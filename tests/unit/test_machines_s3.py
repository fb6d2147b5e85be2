"""machines/s3.py: the tier's object storage stands where the rendered pgbackrest.conf looks
for OVH's, and nothing of it is in the user-data (pure, plus one TLS pair on disk)."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from cloud_init.backup import pgbackrest_conf
from machines import s3, spec
from machines.render import load_settings, render_nodes
from pgha.secrets import BackupSecrets
from pgha.target import Target

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dev():
    plain = load_settings("dev", ROOT)
    return load_settings("dev", ROOT, overrides=s3.overrides(plain))


def conf_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_backup_override_turns_backups_on_with_a_valid_bucket(dev):
    assert not load_settings("dev", ROOT).backup.enabled
    assert dev.backup.enabled
    assert dev.backup.bucket == "pgha-dev-machines"
    assert dev.backup.region == "gra"  # network.region's letters, as on OVH


def test_the_server_answers_where_the_rendered_config_connects(dev):
    """The names, port, URI style and CA store pgBackRest uses come from the render: the tier
    serves exactly those, so the user-data needs no change."""
    target = Target.vm(dev)
    layout = target.layout(dev.plan.patroni[0])
    conf = conf_values(pgbackrest_conf(dev, target, layout, BackupSecrets("AK", "SK", "CP")))
    endpoint, bucket_host = s3.host_names(dev)
    assert conf["repo1-s3-endpoint"] == endpoint == "s3.gra.io.cloud.ovh.net"
    assert conf["repo1-s3-uri-style"] == "host"
    assert bucket_host == f"{conf['repo1-s3-bucket']}.{endpoint}"
    assert "repo1-storage-port" not in conf
    assert s3.S3_PORT == 443
    assert "repo1-storage-ca-file" not in conf  # the system CA store: where the tier puts its CA
    net = spec.stack_net(dev)
    cmd = s3.command(Path("/run/x"), net, dev)
    assert f"-s3.ip.bind={net.uplink_host_ip}" in cmd
    assert f"-s3.port={s3.S3_PORT}" in cmd
    assert f"-s3.domainName={endpoint}" in cmd  # <bucket>.<endpoint> is the bucket (virtual host)
    assert f"-ip.bind={net.uplink_host_ip}" in cmd  # nothing on 0.0.0.0
    assert all(p < 30000 for p in s3.ports("dev").values())  # below the lab's block (30000 + 10 N)


def test_the_user_data_names_ovh_not_the_tier(dev):
    """Rendered with the tier's credentials, the user-data is what Nova gets: OVH's endpoint,
    nothing of the host (its address, its CA)."""
    secrets = BackupSecrets("MACHINESKEY", "machines-secret", "machines-cipher")
    user_data, _ = render_nodes(dev, backup=secrets)
    net = spec.stack_net(dev)
    for node in dev.plan.patroni:
        text = user_data[node.name]
        assert "pgbackrest" in text
        assert net.uplink_host_ip not in text
        assert "object-storage" not in text


def test_hosts_template_maps_both_names_to_the_host_once(dev):
    net = spec.stack_net(dev)
    base = "## template:jinja\n127.0.1.1 {{fqdn}} {{hostname}}\n127.0.0.1 localhost\n"
    once = s3.hosts_template(base, net, dev)
    assert once.startswith(base)
    assert once.endswith(f"{net.uplink_host_ip} s3.gra.io.cloud.ovh.net pgha-dev-machines.s3.gra.io.cloud.ovh.net\n")
    assert s3.hosts_template(once, net, dev) == once


def test_certificate_names_both_hosts_and_files_are_private(dev, tmp_path):
    net = spec.stack_net(dev)
    secrets, ca_pem = s3.prepare(tmp_path, net, dev)
    d = s3.storage_dir(tmp_path)
    cert = x509.load_pem_x509_certificate((d / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == set(s3.host_names(dev))
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(net.uplink_host_ip)]
    assert cert.issuer == x509.load_pem_x509_certificate(ca_pem.encode()).subject
    for name in ("tls.key", "s3.json", "backup-secrets.json"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    assert s3.load_secrets(tmp_path) == secrets
    assert secrets.s3_secret_key in (d / "s3.json").read_text()
