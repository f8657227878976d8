"""Loopback chaos mode's faults in a real transport: what a blocked link loses, and what it keeps.

The chaos smoke runs in network namespaces when it can; this checks the
fallback path on real sockets without the minute a loopback smoke would cost.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from gossip_registry.runtime.faultinject import RELOAD_INTERVAL, FaultFilter
from gossip_registry.runtime.transport import Transport, open_transport

A, B = "127.61.7.1", "127.61.7.2"


class Clock:
    """The filters' clock, moved by hand: a rule change is seen exactly when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def pair(control: Path, clock: Clock) -> tuple[Transport, Transport]:
    ta = await open_transport(A, 0, max_frame=1 << 16, tcp_timeout=2.0)
    tb = await open_transport(B, 0, max_frame=1 << 16, tcp_timeout=2.0)
    ta.faults = FaultFilter(control, clock=clock)
    tb.faults = FaultFilter(control, clock=clock)
    return ta, tb


async def test_a_blocked_link_drops_datagrams_one_way_and_streams_both_ways(
    tmp_path: Path,
) -> None:
    control = tmp_path / "faults.json"
    control.write_text(json.dumps({"blocked": [[A, B]]}))
    clock = Clock()
    ta, tb = await pair(control, clock)
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    arrived = trio.Event()

    def on_b(src: tuple[str, int], data: bytes) -> None:
        got["b"].append(data)

    def on_a(src: tuple[str, int], data: bytes) -> None:
        got["a"].append(data)
        arrived.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for t in (ta, tb):
                nursery.start_soon(t.send_loop)
            nursery.start_soon(ta.receive_loop, on_a)
            nursery.start_soon(tb.receive_loop, on_b)
            await nursery.start(tb.serve_streams, lambda src, frame: frame)
            await nursery.start(ta.serve_streams, lambda src, frame: frame)
            ta.send_datagram(tb.addr, b"a->b")
            tb.send_datagram(ta.addr, b"b->a")
            await arrived.wait()  # b->a passes; a->b was sent first and dropped
            await ta.drain()
            assert got == {"a": [b"b->a"], "b": []}
            assert ta.stats["test_fault_drops"] == 1
            assert await ta.request(tb.addr, b"x") is None
            assert await tb.request(ta.addr, b"x") is None  # the reply could not come back
            control.write_text(json.dumps({"blocked": []}))
            clock.now += RELOAD_INTERVAL
            assert await ta.request(tb.addr, b"x") == b"x"
            nursery.cancel_scope.cancel()
    ta.close()
    tb.close()
