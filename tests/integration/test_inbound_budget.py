"""Finding 2 of issue 10: what inbound TCP frames can make a node buffer is bounded in total.

128 connections of 32 MiB frames took a node to 3 GB before. Now every byte
buffered from a peer, on any connection, is counted against one budget; a
connection that would pass it is dropped and counted, plaintext is refused
at its first byte when sealing is required, a sealed frame is authenticated
chunk by chunk (a peer without the key gets one chunk in), and every
connection has a deadline. The tests count buffered bytes; they time nothing.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gossip_registry.core.codec import is_frame_head
from gossip_registry.core.messages import PROTOCOL_VERSION
from gossip_registry.crypto.keyring import (
    CHUNK_OVERHEAD,
    CHUNK_SIZE,
    FRAME_HEADER,
    FRAME_VERSION,
    SEAL_VERSION,
    GossipSeal,
    Keyring,
)
from gossip_registry.runtime.transport import (
    FrameError,
    Transport,
    encode_frame,
    open_transport,
    read_frame,
)
from tests.integration import wait_until

MIB = 1 << 20
FRAME = MIB
BUDGET = 2 * MIB
SENT = 700 * 1024
CONNECTIONS = 24
K1, K2 = b"1" * 32, b"2" * 32


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


@pytest.mark.parametrize(
    ("start", "refused"),
    [
        pytest.param(b"\xa5\xa5", True, id="junk"),
        pytest.param(b"\xc1\x02", True, id="sealed-looking-without-a-seal"),
        pytest.param(bytes((0x92, PROTOCOL_VERSION + 1)), True, id="another-version"),
        pytest.param(bytes((0x92, PROTOCOL_VERSION)), False, id="an-envelope"),
    ],
)
async def test_a_plaintext_frame_that_cannot_be_one_is_refused_at_its_first_two_bytes(
    start: bytes, refused: bool
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            transport = await serving(nursery, tcp_timeout=30.0)
            transport.head = is_frame_head
            done = flood(nursery, transport, FRAME.to_bytes(4, "big") + start + b"\0" * SENT, 2)
            if refused:
                await wait_until(lambda: transport.stats["stream_malformed"] == 2)
                assert transport.buffered_peak == 0
            else:
                await wait_until(lambda: transport.buffered == 2 * (SENT + len(start)))
                assert transport.stats["stream_malformed"] == 0
            done.set()
            await wait_until(lambda: transport.buffered == 0)
            transport.close()
            nursery.cancel_scope.cancel()


async def test_a_stalled_frame_is_cut_at_the_deadline_and_its_bytes_released() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            transport = await serving(nursery, tcp_timeout=0.5)
            done = flood(nursery, transport, FRAME.to_bytes(4, "big") + b"xyz", 1)
            await wait_until(lambda: transport.stats["stream_timeouts"] == 1)
            assert transport.buffered == 0
            assert transport.buffered_peak == 3
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


ONE_CHUNK = FRAME_HEADER + CHUNK_SIZE + CHUNK_OVERHEAD
"""The most a frame can hold before its first chunk is authenticated."""


def sealed_looking(size: int, sent: int) -> bytes:
    """What a peer without the key does best: a well-formed header and chunk headers, then noise."""
    header = bytes((SEAL_VERSION, FRAME_VERSION)) + b"\x5a" * (FRAME_HEADER - 2)
    body = CHUNK_SIZE.to_bytes(4, "big") + b"\x00" * (sent - FRAME_HEADER - 4)
    return size.to_bytes(4, "big") + header + body


async def test_a_peer_without_the_key_makes_us_buffer_at_most_one_chunk_per_connection() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            transport = await serving(nursery, tcp_timeout=30.0)
            transport.seal = GossipSeal(Keyring([b"k" * 32]))
            done = flood(nursery, transport, sealed_looking(FRAME, SENT), CONNECTIONS)
            await wait_until(lambda: transport.stats["auth_failed"] == CONNECTIONS)
            # Before chunking each of them held its 700 KiB and most were over budget.
            assert transport.stats["stream_over_budget"] == 0
            assert transport.buffered_peak <= CONNECTIONS * ONE_CHUNK
            await wait_until(lambda: transport.buffered == 0)
            done.set()
            transport.close()
            nursery.cancel_scope.cancel()


async def test_one_connection_of_noise_is_cut_after_its_first_chunk() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            transport = await serving(nursery, tcp_timeout=30.0)
            transport.seal = GossipSeal(Keyring([b"k" * 32]), verify_incoming=False)
            done = flood(nursery, transport, sealed_looking(FRAME, FRAME), 1)
            await wait_until(lambda: transport.stats["auth_failed"] == 1)
            assert 0 < transport.buffered_peak <= ONE_CHUNK
            done.set()
            transport.close()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("sender", "receiver"),
    [
        pytest.param(GossipSeal(Keyring([K2, K1])), GossipSeal(Keyring([K1, K2])), id="rotating"),
        pytest.param(
            GossipSeal(Keyring([K1]), verify_incoming=False, encrypt_outgoing=False),
            GossipSeal(Keyring([K1]), verify_incoming=False),
            id="plaintext-migration",
        ),
        pytest.param(
            GossipSeal(Keyring([K1])),
            GossipSeal(Keyring([K1]), verify_incoming=False),
            id="sealed-to-lenient",
        ),
    ],
)
async def test_frames_of_many_chunks_make_a_round_trip_in_every_migration_mode(
    sender: GossipSeal, receiver: GossipSeal
) -> None:
    request = bytes(range(256)) * (3 * CHUNK_SIZE // 256) + b"tail"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await open_transport("127.0.0.1", 0, max_frame=FRAME, max_buffered=BUDGET)
            server.seal = receiver
            await nursery.start(server.serve_streams, lambda src, frame: frame[::-1])
            client = await open_transport("127.0.0.1", 0, max_frame=FRAME, max_buffered=BUDGET)
            client.seal = sender
            assert await client.request(server.addr, request) == request[::-1]
            assert server.stats["auth_failed"] == client.stats["auth_failed"] == 0
            await wait_until(lambda: server.buffered == client.buffered == 0)
            server.close()
            client.close()
            nursery.cancel_scope.cancel()


async def test_an_empty_frame_is_plaintext_refused_when_sealing_is_required() -> None:
    async def read(seal: GossipSeal) -> bytes | None:
        send, receive = trio.testing.memory_stream_one_way_pair()
        await send.send_all(encode_frame(b""))
        await send.aclose()
        return await read_frame(receive, FRAME, None, seal)

    with trio.fail_after(5):
        with pytest.raises(FrameError) as caught:
            await read(GossipSeal(Keyring([K1])))
        assert caught.value.counter == "auth_failed"
        assert await read(GossipSeal(Keyring([K1]), verify_incoming=False)) == b""


async def test_a_frame_over_the_default_limit_is_refused_and_counted() -> None:
    """8 MiB (issue 10, finding 2): the largest honest frame is a page, and the budget for
    what plaintext peers make a node buffer is this limit. A node with the defaults."""
    from gossip_registry.config.node import NodeConfig
    from gossip_registry.runtime.node import Node

    with trio.fail_after(20):
        async with Node(NodeConfig("victim", bind=("127.0.0.1", 0))) as node:
            stream = await trio.open_tcp_stream(*node.gossip_addr)
            async with stream:
                await stream.send_all((8 * MIB + 1).to_bytes(4, "big") + b"\x92\x01")
                await wait_until(lambda: node.transport.stats["stream_oversized"] == 1)
            assert node.transport.buffered_peak == 0
