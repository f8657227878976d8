"""A write through a node costs the same whatever the node already holds: counted, not timed.

Deregistering by id (``DELETE /v1/services/<id>``, the API's usual way) once
sorted every version the node owned, tombstones included, to find the id; and
each removal copied the whole service's sorted instance list to learn whether
it was empty. Under churn the tombstones pile up (kept for
``tombstone_horizon``), so each deletion cost more than the last: over four
minutes at 150 ops/s on 20 nodes those two were the largest items of a
node's CPU profile (issue 15: per-entry operations O(1) or O(log n)).

Work is the number of Python lines run (``sys.settrace``: an event per line
and per loop iteration, so a comprehension over the table counts once per
element); C calls such as ``sorted`` are not seen, but the comprehensions
around them are. At twice the size the work must stay about the same.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from types import FrameType
from typing import Any

import trio

from tests.integration import fast_config, start_node

SIZE = 1000
GROWTH_AT_TWICE_THE_SIZE = 1.3
"""Constant work is 1x; the per-id sort and the per-removal copy made it about 2x."""


async def lines_run(awaitable: Awaitable[Any]) -> int:
    """Python lines run (in any task) while ``awaitable`` is awaited."""
    count = 0

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        count += event == "line"
        return trace

    sys.settrace(trace)
    try:
        await awaitable
    finally:
        sys.settrace(None)
    return count


async def work_of_a_deregistration(size: int) -> int:
    """Lines run by deregistering one of ``size`` live instances, beside ``size`` tombstones."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            node, scope = await start_node(nursery, fast_config("n1"))
            for i in range(2 * size):
                await node.register("big", instance_id=f"big-{i}", port=80)
            for i in range(size):
                await node.deregister(f"big-{i}")
            work = await lines_run(node.deregister(f"big-{2 * size - 1}"))
            assert len(node.discover("big")) == size - 1, "the deregistration took effect"
            scope.cancel()
    return work


async def test_deregistering_by_id_does_work_independent_of_what_the_node_holds() -> None:
    small = await work_of_a_deregistration(SIZE)
    large = await work_of_a_deregistration(2 * SIZE)
    assert large / small < GROWTH_AT_TWICE_THE_SIZE, (small, large)
