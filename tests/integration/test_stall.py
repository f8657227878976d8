"""A real node reports the longest event-loop stall in /v1/status and /metrics."""

from __future__ import annotations

import time

import trio

from gossip_registry.api.metrics import node_registry
from gossip_registry.runtime.stall import STALL_THRESHOLD
from tests.integration import fast_config, start_node


def _block_the_loop(seconds: float) -> None:
    """Hold the event loop without yielding, as a long merge step would."""
    end = time.thread_time() + seconds  # CPU time: the loop is busy, however loaded the host
    while time.thread_time() < end:
        pass


async def test_a_task_blocking_the_loop_shows_as_the_longest_stall() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node, scope = await start_node(nursery, fast_config("n1"))
            before = node.status()["event_loop"]["stalls_over_threshold"]
            before_cpu = node.status()["event_loop"]["cpu_stalls_over_threshold"]
            blocked = 2 * STALL_THRESHOLD
            _block_the_loop(blocked)
            await trio.lowlevel.checkpoint()
            after = node.status()["event_loop"]
            assert after["stalls_over_threshold"] == before + 1
            assert after["longest_stall_ms"] >= blocked * 1000
            assert after["cpu_stalls_over_threshold"] == before_cpu + 1, "it was busy, not waiting"
            assert after["longest_cpu_step_ms"] >= blocked * 1000
            samples = {
                s.name: s.value for family in node_registry(node).collect() for s in family.samples
            }
            assert samples["gossip_registry_event_loop_longest_stall_seconds"] >= blocked
            assert samples["gossip_registry_event_loop_stalls_total"] == before + 1
            assert samples["gossip_registry_event_loop_cpu_stalls_total"] == before_cpu + 1
            assert samples["gossip_registry_event_loop_longest_cpu_step_seconds"] >= blocked
            scope.cancel()
