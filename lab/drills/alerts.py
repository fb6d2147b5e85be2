"""Which alerts fired during a drill, and when: Alertmanager's API v2 polled in a thread.

Each alert (name + node) is recorded with the drill clock's times it was first and last
seen active; the report gives them relative to the fault. Nothing is recorded when the
lab runs without monitoring (monitoring.enabled: false)."""

from __future__ import annotations

import threading
import urllib.error
from collections.abc import Callable
from typing import Any

from lab import monitoring
from lab.topology import Topology

POLL = 0.5


class AlertWatcher:
    def __init__(self, topo: Topology, now: Callable[[], float]):
        self.topo = topo
        self.now = now
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-watcher", daemon=True)

    def start(self) -> None:
        if monitoring.enabled(self.topo):
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = self.now()
            try:
                alerts = monitoring.active_alerts(self.topo)
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                self.errors += 1
                alerts = []
            self.record(alerts, t)
            self._stop.wait(POLL)

    def record(self, alerts: list[dict[str, Any]], t: float) -> None:
        """One poll's active alerts (lab.monitoring.active_alerts), seen at drill time ``t``."""
        for a in alerts:
            key = (a["alertname"], a["labels"].get("node", ""))
            entry = self.seen.setdefault(
                key,
                {
                    "alertname": key[0],
                    "node": key[1],
                    "severity": a["labels"].get("severity", ""),
                    "first_seen": t,
                    "starts_at": a["startsAt"],
                },
            )
            entry["last_seen"] = t

    def summary(self, fault_t: float | None) -> list[dict[str, Any]]:
        """Alerts seen, in order of appearance; times in seconds after the fault (None: no fault)."""
        out = []
        for e in sorted(self.seen.values(), key=lambda e: e["first_seen"]):
            ref = fault_t if fault_t is not None else 0.0
            out.append(
                {
                    "alertname": e["alertname"],
                    "node": e["node"],
                    "severity": e["severity"],
                    "starts_at": e["starts_at"],
                    "fired_after_fault_s": round(e["first_seen"] - ref, 1),
                    "last_seen_after_fault_s": round(e["last_seen"] - ref, 1),
                }
            )
        return out
