"""The simulator runs the node's check scheduling: both drivers call the same scheduler.

A spy wraps the ``CheckScheduler`` entry points that drivers call (start,
advance, probe results, TTL reports) and records, per instance, what the
scheduler decided: probes to run, state changes, deregistration. A TTL check
that is reported once and then left to run out, with ``deregister_after``,
must give the same decisions in a simulated node and in a real ``Node``; a
TCP check's probes are asked for by the scheduler in both.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import trio

from gossip_registry.registry.check_schedule import (
    CheckEffect,
    ChecksChanged,
    CheckScheduler,
    DeregisterCritical,
    RunProbe,
)
from gossip_registry.registry.entry import EntryKey, Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.sim import SimCluster
from tests.integration import fast_config, start_node, wait_until

TTL = CheckSpec(ttl=0.2, deregister_after=0.3)
EXPECTED = [
    ("changed", Health.PASSING, "up"),
    ("changed", Health.CRITICAL, "TTL expired"),
    ("deregister",),
]
"""Reported once, then no report: expired after 0.2 s, deregistered 0.3 s later."""
ENTRY_POINTS = ("replace", "restore", "advance", "probe_done", "probe_timed_out", "report_ttl")


class SchedulerSpy:
    """Records, per instance, what the check scheduler decided for any driver."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decisions: defaultdict[EntryKey, list[tuple[object, ...]]] = defaultdict(list)
        self._depth = 0
        for name in ENTRY_POINTS:
            monkeypatch.setattr(CheckScheduler, name, self._watch(getattr(CheckScheduler, name)))

    def _watch(self, method: Callable[..., list[CheckEffect]]) -> Callable[..., list[CheckEffect]]:
        def watched(scheduler: CheckScheduler, *args: Any, **kwargs: Any) -> list[CheckEffect]:
            self._depth += 1
            try:
                effects = method(scheduler, *args, **kwargs)
            finally:
                self._depth -= 1
            if self._depth == 0:  # an entry point calling another records once
                for e in effects:
                    self._record(e)
            return effects

        return watched

    def _record(self, effect: CheckEffect) -> None:
        if isinstance(effect, RunProbe):
            self.decisions[effect.key].append(("probe",))
        elif isinstance(effect, ChecksChanged):
            [state] = effect.states
            self.decisions[effect.key].append(("changed", state.status, state.output))
        elif isinstance(effect, DeregisterCritical):
            self.decisions[effect.key].append(("deregister",))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_simulated_node_runs_its_checks_on_the_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SchedulerSpy(monkeypatch)
    cluster = SimCluster(3, seed=7)
    assert cluster.run_until(cluster.agree_on_membership, timeout=30), "seed 7"
    cluster.register("n00001", "web", "ttl", check_specs=[TTL])
    cluster.register(
        "n00001", "web", "tcp", check_specs=[CheckSpec(tcp="198.18.0.2:1", interval=0.1)]
    )
    cluster.update_ttl("n00001", "service:ttl", Health.PASSING, "up")

    def gone_everywhere() -> bool:
        entries = [cluster.node(n).table.get(("web", "ttl")) for n in cluster.names]
        return all(e is not None and e.deleted for e in entries)

    assert cluster.run_until(gone_everywhere, timeout=5), "seed 7"
    assert spy.decisions[("web", "ttl")] == EXPECTED
    assert spy.decisions[("web", "tcp")][0] == ("probe",)


async def test_a_real_node_runs_its_checks_on_the_same_scheduler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = SchedulerSpy(monkeypatch)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("real"))
            await node.register("web", instance_id="ttl", port=80, checks=[TTL])
            tcp = CheckSpec(tcp=f"127.0.0.1:{closed_port()}", interval=0.1)
            await node.register("web", instance_id="tcp", port=80, checks=[tcp])
            await node.update_ttl("service:ttl", Health.PASSING, "up")
            await wait_until(lambda: node.protocol.table.get(("web", "ttl")).deleted)  # type: ignore[union-attr]
            nursery.cancel_scope.cancel()
    assert spy.decisions[("web", "ttl")] == EXPECTED
    assert spy.decisions[("web", "tcp")][0] == ("probe",)
