#!/usr/bin/env python3
"""Benchmark production-size registries on loopback: a node joining a large table, and its cost.

Usage:
    .venv/bin/python scripts/bench_scale.py [--sizes 10000,100000,250000] [--nodes 5,20]
        [--idle-seconds 20] [--quick] [--json bench-results/bench_scale.json] [--workdir DIR]

Method. For each N in ``--nodes`` and each table size T in ``--sizes``, once,
with fresh ports and processes:

1. A cluster.toml lists n1..nN and one more node, ``joiner``, on 127.0.0.1
   (LAN profile, no overrides, no seeds: every node joins through n1, no
   data directories, so no snapshots are written). n1..nN are real nodes
   (``gossip_registry.runtime.node.Node`` with its UDP, TCP and HTTP servers, one
   process each) started by this script's ``serve`` mode, which registers
   T / N instances owned by that node through ``Node.register`` (in-process:
   100,000 HTTP PUTs would take minutes and measure the HTTP server, not
   replication) spread over 1,000 services, then push-pulls with n1 every
   2 s until it holds all T. Each writes its RSS before registering.
2. Preload: every node's ``GET /v1/status`` is polled until all hold T
   entries and the same digest (``preload_s``, from the first start).
   ``preload_longest_stall_ms`` (the longest task step of any of them since
   it started), ``preload_stalls`` (steps over 50 ms, summed) and
   ``preload_refutes`` (suspicions of themselves they refuted, summed) say
   how the registering and replicating went; ``preload_stalls_where`` names
   the node and task of the longest of the last 16 stalls each kept.
3. Join: ``joiner`` is started as a plain agent (``python -m gossip_registry
   agent``). ``join_s`` is from the moment its ``/healthz`` first answers to
   the first ``/v1/status`` (polled every 100 ms) with T entries and n1's
   digest. ``joiner_stalls`` and ``cluster_stalls`` count the task steps
   over 50 ms that ended on the joiner (during ``join_s``) and on n1..nN
   (during it and 2 s after), from ``/v1/status`` ``event_loop.recent_stalls``;
   ``join_longest_stall_ms`` is the longest of them (0: none over 50 ms).
   ``joiner_longest_stall_ms`` is the joiner's longest step since it started,
   start-up included (``joiner_longest_stall_task`` names it).
   ``false_suspicions`` is the rise of ``stats.suspicions`` summed over
   n1..nN from before the join to 2 s after it (no node is meant to be
   suspected at all).
4. Memory: ``bytes_per_instance`` is the median over n1..nN of (VmRSS now -
   VmRSS before registering) / T: what one full replica costs.
5. Idle: a window of ``--idle-seconds`` with no requests; ``cpu_pct_per_node``
   (utime+stime over wall, percent of a core), ``udp_pkts_per_node_s`` and
   ``tcp_bytes_per_node_s`` (push-pull: stream bytes sent, from
   ``/metrics``) are means over all N+1 nodes. The nodes' own registrations
   are still being piggybacked then (T / N each, at most the queue limit),
   so this is not a quiet cluster; ``queue_depth`` (median) says how full.
6. ``discover_us``: in this process, a Node holding the largest table (1,000
   services of T / 1,000 instances) answers ``Node.discover`` of one
   service of 100 instances; median of 2,000 calls.

Every process is stopped by PID in a ``finally`` (SIGTERM, a bounded wait,
SIGKILL). A phase that does not finish within its bound is reported as
``null`` in JSON and ``timeout`` in the table; a preload that timed out
also says how far the nodes got (entries held, stalls, refutations).

Not measured here (say so, do not guess): churn at 200 ops/s, the highest
sustainable churn rate, the simulator at 1,000 nodes, HTTP read throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
sys.path.insert(0, str(ROOT))  # tests.support, when run as a script


def _use_project_venv() -> None:
    """Re-execute under the project's venv if there is one and this is another Python."""
    python = VENV / "bin" / "python"
    if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(python, [str(python), __file__, *sys.argv[1:]])


if __name__ == "__main__":
    _use_project_venv()

import trio  # noqa: E402  (after the re-execution: this Python may not have it)

from gossip_registry.chaos.http11 import HttpClient  # noqa: E402
from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes  # noqa: E402
from gossip_registry.chaos.sigterm import interrupt_on_sigterm, run_interruptible  # noqa: E402
from tests.support.processes import cpu_seconds, free_ports  # noqa: E402

HOST = "127.0.0.1"
SERVICES = 1000
"""Services the instances are spread over (instance i of a node is in service i mod 1,000)."""
FIGURES = (
    "preload_s",
    "preload_longest_stall_ms",
    "preload_stalls",
    "preload_refutes",
    "join_s",
    "join_longest_stall_ms",
    "joiner_stalls",
    "cluster_stalls",
    "joiner_longest_stall_ms",
    "false_suspicions",
    "bytes_per_instance",
    "cpu_pct_per_node",
    "udp_pkts_per_node_s",
    "tcp_bytes_per_node_s",
    "queue_depth",
)
REQUEST_TIMEOUT = 5.0
"""Seconds per HTTP request (a node busy merging may answer slowly; that is measured)."""
STATUS_POLL = 0.1
"""Seconds between /v1/status polls of the joiner."""
PRELOAD_POLL = 0.5
"""Seconds between /v1/status sweeps while the preloaded nodes converge."""
SETTLE_AFTER_JOIN = 2.0
"""Seconds after the join before the suspicion counters are read again."""
STOP_GRACE = 5.0
"""Seconds the processes get after SIGTERM before SIGKILL."""
RESYNC_EVERY = 2.0
"""Seconds between a preloaded node's push-pulls with n1 until it holds the whole table."""


def preload_timeout(total: int) -> float:
    """Seconds for the preloaded nodes to register and converge (generous: a shared machine)."""
    return 60.0 + total / 500.0


def join_timeout(total: int) -> float:
    return 30.0 + total / 2000.0


class BenchError(Exception):
    """A run cannot go on; it is reported and skipped."""


# --- serve mode: one preloaded node -----------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


async def serve(config_path: Path, name: str, instances: int, expect: int, rss_file: Path) -> None:
    """Run node ``name`` with ``instances`` registrations until SIGTERM or the parent goes."""
    from gossip_registry.config.cluster_file import load_cluster
    from gossip_registry.runtime.node import Node

    config = load_cluster(config_path).node(name)
    parent = os.getppid()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(Node(config).run)
            rss_file.write_text(str(rss_bytes(os.getpid())))
            for i in range(instances):
                await node.register(
                    f"svc{i % SERVICES}", instance_id=f"{name}-{i}", address="10.0.0.1", port=80
                )
                if i % 16 == 0:
                    await trio.lowlevel.checkpoint()

            async def resync() -> None:
                while node.protocol.table.live_count < expect:
                    await node.join(list(config.seeds))
                    await trio.sleep(RESYNC_EVERY)

            async def watch_parent() -> None:
                while os.getppid() == parent:
                    await trio.sleep(1.0)
                nursery.cancel_scope.cancel()

            if config.seeds:
                nursery.start_soon(resync)
            nursery.start_soon(watch_parent)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


# --- the cluster ---------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    gossip_port: int
    http_port: int
    process: Any = None
    rss_before: int = 0


@dataclass
class Cluster:
    workdir: Path
    nodes: list[Proc]
    joiner: Proc
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "cluster.toml"
        lines = ['[cluster]\nname = "scale"\n', '[defaults]\nprofile = "lan"\n']
        for p in [*self.nodes, self.joiner]:
            lines.append(
                f'[[nodes]]\nname = "{p.name}"\ngossip_port = {p.gossip_port}\n'
                f"http_port = {p.http_port}\n"
            )
        self.config.write_text("\n".join(lines))

    @property
    def all(self) -> list[Proc]:
        return [*self.nodes, self.joiner]

    def start_preloaded(self, p: Proc, instances: int, expect: int) -> None:
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "serve",
            "--config",
            str(self.config),
            "--node",
            p.name,
            "--instances",
            str(instances),
            "--expect",
            str(expect),
        ]
        p.process = spawn(argv, self.workdir / "logs" / f"{p.name}.log", self.workdir)

    def start_joiner(self) -> None:
        argv = agent_argv("--config", str(self.config), "--node", "joiner", "--exit-with-parent")
        self.joiner.process = spawn(argv, self.workdir / "logs" / "joiner.log", self.workdir)

    def check_alive(self) -> None:
        for p in self.all:
            if p.process is not None and p.process.poll() is not None:
                raise BenchError(f"{p.name} exited (status {p.process.returncode})")

    def stop(self) -> None:
        stop_processes([p.process for p in self.all if p.process is not None], STOP_GRACE)


async def status(http: HttpClient, p: Proc) -> dict[str, Any] | None:
    answer = await http.request(HOST, p.http_port, "GET", "/v1/status")
    if answer is None or answer[0] != 200:
        return None
    result: dict[str, Any] = answer[1]
    return result


async def statuses(http: HttpClient, procs: list[Proc]) -> list[dict[str, Any] | None]:
    results: list[dict[str, Any] | None] = [None] * len(procs)

    async def one(i: int) -> None:
        results[i] = await status(http, procs[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(procs)):
            nursery.start_soon(one, i)
    return results


async def scrape(p: Proc) -> tuple[float, float]:
    """(stream bytes sent: push-pull and TCP pings, broadcast queue depth) from /metrics."""
    with trio.fail_after(REQUEST_TIMEOUT):
        stream = await trio.open_tcp_stream(HOST, p.http_port)
        async with stream:
            request = f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode())
            chunks = []
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    sent = depth = 0.0
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        if line.startswith("gossip_registry_message_bytes_total{") and (
            'direction="out"' in line and 'channel="tcp"' in line
        ):
            sent += float(line.rsplit(" ", 1)[1])
        elif line.startswith("gossip_registry_broadcast_queue_depth "):
            depth = float(line.rsplit(" ", 1)[1])
    return sent, depth


def stalls_within(status: dict[str, Any], seconds: float) -> list[tuple[float, str]]:
    """(milliseconds, "node/task (cpu N ms)") of the node's stalls over 50 ms that ended in
    the last ``seconds``; the CPU time tells work from waiting for a core."""
    recent = status["event_loop"]["recent_stalls"]
    where = status["name"]
    return [
        (float(r["ms"]), f"{where}/{r['task']} (cpu {r['cpu_ms']:.0f} ms)")
        for r in recent
        if r["ago_s"] <= seconds
    ]


def write_json(path: str | None, result: Any) -> None:
    """``result`` as JSON to ``path`` (its directory made), if a ``--json`` path was given."""
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


async def wait_for(deadline: float, what: str, check: Any) -> None:
    while not await check():
        if time.monotonic() > deadline:
            raise BenchError(f"timeout: {what}")


# --- one run -----------------------------------------------------------------------------


def plan_cluster(workdir: Path, n: int, total: int) -> tuple[Cluster, list[Proc], Proc, int]:
    """``n`` nodes to preload and a joiner (free ports, one cluster file); and the instances
    per node, ``total // n``. bench_steady preloads the same way and never starts the joiner."""
    ports = free_ports(2 * (n + 1))
    procs = [Proc(f"n{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(n)]
    joiner = Proc("joiner", ports[2 * n], ports[2 * n + 1])
    return Cluster(workdir, procs, joiner), procs, joiner, total // n


async def preload(
    http: HttpClient,
    cluster: Cluster,
    procs: list[Proc],
    per_node: int,
    timeout: float | None = None,
) -> float:
    """Start the preloaded nodes and wait until every one holds all their instances with one
    digest, at most ``timeout`` seconds (``preload_timeout``'s by default); the seconds it
    took."""
    total = per_node * len(procs)
    started = time.monotonic()
    for p in procs:
        cluster.start_preloaded(p, per_node, total)

    last: list[dict[str, Any]] = []

    async def preloaded() -> bool:
        cluster.check_alive()
        await trio.sleep(PRELOAD_POLL)
        got = await statuses(http, procs)
        last[:] = [s for s in got if s is not None]
        return all(s is not None and s["entries"] == total for s in got) and (
            len({s["digest"] for s in got if s is not None}) == 1
        )

    try:
        bound = preload_timeout(total) if timeout is None else timeout
        await wait_for(started + bound, "preloaded nodes converge", preloaded)
    except BenchError as exc:
        raise BenchError(f"{exc}: {progress(last, total)}") from None
    return time.monotonic() - started


def progress(got: list[dict[str, Any]], total: int) -> str:
    """How far nodes that did not converge got: for a timeout's message."""
    if not got:
        return "no node answered"
    held = [s["entries"] for s in got]
    loop = [s["event_loop"] for s in got]
    return (
        f"{len(got)} nodes answered, holding {min(held):,}-{max(held):,} of {total:,} entries "
        f"({len({s['digest'] for s in got})} digests); steps over 50 ms "
        f"{sum(e['stalls_over_threshold'] for e in loop)}, of them over 50 ms of CPU "
        f"{sum(e['cpu_stalls_over_threshold'] for e in loop)}, longest "
        f"{max(e['longest_stall_ms'] for e in loop):.0f} ms; refutations "
        f"{sum(s['stats'].get('refutes', 0) for s in got)}"
    )


async def run_once(
    workdir: Path, n: int, total: int, idle: float, preload_s: float | None = None
) -> dict[str, Any]:
    cluster, procs, joiner, per_node = plan_cluster(workdir, n, total)
    total = per_node * n
    row: dict[str, Any] = {"nodes": n, "instances": total, "per_node": per_node}
    try:
        async with HttpClient(REQUEST_TIMEOUT) as http:
            took = await preload(http, cluster, procs, per_node, preload_s)
            row["preload_s"] = round(took, 2)
            for p in procs:
                p.rss_before = int((workdir / f"rss-{p.name}").read_text())
            before = [s for s in await statuses(http, procs) if s is not None]
            row["preload_longest_stall_ms"] = max(
                s["event_loop"]["longest_stall_ms"] for s in before
            )
            row["preload_stalls"] = sum(s["event_loop"]["stalls_over_threshold"] for s in before)
            row["preload_refutes"] = sum(s["stats"].get("refutes", 0) for s in before)
            last = sorted((ms for s in before for ms in stalls_within(s, math.inf)), reverse=True)
            row["preload_stalls_where"] = [f"{where} {ms:.0f} ms" for ms, where in last[:8]]
            print(
                f"  N={n} T={total}: preloaded in {row['preload_s']} s, longest stall "
                f"{row['preload_longest_stall_ms']} ms, {row['preload_stalls']} over 50 ms, "
                f"{row['preload_refutes']} refutations; longest: "
                + ", ".join(row["preload_stalls_where"]),
                flush=True,
            )
            cluster.start_joiner()
            deadline = time.monotonic() + join_timeout(total)
            listening = 0.0

            async def joiner_listens() -> bool:
                nonlocal listening
                cluster.check_alive()
                answer = await http.request(HOST, joiner.http_port, "GET", "/healthz")
                if answer is None:
                    await trio.sleep(0.05)
                    return False
                listening = time.monotonic()
                return True

            await wait_for(deadline, "joiner listens", joiner_listens)
            target = before[0]["digest"]
            final: dict[str, Any] = {}

            async def joined() -> bool:
                cluster.check_alive()
                got = await status(http, joiner)
                if got is not None and got["entries"] == total and got["digest"] == target:
                    final.update(got)
                    return True
                await trio.sleep(STATUS_POLL)
                return False

            await wait_for(deadline, "joiner holds the table", joined)
            window = time.monotonic() - listening
            row["join_s"] = round(window, 2)
            row["joiner_longest_stall_ms"] = final["event_loop"]["longest_stall_ms"]
            row["joiner_longest_stall_task"] = final["event_loop"]["longest_stall_task"]
            await trio.sleep(SETTLE_AFTER_JOIN)
            window += SETTLE_AFTER_JOIN
            after = [s for s in await statuses(http, procs) if s is not None]
            joiner_stalls = stalls_within(final, window - SETTLE_AFTER_JOIN)
            cluster_stalls = [ms for s in after for ms in stalls_within(s, window)]
            stalls = sorted([*joiner_stalls, *cluster_stalls], reverse=True)
            row["join_longest_stall_ms"] = stalls[0][0] if stalls else 0.0
            row["join_stalls_where"] = [f"{where} {ms:.0f} ms" for ms, where in stalls]
            row["joiner_stalls"] = len(joiner_stalls)
            row["cluster_stalls"] = len(cluster_stalls)
            row["false_suspicions"] = sum(s["stats"].get("suspicions", 0) for s in after) - sum(
                s["stats"].get("suspicions", 0) for s in before
            )
            row["bytes_per_instance"] = round(
                statistics.median((rss_bytes(p.process.pid) - p.rss_before) / total for p in procs)
            )
            print(
                f"  N={n} T={total}: joined in {row['join_s']} s, longest stall meanwhile "
                f"{row['join_longest_stall_ms']} ms, joiner's since start "
                f"{row['joiner_longest_stall_ms']} ms ({row['joiner_longest_stall_task']})",
                flush=True,
            )
            row.update(await idle_window(http, cluster, idle))
    except BenchError as exc:
        print(f"  N={n} T={total}: {exc}", flush=True)
        row["error"] = str(exc)
    finally:
        cluster.stop()
    return row


async def idle_window(http: HttpClient, cluster: Cluster, seconds: float) -> dict[str, Any]:
    procs = cluster.all
    first = await statuses(http, procs)
    tcp_first = [(await scrape(p))[0] for p in procs]
    cpu_first = [cpu_seconds(p.process.pid) for p in procs]
    began = time.monotonic()
    await trio.sleep(seconds)
    wall = time.monotonic() - began
    cpu_last = [cpu_seconds(p.process.pid) for p in procs]
    last = await statuses(http, procs)
    scraped = [await scrape(p) for p in procs]
    count = len(procs)
    udp = [
        b["stats"]["udp_out"] - a["stats"]["udp_out"]
        for a, b in zip(first, last, strict=True)
        if a is not None and b is not None
    ]
    cpu = sum(b - a for a, b in zip(cpu_first, cpu_last, strict=True))
    tcp = sum(b[0] - a for a, b in zip(tcp_first, scraped, strict=True))
    return {
        "cpu_pct_per_node": round(100 * cpu / wall / count, 2),
        "udp_pkts_per_node_s": round(sum(udp) / wall / max(1, len(udp)), 2),
        "tcp_bytes_per_node_s": round(tcp / wall / count),
        "queue_depth": statistics.median(d for _, d in scraped),
    }


# --- discovery latency ---------------------------------------------------------------------


async def discover_latency(total: int, calls: int = 2000) -> float:
    """Median microseconds of ``Node.discover`` of one service in a table of ``total``."""
    from gossip_registry.config.node import NodeConfig
    from gossip_registry.registry.entry import Entry, Health
    from gossip_registry.runtime.node import Node

    node = Node(NodeConfig(name="probe", bind=(HOST, 0)))
    per_service = max(1, total // SERVICES)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        table = node.protocol.table
        for i in range(total):
            table.merge(
                Entry(
                    service=f"svc{i % SERVICES}",
                    instance_id=f"i{i}",
                    address="10.0.0.1",
                    port=80,
                    tags=(),
                    meta={},
                    weight=1,
                    status=Health.PASSING,
                    output="",
                    owner="other",
                    owner_incarnation=0,
                    stamp=1 << 16,
                    deleted=False,
                    checks=(),
                )
            )
        assert len(node.discover("svc5")) == per_service
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter()
            node.discover("svc5")
            samples.append(time.perf_counter() - t0)
        nursery.cancel_scope.cancel()
    return round(statistics.median(samples) * 1e6, 1)


# --- output --------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    keys = ["nodes", "instances", "per_node", *FIGURES]
    widths = {k: max(len(k), *(len(fmt(r.get(k))) for r in rows)) for k in keys}
    lines = ["  ".join(k.rjust(widths[k]) for k in keys)]
    for r in rows:
        lines.append("  ".join(fmt(r.get(k)).rjust(widths[k]) for k in keys))
    return "\n".join(lines)


def fmt(value: Any) -> str:
    return "timeout" if value is None else str(value)


@contextlib.contextmanager
def workspace(given: str | None) -> Iterator[Path]:
    if given is not None:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        yield Path(tmp)


async def main(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(s) for s in args.nodes.split(",")]
    rows = []
    with workspace(args.workdir) as root:
        for n in counts:
            for total in sizes:
                run_dir = root / f"n{n}-t{total}"
                run_dir.mkdir(parents=True, exist_ok=True)
                rows.append(
                    await run_once(run_dir, n, total, args.idle_seconds, args.preload_timeout)
                )
    largest = max(sizes)
    discover = await discover_latency(largest)
    print()
    print(table(rows))
    per_service = max(1, largest // SERVICES)
    print(
        f"\nNode.discover of a {per_service}-instance service, table of {largest}: "
        f"{discover} us (median)"
    )
    result = {
        "rows": rows,
        "discover_us": discover,
        "discover_table": largest,
        "discover_service_instances": per_service,
    }
    write_json(args.json, result)
    return 1 if any("error" in r for r in rows) else 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    node = sub.add_parser("serve", help="internal: one preloaded node")
    node.add_argument("--config", type=Path, required=True)
    node.add_argument("--node", required=True)
    node.add_argument("--instances", type=int, required=True)
    node.add_argument("--expect", type=int, required=True)
    parser.add_argument("--sizes", default="10000,100000,250000")
    parser.add_argument("--nodes", default="5,20")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument(
        "--preload-timeout",
        type=float,
        default=None,
        help="seconds the preload may take (default: 60 + instances / 500)",
    )
    parser.add_argument("--quick", action="store_true", help="3 nodes, 2,000 instances, 2 s idle")
    parser.add_argument("--json", default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.nodes, args.idle_seconds = "2000", "3", 2.0
    return args


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    if options.mode == "serve":
        rss_path = options.config.parent / f"rss-{options.node}"
        trio.run(serve, options.config, options.node, options.instances, options.expect, rss_path)
    else:
        sys.exit(
            run_interruptible(
                lambda: trio.run(interrupt_on_sigterm, partial(main, options)), "bench stopped"
            )
        )
