#!/usr/bin/env python3
"""Benchmark nginx through ``gossip-registry render``: how fast nginx follows the registry.

Usage:
    .venv/bin/python scripts/bench_render.py [--trials 10] [--instances 10]
        [--wait 100ms:1s] [--quick] [--json bench-results/bench_render.json] [--workdir DIR]

The nginx rows of ``scripts/bench_integrations.py`` (which measures HAProxy
the same way), in the same shape: one row per backend with the keys in
ROW_KEYS, plus the deregistration figures.

Set-up, on loopback, every process started and stopped by PID: one agent
(``tests/support/local_agent.py``); ``--instances`` web instances, HTTP servers in
this process that answer their port (``tests/support/backends.py``), each
registered with a TCP check every 500 ms (timeout 300 ms); a private nginx
with ``gossip-registry render --wait WAIT --exec 'nginx -s reload'``
rendering the shipped ``examples/nginx/upstreams.conf.j2``
(``tests/support/nginx.py``). Two clients send ``GET /`` through nginx in a
closed loop (5 ms apart each) for the whole run.

Per trial:

- ``register``: a new instance starts listening and is registered; the
  figure is the time from the registration's PUT to the first response it
  served through nginx (our check, render's blocking query, the --wait
  quiet time, the reload).
- ``deregister``: the oldest instance (still running) is deregistered; the
  figure is the time from the DELETE to nginx's last request to it.
- ``kill``: the next oldest instance's listener is closed (connections are
  refused, as a dead process's port); the figure is the time from the kill
  to nginx's last request to it, retries of refused connections included.
  ``failed`` counts client requests that failed from the kill to the end of
  the trial (target: none: ``proxy_next_upstream error`` sends a refused
  request to another instance). The instance is then deregistered.

"nginx's last request" is read from nginx's access log (``$upstream_addr``
of every request, each try of a retried one included), polled every POLL
seconds; it is final once the registry no longer lists the instance passing
and the count stood still for QUIET seconds. Figures: median and max over
the trials; a trial that did not see its change within TRIAL_TIMEOUT is a
miss (printed, ``misses`` in JSON).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

import httpx  # noqa: E402
import trio  # noqa: E402
from bench_scale import workspace, write_json  # noqa: E402

from gossip_registry.chaos.sigterm import interrupt_on_sigterm, run_interruptible  # noqa: E402
from tests.support.backends import Instances, served_by  # noqa: E402
from tests.support.local_agent import LocalAgent  # noqa: E402
from tests.support.nginx import RenderedNginx  # noqa: E402
from tests.support.programs import find_program  # noqa: E402

POLL = 0.05
"""Seconds between reads of nginx's per-instance request counts."""
QUIET = 2.0
"""Seconds a dropped instance's count must stand still before its last request is final."""
TRIAL_TIMEOUT = 30.0
"""Seconds a trial may take before it counts as a miss."""
CLIENT_PAUSE = 0.005
CHECK = {"tcp": "127.0.0.1:{port}", "interval": "500ms", "timeout": "300ms"}
ROW_KEYS = (
    "backend",
    "trials",
    "misses",
    "register_median_s",
    "register_max_s",
    "kill_last_request_median_s",
    "kill_last_request_max_s",
    "requests",
    "failed_during_kill",
    "deregister_last_request_median_s",
    "deregister_last_request_max_s",
)


class BenchError(Exception):
    """The set-up failed (a program missing, nginx not reached); the message says what."""


@dataclass
class Traffic:
    """Requests through nginx: which instance answered each, and how many failed."""

    url: str
    http: httpx.AsyncClient
    served: Counter[int] = field(default_factory=Counter)
    first_seen: dict[int, float] = field(default_factory=dict)
    failed: int = 0

    async def run(self, pause: float, clients: int = 2) -> None:
        async def client() -> None:
            while True:
                port = await served_by(self.http, self.url)
                if port is None:
                    self.failed += 1
                else:
                    self.served[port] += 1
                    self.first_seen.setdefault(port, time.monotonic())
                await trio.sleep(pause)

        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client)


@dataclass
class Bench:
    agent: LocalAgent
    backends: Instances
    balancer: RenderedNginx
    http: httpx.AsyncClient
    traffic: Traffic
    live: list[int]


@dataclass
class Results:
    register: list[float] = field(default_factory=list)
    last_request: list[float] = field(default_factory=list)
    deregister: list[float] = field(default_factory=list)
    misses: int = 0
    failed: int = 0
    requests: int = 0


async def wait_until(check: Callable[[], Awaitable[bool]], bound: float) -> bool:
    """Whether ``check()`` came true within ``bound`` seconds (polled every POLL)."""
    with trio.move_on_after(bound):
        while not await check():
            await trio.sleep(POLL)
        return True
    return False


async def add_instance(bench: Bench) -> tuple[int, float]:
    """Start an instance, then register it: (its port, when the registration was sent)."""
    port = await bench.backends.start()
    checks = [{k: v.format(port=port) for k, v in CHECK.items()}]
    sent = time.monotonic()
    await bench.agent.register(bench.http, port, checks=checks)
    return port, sent


async def register_trial(bench: Bench) -> float | None:
    """Seconds from registering a new instance to its first response through nginx."""
    port, started = await add_instance(bench)

    async def served() -> bool:
        return port in bench.traffic.first_seen

    if not await wait_until(served, TRIAL_TIMEOUT):
        return None
    bench.live.append(port)
    return bench.traffic.first_seen[port] - started


async def last_request_after(
    bench: Bench, port: int, drop: Callable[[], Awaitable[None]]
) -> float | None:
    """Seconds from ``drop()`` to nginx's last request to ``port``; None: not settled in time."""
    last = (await bench.balancer.attempts()).get(port, 0)
    await drop()
    dropped_at = last_change = time.monotonic()
    gone: float | None = None

    async def settled() -> bool:
        nonlocal last, last_change, gone
        now = time.monotonic()
        count = (await bench.balancer.attempts()).get(port, 0)
        if count != last:
            last, last_change = count, now
        if gone is None and port not in await bench.agent.passing(bench.http):
            gone = now
        return gone is not None and now - max(last_change, gone) >= QUIET

    if not await wait_until(settled, TRIAL_TIMEOUT):
        return None
    return last_change - dropped_at


async def deregister_trial(bench: Bench) -> float | None:
    port = bench.live.pop(0)
    figure = await last_request_after(
        bench, port, partial(bench.agent.deregister, bench.http, port)
    )
    await bench.backends.kill(port)
    return figure


async def kill_trial(bench: Bench) -> tuple[float | None, int]:
    port = bench.live.pop(0)
    failed_before = bench.traffic.failed
    figure = await last_request_after(bench, port, partial(bench.backends.kill, port))
    failed = bench.traffic.failed - failed_before
    await bench.agent.deregister(bench.http, port)
    return figure, failed


def fmt(value: float | None) -> str:
    return "miss" if value is None else f"{value:.3f}s"


async def run_trials(bench: Bench, trials: int) -> Results:
    results = Results()

    async def all_reached() -> bool:
        return set(bench.live) <= set(bench.traffic.served)

    if not await wait_until(all_reached, TRIAL_TIMEOUT):
        raise BenchError(f"requests did not reach every instance\n{bench.balancer.logs()}")
    requests_before = sum(bench.traffic.served.values()) + bench.traffic.failed
    for trial in range(trials):
        registered = await register_trial(bench)
        deregistered = await deregister_trial(bench)
        killed, failed = await kill_trial(bench)
        bench.live.append((await add_instance(bench))[0])  # keep the fleet's size
        results.failed += failed
        for name, value, into in (
            ("register", registered, results.register),
            ("deregister", deregistered, results.deregister),
            ("kill", killed, results.last_request),
        ):
            if value is None:
                results.misses += 1
                print(f"nginx trial {trial + 1}: {name} MISSED", flush=True)
            else:
                into.append(value)
        print(
            f"nginx trial {trial + 1}: register {fmt(registered)}, deregister -> last request "
            f"{fmt(deregistered)}, kill -> last request {fmt(killed)}, failed {failed}",
            flush=True,
        )
    results.requests = sum(bench.traffic.served.values()) + bench.traffic.failed - requests_before
    return results


def row_of(trials: int, results: Results) -> dict[str, Any]:
    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 4) if values else None

    def largest(values: list[float]) -> float | None:
        return round(max(values), 4) if values else None

    return {
        "backend": "nginx",
        "trials": trials,
        "misses": results.misses,
        "register_median_s": median(results.register),
        "register_max_s": largest(results.register),
        "kill_last_request_median_s": median(results.last_request),
        "kill_last_request_max_s": largest(results.last_request),
        "requests": results.requests,
        "failed_during_kill": results.failed,
        "deregister_last_request_median_s": median(results.deregister),
        "deregister_last_request_max_s": largest(results.deregister),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = list(ROW_KEYS)
    table = [[("-" if row[k] is None else str(row[k])) for k in ROW_KEYS] for row in rows]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    print("\nmedian and max over trials (seconds):")
    for line in [header, *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    print(flush=True)


async def main(args: argparse.Namespace) -> int:
    print(f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}", flush=True)
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    binary = find_program("nginx")
    if binary is None:
        print("FAILED: nginx is not installed (apt-get install nginx)", flush=True)
        return 1
    with workspace(args.workdir) as root:
        agent = LocalAgent(root / "agent")
        balancer = RenderedNginx(binary, root, agent.api, wait=args.wait)
        try:
            agent.start()
            balancer.start()
            async with (
                httpx.AsyncClient(trust_env=False) as http,
                trio.open_nursery() as nursery,
            ):
                bench = Bench(
                    agent, Instances(nursery), balancer, http, Traffic(balancer.url, http), []
                )
                await agent.ready(http)
                for _ in range(args.instances):
                    bench.live.append((await add_instance(bench))[0])
                nursery.start_soon(bench.traffic.run, CLIENT_PAUSE)
                results = await run_trials(bench, args.trials)
                nursery.cancel_scope.cancel()
        except (BenchError, RuntimeError) as exc:
            print(f"FAILED: {exc}", flush=True)
            return 1
        finally:
            try:
                balancer.stop()
            finally:
                agent.stop()
            print("stopped the agent, render and nginx", flush=True)
    rows = [row_of(args.trials, results)]
    print_table(rows)
    write_json(args.json, rows)
    if args.json:
        print(f"wrote {args.json}", flush=True)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--wait", default="100ms:1s", help="render's --wait MIN[:MAX]")
    parser.add_argument("--quick", action="store_true", help="1 trial, 3 instances")
    parser.add_argument("--json", default="bench-results/bench_render.json")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.instances = 1, 3
    if args.trials < 1 or args.instances < 2:
        parser.error("need --trials >= 1 and --instances >= 2")
    return args


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    sys.exit(
        run_interruptible(
            lambda: trio.run(interrupt_on_sigterm, partial(main, options)), "bench stopped"
        )
    )
