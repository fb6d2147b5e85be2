"""A drill's outputs: the human table, JSON files and a PNG timeline (matplotlib, Agg
backend). The figures themselves come from lab/drills/detect.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .events import COMMITTED, DOWN, LOCAL_ONLY, NOT_COMMITTED, READ_ONLY, UNKNOWN, Attempt

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
        COMMITTED: {"marker": "|", "s": 60, "linewidths": 1.2},
        NOT_COMMITTED: {"marker": "x", "s": 22, "c": "#d62728", "linewidths": 1.0},
        UNKNOWN: {"marker": "o", "s": 28, "facecolors": "none", "edgecolors": "#ff7f0e", "linewidths": 1.2},
        LOCAL_ONLY: {"marker": "D", "s": 18, "c": "#ff7f0e"},
        READ_ONLY: {"marker": "|", "s": 25, "c": "#cfcfcf", "linewidths": 0.8},
        DOWN: {"marker": "x", "s": 14, "c": "#f4a3a3", "linewidths": 0.8},
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
    # The alerts Alertmanager held during the drill (lab/drills/alerts.py), where they first appeared.
    fault_t = result.get("fault_t") or 0.0
    for i, a in enumerate(result.get("alerts", [])):
        t_alert = fault_t + a["fired_after_fault_s"]
        ax.axvline(t_alert, color="#e377c2", linestyle="-.", linewidth=1.0)
        label = a["alertname"] + (f" ({a['node']})" if a["node"] else "")
        ax.text(t_alert, 0.8 + 0.4 * (i % 3), f" alert {label}", fontsize=7, color="#e377c2", va="bottom")
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
    handles = [
        Line2D([], [], color=color[n], marker="|", linestyle="", markersize=10, label=f"ack by {n}") for n in node_names
    ]
    handles += [
        Line2D([], [], color="#d62728", marker="x", linestyle="", label="not committed"),
        Line2D([], [], color="#ff7f0e", marker="o", markerfacecolor="none", linestyle="", label="outcome unknown"),
        Line2D([], [], color="#cfcfcf", marker="|", linestyle="", label="probe: read-only"),
        Line2D([], [], color="#ff7f0e", marker="D", linestyle="", label="probe: local-only commit"),
    ]
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(handles), fontsize=7, frameon=False
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_summary(out_dir: Path, results: list[dict[str, Any]]) -> None:
    """results.json and table.txt for a series of drills."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "table.txt").write_text(table(results) + "\n")
