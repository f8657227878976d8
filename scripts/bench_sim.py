#!/usr/bin/env python3
"""Benchmark the protocol on the deterministic simulator at 100 to 10,000 nodes.

For each (nodes, loss) it runs the same measurement as ``gossip-registry
simulate`` (``gossip_registry.cli.simulate.run_simulation``: the cluster
starts formed, one registration spreads, one node crashes) once per seed, and
reports the median over seeds of: virtual seconds until a registration is on
50 %, 99 % and 100 % of nodes; virtual seconds from a
crash to the first and to the all-node detection; false positives; UDP
messages and bytes per node per second; push-pull (TCP) bytes per node per
second; and simulator speed (virtual seconds per wall second).

Usage: scripts/bench_sim.py [--nodes 100,1000,10000] [--loss 0,0.1,0.5]
       [--seeds 5] [--json PATH] [--jobs CPUS] [--host-up]
With --host-up only the crashed process dies and its host refuses its
traffic (ICMP port unreachable, TCP reset), which the protocol takes as
evidence (issue 17); without, the host is gone too and nothing answers.
Seeds run in parallel worker processes (--jobs, default: every CPU); the
simulator speed column is per process, and the wall column is the sum of
the seeds' wall times.
Rows are (nodes, loss=0) for every N, plus every other loss at N = 1,000
(or at the N nearest to it), as the issue asks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip_registry.cli.simulate import SimulationReport, run_simulation
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.sim.network import LinkModel

FIGURES = (
    "reg_p50_s",
    "reg_p99_s",
    "reg_all_s",
    "detect_first_s",
    "detect_all_s",
    "false_positives",
    "udp_msgs_per_node_s",
    "udp_bytes_per_node_s",
    "sync_bytes_per_node_s",
    "sim_speed",
)


def parse_list(text: str, kind: type) -> list:  # type: ignore[type-arg]
    return [kind(x) for x in text.split(",") if x.strip()]


def plan(nodes: list[int], losses: list[float]) -> list[tuple[int, float]]:
    lossy_n = min(nodes, key=lambda n: abs(math.log10(n) - 3))
    rows = [(n, 0.0) for n in nodes if 0.0 in losses or not losses]
    rows += [(lossy_n, p) for p in losses if p != 0.0]
    return rows


def figures(report: SimulationReport) -> dict[str, float]:
    """One run's figures under the JSON keys; inf where a phase did not finish."""

    def t(value: float | None) -> float:
        return math.inf if value is None else value

    traffic = report.traffic_per_node_per_s
    return {
        "reg_p50_s": t(report.spread_s["50%"]),
        "reg_p99_s": t(report.spread_s["99%"]),
        "reg_all_s": t(report.spread_s["100%"]),
        "detect_first_s": t(report.first_detection_s),
        "detect_all_s": t(report.all_detection_s),
        "false_positives": report.false_positives,
        "udp_msgs_per_node_s": traffic["udp_messages"],
        "udp_bytes_per_node_s": traffic["udp_bytes"],
        "sync_bytes_per_node_s": traffic["tcp_bytes"],
        "sim_speed": report.virtual_s / report.wall_s,
    }


def one_run(job: tuple[int, float, int, bool]) -> SimulationReport:
    """One seed, in a worker process (runs are independent and deterministic)."""
    nodes, loss, seed, host_up = job
    return run_simulation(nodes, seed=seed, loss=loss, bootstrap=True, timeout=300, host_up=host_up)


def median_row(reports: list[SimulationReport]) -> dict[str, float | int]:
    runs = [figures(r) for r in reports]
    row: dict[str, float | int] = {
        "nodes": reports[0].nodes,
        "loss": reports[0].loss,
        "host_up": reports[0].host_up,
        "seeds": len(reports),
    }
    for name in FIGURES:
        row[name] = statistics.median(run[name] for run in runs)
    row["wall_s"] = sum(r.wall_s for r in reports)
    return row


def fmt(value: float | int) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "n/a"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 100):
        return f"{value:.0f}"
    return f"{value:.3g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000,10000")
    parser.add_argument("--loss", default="0,0.1,0.5")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="seeds run in parallel processes"
    )
    parser.add_argument("--json", type=Path, default=Path("bench-results/bench_sim.json"))
    parser.add_argument(
        "--host-up", action="store_true", help="crashed processes' hosts refuse their traffic"
    )
    args = parser.parse_args()

    config = ProtocolConfig()
    link = LinkModel()
    print("link model:", link.describe())
    print(
        f"protocol: probe {config.probe_interval}s/{config.probe_timeout}s, "
        f"{config.indirect_checks} indirect, suspicion mult {config.suspicion_mult} "
        f"(max x{config.suspicion_max_mult}), gossip {config.gossip_interval}s to "
        f"{config.gossip_nodes}, fast path to {config.fast_gossip_nodes} "
        f"at most every {config.fast_gossip_interval}s, retransmit mult {config.retransmit_mult}"
    )
    print("each figure is the median over seeds; times are virtual seconds\n")
    header = ["nodes", "loss", "seeds", *FIGURES]
    print(" ".join(f"{h:>14}" for h in header), flush=True)
    rows = []
    for nodes, loss in plan(parse_list(args.nodes, int), parse_list(args.loss, float)):
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            jobs = [(nodes, loss, s, args.host_up) for s in range(1, args.seeds + 1)]
            reports = list(pool.map(one_run, jobs))
        row = median_row(reports)
        rows.append(row)
        print(" ".join(f"{fmt(row[h]):>14}" for h in header), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
