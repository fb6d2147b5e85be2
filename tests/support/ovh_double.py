"""A local double of the OVH API (signature checks, access rules, zone records) on
127.0.0.1, for the DNS primary-record callback: used by the tools tests (the script run
for real) and the lab test (Patroni running it)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloud_init import dns_callback

ZONE = "example.com"
RECORD_ID = 5081234567
AK, AS, CK = "test-ak-7f3a", "test-as-SECRET-91c2", "test-ck-SECRET-d4e8"


def ovh_signature(method: str, url: str, body: str, ts: str) -> str:
    """Computed here independently of the script: $1$ + sha1(AS+CK+METHOD+URL+BODY+TS)."""
    return "$1$" + hashlib.sha1(f"{AS}+{CK}+{method}+{url}+{body}+{ts}".encode()).hexdigest()


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: str
    signature_ok: bool | None  # None: unsigned call (/auth/time, Patroni's /primary)


@dataclass
class OvhDouble:
    """The slice of the OVH API the callback uses, plus the node's Patroni /primary."""

    base: str = ""
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    granted: set[tuple[str, str]] = field(default_factory=set)
    fail_next: list[int] = field(default_factory=list)  #: HTTP statuses for the next OVH calls
    leader: bool = True
    clock_skew: int = 0  #: server clock minus local clock
    calls: list[Call] = field(default_factory=list)
    refreshed: int = 0

    def ovh_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.startswith("/1.0/domain/")]


def grant_callback_rules(api: OvhDouble, record_id: int = RECORD_ID) -> None:
    api.granted = {(r["method"], "/1.0" + r["path"]) for r in dns_callback.access_rules(ZONE, record_id)}


def make_handler(api: OvhDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self) -> None:
            u = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if u.path == "/primary":
                api.calls.append(Call(self.command, u.path, {}, body, None))
                return self.reply(200 if api.leader else 503, {"role": "primary" if api.leader else "replica"})
            if u.path == "/1.0/auth/time":
                api.calls.append(Call(self.command, u.path, {}, body, None))
                return self.reply(200, int(time.time()) + api.clock_skew)
            ts = self.headers.get("X-Ovh-Timestamp", "")
            sig_ok = self.headers.get("X-Ovh-Signature") == ovh_signature(
                self.command, api.base.removesuffix("/1.0") + self.path, body, ts
            )
            api.calls.append(Call(self.command, u.path, parse_qs(u.query), body, sig_ok))
            if self.headers.get("X-Ovh-Application") != AK or not sig_ok:
                return self.reply(400, {"errorCode": "INVALID_SIGNATURE", "message": "Invalid signature"})
            if abs(int(ts) - (int(time.time()) + api.clock_skew)) > 5:
                return self.reply(400, {"errorCode": "QUERY_TIME_OUT", "message": "Query out of time"})
            if api.fail_next:
                status = api.fail_next.pop(0)
                return self.reply(status, {"errorCode": f"HTTP_{status}", "message": "injected"})
            route = "/1.0/domain/zone/" + ZONE
            if (self.command, u.path) not in api.granted:
                return self.reply(403, {"errorCode": "NOT_GRANTED_CALL", "message": "This call has not been granted"})
            if self.command == "GET" and u.path == f"{route}/record":
                q = parse_qs(u.query)
                ids = [
                    i
                    for i, r in api.records.items()
                    if [r["fieldType"]] == q.get("fieldType") and [r["subDomain"]] == q.get("subDomain")
                ]
                return self.reply(200, ids)
            if u.path.startswith(f"{route}/record/"):
                rid = int(u.path.rsplit("/", 1)[1])
                if rid not in api.records:
                    return self.reply(404, {"message": "This service does not exist"})
                if self.command == "GET":
                    return self.reply(200, api.records[rid])
                if self.command == "PUT":
                    api.records[rid].update(json.loads(body))
                    return self.reply(200, None)
            if self.command == "POST" and u.path == f"{route}/refresh":
                api.refreshed += 1
                return self.reply(200, None)
            return self.reply(404, {"message": "no such route in the double"})

        do_GET = do_PUT = do_POST = handle_any

    return Handler
