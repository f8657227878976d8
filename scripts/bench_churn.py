#!/usr/bin/env python3
"""Benchmark churn on loopback: registrations and deregistrations at a steady rate, to every node.

Usage:
    .venv/bin/python scripts/bench_churn.py [--nodes 20,5] [--rate 200] [--seconds 60]
        [--search] [--search-seconds 15] [--max-rate 3200] [--runs 1] [--quick]
        [--json bench-results/bench_churn.json] [--workdir DIR]

Method. For each N in ``--nodes``, one cluster of N plain agents
(``python -m gossip_registry agent``, LAN profile, no data directories) on
127.0.0.1 is started and formed (every node sees N alive members), then:

1. Every node's ``GET /v1/events?kind=entry,member`` is streamed into this
   process. An event carries the node's wall clock at the moment its table
   changed, and all processes share one clock, so the time an operation
   became visible on a node is read off that node, not off this process.
2. Load: ``rate`` operations per second in total (open loop: operation i is
   due at start + i / rate), alternating a registration of a new instance
   and a deregistration of the instance registered ``LIFETIME`` seconds
   earlier (a pool of rate/2 x LIFETIME instances is registered first, not
   measured), so the table size stays constant. Operation i goes to node
   i mod N through ``PUT /v1/services`` / ``DELETE /v1/services/<id>``.
3. ``p50_s`` / ``p99_s`` / ``max_s``: per operation, from just before its
   request is sent to the last node's event for it (registered or
   deregistered; a node that never showed the instance owes no
   deregistration), after the load ends and up to ``DRAIN_S`` for the last
   ones. ``missing`` counts operations not seen on every node by then; they
   count as infinitely late in the percentiles (shown as ``-``: over the
   drain), and ``refused`` counts requests that failed. ``achieved_rate``
   is the rate the requests were actually sent at: this process is one of
   N+1 on the same 2 cores.
4. ``longest_stall_ms``: the longest event-loop step of any node that ended
   during the window, from ``/v1/status`` ``event_loop.recent_stalls`` (the
   stall meter keeps the last 16 over 50 ms; 0 means none over 50 ms), and
   ``stalls_over_50ms`` the rise of ``stalls_over_threshold`` summed over
   the nodes; ``cpu_stalls_over_50ms`` counts those of them that used over
   50 ms of CPU (the node's own work; the others waited for a core, which
   ``stalls_where`` shows as a small ``cpu``). ``false_suspicions`` /
   ``false_deaths``: member events ``suspect`` / ``dead`` seen on any node
   during the window (no node fails, so each is a false positive).
5. ``cpu_pct``: CPU of the N agents together and of this process, in percent
   of one core, over the window (the machine has 2 cores, so 200 % is all
   of it: above about 180 % the figures measure CPU starvation).

``events_dropped`` counts events the nodes' streams lost because this
process read them too slowly: such a run did not see every operation, so it
is marked ``valid=False`` and fails the search.

``--search`` then finds the highest rate with p99 under 2 s (at most 1 %
missing, then), nothing refused and no event lost, on the same cluster: the
rate doubles from rate / 2 until a step fails (or reaches ``--max-rate``),
then bisects twice between the last pass and the first failure; each step
is ``--search-seconds`` long and starts only after the previous one has
drained (every broadcast queue empty). The result is a pass bracket,
reported with the steps.

Every process is stopped by PID in a ``finally`` (SIGTERM, a bounded wait, SIGKILL).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

import trio  # noqa: E402
from bench_scale import (  # noqa: E402  (scripts/ is not a package)
    HOST,
    BenchError,
    Proc,
    scrape,
    stalls_within,
    statuses,
    workspace,
    write_json,
)

from gossip_registry.chaos.http11 import HttpClient, HttpConnection  # noqa: E402
from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes  # noqa: E402
from gossip_registry.chaos.sigterm import interrupt_on_sigterm, run_interruptible  # noqa: E402
from tests.support.processes import cpu_seconds, free_ports  # noqa: E402

P99_TARGET_S = 2.0
LIFETIME = 2.0
"""Seconds an instance lives between its registration and its deregistration."""
DRAIN_S = 15.0
"""Seconds after the load for the last operations to reach every node."""
FORM_TIMEOUT = 60.0
QUEUE_DRAIN_TIMEOUT = 60.0
"""Seconds a search step waits for every broadcast queue to empty before the next one."""
CLIENTS = 4
"""HTTP clients (one kept connection per node each) the load is spread over."""
REQUEST_TIMEOUT = 10.0
STOP_GRACE = 5.0
SEARCH_BISECTIONS = 2
FIGURES = (
    "rate",
    "achieved_rate",
    "ops",
    "p50_s",
    "p99_s",
    "max_s",
    "missing",
    "refused",
    "longest_stall_ms",
    "stalls_over_50ms",
    "cpu_stalls_over_50ms",
    "false_suspicions",
    "false_deaths",
    "cpu_pct_agents",
    "cpu_pct_bench",
    "events_dropped",
    "valid",
)


@dataclass
class Op:
    kind: str
    """"registered" or "deregistered": the event that shows it on a node."""
    instance: str
    node: int
    sent: float = 0.0
    refused: bool = False


@dataclass
class Watch:
    """What the event streams have shown: per (event, instance id), the node wall time per node."""

    seen: dict[tuple[str, str], dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    members: list[tuple[float, str, str, str]] = field(default_factory=list)
    """(time, observer, event, member) of every suspect / dead member event."""
    subscribed: set[str] = field(default_factory=set)
    dropped: int = 0


async def follow(proc: Proc, watch: Watch) -> None:
    """Stream ``proc``'s NDJSON events into ``watch`` until cancelled."""
    stream = await trio.open_tcp_stream(HOST, proc.http_port)
    async with stream:
        connection = HttpConnection(stream, HOST, proc.http_port)
        await connection.send("GET", "/v1/events?kind=entry,member")
        status, headers = await connection.head()
        if status != 200 or headers.get("transfer-encoding") != "chunked":
            raise BenchError(f"{proc.name}: /v1/events answered {status} {headers}")
        body = bytearray()
        try:
            async with aclosing(connection.chunks()) as chunks:
                async for data in chunks:
                    body += data
                    *lines, rest = body.split(b"\n")
                    body = bytearray(rest)
                    for line in lines:
                        record(proc.name, json.loads(line), watch)
        except ValueError:  # the node stopped (churn stops nodes): its stream ends here
            return


def record(node: str, event: dict[str, Any], watch: Watch) -> None:
    kind, what = event["kind"], event["event"]
    if kind == "entry" and what in ("registered", "deregistered"):
        watch.seen[(what, event["id"])][node] = event["time"]
    elif kind == "member" and what in ("suspect", "dead"):
        watch.members.append((event["time"], node, what, event["name"]))
    elif kind == "stream":
        watch.subscribed.add(node)
    elif kind == "dropped":
        watch.dropped += event["count"]


@dataclass
class Cluster:
    workdir: Path
    nodes: list[Proc]
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "cluster.toml"
        lines = ['[cluster]\nname = "churn"\n', '[defaults]\nprofile = "lan"\n']
        for p in self.nodes:
            lines.append(
                f'[[nodes]]\nname = "{p.name}"\ngossip_port = {p.gossip_port}\n'
                f"http_port = {p.http_port}\n"
            )
        self.config.write_text("\n".join(lines))

    def start(self) -> None:
        for p in self.nodes:
            argv = agent_argv("--config", str(self.config), "--node", p.name, "--exit-with-parent")
            p.process = spawn(argv, self.workdir / "logs" / f"{p.name}.log", self.workdir)

    def check_alive(self) -> None:
        for p in self.nodes:
            if p.process is not None and p.process.poll() is not None:
                raise BenchError(f"{p.name} exited (status {p.process.returncode})")

    def cpu(self) -> float:
        return sum(cpu_seconds(p.process.pid) for p in self.nodes)

    def stop(self) -> None:
        stop_processes([p.process for p in self.nodes if p.process is not None], STOP_GRACE)


def bench_cpu() -> float:
    times = os.times()
    return float(times.user + times.system)


async def formed(http: HttpClient, cluster: Cluster) -> None:
    deadline = time.monotonic() + FORM_TIMEOUT
    n = len(cluster.nodes)
    while True:
        cluster.check_alive()
        got = await statuses(http, cluster.nodes)
        if all(s is not None and s["members"]["alive"] == n for s in got):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"timeout: {n} nodes did not form within {FORM_TIMEOUT} s")
        await trio.sleep(0.5)


async def queues_empty(cluster: Cluster) -> None:
    """Wait until every node's broadcast queue is empty: the last step's backlog is gone."""
    deadline = time.monotonic() + QUEUE_DRAIN_TIMEOUT
    while True:
        depths = [(await scrape(p))[1] for p in cluster.nodes]
        if not any(depths):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"timeout: broadcast queues still hold {max(depths):.0f}")
        await trio.sleep(0.5)


def schedule(rate: float, seconds: float, n: int, first: int) -> tuple[list[Op], list[Op]]:
    """(the pool registered beforehand, the measured operations), instance ids from ``first``."""
    pool = max(1, round(rate / 2 * LIFETIME))
    count = max(2, round(rate * seconds))
    ids = [f"c{first + k}" for k in range(pool + count // 2 + 1)]
    before = [Op("registered", ids[k], k % n) for k in range(pool)]
    ops = []
    for i in range(count):
        k = i // 2
        if i % 2 == 0:
            ops.append(Op("registered", ids[pool + k], (pool + k) % n))
        else:
            ops.append(Op("deregistered", ids[k], k % n))
    return before, ops


async def send(clients: list[HttpClient], nodes: list[Proc], op: Op, i: int) -> None:
    http, proc = clients[i % len(clients)], nodes[op.node]
    op.sent = time.time()
    if op.kind == "registered":
        body = {"name": "churn", "id": op.instance, "address": "10.0.0.1", "port": 80}
        answer = await http.request(HOST, proc.http_port, "PUT", "/v1/services", body)
    else:
        path = f"/v1/services/{op.instance}"
        answer = await http.request(HOST, proc.http_port, "DELETE", path)
    op.refused = answer is None or answer[0] != 200


async def load(clients: list[HttpClient], nodes: list[Proc], ops: list[Op], rate: float) -> float:
    """Send ``ops`` open loop at ``rate``; returns the rate they were actually sent at."""
    registered: dict[str, trio.Event] = {}

    async def one(i: int, op: Op) -> None:
        if op.kind == "deregistered" and op.instance in registered:
            await registered[op.instance].wait()  # never before its registration is answered
        await send(clients, nodes, op, i)
        if op.kind == "registered":
            registered.setdefault(op.instance, trio.Event()).set()

    for op in ops:
        if op.kind == "registered":
            registered[op.instance] = trio.Event()
    began = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i, op in enumerate(ops):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                await trio.sleep(delay)
            nursery.start_soon(one, i, op)
    sent = [op.sent for op in ops]
    span = max(sent) - min(sent)
    return round((len(ops) - 1) / span, 1) if span > 0 else float(len(ops))


async def step(
    cluster: Cluster,
    clients: list[HttpClient],
    watch: Watch,
    rate: float,
    seconds: float,
    first: int,
) -> dict[str, Any]:
    """One measured window at ``rate``; instance ids from ``first`` (unique per cluster)."""
    nodes = cluster.nodes
    before, ops = schedule(rate, seconds, len(nodes), first)
    await load(clients, nodes, before, max(rate, 200.0))
    if any(op.refused for op in before):
        raise BenchError("the pool registrations were refused")
    http = clients[0]
    first_status = [s for s in await statuses(http, nodes) if s is not None]
    members_before, dropped_before = len(watch.members), watch.dropped
    cpu0, bench0, wall0 = cluster.cpu(), bench_cpu(), time.monotonic()
    achieved = await load(clients, nodes, ops, rate)
    load_s = time.monotonic() - wall0
    names = {p.name for p in nodes}

    def due(op: Op) -> set[str]:
        """The nodes that must show ``op``: a deregistration, only where the instance was.

        A node that never saw the registration (its deletion overtook it)
        shows nothing for either: the registration counts as missing there,
        the deregistration as nothing to do.
        """
        if op.kind == "registered":
            return names
        return names & watch.seen.get(("registered", op.instance), {}).keys()

    def everywhere(op: Op) -> bool:
        return op.refused or due(op) <= watch.seen[(op.kind, op.instance)].keys()

    deadline = time.monotonic() + DRAIN_S
    while not all(everywhere(op) for op in ops) and time.monotonic() < deadline:
        await trio.sleep(0.2)
    window = time.monotonic() - wall0
    cpu1, bench1 = cluster.cpu(), bench_cpu()
    last_status = [s for s in await statuses(http, nodes) if s is not None]
    latencies = []
    for op in ops:
        if not op.refused and not due(op):
            # A deregistration whose registration no node showed (an event stream
            # that fell behind, or its deletion overtook it everywhere) owes nothing:
            # the registration already counts as missing.
            continue
        seen = watch.seen.get((op.kind, op.instance), {})
        shown = [seen[n] for n in due(op) if n in seen]
        everyone = not op.refused and len(shown) == len(due(op))
        latencies.append(max(shown) - op.sent if everyone else math.inf)
    latencies.sort()
    stalls = sorted((w for s in last_status for w in stalls_within(s, window)), reverse=True)
    false = watch.members[members_before:]

    def rank(q: float) -> float | None:
        value = latencies[min(len(latencies) - 1, int(q * len(latencies)))]
        return None if math.isinf(value) else round(value, 3)

    def over(statuses: list[dict[str, Any]], counter: str = "stalls_over_threshold") -> int:
        return sum(s["event_loop"][counter] for s in statuses)

    return {
        "rate": rate,
        "achieved_rate": achieved,
        "ops": len(ops),
        "p50_s": rank(0.50),
        "p99_s": rank(0.99),
        "max_s": rank(1.0),
        "missing": sum(map(math.isinf, latencies)) - sum(op.refused for op in ops),
        "refused": sum(op.refused for op in ops),
        "longest_stall_ms": stalls[0][0] if stalls else 0.0,
        "stalls_where": [f"{where} {ms:.0f} ms" for ms, where in stalls[:5]],
        "stalls_over_50ms": over(last_status) - over(first_status),
        "cpu_stalls_over_50ms": over(last_status, "cpu_stalls_over_threshold")
        - over(first_status, "cpu_stalls_over_threshold"),
        "false_suspicions": sum(1 for m in false if m[2] == "suspect"),
        "false_deaths": sum(1 for m in false if m[2] == "dead"),
        "cpu_pct_agents": round(100 * (cpu1 - cpu0) / window),
        "cpu_pct_bench": round(100 * (bench1 - bench0) / window),
        "load_s": round(load_s, 1),
        "events_dropped": watch.dropped - dropped_before,
        "valid": watch.dropped == dropped_before,
    }


def passed(row: dict[str, Any]) -> bool:
    p99 = row.get("p99_s")
    return p99 is not None and p99 < P99_TARGET_S and row["refused"] == 0 and row["valid"]


async def run_cluster(workdir: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    ports = free_ports(2 * n)
    nodes = [Proc(f"n{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(n)]
    cluster = Cluster(workdir, nodes)
    result: dict[str, Any] = {"nodes": n, "runs": [], "search": []}
    first = 0
    try:
        async with HttpClient(REQUEST_TIMEOUT) as http:
            cluster.start()
            await formed(http, cluster)
            watch = Watch()
            clients = [HttpClient(REQUEST_TIMEOUT) for _ in range(CLIENTS)]
            async with trio.open_nursery() as nursery:
                for p in nodes:
                    nursery.start_soon(follow, p, watch)
                with trio.fail_after(FORM_TIMEOUT):
                    while watch.subscribed != {p.name for p in nodes}:
                        await trio.sleep(0.05)

                async def measure(rate: float, seconds: float) -> dict[str, Any]:
                    nonlocal first
                    await queues_empty(cluster)
                    row = await step(cluster, clients, watch, rate, seconds, first)
                    first += row["ops"] + round(rate * LIFETIME) + 2
                    cluster.check_alive()
                    print(f"  N={n} {line(row)}", flush=True)
                    return row

                for _ in range(args.runs):
                    result["runs"].append(await measure(args.rate, args.seconds))
                if args.search:
                    result["search"] = await search(measure, args)
                nursery.cancel_scope.cancel()
            for client in clients:
                await client.__aexit__(None, None, None)
    except (BenchError, trio.TooSlowError) as exc:
        print(f"  N={n}: {exc!r}", flush=True)
        result["error"] = repr(exc)
    finally:
        cluster.stop()
    runs = result["runs"]
    if runs:
        result["median"] = {
            k: statistics.median(r[k] for r in runs if r[k] is not None)
            for k in FIGURES
            if k != "valid" and any(r[k] is not None for r in runs)
        }
    steps = result["search"]
    good = [s["rate"] for s in steps if passed(s)]
    bad = [s["rate"] for s in steps if not passed(s)]
    result["max_rate"] = max(good, default=None)
    result["first_failing_rate"] = min((r for r in bad if r > max(good, default=0)), default=None)
    return result


async def search(measure: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Double from rate / 2 until a step fails, then bisect: a bounded number of steps."""
    steps = []
    rate, good, bad = max(10.0, args.rate / 2), 0.0, None
    while rate <= args.max_rate:
        row = await measure(rate, args.search_seconds)
        steps.append(row)
        if not passed(row):
            bad = rate
            break
        good, rate = rate, rate * 2
    for _ in range(SEARCH_BISECTIONS if bad is not None else 0):
        assert bad is not None
        rate = round((good + bad) / 2)
        row = await measure(rate, args.search_seconds)
        steps.append(row)
        if passed(row):
            good = rate
        else:
            bad = rate
    return steps


def fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def line(row: dict[str, Any]) -> str:
    return "  ".join(f"{k}={fmt(row.get(k))}" for k in FIGURES)


def table(results: list[dict[str, Any]]) -> str:
    keys = ["nodes", "step", *FIGURES]
    rows = []
    for r in results:
        for i, run in enumerate(r["runs"]):
            rows.append({"nodes": r["nodes"], "step": f"run{i + 1}", **run})
        for i, s in enumerate(r["search"]):
            rows.append({"nodes": r["nodes"], "step": f"search{i + 1}", **s})
    widths = {k: max(len(k), *(len(fmt(x.get(k))) for x in rows)) for k in keys} if rows else {}
    out = ["  ".join(k.rjust(widths.get(k, len(k))) for k in keys)]
    out += ["  ".join(fmt(x.get(k)).rjust(widths[k]) for k in keys) for x in rows]
    for r in results:
        out.append(
            f"N={r['nodes']}: highest rate with p99 < {P99_TARGET_S} s, nothing refused or lost: "
            f"{fmt(r.get('max_rate'))} ops/s (first failing: {fmt(r.get('first_failing_rate'))})"
        )
    return "\n".join(out)


async def main(args: argparse.Namespace) -> int:
    results = []
    with workspace(args.workdir) as root:
        for n in [int(x) for x in args.nodes.split(",")]:
            run_dir = root / f"n{n}"
            run_dir.mkdir(parents=True, exist_ok=True)
            results.append(await run_cluster(run_dir, n, args))
    print()
    print(table(results))
    write_json(args.json, {"clusters": results})
    return 1 if any("error" in r for r in results) else 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="20,5")
    parser.add_argument("--rate", type=float, default=200.0, help="operations per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=1, help="windows at --rate per cluster")
    parser.add_argument("--search", action="store_true", help="find the highest passing rate")
    parser.add_argument("--search-seconds", type=float, default=15.0)
    parser.add_argument("--max-rate", type=float, default=3200.0)
    parser.add_argument("--quick", action="store_true", help="3 nodes, 40 ops/s for 2 s")
    parser.add_argument("--json", default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.rate, args.seconds, args.search = "3", 40.0, 2.0, False
    return args


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    sys.exit(
        run_interruptible(
            lambda: trio.run(interrupt_on_sigterm, partial(main, options)), "bench stopped"
        )
    )
