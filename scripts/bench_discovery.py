#!/usr/bin/env python3
"""Benchmark discovery reads on one node: embedding API, HTTP API and DNS, with p50/p99 latency.

Usage:
    .venv/bin/python scripts/bench_discovery.py [--services 100] [--instances 100]
        [--runs 3] [--duration 3] [--concurrency 16] [--lookups 20000]
        [--json bench-results/bench_discovery.json]

Method. One node runs in this process (trio), with its HTTP API and DNS on
loopback. ``--services`` x ``--instances`` instances (10,000 by default,
each with its own IPv4 address) are registered through the embedding API.
Then ``--runs`` times:

1. Embedded: ``--lookups`` calls of ``node.discover(name)`` (passing
   instances of a random service of ``--instances``), each timed with
   ``perf_counter``; lookups/s is calls over their total time.
   The DNS server then answers one query per service (unmeasured): it
   renders a service's records on the first query after a change.
2. HTTP: ``scripts/loadgen.py`` in a separate process, ``--concurrency``
   keep-alive HTTP/1.1 connections in a closed loop for ``--duration``
   seconds, ``GET /v1/services/<random service>?passing=true``. In the same
   run and the same way it loads a constant-response app: Starlette served
   by hypercorn's trio worker in this process, like the node's API, whose
   route ``/v1/services/{name}`` returns fixed bytes: the node's own answer
   for one service, so both send the same payload and the ratio measures
   what looking up and rendering costs on top of the framework. The two
   alternate in halves of ``--duration`` (constant, node, node, constant),
   so a machine whose load drifts during a run favours neither; p50/p99
   are then the means of the two halves'.
3. DNS: ``scripts/loadgen.py dns`` in a separate process, ``--concurrency``
   UDP sockets in a closed loop, ``A`` queries with EDNS0 (payload 4096) for
   ``<random service>.service.registry.``; an answer counts when it has all
   ``--instances`` records and no TC bit.

Each figure is the median over runs. Targets (issue 4): embedded lookup
under 20 us, HTTP at least 70 % of the constant app, DNS at least 5,000
answers/s. The load generator shares the machine's cores with the node, as
a client on the same host would; on a loaded machine all figures drop.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import dns.message
import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIFramework
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gossip_registry.config.node import NodeConfig
from gossip_registry.core.messages import Address
from gossip_registry.runtime.node import Node

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "scripts" / "loadgen.py"
HOST = "127.0.0.1"
TARGETS = {"embedded_p50_us": 20.0, "http_ratio": 0.70, "dns_per_s": 5000.0}
FIGURES = (
    "embedded_per_s",
    "embedded_p50_us",
    "embedded_p99_us",
    "http_per_s",
    "http_p50_us",
    "http_p99_us",
    "constant_per_s",
    "constant_p50_us",
    "constant_p99_us",
    "http_ratio",
    "dns_per_s",
    "dns_p50_us",
    "dns_p99_us",
    "errors",
)
"""Per-run figures; the result holds the median of each over the runs."""


def service_name(i: int) -> str:
    return f"svc{i:03d}"


async def populate(node: Node, services: int, instances: int) -> None:
    for s in range(services):
        for i in range(instances):
            address = f"10.{s // 256}.{s % 256}.{i + 1}" if instances < 255 else f"10.0.{s}.{i}"
            await node.register(service_name(s), address=address, port=8000 + i, weight=1 + i % 5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def embedded(node: Node, services: int, lookups: int, rng: random.Random) -> dict[str, float]:
    names = [service_name(rng.randrange(services)) for _ in range(lookups)]
    clock = time.perf_counter
    latencies = []
    for name in names:
        began = clock()
        node.discover(name)
        latencies.append(clock() - began)
    return {
        "embedded_per_s": lookups / sum(latencies),
        "embedded_p50_us": percentile(latencies, 0.5) * 1e6,
        "embedded_p99_us": percentile(latencies, 0.99) * 1e6,
    }


async def warm_dns(address: Address, services: int) -> None:
    """Ask for every service once, so that its records are rendered before anything is timed.

    The DNS server renders a service's records on the first query after a
    change and reuses them until the next; the benchmark measures the
    steady state of a registry that changes less often than it is read.
    """
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.connect(address)
        for s in range(services):
            query = dns.message.make_query(f"{service_name(s)}.service.registry.", "A")
            with trio.fail_after(10):
                await sock.send(query.to_wire())
                await sock.recv(65535)


def constant_app(body: bytes) -> Starlette:
    async def constant(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/v1/services/{name:path}", constant, methods=["GET"])])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def serve_constant(body: bytes, *, task_status: trio.TaskStatus[Address]) -> None:
    """The constant app, configured as the node's API is (no access log, no server header)."""
    config = HypercornConfig()
    port = free_port()
    config.bind = [f"{HOST}:{port}"]
    config.accesslog = None
    config.include_server_header = False
    config.errorlog = logging.getLogger("bench.constant")
    config.errorlog.setLevel(logging.WARNING)
    app = cast(ASGIFramework, constant_app(body))
    await hypercorn_serve(app, config, task_status=_Started((HOST, port), task_status))


class _Started:
    def __init__(self, address: Address, outer: trio.TaskStatus[Address]) -> None:
        self.address, self.outer = address, outer

    def started(self, value: object = None) -> None:
        self.outer.started(self.address)


async def loadgen(
    kind: str, address: Address, targets: list[str], args: argparse.Namespace, *extra: str
) -> dict[str, Any]:
    argv = [sys.executable, str(LOADGEN), kind, f"{address[0]}:{address[1]}"]
    for target in targets:
        argv += ["--target", target]
    argv += ["--concurrency", str(args.concurrency), "--duration", str(args.duration), *extra]
    with trio.fail_after(args.duration + 60):
        result = await trio.run_process(argv, capture_stdout=True, stderr=subprocess.STDOUT)
    report: dict[str, Any] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return report


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two halves of one measurement: rates add up over time, latencies are averaged."""
    seconds = a["seconds"] + b["seconds"]
    return {
        "per_s": (a["requests"] + b["requests"]) / seconds,
        "p50_us": (a["p50_us"] + b["p50_us"]) / 2,
        "p99_us": (a["p99_us"] + b["p99_us"]) / 2,
        "errors": a["errors"] + b["errors"],
    }


async def one_run(
    node: Node,
    constant: Address,
    body_paths: list[str],
    args: argparse.Namespace,
    rng: random.Random,
) -> dict[str, float]:
    figures = embedded(node, args.services, args.lookups, rng)
    half = str(args.duration / 2)
    assert node.http_addr is not None
    assert node.dns_addr is not None
    # A, B, B, A: a machine whose load drifts during the run penalises neither side.
    halves = []
    for address in (constant, node.http_addr, node.http_addr, constant):
        halves.append(await loadgen("http", address, body_paths, args, "--duration", half))
    const, http = merge(halves[0], halves[3]), merge(halves[1], halves[2])
    names = [f"{service_name(s)}.service.registry." for s in range(args.services)]
    dns = await loadgen("dns", node.dns_addr, names, args, "--min-answers", str(args.instances))
    for prefix, report in (("constant", const), ("http", http), ("dns", dns)):
        figures[f"{prefix}_per_s"] = report["per_s"]
        figures[f"{prefix}_p50_us"] = report["p50_us"]
        figures[f"{prefix}_p99_us"] = report["p99_us"]
    figures["http_ratio"] = http["per_s"] / const["per_s"]
    figures["errors"] = const["errors"] + http["errors"] + dns["errors"]
    return figures


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    config = NodeConfig(name="bench", bind=(HOST, 0), http=(HOST, 0), dns=(HOST, 0))
    async with Node(config) as node:
        began = time.perf_counter()
        await populate(node, args.services, args.instances)
        took = time.perf_counter() - began
        print(f"registered {args.services * args.instances} instances in {took:.1f}s")
        assert node.http_addr is not None
        paths = [f"/v1/services/{service_name(s)}?passing=true" for s in range(args.services)]
        async with httpx.AsyncClient(trust_env=False) as client:
            url = f"http://{node.http_addr[0]}:{node.http_addr[1]}{paths[0]}"
            body = (await client.get(url)).content
        assert node.dns_addr is not None
        await warm_dns(node.dns_addr, args.services)
        async with trio.open_nursery() as nursery:
            constant = await nursery.start(serve_constant, body)
            runs = []
            for run in range(1, args.runs + 1):
                figures = await one_run(node, constant, paths, args, rng)
                runs.append(figures)
                print(f"run {run}: " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()))
            nursery.cancel_scope.cancel()
    medians = {key: statistics.median(r[key] for r in runs) for key in FIGURES}
    return {
        "services": args.services,
        "instances_per_service": args.instances,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "runs": args.runs,
        "response_bytes": len(body),
        "median": medians,
        "per_run": runs,
        "targets": TARGETS,
        "loadgen": "scripts/loadgen.py, a separate process: HTTP/1.1 keep-alive, UDP DNS",
    }


def yes(met: bool) -> str:
    return "yes" if met else "NO"


def print_table(result: dict[str, Any]) -> None:
    m = result["median"]
    rows = [
        (
            "embedded node.discover",
            m["embedded_per_s"],
            m["embedded_p50_us"],
            m["embedded_p99_us"],
            f"p50 < 20 us: {yes(m['embedded_p50_us'] < 20)}",
        ),
        (
            "HTTP API",
            m["http_per_s"],
            m["http_p50_us"],
            m["http_p99_us"],
            f"{m['http_ratio']:.0%} of constant (>= 70 %: {yes(m['http_ratio'] >= 0.7)})",
        ),
        ("HTTP constant app", m["constant_per_s"], m["constant_p50_us"], m["constant_p99_us"], ""),
        (
            "DNS (UDP, A, EDNS0)",
            m["dns_per_s"],
            m["dns_p50_us"],
            m["dns_p99_us"],
            f">= 5,000/s: {yes(m['dns_per_s'] >= 5000)}",
        ),
    ]
    print(
        f"\n{result['services']} services x {result['instances_per_service']} instances, "
        f"concurrency {result['concurrency']}, medians of {result['runs']} runs, "
        f"errors {m['errors']:.0f}"
    )
    print(f"{'interface':<24} {'reads/s':>10} {'p50 us':>9} {'p99 us':>9}  target")
    for name, per_s, p50, p99, note in rows:
        print(f"{name:<24} {per_s:>10,.0f} {p50:>9.1f} {p99:>9.1f}  {note}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--instances", type=int, default=100, help="Per service.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="Seconds per HTTP/DNS load.")
    parser.add_argument("--concurrency", type=int, default=16, help="Requests in flight.")
    parser.add_argument("--lookups", type=int, default=20000, help="Embedded lookups per run.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench-results" / "bench_discovery.json"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = trio.run(bench, args)
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
