#!/usr/bin/env python3
"""Benchmark watches: many waiters on one node, and a blocking query across two nodes.

1. In process, one real node (loopback, port 0): start N tasks waiting on one
   service (``Node.wait_for_change``), then register an instance of it and
   time until every waiter has returned; also the time to park the N
   waiters, and the process's peak RSS growth divided by N.
2. Over HTTP, two real nodes in this process: a client (httpx, same
   process) holds ``GET /v1/services/web?index=..&wait=..`` on node A while
   node B registers an instance; the figure is the time from B's register
   call to A's answer, over ``--trials`` trials (p50/p99), LAN profile,
   trials 250 ms apart.

Through real connections, with one agent process and a separate load
process, see scripts/bench_watches_http.py.

Usage: scripts/bench_watches.py [--waiters 10000,20000] [--trials 50] [--json PATH]
Prints a table and writes JSON (default bench-results/bench_watches.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip_registry.config.node import NodeConfig
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.runtime.node import Node


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def many_waiters(count: int) -> dict[str, Any]:
    config = NodeConfig("bench", max_waiters=count)
    async with Node(config) as node:
        before = peak_rss_kib()
        woken = trio.Event()
        done = 0

        async def waiter(index: int) -> None:
            nonlocal done
            await node.wait_for_change("web", index, 60.0)
            done += 1
            if done == count:
                woken.set()

        async with trio.open_nursery() as nursery:
            started = trio.current_time()
            index = node.index("web")
            for _ in range(count):
                nursery.start_soon(waiter, index)
            while node.status()["waiters"] < count:
                await trio.sleep(0)
            parked = trio.current_time() - started
            rss = peak_rss_kib() - before
            changed = trio.current_time()
            await node.register("web", instance_id="w1", port=80)
            await woken.wait()
            wake = trio.current_time() - changed
    return {
        "waiters": count,
        "park_all_s": round(parked, 4),
        "wake_all_s": round(wake, 4),
        "rss_per_waiter_bytes": round(rss * 1024 / count),
    }


async def cross_node(trials: int) -> dict[str, Any]:
    lan = ProtocolConfig.lan()
    a_config = NodeConfig("a", http=("127.0.0.1", 0), protocol=lan)
    async with Node(a_config) as a:
        b_config = NodeConfig("b", seeds=(a.advertise_addr,), protocol=lan)
        async with Node(b_config) as b:
            while len(a.members()) < 2:
                await trio.sleep(0.01)
            assert a.http_addr is not None
            url = "http://{}:{}/v1/services/web".format(*a.http_addr)
            latencies = []
            async with httpx.AsyncClient(timeout=60) as client:
                for trial in range(trials):
                    # Pace trials past the 200 ms fast-gossip burst limit, as real
                    # registrations are; back to back, each would wait for the limit.
                    await trio.sleep(0.25)
                    index = (await client.get(url)).headers["X-Registry-Index"]
                    ends: list[float] = []

                    async def block(index: str, ends: list[float]) -> None:
                        await client.get(url, params={"index": index, "wait": "30s"})
                        ends.append(trio.current_time())

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(block, index, ends)
                        while a.status()["waiters"] < 1:
                            await trio.sleep(0.001)
                        start = trio.current_time()
                        await b.register("web", instance_id=f"w{trial}", port=80)
                    latencies.append(ends[0] - start)
    latencies.sort()
    return {
        "trials": trials,
        "p50_ms": round(1000 * statistics.median(latencies), 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        "max_ms": round(1000 * latencies[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", default="10000,20000")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--json", type=Path, default=Path("bench-results/bench_watches.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {"waiters": [], "cross_node": None}
    print(f"{'waiters':>8} {'park all':>10} {'wake all':>10} {'RSS/waiter':>11}")
    for count in (int(x) for x in args.waiters.split(",") if x.strip()):
        row = trio.run(many_waiters, count)
        results["waiters"].append(row)
        print(
            f"{row['waiters']:>8} {row['park_all_s']:>9.3f}s {row['wake_all_s']:>9.3f}s "
            f"{row['rss_per_waiter_bytes']:>9} B"
        )
    cross = trio.run(cross_node, args.trials)
    results["cross_node"] = cross
    print(
        f"\nblocking query on A answered after a register on B ({cross['trials']} trials): "
        f"p50 {cross['p50_ms']} ms, p99 {cross['p99_ms']} ms, max {cross['max_ms']} ms"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
