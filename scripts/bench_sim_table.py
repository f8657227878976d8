#!/usr/bin/env python3
"""Benchmark a large registry on the deterministic simulator: how long until every node holds it.

Usage:
    .venv/bin/python scripts/bench_sim_table.py [--runs 1000x10000,100x100000]
        [--seeds 1] [--wall-timeout 600] [--virtual-timeout 900] [--quick]
        [--json bench-results/bench_sim_table.json]

Method. For each NODESxINSTANCES in ``--runs``, per seed: a ``SimCluster``
of NODES real protocol cores, started formed (``bootstrap``: the LAN
profile, the default link model), then every node registers
INSTANCES / NODES instances of its own at virtual time 0 (100 services), all
at once: a registry built in one go, as after a cold start of the whole
fleet. Then it runs until every node holds all INSTANCES entries with the
same digest, checking each virtual second.

Figures (median over seeds): ``converged_s`` (virtual seconds; null if
not within ``--virtual-timeout`` or ``--wall-timeout``, and then
``held_pct``, the mean share of the table the nodes hold, says how far it
got), ``udp_msgs_per_node_s``, ``udp_kib_per_node_s`` and
``sync_kib_per_node_s`` (push-pull, TCP) over the convergence, the most
``queue`` depth seen on a node (broadcast queue, sampled each second),
``wall_s`` and the process's peak RSS. The simulator runs the cores in one
Python process, so memory grows with NODES x INSTANCES: the default runs
are the largest this machine completes in minutes (see docs/benchmarks.md).

``--tail NODES,...`` instead measures the tail of the time to all nodes
under steady registrations (what bench_churn's p99 hinges on): per NODES
and per ``--mults`` value of ``retransmit_mult``, ``--tail-count``
registrations at ``--tail-rate`` per second from node i mod NODES; the
share that took over 2 s to reach every node (those waited for push-pull:
gossip missed a node), p50, p99 and the slowest.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import EntryChanged
from gossip_registry.core.protocol import Protocol
from gossip_registry.sim import SimCluster

SERVICES = 100
FIGURES = (
    "converged_s",
    "held_pct",
    "udp_msgs_per_node_s",
    "udp_kib_per_node_s",
    "sync_kib_per_node_s",
    "max_queue",
    "wall_s",
)


def one_run(nodes: int, instances: int, seed: int, virtual: float, wall: float) -> dict[str, Any]:
    started = time.perf_counter()
    cluster = SimCluster(nodes, seed=seed, bootstrap=True)
    per_node = instances // nodes
    total = per_node * nodes
    cluster.reset_traffic()
    for i, name in enumerate(cluster.names):
        for k in range(per_node):
            j = i * per_node + k
            cluster.register(name, f"svc{j % SERVICES}", f"{name}-{k}", port=80)
    # The real cores (the default factory): their queues and tables are read directly.
    cores = [c for c in map(cluster.node, cluster.names) if isinstance(c, Protocol)]
    assert len(cores) == nodes
    most_queued = 0

    def done() -> bool:
        nonlocal most_queued
        most_queued = max(most_queued, *(len(c.queue) for c in cores))
        if time.perf_counter() - started > wall:
            raise TimeoutError
        return all(c.table.live_count == total for c in cores) and cluster.digests_agree()

    try:
        converged = cluster.run_until(done, timeout=virtual, check_every=1.0)
    except TimeoutError:
        converged = False
    traffic = cluster.total_traffic().per_second()
    held = statistics.mean(c.table.live_count for c in cores) / total
    return {
        "nodes": nodes,
        "instances": total,
        "seed": seed,
        "converged_s": round(cluster.now, 1) if converged else None,
        "virtual_s": round(cluster.now, 1),
        "held_pct": round(100 * held, 1),
        "udp_msgs_per_node_s": round(traffic["udp_sent"] / nodes, 1),
        "udp_kib_per_node_s": round(traffic["udp_bytes_sent"] / nodes / 1024, 2),
        "sync_kib_per_node_s": round(traffic["stream_bytes_sent"] / nodes / 1024, 2),
        "max_queue": most_queued,
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def tail(nodes: int, mult: int, rate: float, count: int) -> dict[str, Any]:
    """Registrations at ``rate``; how long each took to be on every node (inf: never)."""
    config = ProtocolConfig().with_(retransmit_mult=mult)
    cluster = SimCluster(nodes, seed=1, config=config, bootstrap=True)
    seen: dict[str, dict[str, float]] = {}
    sent: dict[str, float] = {}

    def observe(node: str, now: float, event: object) -> None:
        if isinstance(event, EntryChanged) and event.new is not None:
            seen.setdefault(event.new.instance_id, {})[node] = now

    def register(i: int) -> None:
        sent[f"x{i}"] = cluster.now
        cluster.register(cluster.names[i % nodes], "churn", f"x{i}", port=80)

    cluster.on_notify(observe)
    for i in range(count):
        cluster.call_at(1.0 + i / rate, partial(register, i))
    cluster.run_for(1.0 + count / rate + 2 * config.push_pull_period(nodes))
    times = sorted(
        max(seen[k].values()) - t if len(seen.get(k, {})) == nodes else math.inf
        for k, t in sent.items()
    )
    late = sum(t > 2.0 for t in times)
    return {
        "nodes": nodes,
        "retransmit_mult": mult,
        "over_2s_pct": round(100 * late / count, 2),
        "p50_s": round(times[count // 2], 3),
        "p99_s": round(times[int(0.99 * count)], 3),
        "max_s": round(times[-1], 1),
    }


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"nodes": runs[0]["nodes"], "instances": runs[0]["instances"]}
    for key in FIGURES:
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = statistics.median(values) if len(values) == len(runs) else None
    row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    return row


def fmt(value: Any) -> str:
    return "timeout" if value is None else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="1000x10000,100x100000")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--virtual-timeout", type=float, default=900.0)
    parser.add_argument("--wall-timeout", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true", help="20 nodes x 400 instances")
    parser.add_argument("--tail", default=None, help="NODES,...: the spread tail instead")
    parser.add_argument("--mults", default="4,6", help="retransmit_mult values for --tail")
    parser.add_argument("--tail-rate", type=float, default=50.0)
    parser.add_argument("--tail-count", type=int, default=3000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.tail:
        tails = []
        for nodes in (int(x) for x in args.tail.split(",")):
            for mult in (int(x) for x in args.mults.split(",")):
                tails.append(tail(nodes, mult, args.tail_rate, args.tail_count))
                print("  " + "  ".join(f"{k}={v}" for k, v in tails[-1].items()), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"tail": tails}, indent=2))
        return 0
    if args.quick:
        args.runs, args.seeds = "20x400", 1
    rows, seeds = [], []
    for spec in args.runs.split(","):
        nodes, instances = (int(x) for x in spec.split("x"))
        runs = []
        for seed in range(1, args.seeds + 1):
            run = one_run(nodes, instances, seed, args.virtual_timeout, args.wall_timeout)
            print("  " + "  ".join(f"{k}={fmt(v)}" for k, v in run.items()), flush=True)
            runs.append(run)
        seeds += runs
        rows.append(median_row(runs))
    keys = ["nodes", "instances", *FIGURES, "peak_rss_mib"]
    widths = {k: max(len(k), *(len(fmt(r[k])) for r in rows)) for k in keys}
    print()
    print("  ".join(k.rjust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(fmt(r[k]).rjust(widths[k]) for k in keys))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows, "seeds": seeds}, indent=2))
    return 0 if all(r["converged_s"] is not None for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
