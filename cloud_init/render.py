"""Render a whole stack on a target: every node's files and #cloud-config, etcd first.

Per role: ``etcd.py``, ``patroni.py``, ``bastion.py``; application side: ``endpoint.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pgha.backup import RestoreSpec
from pgha.secrets import EtcdNodeSecrets, PatroniNodeSecrets
from pgha.settings import Settings
from pgha.target import Target

from .common import RenderedNode
from .etcd import render_etcd_node
from .patroni import render_patroni_node


def render_cluster(
    settings: Settings,
    target: Target,
    etcd_secrets: Mapping[str, EtcdNodeSecrets],
    patroni_secrets: Mapping[str, PatroniNodeSecrets],
    restore: RestoreSpec | None = None,
) -> list[RenderedNode]:
    """Every node of the stack on ``target``, etcd members first (secrets by node name).
    ``restore``: bootstrap the new cluster from a backup repository (pgha/backup.py)."""
    plan = target.plan
    return [render_etcd_node(settings, target, n, etcd_secrets[n.name]) for n in plan.etcd] + [
        render_patroni_node(settings, target, n, patroni_secrets[n.name], restore) for n in plan.patroni
    ]
