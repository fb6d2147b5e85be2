"""Backups: the facts the renderer, the lab and the components share (never imports pulumi).

- :class:`ObjectStorage`: where the pgBackRest repository lives. On a VM, OVH Object
  Storage in ``backup.region`` (``https://s3.<region>.io.cloud.ovh.net``, virtual-host
  URIs, the system CA store); the lab overrides it through its Target (a SeaweedFS
  server with a lab-CA certificate for ``localhost``).
- :class:`RestoreSpec`: a point-in-time recovery target (latest, a time, a transaction
  id or a named restore point) and the repository path to read it from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

#: pgBackRest's repository path inside the stack's bucket on a VM.
VM_REPO_PATH = "/pgbackrest"
PGBACKREST = "/usr/bin/pgbackrest"
#: Restore target kinds (pgBackRest --type): latest is "default" (end of the archive).
TARGET_KINDS = ("latest", "time", "xid", "name")


@dataclass(frozen=True)
class ObjectStorage:
    endpoint: str  #: host name in the URL and in the server certificate
    port: int
    region: str  #: SigV4 signing region
    uri_style: str  #: host (bucket.endpoint) or path (endpoint/bucket)
    repo_path: str  #: pgBackRest repository path inside the bucket
    ca_file: str | None = None  #: None: the system CA store
    bucket: str | None = None  #: None: backup.bucket


def ovh_endpoint(region: str) -> str:
    return f"s3.{region}.io.cloud.ovh.net"


def vm_object_storage(settings: Settings) -> ObjectStorage:
    region = settings.backup.region
    return ObjectStorage(
        endpoint=ovh_endpoint(region), port=443, region=region, uri_style="host", repo_path=VM_REPO_PATH
    )


def stanza(settings: Settings) -> str:
    """One stanza per cluster: Patroni's scope."""
    return settings.patroni.scope


@dataclass(frozen=True)
class RestoreSpec:
    """Bootstrap a NEW cluster from a repository, to ``kind``/``value``."""

    kind: str  #: one of TARGET_KINDS
    value: str = ""  #: time (e.g. 2026-01-01 12:00:00+00), xid or restore point name; empty for latest
    repo_path: str = VM_REPO_PATH  #: the source repository (the old cluster's) inside the bucket
    #: The source stack's bucket (backup.restore_from): read through its own pgBackRest config
    #: (restore-from.conf: its bucket, region and passphrase). None: this cluster's own bucket
    #: and passphrase, another repository path (the lab's ``lab restore``).
    bucket: str | None = None
    region: str = ""  #: the source bucket's Object Storage region (with ``bucket``)
    stanza: str = ""  #: the source cluster's stanza (with ``bucket``)

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"restore target must be one of {', '.join(TARGET_KINDS)}, got {self.kind!r}")
        if self.bucket is not None and not (self.region and self.stanza):
            raise ValueError("a restore from another bucket needs its region and stanza")
        if (self.kind == "latest") != (self.value == ""):
            raise ValueError(f"restore target {self.kind} {'takes no' if self.kind == 'latest' else 'needs a'} value")

    def pgbackrest_options(self) -> list[str]:
        """The restore command's target options."""
        if self.kind == "latest":
            return ["--type=default"]
        return [f"--type={self.kind}", f"--target={self.value}", "--target-action=promote"]


def restore_from(settings: Settings) -> RestoreSpec | None:
    """The restore ``backup.restore_from`` asks for (settings validated), or None."""
    rf = settings.backup.restore_from
    if not rf.bucket:
        return None
    kind = next((k for k in ("time", "xid", "name") if getattr(rf, k)), "latest")
    value = getattr(rf, kind) if kind != "latest" else ""
    return RestoreSpec(kind, value, repo_path=rf.repo_path, bucket=rf.bucket, region=rf.region, stanza=rf.stanza)
