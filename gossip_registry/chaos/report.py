"""A chaos run for people: a JSON record, a Markdown report and a timeline plot.

The plot has one row per node: how many members that node saw alive, suspect
and dead at each sweep, with the fault windows shaded, kills and the heal
marked, and the moment of convergence. matplotlib runs on its Agg backend
(no display), imported only here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gossip_registry.chaos.checker import Verdict

__all__ = ["NO_PLOT", "write_record", "write_report", "write_timeline"]

NO_PLOT = "matplotlib is not installed; `pip install gossip-registry[chaos]` adds it"

Event = dict[str, Any]
COLOURS = {"down": "#d62728", "pause": "#ff7f0e", "loss": "#9467bd", "partition": "#1f77b4"}
STATES = (("alive", "#2ca02c"), ("suspect", "#ff7f0e"), ("dead", "#d62728"))


def _faults(events: list[Event]) -> list[Event]:
    ends = {e["id"]: e["t"] for e in events if e["type"] == "fault_end"}
    end = max(e["t"] for e in events)
    return [
        e | {"end": ends.get(e["id"], end), "ended": e["id"] in ends}
        for e in events
        if e["type"] == "fault_start"
    ]


def write_record(path: Path, events: list[Event], verdict: Verdict, extra: dict[str, Any]) -> None:
    """meta, verdicts, figures, faults and operation counts as one JSON object."""
    meta = next(e for e in events if e["type"] == "meta")
    ops = [e for e in events if e["type"] == "op"]
    record = {
        "meta": meta,
        "ok": verdict.ok,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in verdict.checks],
        "figures": verdict.figures,
        "faults": _faults(events),
        "operations": {
            "total": len(ops),
            "acknowledged": sum(op["ok"] for op in ops),
            "registrations": sum(op["op"] == "register" for op in ops),
        },
    } | extra
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")


def write_report(path: Path, events: list[Event], verdict: Verdict, plot: str | None) -> None:
    meta = next(e for e in events if e["type"] == "meta")
    lines = [
        f"# Chaos run: {meta['scenario']}",
        "",
        f"- verdict: **{'PASS' if verdict.ok else 'FAIL'}**",
        f"- mode: {meta['mode']} (run prefix {meta['prefix']}), {len(meta['nodes'])} nodes, "
        f"profile {meta['profile']}, seed {meta['seed']}",
        f"- reproduce: `{meta['command']}`",
        f"- suspicion timeout {meta['suspicion_min']:.1f}-{meta['suspicion_max']:.1f} s; "
        f"bounds: detection {meta['detect_bound']:.0f} s, convergence "
        f"{meta['converge_bound']:.0f} s",
        "",
        "| invariant | verdict | detail |",
        "|---|---|---|",
    ]
    for c in verdict.checks:
        lines.append(f"| {c.name} | {'PASS' if c.ok else 'FAIL'} | {c.detail} |")
    lines += [
        "",
        "## Faults",
        "",
        "| kind | nodes | params | start s | end s |",
        "|---|---|---|---|---|",
    ]
    for f in _faults(events):
        end = f"{f['end']:.1f}" if f["ended"] else "-"
        params = ", ".join(f"{k}={v}" for k, v in f["params"].items())
        lines.append(f"| {f['kind']} | {' '.join(f['nodes'])} | {params} | {f['t']:.1f} | {end} |")
    if plot is not None:
        lines += ["", f"![timeline]({plot})", ""]
    else:
        lines += ["", f"(No timeline plot: {NO_PLOT}.)", ""]
    path.write_text("\n".join(lines))


def write_timeline(path: Path, events: list[Event], verdict: Verdict) -> str | None:
    """Plot the run to ``path``; its file name for the report, or None without matplotlib.

    The plot is the one part of a run that needs the ``chaos`` extra; the
    verdict, the record and the report do not, so a run never fails for it.
    """
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = next(e for e in events if e["type"] == "meta")
    nodes = meta["nodes"]
    fig, axes = plt.subplots(
        len(nodes), 1, sharex=True, figsize=(10, 1.1 * len(nodes) + 1.2), squeeze=False
    )
    heal = verdict.figures.get("heal_s")
    converged = verdict.figures.get("convergence_s")
    for ax, node in zip(axes[:, 0], nodes, strict=True):
        seen = [e for e in events if e["type"] == "obs" and e["node"] == node and e["members"]]
        times = [e["t"] for e in seen]
        for state, colour in STATES:
            counts = [sum(s == state for s in e["members"].values()) for e in seen]
            ax.step(times, counts, where="post", color=colour, label=state, linewidth=1.2)
        for f in _faults(events):
            if f["ended"] or f["kind"] != "down":  # a kill for good is a line, not a shade
                ax.axvspan(f["t"], f["end"], color=COLOURS.get(f["kind"], "grey"), alpha=0.15)
            if f["kind"] == "down" and node in f["nodes"]:
                ax.axvline(f["t"], color="#d62728", linestyle=":", linewidth=1)
        if heal is not None:
            ax.axvline(heal, color="black", linestyle="--", linewidth=0.8)
            if converged is not None:
                ax.axvline(heal + converged, color="#2ca02c", linestyle="--", linewidth=0.8)
        ax.set_ylabel(node, rotation=0, labelpad=18)
        ax.set_ylim(-0.3, len(nodes) + 0.3)
    axes[0, 0].legend(loc="upper right", fontsize="small", ncol=3)
    axes[0, 0].set_title(
        f"{meta['scenario']} ({meta['mode']}): members seen per node; shaded: faults "
        "(red down, orange pause, purple loss, blue partition); dashed: heal, converged",
        fontsize="small",
    )
    axes[-1, 0].set_xlabel("seconds since start")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name
