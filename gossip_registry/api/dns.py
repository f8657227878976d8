"""The DNS interface: serves ``DnsAnswerer``'s answers over UDP and TCP on one port, on trio.

Theory of operation: one UDP socket and one TCP listener bound to the same
host and port (with port 0, the kernel's choice for UDP is then taken for
TCP too, retried if TCP finds it taken). Answering is synchronous and never
blocks (``dns_answer.py``: the node's registry is in memory), so the UDP
loop answers each datagram before reading the next; a TCP connection
carries queries framed by a 2-byte length (RFC 1035 section 4.2.2), one
after the other, and is closed after TCP_IDLE_TIMEOUT without a complete
query, so idle or trickling clients cannot pin tasks.

``serve_dns`` runs in the caller's nursery like ``serve_http``:
``addr = await nursery.start(serve_dns, node, host, port)``; cancelling stops it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import socket
from typing import TYPE_CHECKING

import trio

from gossip_registry.api.dns_answer import DnsAnswerer
from gossip_registry.core.messages import Address

if TYPE_CHECKING:  # node.py starts the DNS server, so importing it here would be circular
    from gossip_registry.node import Node

__all__ = ["DEFAULT_DOMAIN", "DEFAULT_TTL", "TCP_IDLE_TIMEOUT", "serve_dns"]

log = logging.getLogger("gossip_registry.dns")

DEFAULT_DOMAIN = "registry."
DEFAULT_TTL = 5.0
"""Seconds: a stale answer lives this long in caches (CoreDNS's kubernetes plugin uses 5 s too)."""
TCP_IDLE_TIMEOUT = 10.0
"""Seconds a TCP connection may wait for its next complete query before we close it."""
MAX_QUERY_BYTES = 65535
"""Read buffer for one UDP datagram; a TCP query's 2-byte length cannot exceed it either."""
UDP_BATCH = 64
"""Datagrams answered per wake-up before other tasks get a turn."""
_BIND_ATTEMPTS = 10


async def serve_dns(
    node: Node,
    host: str,
    port: int,
    *,
    domain: str = DEFAULT_DOMAIN,
    ttl: float = DEFAULT_TTL,
    stats: dict[str, int] | None = None,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer DNS for ``node`` on host:port (UDP and TCP) until cancelled.

    Calls ``task_status.started((host, bound_port))`` once both sockets
    listen, so ``port=0`` works. ``stats`` receives the counters (see
    ``dns_answer.STAT_KEYS``).

    Raises:
        ValueError: invalid domain or ttl.
        OSError: the address cannot be resolved or bound.
    """
    answerer = DnsAnswerer(
        node, domain=domain, ttl=ttl, rng=random.Random(os.urandom(16)), stats=stats
    )
    udp, tcp = await _bind(host, port)
    with udp, tcp:
        bound: Address = (host, udp.getsockname()[1])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_udp, udp, answerer)
            await nursery.start(_serve_tcp, tcp, answerer)
            log.info("DNS for %s on %s:%d (UDP and TCP)", answerer.domain, *bound)
            task_status.started(bound)


async def _bind(host: str, port: int) -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    """A UDP socket and a listening TCP socket on the same port."""
    family, _, _, _, sockaddr = (
        await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    )[0]
    for attempt in range(_BIND_ATTEMPTS):
        udp = trio.socket.socket(family, socket.SOCK_DGRAM)
        tcp = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            await udp.bind(sockaddr)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await tcp.bind((sockaddr[0], udp.getsockname()[1], *sockaddr[2:]))
            tcp.listen(128)
        except OSError as exc:
            udp.close()
            tcp.close()
            # Port 0: UDP got a port TCP cannot have; ask again. A given port is an error.
            if port != 0 or exc.errno != errno.EADDRINUSE or attempt == _BIND_ATTEMPTS - 1:
                raise
            continue
        return udp, tcp
    raise AssertionError("unreachable")


async def _serve_udp(sock: trio.socket.SocketType, answerer: DnsAnswerer) -> None:
    """Answer datagrams in batches: each wake-up drains what the socket holds (up to UDP_BATCH).

    trio's socket methods pass through the scheduler on every call, which
    costs more than answering a cached query; the raw socket's non-blocking
    calls do not, and a checkpoint per batch keeps the node's other tasks
    running under a flood.
    """
    raw = socket.socket(fileno=sock.detach())
    with raw:
        raw.setblocking(False)
        while True:
            await trio.lowlevel.wait_readable(raw)
            for _ in range(UDP_BATCH):
                try:
                    data, src = raw.recvfrom(MAX_QUERY_BYTES)
                except BlockingIOError:
                    break
                except OSError as exc:  # an earlier send's ICMP error on some platforms
                    log.debug("DNS UDP receive error: %s", exc)
                    continue
                reply = answerer.answer(data, udp=True)
                if reply is None:
                    continue
                try:
                    raw.sendto(reply, src)
                except OSError as exc:  # a full buffer or an unreachable client: its loss
                    log.debug("DNS UDP send to %s failed: %s", src, exc)
            await trio.lowlevel.checkpoint()


async def _serve_tcp(
    sock: trio.socket.SocketType,
    answerer: DnsAnswerer,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        # A client that goes away mid-answer has nobody left to tell.
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await _serve_connection(stream, answerer)

    listeners = [trio.SocketListener(sock)]
    await trio.serve_listeners(handle, listeners, task_status=task_status)


async def _serve_connection(stream: trio.SocketStream, answerer: DnsAnswerer) -> None:
    buffer = bytearray()
    while True:
        with trio.move_on_after(TCP_IDLE_TIMEOUT):
            while len(buffer) < 2 or len(buffer) < 2 + int.from_bytes(buffer[:2], "big"):
                chunk = await stream.receive_some(MAX_QUERY_BYTES)
                if not chunk:
                    return  # closed by the client (a partial query is simply dropped)
                buffer += chunk
        size = int.from_bytes(buffer[:2], "big") if len(buffer) >= 2 else -1
        if size < 0 or len(buffer) < 2 + size:
            return  # idle, or too slow to send one query
        query, buffer = bytes(buffer[2 : 2 + size]), buffer[2 + size :]
        reply = answerer.answer(query, udp=False)
        if reply is None:
            return  # nothing to answer: a response, or bytes with no header
        await stream.send_all(len(reply).to_bytes(2, "big") + reply)
