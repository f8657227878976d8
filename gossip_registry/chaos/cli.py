"""Chaos testing against real agent processes: faults, checked invariants, a report.

Usage (the ``gossip-registry-chaos`` command; the plots need the ``chaos`` extra):
    gossip-registry-chaos SCENARIO [--nodes 5] [--duration 30] [--seed 1]
        [--mode auto|netns|loopback] [--profile local|lan|wan] [--out DIR]
    gossip-registry-chaos all [same options]     # every scenario but smoke, one after another
    gossip-registry-chaos check HISTORY.jsonl    # judge a saved history again
    gossip-registry-chaos list                   # the scenarios

Each run writes into its own directory under ``--out`` (default
``chaos-results/``): ``history.jsonl``, ``record.json``, ``report.md``,
``timeline.png`` and the agents' logs. It prints progress, then a verdict per
invariant; a failing run prints its seed and the command that reproduces it.
Exit status 1 if any invariant failed, 2 on a run that could not be carried
out. ``--mode auto`` uses network namespaces and nftables when running as
root with ``ip`` and ``nft`` installed, loopback with in-transport faults
otherwise. SIGTERM and Ctrl-C stop every agent and remove every namespace.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gossip_registry.chaos.checker import Verdict, check_history
from gossip_registry.chaos.history import load_history
from gossip_registry.chaos.report import (
    NO_PLOT,
    write_record,
    write_report,
    write_timeline,
)
from gossip_registry.chaos.runner import ChaosError, RunOptions, RunResult, run
from gossip_registry.chaos.scenarios import SCENARIOS, SUITE
from gossip_registry.chaos.sigterm import sigterm_as_ctrl_c

__all__ = ["main"]


def print_verdict(verdict: Verdict) -> None:
    for c in verdict.checks:
        print(f"  {'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}")


def publish(result: RunResult) -> None:
    """Check, print and write the record, report and plot of one finished run."""
    events = load_history(result.history)
    out = result.history.parent
    verdict = result.verdict
    extra = {"leftovers": result.leftovers, "seconds": round(result.seconds, 1)}
    write_record(out / "record.json", events, verdict, extra)
    plot = write_timeline(out / "timeline.png", events, verdict)
    write_report(out / "report.md", events, verdict, plot)
    print(f"[{result.options.scenario}] {'PASS' if verdict.ok else 'FAIL'} ({result.mode} mode)")
    print_verdict(verdict)
    if result.leftovers:
        print(f"  LEFTOVERS of run {result.prefix}: {result.leftovers}")
    if not verdict.ok:
        print(f"  seed {result.options.seed}; reproduce with: {result.options.command()}")
    wrote = ", ".join(["record.json", "report.md", *([plot] if plot else [])])
    print(f"  wrote {out}/{wrote}", flush=True)
    if plot is None:
        print(f"  no timeline.png: {NO_PLOT}", flush=True)


def run_one(name: str, args: argparse.Namespace, out: Path) -> RunResult:
    options = RunOptions(
        scenario=name,
        nodes=args.nodes,
        duration=args.duration,
        seed=args.seed,
        mode=args.mode,
        out=out,
        profile=args.profile or SCENARIOS[name].profile,
    )
    result = run(options)
    publish(result)
    return result


def summary(results: list[RunResult], path: Path) -> None:
    """The suite's table: invariants, detection and convergence per scenario."""
    lines = [
        "| scenario | mode | profile | 1 | 2 | 3 | 4 | 5 | false pos | detect first/all s "
        "| converge s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        marks = ["ok" if c.ok else "FAIL" for c in r.verdict.checks]
        figures = r.verdict.figures
        detect = "; ".join(
            f"{d['first_s']}/{d['all_s']}" for d in figures.get("detection", {}).values()
        )
        lines.append(
            f"| {r.options.scenario} | {r.mode} | {r.options.profile} | {' | '.join(marks)} | "
            f"{figures.get('false_positives')} | {detect or '-'} | "
            f"{figures.get('convergence_s')} |"
        )
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    print(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gossip-registry-chaos", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("what", help="a scenario, 'all', 'check' or 'list'")
    parser.add_argument("file", nargs="?", type=Path, help="with check: the history file")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--duration", type=float, default=30.0, help="fault length, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto")
    parser.add_argument(
        "--profile",
        choices=["local", "lan", "wan"],
        default=None,
        help="default: the scenario's own (lan for the loss scenarios, local for the rest)",
    )
    parser.add_argument("--out", type=Path, default=Path("chaos-results"))
    args = parser.parse_args(argv)
    if args.what not in (*SCENARIOS, "all", "check", "list"):
        parser.error(f"unknown scenario {args.what!r}; one of {', '.join(SCENARIOS)}")
    if args.what == "check" and args.file is None:
        parser.error("check needs the history file")
    if args.nodes < 3:
        parser.error("--nodes must be at least 3")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.what == "list":
        for s in SCENARIOS.values():
            print(f"{s.name:16} {s.profile:6} {s.description}")
        return 0
    if args.what == "check":
        verdict = check_history(load_history(args.file))
        print(f"{args.file}: {'PASS' if verdict.ok else 'FAIL'}")
        print_verdict(verdict)
        return 0 if verdict.ok else 1
    sigterm_as_ctrl_c()
    names = SUITE if args.what == "all" else [args.what]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = []
    status = 0
    try:
        for name in names:
            results.append(run_one(name, args, args.out / f"{stamp}-{name}"))
    except* KeyboardInterrupt:  # trio may deliver these inside a group
        print("interrupted; every agent was stopped and every namespace removed", flush=True)
        status = 130
    except* ChaosError as group:
        for exc in group.exceptions:
            print(f"run failed: {exc}", flush=True)
        status = 2
    if status:
        return status
    if args.what == "all":
        summary(results, args.out / f"{stamp}-summary.md")
    return 0 if all(r.verdict.ok and not r.leftovers for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
