"""The wire under a node: raw sockets from the test throw garbage at it; it counts and answers."""

from __future__ import annotations

import errno
import socket
import sys

import pytest
import trio
import trio.testing

from gossip_registry.core.codec import decode_packet, decode_stream, encode_packet, encode_stream
from gossip_registry.core.messages import PROTOCOL_VERSION, Ack, Packet, Ping
from gossip_registry.runtime.node import Node
from gossip_registry.runtime.transport import FrameError, encode_frame, open_transport, read_frame
from tests.integration import fast_config, wait_until


async def udp_ping(node: Node, seq: int) -> Ack:
    """Send a UDP ping from a fresh socket and return the ack."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        ping = encode_packet(Packet(Ping(seq, node.name, "tester")))
        await sock.sendto(ping, node.advertise_addr)
        with trio.fail_after(2):
            data, _ = await sock.recvfrom(65536)
    ack = decode_packet(data).primary
    assert isinstance(ack, Ack)
    return ack


async def tcp_exchange(node: Node, raw: bytes, *, half_close: bool = False) -> bytes:
    """Write ``raw`` on a fresh connection and return everything read until EOF.

    A reset counts as EOF: a node that drops a connection with unread bytes
    in its buffer makes the kernel send RST instead of FIN.
    """
    stream = await trio.open_tcp_stream(*node.gossip_addr)
    received = bytearray()
    async with stream:
        try:
            await stream.send_all(raw)
            if half_close:
                await stream.send_eof()
            with trio.fail_after(5):
                while chunk := await stream.receive_some():
                    received += chunk
        except trio.BrokenResourceError:
            pass
    return bytes(received)


async def test_malformed_datagrams_are_counted_and_the_node_keeps_answering() -> None:
    garbage = [b"", b"\x00", b"\xff" * 100, b"\x93\x01\xc0", encode_frame(b"x"), b"\x00" * 65507]
    with trio.fail_after(10):
        async with Node(fast_config("target")) as node:
            with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
                await sock.bind(("127.0.0.1", 0))
                for data in garbage:
                    await sock.sendto(data, node.gossip_addr)
            await wait_until(lambda: node.protocol.stats["malformed_packets"] == len(garbage))
            assert (await udp_ping(node, 41)).seq == 41
            assert node.running


async def test_a_tcp_ping_gets_an_ack() -> None:
    with trio.fail_after(10):
        async with Node(fast_config("target")) as node:
            raw = await tcp_exchange(node, encode_frame(encode_stream(Ping(7, "target", "me"))))
            assert raw[:4] == (len(raw) - 4).to_bytes(4, "big")
            assert decode_stream(raw[4:], 1024) == Ack(7)


async def test_garbage_oversized_and_truncated_frames_are_counted_and_dropped() -> None:
    with trio.fail_after(10):
        async with Node(fast_config("target")) as node:
            limit = node.config.protocol.max_stream_bytes
            stats = node.transport.stats
            # A well-framed payload that is not a message: the core counts it.
            envelope = bytes((0x92, PROTOCOL_VERSION))
            assert await tcp_exchange(node, encode_frame(envelope + b"\xc1garbage")) == b""
            # One that cannot even begin a message: dropped at its first two bytes.
            assert await tcp_exchange(node, encode_frame(b"\xc1garbage")) == b""
            # A length prefix over the limit: dropped before anything is buffered.
            assert await tcp_exchange(node, (limit + 1).to_bytes(4, "big") + b"xx") == b""
            # The peer closes mid-frame.
            assert (
                await tcp_exchange(
                    node, (100).to_bytes(4, "big") + envelope + b"x" * 8, half_close=True
                )
                == b""
            )
            # And mid-header; and without sending anything at all.
            assert await tcp_exchange(node, b"\x00\x00", half_close=True) == b""
            assert await tcp_exchange(node, b"", half_close=True) == b""
            await wait_until(
                lambda: (
                    node.protocol.stats["malformed_streams"] == 1
                    and stats["stream_malformed"] == 1
                    and stats["stream_oversized"] == 1
                    and stats["stream_truncated"] == 2
                    and stats["stream_empty"] == 1
                )
            )
            raw = await tcp_exchange(node, encode_frame(encode_stream(Ping(8, "target", "me"))))
            assert decode_stream(raw[4:], 1024) == Ack(8)


async def test_a_stalled_connection_times_out_and_is_counted() -> None:
    with trio.fail_after(10):
        async with Node(fast_config("target", tcp_timeout=0.2)) as node:
            stream = await trio.open_tcp_stream(*node.gossip_addr)
            async with stream:
                start = bytes((0x92, PROTOCOL_VERSION))  # of a 16-byte frame, then silence
                await stream.send_all(b"\x00\x00\x00\x10" + start)
                with trio.fail_after(5):
                    assert await stream.receive_some() == b""  # the node hung up
            assert node.transport.stats["stream_timeouts"] == 1
            assert (await udp_ping(node, 3)).seq == 3


async def test_send_errors_are_counted_and_ignored() -> None:
    with trio.fail_after(10):
        async with Node(fast_config("sender")) as node:
            transport = node.transport
            transport.send_datagram(("::1", 9), b"wrong family for an IPv4 socket")
            transport.send_datagram(("127.0.0.1", 0), b"port 0: EINVAL")
            await wait_until(lambda: transport.stats["udp_send_errors"] == 2)
            closed = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
            with closed:
                await closed.bind(("127.0.0.1", 0))  # bound, never listening: refused
                assert await transport.request(closed.getsockname(), b"hello") is None
                assert not await transport.send_stream(closed.getsockname(), b"hello")
            assert transport.stats["stream_errors"] == 2
            assert (await udp_ping(node, 5)).seq == 5


async def test_udp_and_tcp_share_the_port_and_a_taken_tcp_port_is_an_error() -> None:
    with trio.fail_after(10):
        transport = await open_transport("127.0.0.1", 0, max_frame=1024)
        try:
            assert transport.tcp.getsockname() == transport.udp.getsockname()
        finally:
            transport.close()
        # A fixed port whose TCP side is taken fails, and releases the UDP side.
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM) as squatter:
            await squatter.bind(("127.0.0.1", 0))
            squatter.listen(1)
            port = squatter.getsockname()[1]
            with pytest.raises(OSError, match="in use") as caught:
                await open_transport("127.0.0.1", port, max_frame=1024)
            assert caught.value.errno == errno.EADDRINUSE
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as udp:
            await udp.bind(("127.0.0.1", port))


async def test_read_frame_enforces_the_framing() -> None:
    with trio.fail_after(5):

        async def read(raw: bytes, limit: int = 10) -> bytes | None:
            send, receive = trio.testing.memory_stream_one_way_pair()
            await send.send_all(raw)
            await send.aclose()
            return await read_frame(receive, limit)

        assert await read(b"") is None
        assert await read(encode_frame(b"")) == b""
        assert await read(encode_frame(b"0123456789")) == b"0123456789"
        with pytest.raises(FrameError, match="exceeds") as caught:
            await read(encode_frame(b"0123456789a"))
        assert caught.value.counter == "stream_oversized"
        for cut in (b"\x00", encode_frame(b"abc")[:-1]):
            with pytest.raises(FrameError) as caught:
                await read(cut)
            assert caught.value.counter == "stream_truncated"


async def closed_port(kind: socket.SocketKind) -> tuple[str, int]:
    """A loopback port that nothing listens on (bound once, then released)."""
    with trio.socket.socket(trio.socket.AF_INET, kind) as sock:
        await sock.bind(("127.0.0.1", 0))
        name = sock.getsockname()
    return (str(name[0]), int(name[1]))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux's")
async def test_a_host_refusing_a_datagram_or_a_connect_is_reported_with_the_peer_address() -> None:
    with trio.fail_after(10):
        transport = await open_transport("127.0.0.1", 0, max_frame=1 << 16, tcp_timeout=2.0)
        refused: list[tuple[str, int]] = []
        transport.on_refused = refused.append
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(transport.send_loop)
                nursery.start_soon(transport.receive_loop, lambda src, data: None)
                udp_dead = await closed_port(trio.socket.SOCK_DGRAM)
                transport.send_datagram(udp_dead, b"probe")
                await wait_until(lambda: refused == [udp_dead])
                tcp_dead = await closed_port(trio.socket.SOCK_STREAM)
                assert await transport.request(tcp_dead, b"ping") is None
                assert refused == [udp_dead, tcp_dead]
                assert transport.stats["refusals"] == 2
                nursery.cancel_scope.cancel()
        finally:
            transport.close()
