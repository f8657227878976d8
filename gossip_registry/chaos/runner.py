"""One chaos run, start to end: hosts, agents, churn, the scenario, convergence, teardown.

Order of a run: set up the hosts; start n1, then the rest (joining through
every other address); wait until every node sees every node alive; churn
registrations for a warm-up; run the scenario's steps (faults) with the churn
going; stop the churn and record the heal; wait until the cluster has
converged (or ``converge_bound`` has passed); two more sweeps; stop every
agent by PID and tear the hosts down, in ``finally`` so errors and Ctrl-C do
too. The history is then checked and the report written.
"""

from __future__ import annotations

import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from gossip_registry.chaos.checker import Verdict, check_history, settled
from gossip_registry.chaos.cluster import ChaosCluster, Timing
from gossip_registry.chaos.history import History
from gossip_registry.chaos.hosts import make_hosts
from gossip_registry.chaos.scenarios import SCENARIOS, Scenario
from gossip_registry.chaos.sigterm import interrupt_on_sigterm
from gossip_registry.chaos.traffic import Churn, Observer

__all__ = ["ChaosError", "RunOptions", "RunResult", "run"]

OBSERVE_INTERVAL = 0.5
CHURN_INTERVAL = 0.3
WARMUP = 3.0
"""Seconds of churn before the first fault."""
FINAL_SWEEPS = 2


class ChaosError(Exception):
    """The run could not go on (an agent died on its own, the cluster never formed)."""


@dataclass(frozen=True)
class RunOptions:
    scenario: str
    nodes: int
    duration: float
    seed: int
    mode: str
    out: Path
    profile: str = "local"

    def command(self) -> str:
        """The command line that reproduces this run."""
        return shlex.join(
            [
                *("gossip-registry-chaos", self.scenario, "--nodes", str(self.nodes)),
                *("--duration", f"{self.duration:g}", "--seed", str(self.seed)),
                *("--mode", self.mode, "--profile", self.profile),
            ]
        )


@dataclass
class RunResult:
    options: RunOptions
    mode: str
    prefix: str
    history: Path
    verdict: Verdict
    leftovers: list[str]
    seconds: float


def say(message: str) -> None:
    print(message, flush=True)


def run(options: RunOptions) -> RunResult:
    """Run the scenario and check it; everything it started is gone when this returns."""
    scenario = SCENARIOS[options.scenario]
    options.out.mkdir(parents=True, exist_ok=True)
    timing = Timing.of(options.profile, options.nodes)
    rng = random.Random(options.seed)
    started = time.monotonic()
    hosts = make_hosts(options.mode, options.nodes, options.out)
    history = History(options.out / "history.jsonl")
    cluster = ChaosCluster(hosts, options.out, options.profile, history, rng)
    say(f"[{scenario.name}] {hosts.mode} mode, run prefix {hosts.prefix}, {options.nodes} nodes")
    history.write(
        {"type": "meta", "scenario": scenario.name, "seed": options.seed, "mode": hosts.mode}
        | {"prefix": hosts.prefix, "nodes": cluster.names, "addresses": hosts.addresses}
        | {"profile": options.profile, "duration": options.duration}
        | {"probe_interval": timing.probe_interval, "suspicion_min": timing.suspicion_min}
        | {"suspicion_max": timing.suspicion_max, "detect_bound": timing.detect_bound}
        | {"converge_bound": timing.converge_bound, "linger": timing.converge_bound}
        | {"command": options.command(), "python": sys.version.split()[0]}
    )
    try:
        drive = partial(_drive, cluster, scenario, timing, options.duration, rng)
        trio.run(interrupt_on_sigterm, drive)
    finally:
        cluster.stop_all()
        hosts.teardown()
        history.close()
    say(f"[{scenario.name}] stopped every agent; hosts torn down")
    return RunResult(
        options,
        hosts.mode,
        hosts.prefix,
        history.path,
        check_history(history.events),
        hosts.leftovers(),
        time.monotonic() - started,
    )


async def _drive(
    cluster: ChaosCluster, scenario: Scenario, timing: Timing, duration: float, rng: random.Random
) -> None:
    observer = Observer(cluster, OBSERVE_INTERVAL)
    history = cluster.history

    async def until(condition: str, bound: float, test: Callable[[], bool]) -> bool:
        with trio.move_on_after(bound):
            while not test():
                if cluster.exited():
                    raise ChaosError(f"agents exited on their own: {cluster.exited()}")
                await trio.sleep(OBSERVE_INTERVAL)
            say(f"[{scenario.name}] {history.now():6.1f}s {condition}")
            return True
        say(f"[{scenario.name}] {history.now():6.1f}s NOT {condition} within {bound:.0f}s")
        return False

    def sees(observers: list[int], wanted: dict[int, str]) -> bool:
        for i in observers:
            view = observer.last.get(cluster.names[i])
            members = view.get("members") if view else None
            if not members or any(members.get(cluster.names[j]) != s for j, s in wanted.items()):
                return False
        return True

    async def wait_dead(victims: list[int]) -> None:
        dead = dict.fromkeys(victims, "dead")
        await until(f"{victims} seen dead", timing.detect_bound, lambda: sees(cluster.up(), dead))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(observer.run)
        cluster.start(0)
        everyone = list(range(cluster.n))
        await until("n1 up", 60, lambda: sees([0], {0: "alive"}))
        for i in everyone[1:]:
            cluster.start(i)
        joined = await until(
            "all joined",
            30 + 3 * cluster.n,
            lambda: sees(everyone, dict.fromkeys(everyone, "alive")),
        )
        if not joined:
            raise ChaosError("the cluster never formed")
        churning = trio.CancelScope()
        nursery.start_soon(_churn, Churn(cluster, CHURN_INTERVAL, rng), churning)
        await trio.sleep(WARMUP)
        say(f"[{scenario.name}] {history.now():6.1f}s faults: {scenario.description}")
        await scenario.steps(cluster, timing, duration, wait_dead)
        churning.cancel()
        history.write({"type": "heal"})
        say(f"[{scenario.name}] {history.now():6.1f}s healed; waiting for convergence")
        await until("converged", timing.converge_bound, lambda: settled(history.events))
        last = observer.round
        while observer.round < last + FINAL_SWEEPS + 1:
            await trio.sleep(OBSERVE_INTERVAL)
        history.write({"type": "end"})
        nursery.cancel_scope.cancel()


async def _churn(churn: Churn, scope: trio.CancelScope) -> None:
    with scope:
        await churn.run()
