"""The ONE place that reads ``pulumi.Config``: stack config -> validated settings.

Gathers every ``pgha:*`` key of the stack (known sections and unknown ones, so a typo
such as ``pgha:patroini`` is an error, not a silently ignored key), adds the OVH Public
Cloud project id and the nodes to roll from the environment, and validates everything
at once with
:func:`pgha.settings.load`. A bad config raises :class:`SettingsError` listing
every problem before ``__main__`` creates a single resource.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.runtime.config as runtime_config

from pgha.flavors import memory_warnings
from pgha.placeholders import placeholder_problems
from pgha.settings import PROJECT, SECTIONS, Settings, SettingsError, load

#: Environment variable holding the OVH Public Cloud project id (the OVH provider reads
#: the same variable when a resource omits ``service_name``).
CLOUD_PROJECT_ENV = "OVH_CLOUD_PROJECT_SERVICE"
CLOUD_PROJECT_RE = re.compile(r"^[0-9a-f]{32}$")
#: Environment variable naming the nodes to roll in this update, e.g. ``PGHA_ROLL=pg2``:
#: an operation, not configuration, so it is not part of the stack's config.
ROLL_ENV = "PGHA_ROLL"
#: Config namespace of the DNS primary-record callback's OVH API keys (endpoint.dns.primary_record):
#: kept out of ``pgha:*`` so settings stay plain values; consumerKey/applicationSecret are secrets.
DNS_API = "pgha-dns-api"
#: Config namespace of the monitoring host's secrets: smtpPassword (Alertmanager's SMTP login).
MONITORING_SECRETS = "pgha-monitoring"
#: Config namespace of backup.restore_from's secret: cipherPass, the SOURCE repository's passphrase.
RESTORE_FROM_SECRETS = "pgha-restore-from"


@dataclass(frozen=True)
class StackConfig:
    """Everything ``__main__`` needs from outside the program."""

    settings: Settings
    """Validated ``pgha:*`` settings, every default resolved."""
    cloud_project: str
    """OVH Public Cloud project id (32 hex digits), a.k.a. the project's service name."""
    roll: frozenset[str] = frozenset()
    """Nodes whose instances follow user-data and image changes in this update."""
    dns_api: DnsApiKeys | None = None
    """OVH API keys of the DNS primary-record callback; only with endpoint.dns.primary_record."""
    smtp_password: pulumi.Output[str] | None = None
    """Alertmanager's SMTP password; only with monitoring.alertmanager.smtp_username."""
    restore_from_cipher_pass: pulumi.Output[str] | None = None
    """The source repository's passphrase (secret); only with backup.restore_from.bucket."""


@dataclass(frozen=True)
class DnsApiKeys:
    """``pgha-dns-api:*``: keys limited to the primary record (README "Connecting applications")."""

    application_key: pulumi.Output[str]
    application_secret: pulumi.Output[str]
    consumer_key: pulumi.Output[str]
    endpoint: str


def dns_api_keys(settings: Settings, problems: list[tuple[str, str]]) -> DnsApiKeys | None:
    if not settings.endpoint.dns.primary_record:
        return None
    cfg = pulumi.Config(DNS_API)
    values: dict[str, pulumi.Output[str]] = {}
    for key in ("applicationKey", "applicationSecret", "consumerKey"):
        value = cfg.get_secret(key)
        if value is None:
            problems.append(
                (
                    f"{DNS_API}:{key}",
                    "required when endpoint.dns.primary_record is true (pulumi config set --secret ...)",
                )
            )
        else:
            values[key] = value
    if len(values) < 3:
        return None
    return DnsApiKeys(
        application_key=values["applicationKey"],
        application_secret=values["applicationSecret"],
        consumer_key=values["consumerKey"],
        endpoint=cfg.get("endpoint") or "https://eu.api.ovh.com/1.0",
    )


def smtp_password(settings: Settings, problems: list[tuple[str, str]]) -> pulumi.Output[str] | None:
    if not (settings.monitoring.enabled and settings.monitoring.alertmanager.smtp_username):
        return None
    value = pulumi.Config(MONITORING_SECRETS).get_secret("smtpPassword")
    if value is None:
        problems.append(
            (
                f"{MONITORING_SECRETS}:smtpPassword",
                "required when monitoring.alertmanager.smtp_username is set (pulumi config set --secret ...)",
            )
        )
    return value


def restore_from_cipher_pass(settings: Settings, problems: list[tuple[str, str]]) -> pulumi.Output[str] | None:
    """backup.restore_from's source passphrase: a secret config value, read as a secret Output."""
    rf = settings.backup.restore_from
    if not rf.bucket:
        return None
    value = pulumi.Config(RESTORE_FROM_SECRETS).get_secret("cipherPass")
    if value is None:
        problems.append(
            (
                f"{RESTORE_FROM_SECRETS}:cipherPass",
                (
                    f"required when backup.restore_from.bucket is set: the passphrase of {rf.bucket}'s repository "
                    f"(the source stack's backup-cipher-pass); pulumi config set --secret {RESTORE_FROM_SECRETS}:cipherPass "
                    "(docs/backups.md shows how to read it from the source stack)"
                ),
            )
        )
    return value


def config_keys() -> set[str]:
    """Every config key the engine handed to this program, as ``namespace:name``.

    The Python language host passes the stack's config as JSON in ``PULUMI_CONFIG``;
    the mocks and the automation API set it with ``set_all_config``. Both are read.
    """
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    out = set()
    for key in keys:
        ns, _, name = str(key).partition(":")
        out.add(f"{ns}:{name.removeprefix('config:')}")
    return out


def raw_sections() -> dict[str, Any]:
    """The stack's ``pgha:*`` values, section -> parsed value (unknown keys included)."""
    cfg = pulumi.Config(PROJECT)
    names = {k.partition(":")[2] for k in config_keys() if k.startswith(f"{PROJECT}:")}
    raw: dict[str, Any] = {}
    for name in sorted(names | set(SECTIONS)):
        try:
            value = cfg.get_object(name)
        except pulumi.ConfigTypeError:
            value = cfg.get(name)  # not JSON: a plain string, reported by load() with its path
        if value is not None:
            raw[name] = value
    return raw


def cloud_project(problems: list[tuple[str, str]]) -> str:
    value = os.environ.get(CLOUD_PROJECT_ENV, "").strip()
    if not value:
        problems.append(
            (
                CLOUD_PROJECT_ENV,
                "environment variable is not set: export the OVH Public Cloud project id (32 hex digits)",
            )
        )
    elif not CLOUD_PROJECT_RE.match(value):
        problems.append(
            (CLOUD_PROJECT_ENV, f"must be an OVH Public Cloud project id (32 lowercase hex digits), got {value!r}")
        )
    return value


def roll_nodes() -> frozenset[str]:
    return frozenset(n.strip() for n in os.environ.get(ROLL_ENV, "").split(",") if n.strip())


def check_roll(settings: Settings, roll: frozenset[str], problems: list[tuple[str, str]]) -> None:
    plan = settings.plan
    known = [n.name for n in plan.cluster] + ([plan.bastion.name] if settings.access.bastion.enabled else [])
    known += [plan.monitoring.name] if settings.monitoring.enabled else []
    unknown = sorted(roll - set(known))
    if unknown:
        problems.append((ROLL_ENV, f"unknown node(s) {', '.join(unknown)}; nodes of this stack: {', '.join(known)}"))


#: Where the OpenStack provider takes its default region from: the stack's
#: ``openstack:region``, else the openrc's environment variable.
OPENSTACK_REGION_KEY = "openstack:region"
OPENSTACK_REGION_ENV = "OS_REGION_NAME"


def check_region(settings: Settings, problems: list[tuple[str, str]]) -> None:
    """The provider's default region must be ``pgha:network.region``: every pgha resource
    names its region, but a provider pointed elsewhere authenticates and looks images up
    in another region, and two keys saying two things is a mistake either way."""
    want = settings.network.region
    configured = pulumi.Config("openstack").get("region")
    source, value = (
        (OPENSTACK_REGION_KEY, configured)
        if configured is not None
        else (OPENSTACK_REGION_ENV, os.environ.get(OPENSTACK_REGION_ENV))
    )
    if value is not None and value != want:
        problems.append(
            (
                source,
                f"{value!r} differs from pgha:network.region {want!r}: set both to the region to deploy in",
            )
        )


NO_BACKUP_WARNING = (
    "backup.enabled: false: this stack has no backup and no point-in-time recovery "
    "(HA does not undo a DROP TABLE); set backup.enabled: true and backup.bucket (docs/backups.md)"
)


def load_stack_config() -> StackConfig:
    """Read and validate this stack's config; raise once with every problem."""
    problems: list[tuple[str, str]] = []
    raw = raw_sections()
    project = cloud_project(problems)
    roll = roll_nodes()
    try:
        settings = load(pulumi.get_stack(), raw)
    except SettingsError as e:
        raise SettingsError(problems + e.problems) from None
    check_roll(settings, roll, problems)
    check_region(settings, problems)
    # The committed stacks' example values work in the lab; a deployment refuses them.
    problems += placeholder_problems(settings)
    dns_api = dns_api_keys(settings, problems)
    pg = settings.patroni
    for path, msg in memory_warnings(pg.flavor, pg.parameters, pg.postgres_version):
        pulumi.log.warn(f"{path}: {msg}")
    if not settings.backup.enabled:
        # Off in the committed stacks (a bucket name is shared by every OVH customer of the
        # region, so each team picks its own), but a deployment without backups is said.
        pulumi.log.warn(NO_BACKUP_WARNING)
    smtp = smtp_password(settings, problems)
    source_pass = restore_from_cipher_pass(settings, problems)
    if problems:
        raise SettingsError(problems)
    return StackConfig(
        settings=settings,
        cloud_project=project,
        roll=roll,
        dns_api=dns_api,
        smtp_password=smtp,
        restore_from_cipher_pass=source_pass,
    )
