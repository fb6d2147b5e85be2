"""Turning a drill's recorded attempts into figures: RTO per client path, acknowledged
commits missing (RPO), moments with two writable primaries, leader changes; and the
outputs: a human table, JSON, and a PNG timeline (matplotlib, Agg backend).

Definitions (README "Failover drills"):

- RTO of a client path: the longest time between two consecutive acknowledged commits
  of that client, from its last ack before the fault to the end of the drill.
- RPO: acknowledged commits (``committed``) whose row is missing afterwards.
- Two writable primaries: a commit acknowledged by node A while node B was inside a run
  of consecutive acknowledged commits from one source (writer or probe) with no failure
  in between, strictly after B's first ack of the run and before B's last write of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .drill_load import COMMITTED, LOCAL_ONLY, NOT_COMMITTED, READ_ONLY, UNKNOWN, Attempt

MOMENT_MERGE_S = 1.0


def client_summary(attempts: list[Attempt], fault_t: float | None, present: set[int] | None) -> dict[str, Any]:
    acks = sorted(a.t1 for a in attempts if a.outcome == COMMITTED)
    out: dict[str, Any] = {
        "attempts": len(attempts),
        "committed": sum(a.outcome == COMMITTED for a in attempts),
        "not_committed": sum(a.outcome == NOT_COMMITTED for a in attempts),
        "unknown": sum(a.outcome == UNKNOWN for a in attempts),
        "rto_s": None,
        "last_ack_before_fault": None,
        "first_ack_after_fault": None,
        "servers": sorted({a.node for a in attempts if a.outcome == COMMITTED and a.node}),
    }
    if fault_t is not None:
        before = [t for t in acks if t <= fault_t]
        after = [t for t in acks if t > fault_t]
        if before:
            out["last_ack_before_fault"] = round(before[-1], 3)
        if after:
            out["first_ack_after_fault"] = round(after[0], 3)
        if before and after:
            series = [before[-1], *after]
            out["rto_s"] = round(max(b - a for a, b in zip(series, series[1:], strict=False)), 3)
    if present is not None:
        acked = {a.seq for a in attempts if a.outcome == COMMITTED}
        failed = {a.seq for a in attempts if a.outcome == NOT_COMMITTED}
        unknown = {a.seq for a in attempts if a.outcome == UNKNOWN}
        out["acked_missing"] = sorted(acked - present)
        out["failed_present"] = sorted(failed & present)  # must be empty: "not committed" rows that exist
        out["unknown_present"] = len(unknown & present)
    return out


def runs(attempts: Iterable[Attempt]) -> list[tuple[str, float, float]]:
    """(node, first ack, last send) of every run of >= 2 consecutive acknowledged commits
    on one node from one source, with no failed attempt of that source in between."""
    by_source: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_source[a.source].append(a)
    out: list[tuple[str, float, float]] = []

    def close(run: list[Attempt]) -> None:
        if len(run) >= 2 and run[0].t1 < run[-1].t0 and run[0].node:
            out.append((run[0].node, run[0].t1, run[-1].t0))

    for atts in by_source.values():
        atts.sort(key=lambda a: a.t0)
        cur: list[Attempt] = []
        for a in atts:
            if a.outcome == COMMITTED and a.node and cur and cur[-1].node == a.node:
                cur.append(a)
            else:
                close(cur)
                cur = [a] if a.outcome == COMMITTED and a.node else []
        close(cur)
    return out


def dual_primaries(attempts: list[Attempt]) -> list[dict[str, Any]]:
    """Moments when two nodes acknowledged writes at the same time (see module doc)."""
    intervals = runs(attempts)
    evidence: list[tuple[float, float, str, str]] = []
    for a in attempts:
        if a.outcome != COMMITTED or not a.node:
            continue
        for node, start, end in intervals:
            if node != a.node and start < a.t0 and a.t1 < end:
                evidence.append((a.t0, a.t1, a.node, node))
    evidence.sort()
    moments: list[dict[str, Any]] = []
    for t0, t1, n1, n2 in evidence:
        if moments and t0 - moments[-1]["t_end"] <= MOMENT_MERGE_S:
            m = moments[-1]
            m["t_end"] = max(m["t_end"], round(t1, 3))
            m["nodes"] = sorted(set(m["nodes"]) | {n1, n2})
            m["evidence"] += 1
        else:
            moments.append({"t_start": round(t0, 3), "t_end": round(t1, 3), "nodes": sorted({n1, n2}), "evidence": 1})
    return moments


def leadership(monitor_log: dict[str, Any], old_leader: str | None, fault_t: float | None) -> dict[str, Any]:
    """Promotions (a node other than the old leader reporting role primary after the
    fault) and changes of the etcd leader key."""
    since = fault_t if fault_t is not None else 0.0
    promotions = []
    seen: set[str] = set()
    for v in monitor_log["views"]:
        if v["t"] >= since and v["node"] != old_leader and v["reachable"] and v["role"] == "primary" and v["node"] not in seen:
            promotions.append({"t": round(v["t"], 3), "node": v["node"]})
            seen.add(v["node"])
    changes = []
    prev: str | None = None
    for t, holder in monitor_log["leader_keys"]:
        if prev is not None and holder != prev:
            changes.append({"t": round(t, 3), "from": prev, "to": holder})
        prev = holder if holder is not None else prev
    key_moved = any(ch["to"] not in (None, old_leader) for ch in changes if ch["t"] >= since)
    new_leader = promotions[-1]["node"] if promotions else None
    if new_leader is None and key_moved:
        new_leader = [ch["to"] for ch in changes if ch["to"] not in (None, old_leader)][-1]
    return {"promotions": promotions, "leader_key_changes": changes, "failover": bool(promotions) or key_moved, "new_leader": new_leader}


# ---------------------------------------------------------------- outputs


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def table(results: list[dict[str, Any]]) -> str:
    head = ("#", "scenario", "failover", "RTO libpq", "RTO haproxy", "acked lost", "2 primaries", "rejoin", "notes")
    rows: list[tuple[str, ...]] = [head]
    for r in results:
        if r.get("skipped"):
            rows.append((str(r["number"]), r["scenario"], "skipped", "", "", "", "", "", r["skipped"][:90]))
            continue
        cl = r["clients"]
        lost = sum(len(cl[p].get("acked_missing", [])) for p in cl)
        fo = f"{r['old_leader']}->{r['new_leader']}" if r["failover"] else "no"
        notes = "; ".join(r.get("notes", []))
        rows.append(
            (
                str(r["number"]),
                r["scenario"],
                fo,
                _fmt_s(cl["libpq"]["rto_s"]),
                _fmt_s(cl["haproxy"]["rto_s"]),
                str(lost),
                str(len(r["dual_primary"])),
                _fmt_s(r.get("rejoin_s")),
                notes,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines)


NODE_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]


def plot(path: Path, result: dict[str, Any], attempts: list[Attempt], node_names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    sources = ["libpq", "haproxy"] + [f"probe:{n}" for n in node_names]
    ypos = {s: len(sources) - i for i, s in enumerate(sources)}
    color = {n: NODE_COLORS[i % len(NODE_COLORS)] for i, n in enumerate(node_names)}
    fig, ax = plt.subplots(figsize=(13, 4.8), dpi=110)
    style = {
        COMMITTED: dict(marker="|", s=60, linewidths=1.2),
        NOT_COMMITTED: dict(marker="x", s=22, c="#d62728", linewidths=1.0),
        UNKNOWN: dict(marker="o", s=28, facecolors="none", edgecolors="#ff7f0e", linewidths=1.2),
        LOCAL_ONLY: dict(marker="D", s=18, c="#ff7f0e"),
        READ_ONLY: dict(marker="|", s=25, c="#cfcfcf", linewidths=0.8),
        "down": dict(marker="x", s=14, c="#f4a3a3", linewidths=0.8),
    }
    for outcome, kw in style.items():
        pts = [a for a in attempts if a.outcome == outcome and a.source in ypos]
        if not pts:
            continue
        xs = [a.t1 for a in pts]
        ys = [ypos[a.source] for a in pts]
        if outcome == COMMITTED:
            ax.scatter(xs, ys, c=[color.get(a.node or "", "#333333") for a in pts], **kw)  # type: ignore[arg-type]
        else:
            ax.scatter(xs, ys, **kw)  # type: ignore[arg-type]
    ymax = len(sources) + 0.6
    mark_style = {"fault": ("#d62728", "--"), "restore": ("#1f77b4", "--"), "info": ("#7f7f7f", ":")}
    for m in result.get("marks", []):
        col, ls = mark_style.get(m["kind"], ("#7f7f7f", ":"))
        ax.axvline(m["t"], color=col, linestyle=ls, linewidth=1.2)
        ax.text(m["t"], ymax, " " + m["label"], rotation=0, fontsize=7, color=col, va="bottom", ha="left")
    for p in result.get("promotions", []):
        ax.axvline(p["t"], color="#9467bd", linestyle=":", linewidth=1.5)
        ax.text(p["t"], 0.35, f" {p['node']} primary", fontsize=7, color="#9467bd", va="bottom")
    for m in result.get("dual_primary", []):
        ax.axvspan(m["t_start"], m["t_end"], color="#d62728", alpha=0.25)
    ax.set_yticks([ypos[s] for s in sources], sources)
    ax.set_ylim(0.2, ymax + 0.9)
    ax.set_xlabel("seconds since the drill started")
    cl = result.get("clients", {})
    rto = ", ".join(f"{p} {_fmt_s(cl[p]['rto_s'])}" for p in ("libpq", "haproxy") if p in cl)
    t = result.get("timing", {})
    ax.set_title(
        f"drill {result['number']} {result['scenario']} ({result['stack']}, ttl {t.get('ttl')} loop_wait {t.get('loop_wait')}): RTO {rto}",
        fontsize=10,
    )
    handles = [Line2D([], [], color=color[n], marker="|", linestyle="", markersize=10, label=f"ack by {n}") for n in node_names]
    handles += [
        Line2D([], [], color="#d62728", marker="x", linestyle="", label="not committed"),
        Line2D([], [], color="#ff7f0e", marker="o", markerfacecolor="none", linestyle="", label="outcome unknown"),
        Line2D([], [], color="#cfcfcf", marker="|", linestyle="", label="probe: read-only"),
        Line2D([], [], color="#ff7f0e", marker="D", linestyle="", label="probe: local-only commit"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(handles), fontsize=7, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
