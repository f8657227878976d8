#!/usr/bin/env python3
"""Benchmark the steady state of a loaded cluster: what an idle node costs with a large table.

Usage:
    .venv/bin/python scripts/bench_steady.py [--sizes 1000,100000] [--nodes 5]
        [--idle-seconds 60] [--drain-timeout 240] [--quick]
        [--json bench-results/bench_steady.json] [--workdir DIR]

Method. For each table size T in ``--sizes``, with fresh ports and
processes: N preloaded real nodes (``scripts/bench_scale.py serve``: a real
``Node``, each registering T / N own instances over 1,000 services
in-process, then push-pulling with n1 until it holds all T) on 127.0.0.1,
LAN profile.

1. ``preload_s``: until every node holds T entries with the same digest.
2. ``drain_s``: then until every node's broadcast queue is empty
   (``gossip_registry_broadcast_queue_depth``), at most ``--drain-timeout``;
   ``queue_depth`` is the deepest queue then (0 if drained). The
   preloaded registrations are queued for piggybacking on every node
   (each node re-gossips what it learns), so this is how long a bulk load
   keeps the cluster's gossip busy.
3. Idle window of ``--idle-seconds``, no requests but the scrapes at its
   ends: ``cpu_pct_per_node`` (utime + stime over wall, % of a core),
   ``udp_pkts_per_node_s``, ``udp_bytes_per_node_s``,
   ``sync_bytes_per_node_s`` (stream bytes sent: push-pull and TCP
   pings), ``syncs`` (push-pulls started, all nodes), ``bytes_per_sync``
   (stream bytes sent by both ends / syncs) and ``entries_repaired`` (by
   push-pull during the window: 0 between equal tables, which then
   exchange only digests).
   If the queues did not drain, the window is still measured and marked
   ``drained: false``: those figures include the piggybacking.

The table prints each size and the ratio of each idle figure to the
first (smallest) size's, measured in the same run.

Every process is stopped by PID in a ``finally``.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

import trio  # noqa: E402
from bench_scale import (  # noqa: E402  (scripts/ is not a package)
    BenchError,
    Proc,
    plan_cluster,
    preload,
    scrape,
    statuses,
    workspace,
    write_json,
)

from gossip_registry.chaos.http11 import HttpClient  # noqa: E402
from gossip_registry.chaos.sigterm import interrupt_on_sigterm, run_interruptible  # noqa: E402
from tests.support.processes import cpu_seconds  # noqa: E402

REQUEST_TIMEOUT = 5.0
POLL = 1.0
IDLE = ("cpu_pct_per_node", "udp_pkts_per_node_s", "udp_bytes_per_node_s", "sync_bytes_per_node_s")
FIGURES = (
    "preload_s",
    "drain_s",
    "queue_depth",
    *IDLE,
    "syncs",
    "bytes_per_sync",
    "entries_repaired",
)


async def run_once(workdir: Path, n: int, total: int, args: argparse.Namespace) -> dict[str, Any]:
    cluster, procs, _, per_node = plan_cluster(workdir, n, total)  # the joiner is not started
    total = per_node * n
    row: dict[str, Any] = {"nodes": n, "instances": total, "per_node": per_node}
    try:
        async with HttpClient(REQUEST_TIMEOUT) as http:
            row["preload_s"] = round(await preload(http, cluster, procs, per_node), 1)
            print(f"  T={total}: preloaded in {row['preload_s']} s", flush=True)
            drained_at = time.monotonic()
            depth = 0.0
            while time.monotonic() - drained_at < args.drain_timeout:
                cluster.check_alive()
                depth = max([(await scrape(p))[1] for p in procs])
                if depth == 0:
                    break
                await trio.sleep(POLL)
            row["drained"] = depth == 0
            row["drain_s"] = round(time.monotonic() - drained_at, 1) if depth == 0 else None
            row["queue_depth"] = depth
            print(f"  T={total}: queues {'empty' if depth == 0 else f'at {depth:.0f}'}", flush=True)
            row.update(await idle(http, procs, args.idle_seconds))
            print(f"  T={total}: " + "  ".join(f"{k}={row[k]}" for k in FIGURES), flush=True)
    except BenchError as exc:
        print(f"  T={total}: {exc}", flush=True)
        row["error"] = str(exc)
    finally:
        cluster.stop()
    return row


async def idle(http: HttpClient, procs: list[Proc], seconds: float) -> dict[str, Any]:
    first = [s for s in await statuses(http, procs) if s is not None]
    tcp_first = [(await scrape(p))[0] for p in procs]
    cpu_first = [cpu_seconds(p.process.pid) for p in procs]
    began = time.monotonic()
    await trio.sleep(seconds)
    wall = time.monotonic() - began
    cpu_last = [cpu_seconds(p.process.pid) for p in procs]
    tcp_last = [(await scrape(p))[0] for p in procs]
    last = [s for s in await statuses(http, procs) if s is not None]
    if len(first) != len(procs) or len(last) != len(procs):
        raise BenchError("a node did not answer /v1/status around the idle window")
    n = len(procs)

    def rise(stat: str) -> int:
        return sum(
            b["stats"].get(stat, 0) - a["stats"].get(stat, 0)
            for a, b in zip(first, last, strict=True)
        )

    tcp = sum(b - a for a, b in zip(tcp_first, tcp_last, strict=True))
    syncs = rise("syncs_started")
    return {
        "cpu_pct_per_node": round(
            100 * sum(b - a for a, b in zip(cpu_first, cpu_last, strict=True)) / wall / n, 2
        ),
        "udp_pkts_per_node_s": round(rise("udp_out") / wall / n, 2),
        "udp_bytes_per_node_s": round(rise("udp_bytes_out") / wall / n),
        "sync_bytes_per_node_s": round(tcp / wall / n),
        "syncs": syncs,
        "bytes_per_sync": round(tcp / syncs) if syncs else None,
        "entries_repaired": rise("entries_repaired"),
    }


def fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    keys = ["nodes", "instances", *FIGURES, "drained"]
    widths = {k: max(len(k), *(len(fmt(r.get(k))) for r in rows)) for k in keys}
    lines = ["  ".join(k.rjust(widths[k]) for k in keys)]
    lines += ["  ".join(fmt(r.get(k)).rjust(widths[k]) for k in keys) for r in rows]
    base = rows[0]
    for r in rows[1:]:
        ratios = []
        for k in IDLE:
            if isinstance(base.get(k), int | float) and isinstance(r.get(k), int | float):
                ratios.append(f"{k} x{r[k] / base[k]:.2f}" if base[k] else f"{k} n/a")
        lines.append(f"{r['instances']} against {base['instances']}: " + ", ".join(ratios))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    rows = []
    with workspace(args.workdir) as root:
        for total in [int(s) for s in args.sizes.split(",")]:
            run_dir = root / f"t{total}"
            run_dir.mkdir(parents=True, exist_ok=True)
            rows.append(await run_once(run_dir, args.nodes, total, args))
    print()
    print(table(rows))
    write_json(args.json, {"rows": rows})
    return 1 if any("error" in r for r in rows) else 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--drain-timeout", type=float, default=240.0)
    parser.add_argument("--quick", action="store_true", help="3 nodes, 150 and 600, 2 s idle")
    parser.add_argument("--json", default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.nodes, args.idle_seconds, args.drain_timeout = "150,600", 3, 2.0, 60.0
    return args


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    sys.exit(
        run_interruptible(
            lambda: trio.run(interrupt_on_sigterm, partial(main, options)), "bench stopped"
        )
    )
