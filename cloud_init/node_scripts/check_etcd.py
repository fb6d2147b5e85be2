#!/usr/bin/python3
# pgha-check-etcd: installed verbatim by cloud_init (node_scripts/check_etcd.py). Run by the deploy-time remote
# commands, by the lab, and (with --reachable) before Patroni starts.
#
# Checks over TLS with this node's client certificate that every expected etcd member
# is started (`etcdctl member list`) and healthy (`etcdctl endpoint health`).
# --reachable only waits for one endpoint to answer. Exits non-zero with a message.
import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any


def etcdctl(cfg: dict[str, Any], endpoints: list[str], *args: str) -> tuple[int, str, str]:
    cmd = [
        "etcdctl",
        "--endpoints=" + ",".join(endpoints),
        "--cacert=" + cfg["cacert"],
        "--cert=" + cfg["cert"],
        "--key=" + cfg["key"],
        "--dial-timeout=2s",
        "--command-timeout=3s",
        "-w",
        "json",
        *args,
    ]
    env = dict(os.environ, ETCDCTL_API="3")
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=15)
    return p.returncode, p.stdout, p.stderr.strip()


def check(cfg: dict[str, Any], reachable_only: bool) -> tuple[list[str], str]:
    """Return a list of problems (empty = healthy) and a summary line."""
    if reachable_only:
        for ep in cfg["endpoints"]:
            rc, _, _ = etcdctl(cfg, [ep], "endpoint", "health")
            if rc == 0:
                return [], "etcd reachable at " + ep
        return ["no etcd endpoint answers: " + ", ".join(cfg["endpoints"])], ""
    problems: list[str] = []
    rc, out, err = etcdctl(cfg, cfg["endpoints"], "member", "list")
    if rc != 0:
        return ["etcdctl member list failed: " + (err or out)], ""
    members = json.loads(out).get("members", [])
    started = sorted(m.get("name", "") for m in members if m.get("name") and m.get("clientURLs"))
    unstarted = [m for m in members if not m.get("name")]
    expected = sorted(cfg["members"])
    if started != expected:
        problems.append(f"started members {started}, expected {expected}")
    if unstarted:
        problems.append(f"{len(unstarted)} member(s) added but not started")
    healthy: list[str] = []
    for ep in cfg["endpoints"]:
        rc, out, err = etcdctl(cfg, [ep], "endpoint", "health")
        ok = False
        if rc == 0:
            try:
                ok = all(h.get("health") for h in json.loads(out))
            except ValueError:
                ok = False
        if ok:
            healthy.append(ep)
        else:
            problems.append("endpoint {} is not healthy: {}".format(ep, (err or out).splitlines()[-1:] or "no answer"))
    n_endpoints = len(cfg["endpoints"])
    return (
        problems,
        f"etcd: {len(started)}/{len(expected)} members started, {len(healthy)}/{n_endpoints} endpoints healthy",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True, help="check.json rendered for this node")
    ap.add_argument("--wait", type=float, default=0, help="retry for this many seconds (0 with --reachable: forever)")
    ap.add_argument("--reachable", action="store_true", help="only wait until one etcd endpoint answers")
    args = ap.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)["etcd"]
    forever = args.reachable and args.wait == 0
    deadline = time.monotonic() + args.wait
    last: list[str] | None = None
    while True:
        problems, summary = check(cfg, args.reachable)
        if not problems:
            print("OK " + summary, flush=True)
            return 0
        if problems != last:
            print("waiting: " + "; ".join(problems), file=sys.stderr, flush=True)
            last = problems
        if not forever and time.monotonic() >= deadline:
            print("FAILED etcd check: " + "; ".join(problems), file=sys.stderr, flush=True)
            return 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
