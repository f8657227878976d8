"""The simulator runs the node's restart policy: both drivers call the same core code.

A spy wraps the core's join-at-start (which decides how many remembered
members a restart asks) and watches for its ``LeaveDrained`` (which decides
when a leaving node stops); a restart and a leave in the simulator and in a
real ``Node`` must both go through them, with the same outcome.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Effect, LeaveDrained, Notify, StreamRequest
from gossip_registry.core.messages import Address
from gossip_registry.core.protocol import Protocol
from gossip_registry.runtime.storage.snapshot import Snapshot, write_snapshot
from gossip_registry.sim import NodeStatus, SimCluster
from tests.integration import FAST, fast_config, start_node, wait_until

LIMIT = 2


class PolicySpy:
    """Records, per node name, what the core's restart policy decided."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked: dict[str, int] = {}
        """Push-pulls the first attempt of a node's join at start made."""
        self.drained: dict[str, bool] = {}
        """The ``LeaveDrained`` each leaving node's core gave (drained or timed out)."""
        join_at_start = Protocol.join_at_start

        def joining(
            core: Protocol,
            now: float,
            seeds: Iterable[Address],
            known: Iterable[Address] = (),
            *,
            tag: int = 0,
            resolve: bool = False,
        ) -> list[Effect]:
            effects = join_at_start(core, now, seeds, known, tag=tag, resolve=resolve)
            self.asked[core.name] = sum(isinstance(e, StreamRequest) for e in effects)
            return effects

        monkeypatch.setattr(Protocol, "join_at_start", joining)
        for name in ("leave", "handle_timer", "handle_packet", "handle_stream_reply"):
            monkeypatch.setattr(Protocol, name, self._watch(getattr(Protocol, name)))

    def _watch(self, method: Callable[..., list[Effect]]) -> Callable[..., list[Effect]]:
        def watched(core: Protocol, *args: Any, **kwargs: Any) -> list[Effect]:
            effects = method(core, *args, **kwargs)
            for e in effects:
                if isinstance(e, Notify) and isinstance(e.event, LeaveDrained):
                    self.drained[core.name] = e.event.drained
            return effects

        return watched


def closed_ports(stack: ExitStack, n: int) -> Iterator[Address]:
    """``n`` loopback addresses that refuse connections (bound, never listening)."""
    for _ in range(n):
        sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


def test_a_simulated_restart_and_leave_run_the_cores_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = PolicySpy(monkeypatch)
    cluster = SimCluster(8, seed=5, config=ProtocolConfig(rejoin_limit=LIMIT))
    assert cluster.run_until(cluster.agree_on_membership, timeout=30), "seed 5"
    cluster.crash("n00003")
    cluster.restart("n00003")
    assert spy.asked["n00003"] == 1 + LIMIT  # the seed, and LIMIT of the 6 others it saw
    cluster.leave("n00004")
    assert cluster.run_until(lambda: cluster.status("n00004") is NodeStatus.LEFT, timeout=5)
    assert spy.drained["n00004"] is True


async def test_a_real_restart_and_leave_run_the_same_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spy = PolicySpy(monkeypatch)
    with trio.fail_after(20), ExitStack() as stack:
        async with trio.open_nursery() as nursery:
            seed, _ = await start_node(nursery, fast_config("seed"))
            remembered = [(f"m{i}", h, p) for i, (h, p) in enumerate(closed_ports(stack, 6))]
            write_snapshot(tmp_path, Snapshot("phoenix", 3, members=tuple(remembered)))
            config = fast_config(
                "phoenix",
                data_dir=tmp_path,
                seeds=(seed.advertise_addr,),
                protocol=FAST.with_(rejoin_limit=LIMIT),
            )
            phoenix, _ = await start_node(nursery, config)
            assert spy.asked["phoenix"] == 1 + LIMIT
            await wait_until(lambda: len(seed.members()) == 2)
            await phoenix.leave()
            assert spy.drained["phoenix"] is True
            assert not phoenix.running
            nursery.cancel_scope.cancel()
