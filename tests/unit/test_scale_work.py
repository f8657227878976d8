"""Work per operation stays O(log n) at production sizes: counted, not timed.

The work of a run is the number of function calls (Python and C) it makes,
counted with ``sys.setprofile``: deterministic, independent of machine load,
and quadratic whenever a loop re-sorts or re-scans the whole table per item
(the broadcast queue used to sort itself on every push beyond its limit, and a
push-pull merge of 17,000 entries then blocked the event loop for 34 s). At
twice the size the work must grow by less than 2.5x: linear growth is 2x, an
O(n log n) total a little more, a quadratic one 4x.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from gossip_registry.core.broadcast import BroadcastQueue
from gossip_registry.core.codec import encode_packet, encode_stream
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Effect, SetTimer, StreamRequest, StreamSend, TimerKind
from gossip_registry.core.messages import Address, Alive, Dead, Packet, SyncFinish
from gossip_registry.core.protocol import Protocol
from tests.unit.test_push_pull import drive, pair
from tests.unit.test_restore_at_start import restarted_core, snapshot_entries

GROWTH_AT_TWICE_THE_SIZE = 2.5
R = TypeVar("R")


STEP_GROWTH_AT_TWICE_THE_SIZE = 1.3
"""One step of the core (one call from the driver) does bounded work: about 1x at 2n."""


def calls_made(run: Callable[[], object]) -> int:
    """Function calls (Python and C) made while ``run`` runs."""
    count = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return count


def growth(work: Callable[[int], Callable[[], object]], size: int) -> float:
    small = calls_made(work(size))
    large = calls_made(work(2 * size))
    return large / small


def queue_beyond_its_limit(size: int) -> Callable[[], object]:
    """Push ``size`` updates through a queue holding half of them, sending now and then."""
    queue = BroadcastQueue(size // 2)

    def run() -> None:
        for i in range(size):
            queue.push(("e", "svc", str(i)), b"u" * (20 + i % 50))
            if i % 8 == 0:
                queue.take(budget=1400, limit=6)

    return run


def test_broadcast_queue_work_grows_linearly_beyond_its_limit() -> None:
    assert growth(queue_beyond_its_limit, 1500) < GROWTH_AT_TWICE_THE_SIZE


def push_pull_merge(size: int) -> Callable[[], object]:
    """A fresh node merging a SyncFinish of ``size`` entries, queue limit below the size."""
    peer: Address = ("198.18.0.2", 7946)
    source = Protocol(ProtocolConfig(), "p1", peer, rng=random.Random(1), now=0.0)
    for i in range(size):
        source.register(0.0, f"svc{i % 100}", f"i{i}", "10.0.0.1", 80)
    frame = encode_stream(SyncFinish(None, tuple(source.table.entries())))
    config = ProtocolConfig().with_(broadcast_queue_limit=size // 4)
    fresh = Protocol(config, "me", ("198.18.0.1", 7946), rng=random.Random(2), now=0.0)

    def run() -> None:
        drive(fresh, fresh.handle_stream(1.0, peer, frame)[1], 1.0)
        assert fresh.table.live_count == size

    return run


def test_push_pull_merge_work_grows_linearly_with_the_table() -> None:
    assert growth(push_pull_merge, 1500) < GROWTH_AT_TWICE_THE_SIZE


def counted(steps: list[int], call: Callable[..., R], *args: Any) -> R:
    """``call(*args)``, its calls appended to ``steps``."""
    result: list[R] = []
    steps.append(calls_made(lambda: result.append(call(*args))))
    return result[0]


def settle(steps: list[int], node: Protocol, effects: list[Effect]) -> list[Effect]:
    """Fire the MERGE timers ``effects`` arm, each its own counted step; all effects seen."""
    seen = list(effects)
    for _ in range(10_000):
        merges = [e for e in effects if isinstance(e, SetTimer) and e.timer.kind is TimerKind.MERGE]
        if not merges:
            return seen
        effects = counted(steps, node.handle_timer, 2.0, merges[-1].timer)
        seen += effects
    raise AssertionError("the merge never finished")


def largest_push_pull_step(size: int) -> int:
    """The most calls one core call makes in a whole push-pull from a node holding ``size``
    entries to a node holding none: every frame either way is encoded and decoded in one."""
    big, empty = pair()
    for i in range(size):
        big.register(1.0, f"svc{i % 100}", f"i{i}", "10.0.0.1", 80)
    steps: list[int] = []
    out = settle(steps, big, counted(steps, big.join, 2.0, [empty.addr]))
    pending = [e for e in out if isinstance(e, StreamRequest)]
    while pending:
        request = pending.pop()
        reply, served = counted(steps, empty.handle_stream, 2.0, big.addr, request.data)
        settle(steps, empty, served)
        out = settle(steps, big, counted(steps, big.handle_stream_reply, 2.0, request.token, reply))
        for finish in (e for e in out if isinstance(e, StreamSend)):
            settle(steps, empty, counted(steps, empty.handle_stream, 2.0, big.addr, finish.data)[1])
        pending += [e for e in out if isinstance(e, StreamRequest)]
    assert empty.table.bucket_digests() == big.table.bucket_digests()
    return max(steps)


def test_no_push_pull_step_grows_with_the_table() -> None:
    small = largest_push_pull_step(2000)
    large = largest_push_pull_step(4000)
    assert large / small < STEP_GROWTH_AT_TWICE_THE_SIZE


def declare_dead(size: int) -> Callable[[], object]:
    """The step in which a member owning ``size`` entries is declared dead."""
    node = Protocol(ProtocolConfig(), "me", ("198.18.0.1", 7946), rng=random.Random(3), now=0.0)
    node.start(0.0)
    peer: Address = ("198.18.0.2", 7946)
    node.handle_packet(0.0, peer, encode_packet(Packet(None, (Alive("p1", peer, 0, {}),))))
    owner = Protocol(ProtocolConfig(), "p1", peer, rng=random.Random(4), now=0.0)
    for i in range(size):
        node.table.merge(owner.register(0.0, f"svc{i % 100}", f"i{i}", "10.0.0.2", 80)[0])
    death = encode_packet(Packet(None, (Dead("p1", 0, "p2"),)))
    return lambda: node.handle_packet(1.0, peer, death)


def test_the_step_that_declares_a_large_owner_dead_does_no_per_entry_work() -> None:
    """The fence holds at once and its entries go a chunk at a time (MERGE steps): the
    declaring step itself once sorted all of them by key (60 ms at 50,000 under no load)."""
    small = calls_made(declare_dead(2000))
    large = calls_made(declare_dead(4000))
    assert large / small < STEP_GROWTH_AT_TWICE_THE_SIZE


def largest_restore_step(size: int) -> int:
    """The most calls one core call makes while a restarted node restores ``size`` instances."""
    node = restarted_core(snapshot_entries(size))
    steps: list[int] = []
    settle(steps, node, counted(steps, node.start, 1.0))
    assert {e.owner_incarnation for e in node.own_entries()} == {4}
    assert node.table.live_count == size
    return max(steps)


def test_restoring_a_large_snapshot_at_start_takes_no_step_that_grows_with_it() -> None:
    """``start`` restamped every instance of the snapshot in one step: 1.7 s at 50,000."""
    assert largest_restore_step(4000) / largest_restore_step(2000) < STEP_GROWTH_AT_TWICE_THE_SIZE
