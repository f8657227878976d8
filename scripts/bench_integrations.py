#!/usr/bin/env python3
"""Benchmark server-side discovery: how fast HAProxy and nginx (via render) follow the registry.

Usage:
    .venv/bin/python scripts/bench_integrations.py [--backends haproxy,nginx] [--trials 10]
        [--instances 10] [--quick] [--json bench-results/bench_integrations.json]
        [--workdir DIR]

Set-up, on loopback, every process started and stopped by PID by this script
(``tests/support/haproxy.py``, ``tests/support/nginx.py``): agents n1 (the
node the balancers ask) and n2 (owns the instances, runs their HTTP checks
every 500 ms, timeout 300 ms), ``--instances`` web instances (a stdlib HTTP
server process each, answering its id), and per backend, one after the
other, the balancer as docs/integrations.md configures it:

- ``haproxy``: HAProxy's ``server-template`` resolving
  ``_web._tcp.service.consul`` on n1's DNS port (resolve 1 s, check 1 s);
- ``nginx``: a private nginx whose upstream ``gossip-registry render``
  renders from n1's HTTP API with the shipped
  ``examples/nginx/upstreams.conf.j2`` (``--wait 100ms:1s``,
  ``--exec 'nginx -s reload'``).

Two clients send ``GET /`` through the balancer in a closed loop (5 ms
apart each) for the whole run of that backend.

Per trial, for each backend:

- ``register``: a new instance is started, listening, then registered on n2;
  the figure is the time from the registration's PUT to the first response
  the new instance served through the balancer (our check, gossip to n1,
  then HAProxy's next resolution and its own check, or render's blocking
  query, its --wait and nginx's reload).
- ``deregister``: the oldest live instance is deregistered on n2 (its
  process still runs); the figure is the time from the DELETE to the
  balancer's last request to it. Its process is then stopped.
- ``kill``: the next oldest instance's process is SIGKILLed; the figure is
  the time from the kill to the balancer's last request to it. ``failed``
  counts the client requests that failed from the kill to the end of the
  trial (target: none, since HAProxy's ``retry-on`` + ``option redispatch``
  and nginx's ``proxy_next_upstream`` send a request the dead server
  refused to another one). The killed instance is then deregistered, and
  a new instance registered in its place keeps the fleet's size.

"The balancer's last request" comes from its own counts of requests sent
to that instance, retries included (HAProxy: ``stot + econ + wretr`` of its
slot in ``show stat``; nginx: ``$upstream_addr`` in its access log), polled
every POLL seconds; it is final once n1 no longer lists the instance
passing and the count stood still for QUIET seconds.

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
from tests.support.nginx import RenderedNginx  # noqa: E402
from tests.support.programs import find_program  # noqa: E402

POLL = 0.05
"""Seconds between reads of the balancer's per-instance counts during a drop trial."""
QUIET = 2.0
"""Seconds a dropped instance's count must stand still before its last request is final."""
TRIAL_TIMEOUT = 30.0
"""Seconds a trial may take before it counts as a miss."""
SLOTS = 32
"""Server slots of HAProxy's server-template: more than the instances alive at once."""
RENDER_WAIT = "100ms:1s"
"""render's ``--wait``: a burst of changes makes one reload, none waits more than 1 s."""
CLIENT_PAUSE = 0.005
FIGURES = ("register", "deregister_last_request", "kill_last_request")
ROW_KEYS = (
    "backend",
    "trials",
    "misses",
    *(f"{figure}_{stat}_s" for figure in FIGURES for stat in ("median", "max")),
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


def program(name: str) -> str:
    binary = find_program(name)
    if binary is None:
        raise HarnessError(f"{name} is not installed (apt-get install {name})")
    return binary


async def start_haproxy(bench: Bench) -> Balancer:
    proxy = HAProxy(bench.workdir / "haproxy", program("haproxy"))
    proxy.start(bench.registry.dns_port, SLOTS)
    await proxy.wait_ready()
    return proxy


async def start_nginx(bench: Bench) -> Balancer:
    """nginx, and render following n1; the first rendering is awaited by ``run_backend``."""
    api = f"http://127.0.0.1:{bench.registry.http['n1']}"
    balancer = RenderedNginx(program("nginx"), bench.workdir / "nginx", api, wait=RENDER_WAIT)
    try:
        balancer.start()
    except RuntimeError as exc:
        raise HarnessError(str(exc)) from exc
    return balancer


BACKENDS: dict[str, Callable[[Bench], Awaitable[Balancer]]] = {
    "haproxy": start_haproxy,
    "nginx": start_nginx,
}
"""Backend name -> how to start it (docs/integrations.md shows each configuration)."""


@dataclass
class Results:
    figures: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in FIGURES})
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


async def add_instance(bench: Bench) -> tuple[WebInstance, float]:
    """A new instance, listening, then registered: (it, when its registration was sent)."""
    (instance,) = bench.fleet.start(1)
    await bench.fleet.wait_listening([instance])
    sent = time.monotonic()
    await WebFleet.register(bench.api, bench.registry, instance)
    return instance, sent


async def register_trial(bench: Bench, traffic: Traffic) -> tuple[WebInstance, float | None]:
    """A new instance, and seconds from its registration to its first response served."""
    instance, started = await add_instance(bench)

    async def served() -> bool:
        return instance.id in traffic.first_seen

    if not await wait_until(served, TRIAL_TIMEOUT):
        return instance, None
    return instance, traffic.first_seen[instance.id] - started


async def last_request_after(
    bench: Bench, balancer: Balancer, victim: WebInstance, drop: Callable[[], Awaitable[None]]
) -> float | None:
    """Seconds from ``drop()`` to the balancer's last request to ``victim``; None: a miss."""
    last = (await balancer.attempts()).get(victim.port, 0)
    dropped = last_change = time.monotonic()
    await drop()
    gone: float | None = None

    async def settled() -> bool:
        nonlocal last, last_change, gone
        now = time.monotonic()
        count = (await balancer.attempts()).get(victim.port)
        if count is not None and count != last:
            last, last_change = count, now
        if gone is None and victim.id not in await bench.registry.passing(bench.api):
            gone = now
        return gone is not None and now - max(last_change, gone) >= QUIET

    if not await wait_until(settled, TRIAL_TIMEOUT):
        return None
    return last_change - dropped


async def deregister_trial(bench: Bench, balancer: Balancer, victim: WebInstance) -> float | None:
    figure = await last_request_after(
        bench, balancer, victim, partial(WebFleet.deregister, bench.api, bench.registry, victim)
    )
    bench.fleet.kill(victim)
    return figure


async def kill_trial(
    bench: Bench, balancer: Balancer, traffic: Traffic, victim: WebInstance
) -> tuple[float | None, int]:
    """(seconds from the kill to the balancer's last request to ``victim``, requests failed)."""
    failed_before = traffic.failed

    async def kill() -> None:
        bench.fleet.kill(victim)

    figure = await last_request_after(bench, balancer, victim, kill)
    await WebFleet.deregister(bench.api, bench.registry, victim)
    return figure, traffic.failed - failed_before


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
                where = bench.workdir / name
                raise HarnessError(f"{name}: requests did not reach every instance; see {where}")
            requests_before = sum(traffic.served.values()) + traffic.failed
            for trial in range(trials):
                instance, registered = await register_trial(bench, traffic)
                live.append(instance)
                deregistered = await deregister_trial(bench, balancer, live.pop(0))
                killed, failed = await kill_trial(bench, balancer, traffic, live.pop(0))
                live.append((await add_instance(bench))[0])
                results.failed += failed
                measured = dict(zip(FIGURES, (registered, deregistered, killed), strict=True))
                for figure, value in measured.items():
                    if value is None:
                        results.misses += 1
                        print(f"{name} trial {trial + 1}: {figure} MISSED", flush=True)
                    else:
                        results.figures[figure].append(value)
                print(
                    f"{name} trial {trial + 1}: register {fmt(registered)}, deregister -> last "
                    f"request {fmt(deregistered)}, kill -> last request {fmt(killed)}, "
                    f"failed {failed}",
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
    row: dict[str, Any] = {"backend": name, "trials": trials, "misses": results.misses}
    for figure, values in results.figures.items():
        row[f"{figure}_median_s"] = round(statistics.median(values), 4) if values else None
        row[f"{figure}_max_s"] = round(max(values), 4) if values else None
    row["requests"] = results.requests
    row["failed_during_kill"] = results.failed
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per key, one column per backend: the figures of all backends side by side."""
    table = [
        [key, *("-" if row[key] is None else str(row[key]) for row in rows)] for key in ROW_KEYS
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    print("\nmedian and max over trials (seconds):")
    for line in table:
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
