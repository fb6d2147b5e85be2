#!/usr/bin/python3
# pgha-dns-callback: installed verbatim by cloud_init (node_scripts/dns_callback.py) when endpoint.dns.primary_record
# is on. Patroni runs it as its on_start and on_role_change callback, under coreutils
# timeout, with three arguments: ACTION ROLE SCOPE.
#
# When this node is the primary (role "primary"; Patroni < 4 said "master") it points
# ONE A record of an OVH DNS zone at this node's address, through the OVH API:
#   GET  /domain/zone/ZONE/record?fieldType=A&subDomain=RECORD   -> [ID]
#   GET  /domain/zone/ZONE/record/ID                            -> current target, ttl
#   PUT  /domain/zone/ZONE/record/ID {"target": IP, "ttl": TTL}  (only if it differs)
#   POST /domain/zone/ZONE/refresh                               (publish the zone)
# Before the PUT it asks its own Patroni REST API (GET /primary: 200 only while this
# node holds the leader lock), so a late callback of a former primary cannot overwrite
# the record of a newer one. Any other action or role: nothing to do.
#
# Transient failures (network, HTTP 5xx, 429) are retried with backoff until the
# config's deadline; other HTTP errors (403: missing access rule or invalid key) fail at
# once. Logs go to stderr (Patroni's log) and never contain a key or a signature.
# Exit status: 0 done or nothing to do, 1 failed, 2 bad usage or config.
import argparse
import hashlib
import http.client
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

PRIMARY_ROLES = ("primary", "master")
ACTIONS = ("on_start", "on_role_change")
CONFIG_KEYS = (
    "node",
    "address",
    "zone",
    "record",
    "fqdn",
    "ttl",
    "leader_check_url",
    "cacert",
    "deadline",
    "request_timeout",
    "backoff_base",
    "backoff_cap",
    "ovh",
)
OVH_KEYS = ("endpoint", "application_key", "application_secret", "consumer_key")


class Permanent(Exception):
    """Retrying cannot help."""


class Transient(Exception):
    """Worth another attempt before the deadline."""


def log(msg: str) -> None:
    print("pgha-dns-callback: " + msg, file=sys.stderr, flush=True)


def http_error_detail(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read() or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("errorCode", "message") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return e.reason or ""


class OvhApi:
    """Signed OVH API calls: X-Ovh-Signature = "$1$" + sha1(AS+CK+METHOD+URL+BODY+TS)."""

    def __init__(self, cfg: dict[str, str], zone: str) -> None:
        self.base = cfg["endpoint"].rstrip("/")
        self.application_key = cfg["application_key"]
        self.application_secret = cfg["application_secret"]
        self.consumer_key = cfg["consumer_key"]
        self.zone = zone
        self.timeout = 5.0
        self.delta: int | None = None

    def time_delta(self) -> int:
        """Server time minus local time (GET /auth/time needs no key), fetched once."""
        if self.delta is None:
            try:
                with urllib.request.urlopen(self.base + "/auth/time", timeout=self.timeout) as r:
                    self.delta = int(json.load(r)) - int(time.time())
            except urllib.error.HTTPError:
                self.delta = 0  # trust the local clock
            except (OSError, ValueError, http.client.HTTPException) as e:
                raise Transient(f"GET /auth/time: {e}") from e
        return self.delta

    def call(
        self, method: str, path: str, query: dict[str, str] | None = None, body: dict[str, Any] | None = None
    ) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = "" if body is None else json.dumps(body, separators=(",", ":"))
        ts = str(int(time.time()) + self.time_delta())
        signed = "+".join([self.application_secret, self.consumer_key, method, url, data, ts])
        headers = {
            "X-Ovh-Application": self.application_key,
            "X-Ovh-Consumer": self.consumer_key,
            "X-Ovh-Timestamp": ts,
            "X-Ovh-Signature": "$1$" + hashlib.sha1(signed.encode()).hexdigest(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        req = urllib.request.Request(
            url, data=data.encode() if body is not None else None, method=method, headers=headers
        )
        what = f"{method} {path}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            msg = f"{what}: HTTP {e.code} {http_error_detail(e)}"
            if e.code == 403:
                raise Permanent(
                    msg + " (the consumer key is invalid, expired or lacks an access rule; it needs: "
                    f"GET /domain/zone/{self.zone}/record, GET and PUT /domain/zone/{self.zone}/record/<id>, "
                    f"POST /domain/zone/{self.zone}/refresh)"
                ) from e
            if e.code == 429 or e.code >= 500:
                raise Transient(msg) from e
            raise Permanent(msg) from e
        except (OSError, http.client.HTTPException) as e:
            raise Transient(f"{what}: {e}") from e
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise Transient(f"{what}: answer is not JSON") from None


def still_leader(cfg: dict[str, Any], timeout: float) -> bool:
    """True while this node holds the leader lock (its REST API answers 200 on /primary)."""
    url = cfg["leader_check_url"]
    ctx = ssl.create_default_context(cafile=cfg["cacert"]) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:
            status: int = r.status
            return status == 200
    except urllib.error.HTTPError as e:
        if e.code == 503:
            return False
        raise Transient(f"Patroni GET /primary: HTTP {e.code}") from e
    except (OSError, http.client.HTTPException) as e:
        raise Transient(f"Patroni GET /primary: {e}") from e


class Update:
    """Point the record at this node. Steps done stay done across retries."""

    def __init__(self, cfg: dict[str, Any], api: OvhApi) -> None:
        self.cfg = cfg
        self.api = api
        self.record_id: int | None = None
        self.changed_from: str | None = None
        self.put_done = False

    def __call__(self) -> str:
        cfg, api = self.cfg, self.api
        records = "/domain/zone/{}/record".format(cfg["zone"])
        if self.record_id is None:
            ids = api.call("GET", records, {"fieldType": "A", "subDomain": cfg["record"]})
            if not isinstance(ids, list) or len(ids) != 1:
                raise Permanent(
                    "expected exactly one A record {}, found {}; create it once (pgha's Endpoint does when "
                    "endpoint.dns.primary_record is on) and never add a second one".format(cfg["fqdn"], ids)
                )
            self.record_id = ids[0]
        record = f"{records}/{self.record_id}"
        if not self.put_done:
            current = api.call("GET", record) or {}
            if current.get("target") == cfg["address"] and current.get("ttl") == cfg["ttl"]:
                return "{} already points at {} ({})".format(cfg["fqdn"], cfg["address"], cfg["node"])
            if not still_leader(cfg, api.timeout):
                return "{} is no longer the leader: {} left at {}".format(
                    cfg["node"], cfg["fqdn"], current.get("target")
                )
            self.changed_from = current.get("target")
            api.call("PUT", record, body={"target": cfg["address"], "ttl": cfg["ttl"]})
            self.put_done = True
        api.call("POST", "/domain/zone/{}/refresh".format(cfg["zone"]))
        return "{}: {} -> {} ({}, ttl {}s)".format(
            cfg["fqdn"], self.changed_from, cfg["address"], cfg["node"], cfg["ttl"]
        )


def with_retries(step: Callable[[], str], api: OvhApi, cfg: dict[str, Any]) -> str:
    deadline, request_timeout = float(cfg["deadline"]), float(cfg["request_timeout"])
    delay, cap = float(cfg["backoff_base"]), float(cfg["backoff_cap"])
    end = time.monotonic() + deadline
    attempt = 0
    while True:
        attempt += 1
        api.timeout = max(0.5, min(request_timeout, end - time.monotonic()))
        try:
            return step()
        except Transient as e:
            if time.monotonic() + delay >= end:
                raise Permanent(f"gave up after {attempt} attempts (deadline {deadline}s): {e}") from e
            log(f"attempt {attempt} failed: {e}; retrying in {delay:.1f}s")
            time.sleep(delay)
            delay = min(delay * 2, cap)


def main() -> int:
    ap = argparse.ArgumentParser(description="Patroni callback: point the DNS primary record at this node.")
    ap.add_argument("--config", required=True, help="dns-callback.json rendered for this node")
    ap.add_argument("action", help="Patroni callback action (on_start, on_role_change, ...)")
    ap.add_argument("role", help="the node's role (primary, replica, demoted, ...)")
    ap.add_argument("scope", help="the Patroni cluster name")
    args = ap.parse_args()
    if args.action not in ACTIONS or args.role not in PRIMARY_ROLES:
        return 0
    try:
        with open(args.config) as f:
            cfg = json.load(f)
        missing = [k for k in CONFIG_KEYS if k not in cfg] + [
            "ovh." + k for k in OVH_KEYS if k not in cfg.get("ovh", {})
        ]
    except (OSError, ValueError, AttributeError) as e:
        log(f"cannot read {args.config}: {e}")
        return 2
    if missing:
        log("{}: missing key(s) {}".format(args.config, ", ".join(missing)))
        return 2
    api = OvhApi(cfg["ovh"], cfg["zone"])
    log("{} {} (scope {}): pointing {} at {}".format(args.action, args.role, args.scope, cfg["fqdn"], cfg["address"]))
    t0 = time.monotonic()
    try:
        result = with_retries(Update(cfg, api), api, cfg)
    except Permanent as e:
        log(f"FAILED after {time.monotonic() - t0:.1f}s: {e}")
        return 1
    log(f"{result} in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
