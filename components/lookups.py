"""Names the cloud must know, looked up before anything is created.

A wrong flavor, image or load-balancer flavor would otherwise fail only when the first
instance (or the load balancer) is created: after the network, the gateway and the
protected data volumes already exist. :func:`check_names` looks every such name up
with the provider's data sources (``openstack.compute.get_flavor``,
``openstack.images.get_image``, ``openstack.loadbalancer.get_flavor_v2``) as blocking
invokes, so ``__main__`` has registered no resource when they return, and raises one
:class:`~pgha.settings.SettingsError` naming each unknown name's config key. Invokes run
at ``pulumi preview`` too, so the error shows there. The components keep their own
lookups (an image id is an Output they depend on); this is the gate in front of them.
"""

from __future__ import annotations

import pulumi
import pulumi_openstack as openstack

from pgha.flavors import flavor_ram_mib, memory_problems
from pgha.settings import Settings, SettingsError


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def names_to_check(settings: Settings) -> dict[str, tuple[str, str]]:
    """Config key -> (kind, name) of every flavor and image this stack uses."""
    s = settings
    out = {
        "etcd.flavor": ("flavor", s.etcd.flavor),
        "patroni.flavor": ("flavor", s.patroni.flavor),
        "etcd.image": ("image", s.etcd.image),
        "patroni.image": ("image", s.patroni.image),
    }
    if s.access.bastion.enabled:  # the bastion boots etcd.image (components/access.py)
        out["access.bastion.flavor"] = ("flavor", s.access.bastion.flavor)
    if s.monitoring.enabled:  # the monitoring host boots etcd.image too (components/monitoring.py)
        out["monitoring.flavor"] = ("flavor", s.monitoring.flavor)
    if s.endpoint.load_balancer.enabled:
        out["endpoint.load_balancer.flavor"] = ("lb-flavor", s.endpoint.load_balancer.flavor)
    return out


def check_names(settings: Settings) -> None:
    """Look up every flavor and image of the stack in its region; raise once with every miss."""
    region = settings.network.region
    problems: list[tuple[str, str]] = []
    for path, (kind, name) in sorted(names_to_check(settings).items()):
        try:
            if kind == "flavor":
                found = openstack.compute.get_flavor(name=name, region=region)
                if path == "patroni.flavor":
                    problems += _real_ram_problems(settings, found.ram)
            elif kind == "image":
                openstack.images.get_image(name=name, most_recent=True, region=region)
            else:
                openstack.loadbalancer.get_flavor_v2(name=name, region=region)
        except Exception as e:  # noqa: BLE001 - a failed invoke raises a bare Exception (pulumi.runtime.invoke)
            what = {"flavor": "instance flavor", "image": "image", "lb-flavor": "Octavia flavor"}[kind]
            problems.append(
                (path, f"no {what} named {name!r} in {region} (`openstack {kind_cli(kind)} list`): {_reason(e)}")
            )
    if problems:
        pulumi.log.error(f"{len(problems)} problem(s) found by looking names up in {region}: nothing was created")
        raise SettingsError(problems)


def _real_ram_problems(settings: Settings, ram_mib: int | None) -> list[tuple[str, str]]:
    """The memory check again with the RAM the region reports, when pgha's table does not
    know the flavor or says otherwise (the loader already checked with the table's value)."""
    pg = settings.patroni
    table = flavor_ram_mib().get(pg.flavor)
    if not ram_mib or ram_mib == table:
        return []
    if table is not None:
        pulumi.log.warn(
            f"patroni.flavor: {pg.flavor} has {ram_mib} MiB of RAM in {settings.network.region}, "
            f"pgha/data/ovh-flavors.json says {table}: update the table"
        )
    return memory_problems(pg.flavor, pg.parameters, pg.postgres_version, ram_mib=ram_mib)


def kind_cli(kind: str) -> str:
    """The openstack CLI listing that shows the valid names."""
    return {"flavor": "flavor", "image": "image", "lb-flavor": "loadbalancer flavor"}[kind]
