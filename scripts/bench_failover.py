#!/usr/bin/env python3
"""Benchmark fail-over: from an instance's death to the discovery client no longer choosing it.

Usage:
    .venv/bin/python scripts/bench_failover.py [--trials 5] [--node-trials 3]
        [--instances 4] [--callers 2] [--quick] [--json bench-results/bench_failover.json]
        [--workdir DIR] [--seed 1]

Set-up, on loopback, every process started and stopped by PID by this script:

- Real agents (``LocalCluster`` and ``join_phase`` of scripts/bench_cluster.py):
  n1, which the client talks to and which owns nothing, so every change
  reaches the client through gossip; n2 and n3, which own the instances
  of paths (a) and (b); and one more node per ``--node-trials``, each owning
  one instance, for path (c). Self-preservation is off in this cluster
  (threshold 1.0): path (c) kills several nodes within its 30 s window and
  measures the ordinary removal of a dead node's entries, not that guard.
- Instances: ``python -m http.server`` processes, one per instance, each
  registered (service ``bench-failover``) on its owner with an HTTP check
  on ``/`` every 1 s, timeout 500 ms, critical after 1 failure.
- The client: ``AsyncRegistryClient(["http://n1"])``, default settings
  (round robin, 2 attempts per call, ejection after 3 failures in a row),
  watching the service through blocking queries. A fresh client per trial,
  so no ejection or cache carries over.

Paths, each timed from the SIGKILL (``time`` = trio's clock, which the client uses):

(a) passive: the client makes no calls. ``detect_s``: until its watch yields
    a list without the victim (then ``instances`` and ``pick`` no longer
    return it: checked). The chain: the owner's next check is refused and
    goes critical, the write gossips to n1, n1's blocking query wakes the
    client's watcher.
(b) active: ``--callers`` tasks call ``GET /`` in a closed loop (``--pause``
    between a task's calls). Per call, the HTTP attempts are counted (a
    wrapped httpx transport, attributed through a context variable).
    ``retried_calls``: calls after the kill that needed a second attempt;
    ``failed_calls``: calls that failed (``CallFailed`` or a 5xx);
    ``max_attempts``: most attempts any call needed; ``last_pick_s``: from
    the kill to the last attempt sent to the victim (ejection usually ends
    them before the registry does); ``detect_s``: as in (a), with calls.
(c) node: the victim's owner NODE is SIGKILLed (the instance process lives
    on); ``detect_s``: until the client's list drops the instance, which
    happens when n1 declares the node dead (SWIM + Lifeguard suspicion).

Between trials the killed instance is restarted on its port and the next
trial starts once the client lists every instance as passing again; the
kill then comes after a random (seeded) part of a check interval, so that
it lands at any phase of the owner's check cycle rather than always at the
same one.
Figures per path: median, p90 (nearest rank) and max over trials; a trial
that did not see the change within its bound counts as a miss (printed,
``misses`` in JSON). JSON: a list of rows, one per path, with the keys in
``ROW_KEYS``.
"""

from __future__ import annotations

import argparse
import contextvars
import ctypes
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

from bench_cluster import (  # noqa: E402  (scripts/ is not a package)
    HOST,
    Agent,
    Api,
    BenchError,
    LocalCluster,
    Verdicts,
    join_phase,
    percentile,
    work_root,
    write_json,
)

from gossip_registry.chaos.processes import KILL_WAIT  # noqa: E402
from gossip_registry.chaos.sigterm import interrupt_on_sigterm, sigterm_as_ctrl_c  # noqa: E402
from gossip_registry.client import AsyncRegistryClient, CallFailed, Instance  # noqa: E402
from tests.support.processes import free_ports  # noqa: E402

SERVICE = "bench-failover"
CHECK_INTERVAL = 1.0
CHECK = {"interval": "1s", "timeout": "500ms", "failures_before_critical": 1}
CHECK_BOUND = 1.5
"""Seconds: check interval + timeout, the most a check can take to see a death."""
DETECT_TIMEOUT = 20.0
"""Seconds for the client to drop a killed instance (expected: under CHECK_BOUND + gossip)."""
NODE_DETECT_TIMEOUT = 60.0
"""Seconds for the client to drop the instance of a killed node (SWIM detection, a few s)."""
READY_TIMEOUT = 30.0
"""Seconds for every instance to be listed passing (checks start critical)."""
AFTER_DROP = 0.5
"""Seconds the callers of path (b) go on after the client dropped the victim."""
ROW_KEYS = (
    "path",
    "trials",
    "misses",
    "median_s",
    "p90_s",
    "max_s",
    "calls_after_kill",
    "retried_calls",
    "failed_calls",
    "max_attempts",
    "last_pick_median_s",
    "last_pick_max_s",
)


# --- Instances -----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if this script dies (Linux PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))


@dataclass
class InstanceProc:
    """One instance: an ``http.server`` process on its own port, registered on ``owner``."""

    id: str
    port: int
    owner: Agent
    process: subprocess.Popen[bytes] | None = None


class Fleet:
    """The instance processes; ``stop`` kills every one still running, by PID."""

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "www"
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "logs" / "instances.log"
        self.instances: list[InstanceProc] = []

    def add(self, owner: Agent) -> InstanceProc:
        instance = InstanceProc(f"i{len(self.instances) + 1}", free_ports(1)[0], owner)
        self.instances.append(instance)
        self.start(instance)
        return instance

    def start(self, instance: InstanceProc) -> None:
        argv = [sys.executable, "-m", "http.server", str(instance.port)]
        argv += ["--bind", HOST, "--directory", str(self.root)]
        with open(self.log, "ab") as log:
            instance.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def kill(self, instance: InstanceProc) -> None:
        """SIGKILL by PID (``Popen`` never signals a reaped PID) and reap."""
        if instance.process is not None and instance.process.poll() is None:
            instance.process.send_signal(signal.SIGKILL)
            instance.process.wait(timeout=KILL_WAIT)

    def stop(self) -> None:
        for instance in self.instances:
            self.kill(instance)


# --- Client side ---------------------------------------------------------------------------


@dataclass
class CallRecord:
    attempts: int = 0


CURRENT_CALL: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar(
    "CURRENT_CALL", default=None
)


@dataclass
class CountingTransport(httpx.AsyncBaseTransport):
    """httpx's transport, noting each request to an instance: per call and, for the victim, when.

    The client sends from the caller's task, so the caller's context
    variable names the call an attempt belongs to.
    """

    victim_port: int | None = None
    victim_sends: list[float] = field(default_factory=list)
    inner: httpx.AsyncHTTPTransport = field(default_factory=httpx.AsyncHTTPTransport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = CURRENT_CALL.get()
        if call is not None:
            call.attempts += 1
            if request.url.port == self.victim_port:
                self.victim_sends.append(trio.current_time())
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


Updates = AsyncGenerator[list[Instance], None]


@asynccontextmanager
async def watched(
    node: Agent, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[tuple[AsyncRegistryClient, Updates]]:
    """A fresh client of ``node`` and its watch of the service (lists of instances)."""
    async with AsyncRegistryClient(
        [f"http://{HOST}:{node.http_port}"], transport=transport
    ) as client:
        updates = client.watch(SERVICE)
        async with aclosing(updates):
            yield client, updates


async def until(updates: Updates, done: Callable[[set[str]], bool], timeout: float) -> float:
    """trio time when the watch first yields a list whose ids satisfy ``done``; inf on timeout."""
    with trio.move_on_after(timeout):
        async for instances in updates:
            if done({i.id for i in instances}):
                return trio.current_time()
    return math.inf


async def ready(updates: Updates, ids: set[str]) -> None:
    """Wait until the watch lists every one of ``ids`` as passing (checks start critical)."""
    if await until(updates, ids.issubset, READY_TIMEOUT) == math.inf:
        raise BenchError(f"{sorted(ids)}: not all passing within {READY_TIMEOUT:.0f}s")


async def all_passing(node: Agent, ids: set[str]) -> None:
    async with watched(node) as (_, updates):
        await ready(updates, ids)


async def confirm_dropped(client: AsyncRegistryClient, victim: str) -> None:
    """After the watch dropped it, neither ``instances`` nor ``pick`` may return the victim."""
    listed = {i.id for i in await client.instances(SERVICE)}
    picked = {(await client.pick(SERVICE)).id for _ in range(2 * len(listed) + 2)}
    if victim in listed | picked:
        raise BenchError(f"{victim} still returned after the watch dropped it")


# --- Paths ---------------------------------------------------------------------------------


@dataclass
class Bench:
    cluster: LocalCluster
    fleet: Fleet
    say: Callable[[str], None]
    rng: random.Random

    async def random_phase(self) -> None:
        """Sleep a random part of a check interval, so kills land at any phase of the checks.

        Without it, the trials are phase-locked: each begins when the restarted
        instance's check has just passed, so every kill fell at the same point
        of its owner's check cycle and the spread over trials was an artefact.
        """
        await trio.sleep(self.rng.uniform(0.0, CHECK_INTERVAL))

    @property
    def client_node(self) -> Agent:
        return self.cluster.agents[0]

    async def instance_trial(self, victim: InstanceProc) -> float:
        """Path (a): kill ``victim``, time until the client's watch drops it."""
        ids = {i.id for i in self.fleet.instances}
        async with watched(self.client_node) as (client, updates):
            await ready(updates, ids)
            await self.random_phase()
            self.fleet.kill(victim)
            killed = trio.current_time()
            dropped = await until(updates, lambda now: victim.id not in now, DETECT_TIMEOUT)
            if dropped < math.inf:
                await confirm_dropped(client, victim.id)
        return dropped - killed

    async def active_trial(
        self, victim: InstanceProc, callers: int, pause: float
    ) -> dict[str, float]:
        """Path (b): the same with ``callers`` tasks calling the service meanwhile."""
        ids = {i.id for i in self.fleet.instances}
        transport = CountingTransport(victim_port=victim.port)
        after_kill: list[tuple[CallRecord, bool]] = []
        killed = math.inf

        async def caller() -> None:
            while True:
                record = CallRecord()
                CURRENT_CALL.set(record)
                try:
                    ok = (await client.request(SERVICE, "GET", "/")).status_code < 500
                except CallFailed:
                    ok = False
                if trio.current_time() >= killed:  # ended after the kill: in flight counts
                    after_kill.append((record, ok))
                await trio.sleep(pause)

        async with watched(self.client_node, transport) as (client, updates):
            await ready(updates, ids)
            async with trio.open_nursery() as nursery:
                for _ in range(callers):
                    nursery.start_soon(caller)
                await trio.sleep(0.5)  # calls flowing before the kill
                await self.random_phase()
                self.fleet.kill(victim)
                killed = trio.current_time()
                transport.victim_sends.clear()
                dropped = await until(updates, lambda now: victim.id not in now, DETECT_TIMEOUT)
                await trio.sleep(AFTER_DROP)
                nursery.cancel_scope.cancel()
        sends = transport.victim_sends
        return {
            "detect_s": dropped - killed,
            "calls_after_kill": len(after_kill),
            "retried_calls": sum(r.attempts > 1 for r, _ in after_kill),
            "failed_calls": sum(not ok for _, ok in after_kill),
            "max_attempts": max((r.attempts for r, _ in after_kill), default=0),
            "last_pick_s": (max(sends) - killed) if sends else 0.0,
        }

    async def node_trial(self, node: Agent, instance: InstanceProc) -> float:
        """Path (c): kill the owner node of ``instance``; time until the client drops it."""
        ids = {i.id for i in self.fleet.instances if i.owner.running}
        async with watched(self.client_node) as (client, updates):
            await ready(updates, ids)
            assert node.process is not None
            node.process.send_signal(signal.SIGKILL)
            killed = trio.current_time()
            dropped = await until(updates, lambda now: instance.id not in now, NODE_DETECT_TIMEOUT)
            if dropped < math.inf:
                await confirm_dropped(client, instance.id)
        self.fleet.kill(instance)
        return dropped - killed


async def register(api: Api, instance: InstanceProc) -> None:
    check = {"http": f"http://{HOST}:{instance.port}/", **CHECK}
    body = {"name": SERVICE, "id": instance.id, "port": instance.port, "checks": [check]}
    result = await api.request(instance.owner, "PUT", "/v1/services", body)
    if result is None or result[0] != 200:
        raise BenchError(f"{instance.owner.name}: PUT /v1/services answered {result!r}")


async def measure(bench: Bench, args: argparse.Namespace) -> dict[str, list[Any]]:
    """Join, register, then the trials of each path; the per-trial figures."""
    cluster, fleet, say = bench.cluster, bench.fleet, bench.say
    owners = cluster.agents[1:3]
    node_victims = cluster.agents[3:]
    async with Api(Verdicts()) as api:
        await join_phase(cluster, api, 0.05, say)
        stable = [fleet.add(owners[i % len(owners)]) for i in range(args.instances)]
        per_node = {node.name: fleet.add(node) for node in node_victims}
        for instance in fleet.instances:
            await register(api, instance)
    await all_passing(bench.client_node, {i.id for i in fleet.instances})
    say(f"{len(fleet.instances)} instances passing; client on {bench.client_node.name}")
    results: dict[str, list[Any]] = {"passive": [], "active": [], "node": []}

    async def restart(victim: InstanceProc) -> None:
        fleet.start(victim)
        await all_passing(bench.client_node, {victim.id})

    for trial in range(args.trials):
        victim = stable[trial % len(stable)]
        seconds = await bench.instance_trial(victim)
        results["passive"].append(seconds)
        say(f"(a) passive {trial + 1}/{args.trials}: {victim.id} dropped after {seconds:.3f}s")
        await restart(victim)
    for trial in range(args.trials):
        victim = stable[trial % len(stable)]
        figures = await bench.active_trial(victim, args.callers, args.pause)
        results["active"].append(figures)
        say(
            f"(b) active {trial + 1}/{args.trials}: {victim.id} dropped after "
            f"{figures['detect_s']:.3f}s, last picked at {figures['last_pick_s']:.3f}s; "
            f"{figures['calls_after_kill']} calls, {figures['retried_calls']} retried, "
            f"{figures['failed_calls']} failed, max attempts {figures['max_attempts']}"
        )
        await restart(victim)
    for trial, node in enumerate(node_victims):
        seconds = await bench.node_trial(node, per_node[node.name])
        results["node"].append(seconds)
        say(f"(c) node {trial + 1}/{len(node_victims)}: {node.name} dropped after {seconds:.3f}s")
    return results


# --- Report --------------------------------------------------------------------------------


def spread(path: str, times: list[float]) -> dict[str, Any]:
    """A row's timing figures over the trials that saw the change (misses counted apart)."""
    seen = [t for t in times if math.isfinite(t)]
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row |= {"path": path, "trials": len(times), "misses": len(times) - len(seen)}
    if seen:
        row |= {
            "median_s": statistics.median(seen),
            "p90_s": percentile(seen, 0.9),
            "max_s": max(seen),
        }
    return row


def rows_of(results: dict[str, list[Any]]) -> list[dict[str, Any]]:
    rows = [spread("passive", results["passive"])]
    active = results["active"]
    if active:
        row = spread("active", [t["detect_s"] for t in active])
        last = [t["last_pick_s"] for t in active]
        row |= {
            "calls_after_kill": sum(t["calls_after_kill"] for t in active),
            "retried_calls": sum(t["retried_calls"] for t in active),
            "failed_calls": sum(t["failed_calls"] for t in active),
            "max_attempts": max(t["max_attempts"] for t in active),
            "last_pick_median_s": statistics.median(last),
            "last_pick_max_s": max(last),
        }
        rows.append(row)
    if results["node"]:
        rows.append(spread("node", results["node"]))
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    widths = [max(len(k), *(len(cell(r[k])) for r in rows)) for k in ROW_KEYS]
    print("\nseconds from SIGKILL to the client dropping the instance (over trials):")
    for line in [list(ROW_KEYS), *([cell(r[k]) for k in ROW_KEYS] for r in rows)]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    active = next((r for r in rows if r["path"] == "active"), None)
    if active is not None and active["max_attempts"] is not None:
        verdict = "PASS" if active["max_attempts"] <= 2 and not active["failed_calls"] else "MISS"
        print(f"target: a dead instance costs a call at most one retry, no failed call: {verdict}")
    print(flush=True)


# --- Command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, help="trials of paths (a) and (b); default 5")
    parser.add_argument("--node-trials", type=int, help="trials of path (c); default 3, 0 skips")
    parser.add_argument("--instances", type=int, default=4, help="instances on n2 and n3")
    parser.add_argument("--callers", type=int, default=2, help="calling tasks in path (b)")
    parser.add_argument(
        "--pause", type=float, default=0.01, help="seconds between a caller's calls"
    )
    parser.add_argument("--quick", action="store_true", help="2 trials of each path")
    parser.add_argument(
        "--json",
        type=Path,
        default=SCRIPTS.parent / "bench-results" / "bench_failover.json",
        help="where the rows go (default: bench-results/bench_failover.json)",
    )
    parser.add_argument("--workdir", type=Path, help="keep configs, data and logs here")
    parser.add_argument("--seed", type=int, default=1, help="seeds the moments of the kills")
    args = parser.parse_args(argv)
    if args.trials is None:
        args.trials = 2 if args.quick else 5
    if args.node_trials is None:
        args.node_trials = 2 if args.quick else 3
    if args.trials < 1 or args.node_trials < 0 or args.instances < 2 or args.callers < 1:
        parser.error("need --trials >= 1, --node-trials >= 0, --instances >= 2, --callers >= 1")
    return args


class FailoverCluster(LocalCluster):
    """bench_cluster's cluster with self-preservation off (see the module docstring)."""

    def _toml(self) -> str:
        return (
            super()
            ._toml()
            .replace("[defaults]\n", "[defaults]\nself_preservation_threshold = 1.0\n", 1)
        )


def _say(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sigterm_as_ctrl_c()
    print(f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}", flush=True)
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}", flush=True)
    started = time.monotonic()
    with work_root(args.workdir) as root:
        cluster = FailoverCluster(root, 3 + args.node_trials)
        fleet = Fleet(root)
        bench = Bench(cluster, fleet, _say, random.Random(args.seed))
        results: dict[str, list[Any]] | None = None
        status = 1
        try:
            results = trio.run(interrupt_on_sigterm, lambda: measure(bench, args))
        except* KeyboardInterrupt:  # trio may deliver it inside a group
            print("interrupted", flush=True)
            status = 130
        except* BenchError as group:  # raised in a nursery's task, it arrives in a group
            print(f"FAILED: {group.exceptions}\n{cluster.log_tails()}", flush=True)
        finally:
            fleet.stop()
            cluster.stop()
            print("stopped every agent and instance", flush=True)
        if results is None:
            return status
    rows = rows_of(results)
    print_table(rows)
    write_json(args.json, rows)
    print(f"wrote {args.json} ({time.monotonic() - started:.0f}s in all)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
