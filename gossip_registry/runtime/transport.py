"""The wire under a node: one UDP socket and one TCP listener on the same port (trio).

Theory of operation (memberlist ``net_transport.go``): packets (probes, acks,
piggybacked gossip) travel as single UDP datagrams; streams (the TCP
fallback ping, push-pull anti-entropy) travel over short TCP connections that
carry one request frame, at most one reply frame, and are then closed. A
frame is a 4-byte big-endian length followed by that many bytes, at most
``max_frame`` (``ProtocolConfig.max_stream_bytes``). Every connection is
bounded by ``tcp_timeout`` from connect (or accept) to close, so its first
byte starts no later than its deadline does.

Memory (issue 10, finding 2): a frame's length is checked before anything
is buffered, and every byte buffered from a peer, on every inbound
connection and every reply we read, counts against one budget,
``max_buffered``. A chunk that would pass it drops its connection
(``stream_over_budget``) and the bytes it held are released. Without it
128 connections of 32 MiB frames held 3 GB before a single one was
authenticated. When sealing is required, a frame whose first byte is not
the seal's is refused at that byte (``auth_failed``), before any of it is
buffered. A sealed frame is read chunk by chunk (``keyring.FrameReader``)
and each chunk is authenticated before the next is read, so a peer without
the key gets at most one chunk (64 KiB) buffered per connection: 8 MiB over
all ``MAX_INBOUND_STREAMS``, where whole-frame sealing let it pin the whole
budget. Plaintext frames (no keyring, or ``gossip_allow_plaintext``) have no
authentication to do early: one whose first two bytes cannot begin a frame
(``head``, the codec's rule, which the node sets) is dropped there
(``stream_malformed``), and the budget bounds the rest.

This module moves bytes and nothing else: it does not decode them. The node
hands it plain callbacks (``on_datagram(src, data)``, ``on_frame(src, data)
-> reply``) and the protocol core judges the content. Peers are untrusted, so
no input ends a loop: an oversized length prefix, a connection that closes
mid-frame or stalls past the timeout is counted in ``stats`` and dropped;
send errors (``ENETUNREACH``, ``EHOSTUNREACH``, a full buffer) are counted and
ignored, because UDP is lossy anyway and the protocol retries by design.

Sealing (``crypto/keyring.py``): when the node sets ``seal``, every datagram and
every frame (requests and replies) is sealed on the way out and opened on
the way in (frames as they arrive, chunk by chunk), before any callback
sees it. What fails to open, or plaintext the seal refuses, is counted as
``auth_failed`` and dropped; a stream whose frame fails is closed without a
reply. Sealing happens here, below the
protocol, so that nothing unauthenticated ever reaches the decoder.

Outgoing datagrams go through a bounded queue drained by one sender task, so
callers (the node applying a batch of effects) never wait on a socket and
datagrams leave in the order they were queued. A full queue drops the
datagram and counts it, as a full kernel buffer would.

Lifetimes: ``open_transport`` binds both sockets; the loops (``send_loop``,
``receive_loop``, ``serve_streams``) run in the caller's nursery until
cancelled; ``close`` releases both sockets and is idempotent.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
import struct
import sys
from collections import Counter
from collections.abc import Callable

import trio

from gossip_registry.config.node import DEFAULT_TCP_TIMEOUT
from gossip_registry.core.messages import Address
from gossip_registry.crypto.keyring import SEAL_VERSION, UDP, GossipSeal, SealError
from gossip_registry.runtime.faultinject import FaultFilter

__all__ = [
    "MAX_DATAGRAM",
    "FrameError",
    "Transport",
    "encode_frame",
    "open_transport",
    "read_frame",
]

logger = logging.getLogger("gossip_registry")

MAX_DATAGRAM = 65536
"""Receive buffer: above the largest IPv4 (65,507) and IPv6 (65,527) UDP payloads,
so no datagram is silently truncated into something that merely looks malformed."""
MAX_INBOUND_STREAMS = 128
"""Concurrent inbound connections; more are closed at once (memberlist's
``maxPushPullRequests``). Bounds the memory a flood of large frames can pin."""
SEND_QUEUE_SIZE = 4096
"""Datagrams waiting for the sender task; beyond this they are dropped and counted."""
BIND_ATTEMPTS = 8
"""With port 0: how many free UDP ports to try before giving up on a free TCP twin."""

_HEADER = 4
_RECEIVE_SIZE = 64 * 1024
"""Most bytes taken from a stream at once. Pieces are kept in a list and joined once:
growing one buffer and copying it at the end held about a budget more at the peak."""

DatagramHandler = Callable[[Address, bytes], None]
ChunkCheck = Callable[[bytes | bytearray], None]
"""Called with each piece of a frame body before it is buffered; raises ``FrameError``
to refuse it."""
FrameHandler = Callable[[Address, bytes], bytes | None]
HeadCheck = Callable[[bytes], bool]
"""Whether a plaintext frame's first two bytes can begin a frame (``codec.is_frame_head``):
this module does not decode, so the node hands it the rule."""

# --------------------------------------------------------------- refusals
# A crashed process on a live host is refused at once: its host answers a
# datagram with ICMP port unreachable and a connect with a reset (issue 17).
# Linux reports ICMP errors on an unconnected UDP socket only with IP_RECVERR:
# each lands in the socket's error queue, with the destination it was about,
# and the next receive fails once with ECONNREFUSED. We then read the queue
# (MSG_ERRQUEUE never blocks) and tell the node which peers refused.

RefusalHandler = Callable[[Address], None]
_IP_RECVERR = 11  # linux/in.h
_IPV6_RECVERR = 25  # linux/in6.h
_MAX_ERRORS_PER_READ = 64
"""Error-queue entries read per failed receive; the kernel bounds the queue anyway."""


def _error_queue(udp: trio.socket.SocketType) -> socket.socket | None:
    """Turn on ICMP error reporting; a duplicate plain socket to read the queue, or None.

    None off Linux, where refusals simply go unreported (detection keeps
    Lifeguard's timing).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        if udp.family == socket.AF_INET6:
            udp.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
        udp.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
    except OSError:
        if udp.family != socket.AF_INET6:
            return None
    raw = socket.fromfd(udp.fileno(), udp.family, udp.type)
    raw.setblocking(False)
    return raw


def _read_refusals(raw: socket.socket) -> list[Address]:
    """Destinations that drew ECONNREFUSED, from the error queue (sock_extended_err)."""
    refused: list[Address] = []
    for _ in range(_MAX_ERRORS_PER_READ):
        try:
            _, ancillary, _, addr = raw.recvmsg(1, 512, socket.MSG_ERRQUEUE)
        except OSError:  # BlockingIOError: the queue is empty
            break
        for _, _, data in ancillary:
            if len(data) >= 4 and struct.unpack_from("=I", data)[0] == errno.ECONNREFUSED:
                refused.append(_address(addr))
                break
    return refused


def _is_refusal(exc: BaseException) -> bool:
    """A connect refused; trio reports it as an OSError caused by a group of attempts."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    cause = exc.__cause__
    return isinstance(cause, BaseExceptionGroup) and all(
        isinstance(e, ConnectionRefusedError) for e in cause.exceptions
    )


# ----------------------------------------------------------- end refusals


class FrameError(Exception):
    """A stream broke the framing rules; ``counter`` names the stat it is counted under."""

    def __init__(self, counter: str, message: str) -> None:
        super().__init__(message)
        self.counter = counter


def encode_frame(data: bytes) -> bytes:
    """``data`` with its 4-byte big-endian length prefix."""
    return len(data).to_bytes(_HEADER, "big") + data


async def _read_exactly(
    stream: trio.abc.ReceiveStream,
    n: int,
    *,
    at_start: bool = False,
    check: ChunkCheck | None = None,
    start: bytes = b"",
) -> bytes | None:
    """``start`` and then exactly ``n`` bytes; None on a clean EOF before the first byte
    when ``at_start``.

    Raises:
        FrameError: EOF after some but not all of the bytes, or ``check`` refused a chunk.
    """
    chunks: list[bytes | bytearray] = [start]
    got = 0
    while got < n:
        chunk = await stream.receive_some(min(n - got, _RECEIVE_SIZE))
        if not chunk:
            if at_start and not got:
                return None
            raise FrameError("stream_truncated", f"EOF after {got} of {n} bytes")
        if check is not None:
            check(chunk)
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


async def _read_piece(stream: trio.abc.ReceiveStream, n: int, check: ChunkCheck | None) -> bytes:
    piece = await _read_exactly(stream, n, check=check)
    assert piece is not None
    return piece


async def read_frame(
    stream: trio.abc.ReceiveStream,
    max_frame: int,
    check: ChunkCheck | None = None,
    seal: GossipSeal | None = None,
    head: HeadCheck | None = None,
) -> bytes | None:
    """Read one frame, opened under ``seal`` if given; None if the peer closed before it began.

    The length is checked before anything is buffered, so a hostile prefix
    cannot make us allocate more than ``max_frame``; ``check`` sees every
    piece of the body before it is buffered (the transport's budget). With
    a ``seal``, a sealed frame is authenticated chunk by chunk as it
    arrives, and plaintext is refused at its first byte unless the seal
    lets it in. A plaintext frame whose first two bytes ``head`` refuses
    is dropped there, before any of it is buffered.

    Raises:
        FrameError: the length exceeds ``max_frame``, the stream ended
            mid-frame, ``check`` refused a piece, ``head`` refused the start
            (``stream_malformed``), or (``auth_failed``) the frame is
            plaintext the seal refuses or a chunk fails to open.
    """
    header = await _read_exactly(stream, _HEADER, at_start=True)
    if header is None:
        return None
    size = int.from_bytes(header, "big")
    if size > max_frame:
        raise FrameError("stream_oversized", f"frame of {size} bytes exceeds {max_frame}")
    first = await _read_piece(stream, min(size, 1), None)  # judged before anything counts
    if seal is None or first[:1] != bytes((SEAL_VERSION,)):
        if seal is not None and seal.verify_incoming:
            raise FrameError("auth_failed", "plaintext frame refused at its first byte")
        start = first + await _read_piece(stream, min(size - len(first), 1), None)
        if head is not None and not head(start):
            raise FrameError("stream_malformed", "not the start of a frame")
        if check is not None:
            check(start)
        body = await _read_exactly(stream, size - len(start), check=check, start=start)
        assert body is not None
        return body
    try:
        reader = seal.keyring.frame_reader(size)
        reader.feed(first)
        while reader.wanted:
            reader.feed(await _read_piece(stream, reader.wanted, check))
    except SealError as exc:
        raise FrameError("auth_failed", str(exc)) from None
    return reader.plaintext()


class _Held:
    """The bytes one frame read holds of the transport's budget; ``release`` gives them back."""

    __slots__ = ("bytes", "transport")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.bytes = 0

    def __call__(self, chunk: bytes | bytearray) -> None:
        transport = self.transport
        if transport.buffered + len(chunk) > transport.max_buffered:
            raise FrameError(
                "stream_over_budget",
                f"{transport.buffered} bytes already buffered from peers; "
                f"limit {transport.max_buffered}",
            )
        transport.buffered += len(chunk)
        transport.buffered_peak = max(transport.buffered_peak, transport.buffered)
        self.bytes += len(chunk)

    def release(self) -> None:
        self.transport.buffered -= self.bytes
        self.bytes = 0


def _address(sockaddr: object) -> Address:
    """(host, port) from a socket address; IPv6 adds flowinfo and scope id, which we drop."""
    assert isinstance(sockaddr, tuple)
    return (str(sockaddr[0]), int(sockaddr[1]))


class Transport:
    """A bound UDP socket and a listening TCP socket on the same port.

    Build it with ``open_transport``. ``addr`` is the bound (host, port);
    ``stats`` counts what went wrong on the wire (the protocol counts what
    went wrong in the bytes).
    """

    def __init__(
        self,
        udp: trio.socket.SocketType,
        tcp: trio.socket.SocketType,
        *,
        max_frame: int,
        tcp_timeout: float,
        max_buffered: int,
    ) -> None:
        self.udp = udp
        self.tcp = tcp
        self.addr: Address = _address(udp.getsockname())
        self.max_frame = max_frame
        self.tcp_timeout = tcp_timeout
        self.max_buffered = max_buffered
        self.buffered = 0
        """Bytes of frames being read from peers right now, over all connections."""
        self.buffered_peak = 0
        """The most ``buffered`` has been."""
        self.stats: Counter[str] = Counter()
        self._outbox_send, self._outbox = trio.open_memory_channel[tuple[Address, bytes]](
            SEND_QUEUE_SIZE
        )
        self._inbound = trio.Semaphore(MAX_INBOUND_STREAMS)
        self._unsent = 0
        self._drained: trio.Event | None = None
        self.faults: FaultFilter | None = None
        """Test-only injected packet faults (``runtime/faultinject.py``); None in any real use."""
        self.seal: GossipSeal | None = None
        """Set by the node when gossip is encrypted; None sends and accepts plaintext."""
        self.head: HeadCheck | None = None
        """Set by the node: the wire's rule for the first bytes of a plaintext frame."""
        self.on_refused: RefusalHandler | None = None
        """Set by the node: told each peer address whose host refused a datagram or a connect."""
        self._errors = _error_queue(udp)

    # ------------------------------------------------------------------ UDP

    def send_datagram(self, addr: Address, data: bytes) -> None:
        """Queue one datagram for the sender task; never blocks, drops when the queue is full."""
        try:
            self._outbox_send.send_nowait((addr, data))
        except trio.WouldBlock:
            self.stats["udp_send_dropped"] += 1
        except trio.ClosedResourceError:
            pass
        else:
            self._unsent += 1

    async def drain(self) -> None:
        """Wait until every queued datagram has been handed to the kernel (or failed)."""
        while self._unsent:
            self._drained = drained = trio.Event()
            await drained.wait()

    async def send_loop(self) -> None:
        """Send queued datagrams in order until cancelled; errors are counted, not raised."""
        async for addr, data in self._outbox:
            try:
                if self.seal is not None:
                    data = self.seal.seal(data, UDP)
                if self.faults is None or not self._fault_drops(addr):
                    await self.udp.sendto(data, addr)
            except OSError as exc:
                # ENETUNREACH, EHOSTUNREACH, EMSGSIZE, a name that does not
                # resolve (socket.gaierror is an OSError): the peer is lost
                # for this packet only.
                self.stats["udp_send_errors"] += 1
                logger.debug("UDP send to %s failed: %s", addr, exc)
            finally:
                self._unsent -= 1
            if not self._unsent and self._drained is not None:
                self._drained.set()
                self._drained = None

    def _fault_drops(self, addr: Address) -> bool:
        assert self.faults is not None
        dropped = self.faults.drops_datagram(self.addr[0], addr[0])
        self.stats["test_fault_drops"] += dropped
        return dropped

    async def receive_loop(self, on_datagram: DatagramHandler) -> None:
        """Hand every datagram to ``on_datagram`` until cancelled or the socket closes."""
        while True:
            try:
                data, sockaddr = await self.udp.recvfrom(MAX_DATAGRAM)
            except trio.ClosedResourceError:
                return
            except OSError as exc:
                # An earlier send's ICMP error (ECONNREFUSED, Windows'
                # WSAECONNRESET); it says nothing about the next datagram.
                self.stats["udp_receive_errors"] += 1
                logger.debug("UDP receive error: %s", exc)
                if self._errors is not None:
                    for addr in _read_refusals(self._errors):
                        self._refused(addr)
                continue
            if self.seal is not None:
                try:
                    data = self.seal.open(data, UDP)
                except SealError as exc:
                    self.stats["auth_failed"] += 1
                    logger.debug("dropped a datagram from %s: %s", _address(sockaddr), exc)
                    continue
            on_datagram(_address(sockaddr), data)

    # ------------------------------------------------------------------ TCP

    async def serve_streams(
        self,
        on_frame: FrameHandler,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections until cancelled; ``task_status.started(listeners)`` once listening.

        Each connection runs in its own task under this one: read one frame,
        pass it to ``on_frame``, write the reply frame if there is one, close.
        """
        listener = trio.SocketListener(self.tcp)

        async def handle(stream: trio.SocketStream) -> None:
            await self._serve_one(stream, on_frame)

        await trio.serve_listeners(handle, [listener], task_status=task_status)

    async def _serve_one(self, stream: trio.SocketStream, on_frame: FrameHandler) -> None:
        async with stream:
            try:
                self._inbound.acquire_nowait()
            except trio.WouldBlock:
                self.stats["stream_rejected_busy"] += 1
                return
            held = _Held(self)
            try:
                with trio.move_on_after(self.tcp_timeout) as scope:
                    src = _address(stream.socket.getpeername())
                    frame = await read_frame(stream, self.max_frame, held, self.seal, self.head)
                    if frame is None:
                        self.stats["stream_empty"] += 1
                        return
                    held.release()  # the plaintext is the core's now
                    reply = on_frame(src, frame)
                    if reply is not None:
                        await stream.send_all(encode_frame(self._seal_frame(reply)))
                if scope.cancelled_caught:
                    self.stats["stream_timeouts"] += 1
            except FrameError as exc:
                self.stats[exc.counter] += 1
                logger.debug("dropped an inbound stream: %s", exc)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.stats["stream_errors"] += 1
                logger.debug("inbound stream failed: %s", exc)
            finally:
                held.release()
                self._inbound.release()

    async def request(self, addr: Address, data: bytes) -> bytes | None:
        """Send one frame to ``addr`` and return the reply frame; None if anything failed."""
        return await self._exchange(addr, data, want_reply=True)

    async def send_stream(self, addr: Address, data: bytes) -> bool:
        """Send one frame to ``addr`` and close; False if it could not be delivered."""
        return await self._exchange(addr, data, want_reply=False) is not None

    def _seal_frame(self, data: bytes) -> bytes:
        return data if self.seal is None else self.seal.seal_frame(data)

    async def _exchange(self, addr: Address, data: bytes, *, want_reply: bool) -> bytes | None:
        data = self._seal_frame(data)
        if len(data) > self.max_frame:
            self.stats["stream_oversized_out"] += 1
            return None
        if self.faults is not None and self.faults.blocks_stream(self.addr[0], addr[0]):
            self.stats["test_fault_drops"] += 1
            return None
        with trio.move_on_after(self.tcp_timeout):
            try:
                stream = await trio.open_tcp_stream(addr[0], addr[1])
                async with stream:
                    await stream.send_all(encode_frame(data))
                    if not want_reply:
                        return b""
                    held = _Held(self)
                    try:
                        reply = await read_frame(stream, self.max_frame, held, self.seal, self.head)
                        if reply is None:
                            self.stats["stream_no_reply"] += 1
                        return reply
                    finally:
                        held.release()
            except FrameError as exc:
                self.stats[exc.counter] += 1
                logger.debug("bad reply from %s: %s", addr, exc)
                return None
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.stats["stream_errors"] += 1
                logger.debug("stream to %s failed: %s", addr, exc)
                if _is_refusal(exc):
                    self._refused(addr)
                return None
        self.stats["stream_timeouts"] += 1
        return None

    def _refused(self, addr: Address) -> None:
        self.stats["refusals"] += 1
        if self.on_refused is not None:
            self.on_refused(addr)

    # ------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Release both sockets; idempotent. Loops still running end on their next call."""
        self._outbox_send.close()
        if self._errors is not None:
            self._errors.close()
        self.udp.close()
        self.tcp.close()


async def open_transport(
    host: str,
    port: int,
    *,
    max_frame: int,
    tcp_timeout: float = DEFAULT_TCP_TIMEOUT,
    max_buffered: int | None = None,
) -> Transport:
    """Bind UDP on (host, port), then TCP on the port UDP got.

    ``max_buffered`` (default ``max_frame``) bounds the bytes buffered from
    peers at once, over all connections. The family comes from ``host``
    (``::1`` gives IPv6). With ``port`` 0 the kernel picks the UDP port; if
    its TCP twin is taken we try another (``BIND_ATTEMPTS`` times). A fixed
    port whose TCP side is taken is an error: two nodes cannot share it.

    Raises:
        ValueError: ``tcp_timeout``, ``max_frame`` or ``max_buffered`` is not positive.
        OSError: the address cannot be resolved or bound.
    """
    if not (tcp_timeout > 0 and math.isfinite(tcp_timeout)):
        raise ValueError(f"tcp_timeout must be a positive number of seconds, got {tcp_timeout!r}")
    if max_frame <= 0:
        raise ValueError(f"max_frame must be positive, got {max_frame!r}")
    if max_buffered is None:
        # One largest frame at a time: a node busier than that refuses further
        # frames (counted) until some finish, and push-pull retries next round.
        max_buffered = max_frame
    if max_buffered <= 0:
        raise ValueError(f"max_buffered must be positive, got {max_buffered!r}")
    infos = await trio.socket.getaddrinfo(
        host, port, type=trio.socket.SOCK_DGRAM, flags=trio.socket.AI_PASSIVE
    )
    family, _, _, _, sockaddr = infos[0]
    last_error: OSError | None = None
    for _ in range(BIND_ATTEMPTS):
        udp = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
        tcp: trio.socket.SocketType | None = None
        try:
            await udp.bind(sockaddr)
            bound = udp.getsockname()
            tcp = trio.socket.socket(family, trio.socket.SOCK_STREAM)
            if sys.platform != "win32":
                # Lets a restarted node re-bind while old connections sit in
                # TIME_WAIT; on Linux it never lets two listeners share a port.
                tcp.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            if family == trio.socket.AF_INET6:
                # Match the UDP socket's dual-stack behaviour.
                v6only = udp.getsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY)
                tcp.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, v6only)
            await tcp.bind(bound)
            tcp.listen(128)
        except OSError as exc:
            udp.close()
            if tcp is not None:
                tcp.close()
            if port == 0 and exc.errno == errno.EADDRINUSE:
                last_error = exc
                continue
            raise
        except BaseException:
            udp.close()
            if tcp is not None:
                tcp.close()
            raise
        return Transport(
            udp, tcp, max_frame=max_frame, tcp_timeout=tcp_timeout, max_buffered=max_buffered
        )
    assert last_error is not None
    raise last_error
