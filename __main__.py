"""pgha: HA PostgreSQL (etcd + Patroni) on OVHcloud Public Cloud. Load config -> build -> export."""

from dataclasses import replace

import pulumi

from cloud_init.common import etcd_urls
from cloud_init.dns_callback import record_fqdn
from cloud_init.endpoint import libpq_dsn, render_haproxy
from components.access import Access, AccessArgs
from components.backup import BackupRepository, BackupRepositoryArgs
from components.config import load_stack_config
from components.endpoint import Endpoint, EndpointArgs
from components.etcd import EtcdCluster, EtcdClusterArgs
from components.lookups import check_names
from components.monitoring import MonitoringHost, MonitoringHostArgs, scrape_targets_output
from components.network import PrivateNetwork, PrivateNetworkArgs
from components.nodes import Placement
from components.patroni import PatroniCluster, PatroniClusterArgs
from components.pki import Pki, PkiArgs
from components.validation import Validation, ValidationArgs
from pgha.target import Target
from pgha.timing import client_deadline

cfg = load_stack_config()  # raises with every problem before any resource exists
s, plan = cfg.settings, cfg.settings.plan
check_names(s)  # flavors and images exist in the region, before any resource is registered
network = PrivateNetwork("network", PrivateNetworkArgs(settings=s, service_name=cfg.cloud_project))
access = Access(
    "access",
    AccessArgs(
        settings=s,
        network_id=network.network_id,
        subnet_id=network.subnet_id,
        egress=network.egress,
        roll=cfg.roll,
    ),
)
pki = Pki("pki", PkiArgs(settings=s))
sg = access.security_group_ids
etcd_place = Placement(
    network.network_id,
    network.subnet_id,
    security_group_id=sg["etcd"],
    deploy_key=access.deploy_public_key,
    depends_on=network.egress,
    roll=cfg.roll,
)
pg_place = replace(etcd_place, security_group_id=sg["patroni"])
etcd = EtcdCluster("etcd", EtcdClusterArgs(s, etcd_place, pki.ca_cert, pki.etcd))
repository = (
    BackupRepository("backup", BackupRepositoryArgs(s, cfg.cloud_project, cfg.restore_from_cipher_pass))
    if s.backup.enabled
    else None
)
patroni = PatroniCluster(
    "patroni",
    PatroniClusterArgs(s, pg_place, pki.ca_cert, pki.patroni_server, pki.patroni_etcd_client, cfg.dns_api, repository),
)
endpoint = Endpoint("endpoint", EndpointArgs(settings=s, subnet_id=network.subnet_id))
monitoring = None
if s.monitoring.enabled:
    mon_place = replace(etcd_place, security_group_id=sg["monitoring"])
    monitoring = MonitoringHost("monitoring", MonitoringHostArgs(s, mon_place, pki.ca_cert, cfg.smtp_password))
Validation(
    "validation",
    ValidationArgs(
        s,
        access.private_key,
        access.bastion_ip,
        etcd.instances,
        patroni.instances,
        etcd.host_keys,
        patroni.host_keys,
        access.bastion_host_key,
    ),
)

pulumi.export("network_id", network.network_id)
pulumi.export("subnet_id", network.subnet_id)
pulumi.export("etcd_addresses", plan.addresses("etcd"))
pulumi.export("patroni_addresses", plan.addresses("patroni"))
pulumi.export("etcd_client_urls", etcd_urls(s, plan))
pulumi.export("patroni_rest_urls", [f"https://{ip}:{s.patroni.rest_port}" for ip in plan.addresses("patroni")])
pulumi.export("libpq_dsn", libpq_dsn(s, plan))
pulumi.export("ca_certificate", pki.ca_cert)
pulumi.export("app_user", s.patroni.app_user)
pulumi.export("app_password", patroni.app_password)
pulumi.export("haproxy_config", render_haproxy(s, Target.vm(s)))
# The failover deadline the generated application config uses (scripts/app_config.py).
pulumi.export("client_deadline", client_deadline(s.patroni.ttl, s.patroni.loop_wait))
# Every metrics endpoint (job, node, address, scheme): for a team's own Prometheus too.
pulumi.export("scrape_targets", scrape_targets_output(s))
if monitoring is not None:
    pulumi.export("monitoring_address", monitoring.address)
    pulumi.export("prometheus_url", monitoring.prometheus_url)
    pulumi.export("alertmanager_url", monitoring.alertmanager_url)
for key, value in {
    "dns_name": endpoint.dns_name,
    "lb_address": endpoint.lb_address,
    "bastion_ip": access.bastion_ip,
}.items():
    if value is not None:  # only when enabled
        pulumi.export(key, value)
if repository is not None:  # the credential and the passphrase stay secret, inside user-data
    pulumi.export("backup_bucket", repository.bucket)
if s.endpoint.dns.primary_record:  # kept on the primary by the nodes' Patroni callback
    pulumi.export("dns_primary_name", record_fqdn(s))
