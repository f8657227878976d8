"""Finding 2 of issue 10: what inbound TCP frames can make a node buffer is bounded in total.

128 connections of 32 MiB frames took a node to 3 GB before. Now every byte
buffered from a peer, on any connection, is counted against one budget; a
connection that would pass it is dropped and counted, plaintext is refused
at its first byte when sealing is required, and every connection has a
deadline. The tests count buffered bytes; they time nothing.
"""

from __future__ import annotations

import trio

from gossip_registry.keyring import GossipSeal, Keyring
from gossip_registry.transport import Transport, encode_frame, open_transport
from tests.integration import wait_until

MIB = 1 << 20
FRAME = MIB
BUDGET = 2 * MIB
SENT = 700 * 1024
CONNECTIONS = 24


async def serving(nursery: trio.Nursery, **options: object) -> Transport:
    transport = await open_transport(
        "127.0.0.1",
        0,
        max_frame=FRAME,
        max_buffered=BUDGET,
        **options,  # type: ignore[arg-type]
    )
    await nursery.start(transport.serve_streams, lambda src, frame: None)
    return transport


async def hold_open(addr: tuple[str, int], data: bytes, done: trio.Event) -> None:
    """Connect, send ``data``, then keep the connection open until ``done``."""
    stream = await trio.open_tcp_stream(*addr)
    async with stream:
        try:
            await stream.send_all(data)
        except trio.BrokenResourceError:
            return
        await done.wait()


def flood(nursery: trio.Nursery, transport: Transport, data: bytes, count: int) -> trio.Event:
    """``count`` connections sending ``data`` and held open until the event returned is set."""
    done = trio.Event()
    for _ in range(count):
        nursery.start_soon(hold_open, transport.addr, data, done)
    return done


async def test_many_large_slow_frames_never_buffer_more_than_the_budget() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            transport = await serving(nursery, tcp_timeout=30.0)
            partial = FRAME.to_bytes(4, "big") + b"\xc1" * SENT  # a frame never finished
            done = flood(nursery, transport, partial, CONNECTIONS)
            held = BUDGET // SENT
            await wait_until(
                lambda: (
                    transport.stats["stream_over_budget"] == CONNECTIONS - held
                    and transport.buffered == held * SENT
                )
            )
            assert transport.buffered_peak <= BUDGET
            done.set()
            await wait_until(lambda: transport.buffered == 0)
            transport.close()
            nursery.cancel_scope.cancel()


async def test_plaintext_is_refused_at_its_first_byte_when_sealing_is_required() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            transport = await serving(nursery, tcp_timeout=30.0)
            transport.seal = GossipSeal(Keyring([b"k" * 32]))
            plaintext = FRAME.to_bytes(4, "big") + b"\x92" + b"\x00" * SENT
            done = flood(nursery, transport, plaintext, CONNECTIONS)
            await wait_until(lambda: transport.stats["auth_failed"] == CONNECTIONS)
            assert transport.buffered_peak == 0
            done.set()
            transport.close()
            nursery.cancel_scope.cancel()


async def test_a_stalled_frame_is_cut_at_the_deadline_and_its_bytes_released() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            transport = await serving(nursery, tcp_timeout=0.5)
            done = flood(nursery, transport, FRAME.to_bytes(4, "big") + b"x", 1)
            await wait_until(lambda: transport.stats["stream_timeouts"] == 1)
            assert transport.buffered == 0
            assert transport.buffered_peak == 1
            done.set()
            transport.close()
            nursery.cancel_scope.cancel()


async def test_a_frame_within_the_budget_still_gets_through() -> None:
    got: list[int] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            transport = await open_transport("127.0.0.1", 0, max_frame=FRAME, max_buffered=BUDGET)
            await nursery.start(transport.serve_streams, lambda src, frame: got.append(len(frame)))
            stream = await trio.open_tcp_stream(*transport.addr)
            async with stream:
                await stream.send_all(encode_frame(b"\x00" * FRAME))
                await stream.send_eof()
                await wait_until(lambda: got == [FRAME])
            await wait_until(lambda: transport.buffered == 0)
            transport.close()
            nursery.cancel_scope.cancel()
