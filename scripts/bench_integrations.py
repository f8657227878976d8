#!/usr/bin/env python3
"""Benchmark server-side discovery: how fast a load balancer follows the registry.

Usage:
    .venv/bin/python scripts/bench_integrations.py [--backends haproxy] [--trials 10]
        [--instances 10] [--quick] [--json bench-results/bench_integrations.json]
        [--workdir DIR]

Set-up, on loopback, every process started and stopped by PID by this script
(``tests/support/haproxy.py``): agents n1 (DNS, the node the
balancer asks) and n2 (owns the instances, runs their HTTP checks every
500 ms, timeout 300 ms), ``--instances`` web instances (a stdlib HTTP
server process each, answering its id), and per backend the balancer as
docs/integrations.md configures it. Two clients send ``GET /`` through the
balancer in a closed loop (5 ms apart each) for the whole run.

Per trial, for each backend:

- ``register``: a new instance is started, listening, then registered on n2;
  the figure is the time from the registration's PUT to the first response
  the new instance served through the balancer (our check, gossip to n1,
  the balancer's next resolution and its own check of the new server).
- ``kill``: the oldest live instance's process is SIGKILLed; the figure is
  the time from the kill to the balancer's last request to it, read from
  the balancer's own counters of requests sent to that server (for HAProxy:
  ``stot + econ + wretr`` of its slot in ``show stat``), polled every
  POLL seconds; the trial ends once n1 no longer lists the instance passing
  and the counter stood still for QUIET seconds. ``failed`` counts the
  client requests that failed from the kill to the end of the trial
  (target: none, since ``retry-on`` + ``option redispatch`` send a request
  the dead server refused to another one). The killed instance is then
  deregistered.

Figures: median and max over the trials per backend; a trial that did not
see its change within TRIAL_TIMEOUT is a miss (printed, ``misses`` in JSON).
JSON: a list of rows, one per backend, with the keys in ROW_KEYS.

A backend is one entry of BACKENDS: a function that starts the balancer
in front of the agents and returns something with a ``port`` to send
requests to, ``attempts()`` (requests sent so far per instance port) and
``stop()``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

import trio  # noqa: E402
from bench_scale import workspace, write_json  # noqa: E402

from gossip_registry.chaos.http11 import HttpClient  # noqa: E402
from gossip_registry.chaos.sigterm import interrupt_on_sigterm, run_interruptible  # noqa: E402
from tests.support.haproxy import (  # noqa: E402
    HAProxy,
    HarnessError,
    Registry,
    Traffic,
    WebFleet,
    WebInstance,
)
from tests.support.programs import find_program  # noqa: E402

POLL = 0.05
"""Seconds between reads of the balancer's per-server counters during a kill trial."""
QUIET = 2.0
"""Seconds a dropped instance's counter must stand still before its last request is final."""
TRIAL_TIMEOUT = 30.0
"""Seconds a trial may take before it counts as a miss."""
SLOTS = 32
"""Server slots of HAProxy's server-template: more than the instances alive at once."""
CLIENT_PAUSE = 0.005
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
)


class Balancer(Protocol):
    """A running load balancer in front of the agents."""

    @property
    def port(self) -> int: ...

    async def attempts(self) -> dict[int, int]:
        """Requests sent so far to each instance, by the instance's port."""
        ...

    def stop(self) -> None: ...


@dataclass
class Bench:
    """What every backend shares: the agents, the instances, an API client, a work directory."""

    registry: Registry
    fleet: WebFleet
    api: HttpClient
    workdir: Path


async def start_haproxy(bench: Bench) -> Balancer:
    binary = find_program("haproxy")
    if binary is None:
        raise HarnessError("haproxy is not installed (apt-get install haproxy)")
    proxy = HAProxy(bench.workdir / "haproxy", binary)
    proxy.start(bench.registry.dns_port, SLOTS)
    await proxy.wait_ready()
    return proxy


BACKENDS: dict[str, Callable[[Bench], Awaitable[Balancer]]] = {"haproxy": start_haproxy}
"""Backend name -> how to start it (docs/integrations.md shows each configuration)."""


@dataclass
class Results:
    register: list[float] = field(default_factory=list)
    last_request: list[float] = field(default_factory=list)
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


async def register_trial(bench: Bench, traffic: Traffic) -> float | None:
    """Seconds from registering a new instance to its first response through the balancer."""
    (instance,) = bench.fleet.start(1)
    await bench.fleet.wait_listening([instance])
    started = time.monotonic()
    await WebFleet.register(bench.api, bench.registry, instance)

    async def served() -> bool:
        return instance.id in traffic.first_seen

    if not await wait_until(served, TRIAL_TIMEOUT):
        return None
    return traffic.first_seen[instance.id] - started


async def kill_trial(
    bench: Bench, balancer: Balancer, traffic: Traffic, victim: WebInstance
) -> tuple[float | None, int]:
    """(seconds from the kill to the balancer's last request to ``victim``, requests failed)."""
    failed_before = traffic.failed
    last = (await balancer.attempts()).get(victim.port, 0)
    killed = last_change = time.monotonic()
    bench.fleet.kill(victim)
    dropped: float | None = None

    async def settled() -> bool:
        nonlocal last, last_change, dropped
        now = time.monotonic()
        count = (await balancer.attempts()).get(victim.port)
        if count is not None and count != last:
            last, last_change = count, now
        if dropped is None and victim.id not in await bench.registry.passing(bench.api):
            dropped = now
        return dropped is not None and now - max(last_change, dropped) >= QUIET

    done = await wait_until(settled, TRIAL_TIMEOUT)
    await WebFleet.deregister(bench.api, bench.registry, victim)
    return (last_change - killed if done else None), traffic.failed - failed_before


async def run_backend(bench: Bench, name: str, trials: int) -> Results:
    results = Results()
    balancer = await BACKENDS[name](bench)
    try:
        traffic = Traffic(balancer.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(traffic.run, CLIENT_PAUSE))
            live = [i for i in bench.fleet.instances if i.process and i.process.poll() is None]

            async def all_reached() -> bool:
                return {i.id for i in live} <= set(traffic.served)

            if not await wait_until(all_reached, TRIAL_TIMEOUT):
                raise HarnessError(f"{name}: requests did not reach every instance")
            requests_before = sum(traffic.served.values()) + traffic.failed
            for trial in range(trials):
                registered = await register_trial(bench, traffic)
                victim = live.pop(0)
                last_request, failed = await kill_trial(bench, balancer, traffic, victim)
                live.append(bench.fleet.instances[-1])
                results.failed += failed
                for figure, value in (("register", registered), ("kill", last_request)):
                    if value is None:
                        results.misses += 1
                        print(f"{name} trial {trial + 1}: {figure} MISSED", flush=True)
                if registered is not None:
                    results.register.append(registered)
                if last_request is not None:
                    results.last_request.append(last_request)
                print(
                    f"{name} trial {trial + 1}: register {fmt(registered)}, "
                    f"kill -> last request {fmt(last_request)}, failed {failed}",
                    flush=True,
                )
            results.requests = sum(traffic.served.values()) + traffic.failed - requests_before
            nursery.cancel_scope.cancel()
    finally:
        balancer.stop()
    return results


def fmt(value: float | None) -> str:
    return "miss" if value is None else f"{value:.3f}s"


def row_of(name: str, trials: int, results: Results) -> dict[str, Any]:
    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 4) if values else None

    def largest(values: list[float]) -> float | None:
        return round(max(values), 4) if values else None

    return {
        "backend": name,
        "trials": trials,
        "misses": results.misses,
        "register_median_s": median(results.register),
        "register_max_s": largest(results.register),
        "kill_last_request_median_s": median(results.last_request),
        "kill_last_request_max_s": largest(results.last_request),
        "requests": results.requests,
        "failed_during_kill": results.failed,
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
    rows = []
    with workspace(args.workdir) as root:
        registry = Registry(root / "agents")
        fleet = WebFleet(root / "web")
        try:
            registry.start()
            instances = fleet.start(args.instances)
            await fleet.wait_listening(instances)
            async with HttpClient(2.0) as api:
                await registry.wait_joined(api)
                for instance in instances:
                    await WebFleet.register(api, registry, instance)
                bench = Bench(registry, fleet, api, root)
                for name in args.backends.split(","):
                    results = await run_backend(bench, name, args.trials)
                    rows.append(row_of(name, args.trials, results))
        except HarnessError as exc:
            print(f"FAILED: {exc}", flush=True)
            return 1
        finally:
            fleet.stop()
            registry.stop()
            print("stopped every agent, instance and balancer", flush=True)
    print_table(rows)
    write_json(args.json, rows)
    if args.json:
        print(f"wrote {args.json}", flush=True)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 trial, 3 instances")
    parser.add_argument("--json", default="bench-results/bench_integrations.json")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    unknown = set(args.backends.split(",")) - set(BACKENDS)
    if unknown:
        parser.error(
            f"unknown backend(s): {', '.join(sorted(unknown))}; known: {', '.join(BACKENDS)}"
        )
    if args.quick:
        args.trials, args.instances = 1, 3
    return args


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    sys.exit(
        run_interruptible(
            lambda: trio.run(interrupt_on_sigterm, partial(main, options)), "bench stopped"
        )
    )
