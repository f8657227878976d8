#!/usr/bin/env python3
"""Benchmark reads against a large table: the same lookups on a node of 100,000 and of ~1,000.

Usage:
    .venv/bin/python scripts/bench_reads.py [--large 100000] [--rounds 3] [--duration 3]
        [--concurrency 16] [--quick] [--json bench-results/bench_reads.json] [--workdir DIR]

Method. Two single-node clusters run side by side, each a real ``Node``
(UDP, TCP, HTTP) in a process of its own, started by this script's
``serve`` mode, which registers its table through ``Node.register``
in-process (100,000 HTTP PUTs would measure the write path):

- ``large``: ``--large`` instances, 1,000 services of ``large / 1,000`` each;
- ``small``: the same 1,000 services with 1 instance each, except ``svc5``,
  which has as many as in ``large``.

So ``GET /v1/services/svc5`` returns the same body from both, and the
catalog list (``GET /v1/services``) names the same 1,000 services: any
difference is the cost of the other instances. Each server measures
``Node.discover("svc5")`` in-process (median of 2,000 calls) once loaded.
Then ``scripts/loadgen.py`` (closed loop, ``--concurrency`` requests in
flight over keep-alive connections, ``--duration`` seconds) runs against
each path on each server, alternating small and large, ``--rounds``
times; the figure is the median requests per second and the ratio
large / small (1.0: no slower) is the median of the per-round ratios,
each from two measurements taken seconds apart.

Every process is stopped by PID in a ``finally``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

import trio  # noqa: E402
from bench_scale import HOST, SERVICES, BenchError, workspace, write_json  # noqa: E402

from gossip_registry.chaos.http11 import HttpClient  # noqa: E402
from gossip_registry.chaos.processes import spawn, stop_processes  # noqa: E402
from gossip_registry.chaos.sigterm import interrupt_on_sigterm, run_interruptible  # noqa: E402
from tests.support.processes import free_ports  # noqa: E402

TARGET = "svc5"
PATHS = {"service": f"/v1/services/{TARGET}", "catalog": "/v1/services"}
LOAD_TIMEOUT = 600.0
"""Seconds for a server to register its table (100,000 in-process registrations: about a minute)."""
STOP_GRACE = 5.0
DISCOVER_CALLS = 2000


def layout(kind: str, large: int) -> list[str]:
    """The service of each instance to register on a ``kind`` server."""
    per_service = max(1, large // SERVICES)
    if kind == "large":
        return [f"svc{i % SERVICES}" for i in range(per_service * SERVICES)]
    return [f"svc{i}" for i in range(SERVICES) if f"svc{i}" != TARGET] + [TARGET] * per_service


async def serve(config_path: Path, kind: str, large: int, ready: Path) -> None:
    """Register the table, write the discover latency to ``ready``, serve until SIGTERM."""
    from gossip_registry.config.cluster_file import load_cluster
    from gossip_registry.runtime.node import Node

    config = load_cluster(config_path).node(kind)
    parent = os.getppid()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(Node(config).run)
            for i, service in enumerate(layout(kind, large)):
                await node.register(service, instance_id=f"i{i}", address="10.0.0.1", port=80)
                if i % 16 == 0:
                    await trio.lowlevel.checkpoint()
            samples = []
            for _ in range(DISCOVER_CALLS):
                t0 = time.perf_counter()
                node.discover(TARGET)
                samples.append(time.perf_counter() - t0)
            figures = {
                "entries": node.protocol.table.live_count,
                "discover_us": round(statistics.median(samples) * 1e6, 2),
                "target_instances": len(node.discover(TARGET)),
            }
            ready.write_text(json.dumps(figures))

            async def watch_parent() -> None:
                while os.getppid() == parent:
                    await trio.sleep(1.0)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_parent)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def loadgen(port: int, path: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(SCRIPTS / "loadgen.py"),
        "http",
        f"{HOST}:{port}",
        "--target",
        path,
        "--concurrency",
        str(args.concurrency),
        "--duration",
        str(args.duration),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60 + args.duration)
    if done.returncode != 0:
        raise BenchError(f"loadgen failed: {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["errors"]:
        raise BenchError(f"{result['errors']} errors from {path} on port {port}")
    return result


async def main(args: argparse.Namespace) -> int:
    ports = free_ports(4)
    servers = {"large": (ports[0], ports[1]), "small": (ports[2], ports[3])}
    procs = []
    result: dict[str, Any] = {"large_instances": args.large, "rounds": []}
    with workspace(args.workdir) as root:
        try:
            for kind, (gossip, http) in servers.items():
                config = root / f"{kind}.toml"
                config.write_text(
                    f'[cluster]\nname = "reads-{kind}"\n\n[defaults]\nprofile = "lan"\n\n'
                    # One node owns the whole table here (50,000 by default).
                    f"[limits]\nmax_entries_per_owner = {2 * args.large}\n\n"
                    f'[[nodes]]\nname = "{kind}"\ngossip_port = {gossip}\nhttp_port = {http}\n'
                )
                (root / f"ready-{kind}").unlink(missing_ok=True)  # a --workdir used before
                argv = [sys.executable, __file__, "serve", "--config", str(config)]
                argv += ["--kind", kind, "--large", str(args.large)]
                procs.append(spawn(argv, root / f"{kind}.log", root))
            began = time.monotonic()
            for kind in servers:
                ready = root / f"ready-{kind}"
                while not ready.exists():
                    if any(p.poll() is not None for p in procs):
                        raise BenchError(f"a server exited; see {root}/*.log")
                    if time.monotonic() - began > LOAD_TIMEOUT:
                        raise BenchError("timeout: servers loading their tables")
                    await trio.sleep(0.5)
                result[kind] = json.loads(ready.read_text())
            print(
                f"  loaded in {time.monotonic() - began:.0f} s: {result['large']}, "
                f"{result['small']}",
                flush=True,
            )
            async with HttpClient(5.0) as client:  # both answer before anything is measured
                for _, http_port in servers.values():
                    for path in PATHS.values():
                        answer = await client.request(HOST, http_port, "GET", path)
                        if answer is None or answer[0] != 200:
                            raise BenchError(f"GET {path} on {http_port}: {answer}")
            for r in range(args.rounds):
                row: dict[str, Any] = {}
                for name, path in PATHS.items():
                    for kind in ("small", "large") if r % 2 == 0 else ("large", "small"):
                        row[f"{name}_{kind}"] = loadgen(servers[kind][1], path, args)
                    row[f"{name}_ratio"] = round(
                        row[f"{name}_large"]["per_s"] / row[f"{name}_small"]["per_s"], 3
                    )
                print(
                    f"  round {r + 1}: "
                    + "  ".join(
                        f"{k}={v['per_s']:.0f}/s" if isinstance(v, dict) else f"{k}={v}"
                        for k, v in row.items()
                    ),
                    flush=True,
                )
                result["rounds"].append(row)
        except BenchError as exc:
            print(f"  {exc}", flush=True)
            result["error"] = str(exc)
        finally:
            stop_processes(procs, STOP_GRACE)
    rounds = result["rounds"]
    if rounds:
        summary = {}
        for name in PATHS:
            for kind in ("small", "large"):
                summary[f"{name}_{kind}_per_s"] = round(
                    statistics.median(r[f"{name}_{kind}"]["per_s"] for r in rounds)
                )
                summary[f"{name}_{kind}_p99_us"] = round(
                    statistics.median(r[f"{name}_{kind}"]["p99_us"] for r in rounds)
                )
            summary[f"{name}_ratio"] = statistics.median(r[f"{name}_ratio"] for r in rounds)
        result["median"] = summary
        print()
        print(f"{'read':>8} {'small/s':>9} {'large/s':>9} {'large/small':>12}")
        for name in PATHS:
            print(
                f"{name:>8} {summary[f'{name}_small_per_s']:>9} {summary[f'{name}_large_per_s']:>9}"
                f" {summary[f'{name}_ratio']:>12}"
            )
        print(
            f"Node.discover({TARGET}, {result['large']['target_instances']} instances): "
            f"{result['small']['discover_us']} us in {result['small']['entries']} entries, "
            f"{result['large']['discover_us']} us in {result['large']['entries']}"
        )
    write_json(args.json, result)
    return 1 if "error" in result else 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    server = sub.add_parser("serve", help="internal: one loaded node")
    server.add_argument("--config", type=Path, required=True)
    server.add_argument("--kind", choices=["large", "small"], required=True)
    server.add_argument("--large", type=int, required=True)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="5,000 instances, 1 round of 1 s")
    parser.add_argument("--json", default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.large, args.rounds, args.duration = 5000, 1, 1.0
    return args


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    if options.mode == "serve":
        ready_path = options.config.parent / f"ready-{options.kind}"
        trio.run(serve, options.config, options.kind, options.large, ready_path)
    else:
        sys.exit(
            run_interruptible(
                lambda: trio.run(interrupt_on_sigterm, partial(main, options)), "bench stopped"
            )
        )
