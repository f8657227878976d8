"""The DNS interface: serves ``DnsAnswerer``'s answers over UDP and TCP on one port, on trio.

Theory of operation: one UDP socket and one TCP listener bound to the same
host and port (with port 0, the kernel's choice for UDP is then taken for
TCP too, retried if TCP finds it taken). Answering is synchronous and never
blocks (``dns_answer.py``: the node's registry is in memory), so the UDP
loop answers each datagram before reading the next; a TCP connection
carries queries framed by a 2-byte length (RFC 1035 section 4.2.2), one
after the other, and is closed after TCP_IDLE_TIMEOUT without a complete
query, so idle or trickling clients cannot pin tasks.

What one source can take (issue 10, finding 9): ``SourceRateLimit``
answers at most ``rate_limit`` queries a second per source address outside
``trusted_networks`` (UDP and TCP alike; the rest are dropped and counted),
UDP answers to those sources are capped at 512 bytes (``DnsAnswerer``), and
at most ``max_tcp_connections`` TCP connections are open at once (one more
is closed at accept, counted in ``tcp_refused``; ``fdlimit`` caps the number
below the open-files limit with a reserve for gossip).

``serve_dns`` runs in the caller's nursery like ``serve_http``:
``addr = await nursery.start(serve_dns, node, host, port)``; cancelling stops it.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import random
import socket
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import trio

from gossip_registry.api.dns_answer import DnsAnswerer
from gossip_registry.core.messages import Address
from gossip_registry.runtime.fdlimit import connection_budget

if TYPE_CHECKING:  # node.py starts the DNS server, so importing it here would be circular
    from gossip_registry.runtime.node import Node

__all__ = ["DEFAULT_DOMAIN", "DEFAULT_TTL", "TCP_IDLE_TIMEOUT", "SourceRateLimit", "serve_dns"]

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
DNS_FD_SHARE = 0.25
"""Share of the descriptors outside gossip's reserve that DNS-over-TCP connections may use."""
MAX_TRACKED_SOURCES = 65536
"""Source addresses whose rate is tracked; the least recently seen is forgotten beyond it."""


class SourceRateLimit:
    """A token bucket per untrusted source address: ``rate`` queries a second, bursts of ``rate``.

    Trusted sources (``trusted_networks``, loopback by default: the local
    resolver that forwards the zone, which nobody off the host can spoof) are
    not limited; a remote source is, whether it is a real resolver or a
    spoofed address aiming our answers at a victim.

    Pure (``now`` is an argument) and O(1) per query: the sources live in an
    LRU-ordered dict bounded by MAX_TRACKED_SOURCES, so a flood from forged
    addresses costs memory for at most that many (each forgotten source
    starts again with a full bucket, which is what a new source gets anyway).
    Each source's trust (``trusted_networks``) is decided once, when first seen.
    """

    def __init__(
        self,
        rate: int,
        trusted_networks: Sequence[str] = (),
        max_sources: int = MAX_TRACKED_SOURCES,
    ) -> None:
        self.rate = rate
        self.networks = [ipaddress.ip_network(n) for n in trusted_networks]
        self.max_sources = max_sources
        self._sources: OrderedDict[str, list[float]] = OrderedDict()  # [tokens, last, trusted]

    def check(self, source: str, now: float) -> tuple[bool, bool]:
        """``(allowed, trusted)`` for one query from ``source`` at ``now`` (seconds)."""
        state = self._sources.get(source)
        if state is None:
            state = [float(self.rate), now, float(self._trusted(source))]
            self._sources[source] = state
            if len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(source)
        trusted = state[2] == 1.0
        if self.rate == 0 or trusted:
            return True, trusted
        tokens = min(float(self.rate), state[0] + (now - state[1]) * self.rate)
        state[1] = now
        if tokens < 1.0:
            state[0] = tokens
            return False, trusted
        state[0] = tokens - 1.0
        return True, trusted

    def _trusted(self, source: str) -> bool:
        try:
            address = ipaddress.ip_address(source.partition("%")[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)


async def serve_dns(
    node: Node,
    host: str,
    port: int,
    *,
    domain: str = DEFAULT_DOMAIN,
    ttl: float = DEFAULT_TTL,
    stats: dict[str, int] | None = None,
    rate_limit: int = 0,
    trusted_networks: Sequence[str] = ("127.0.0.0/8", "::1/128"),
    max_tcp_connections: int = 256,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer DNS for ``node`` on host:port (UDP and TCP) until cancelled.

    Calls ``task_status.started((host, bound_port))`` once both sockets
    listen, so ``port=0`` works. ``stats`` receives the counters (see
    ``dns_answer.STAT_KEYS``). ``rate_limit`` (queries a second per source,
    0: none), ``trusted_networks`` and ``max_tcp_connections``: see above.

    Raises:
        ValueError: invalid domain or ttl.
        OSError: the address cannot be resolved or bound.
    """
    answerer = DnsAnswerer(
        node, domain=domain, ttl=ttl, rng=random.Random(os.urandom(16)), stats=stats
    )
    limiter = SourceRateLimit(rate_limit, trusted_networks)
    tcp_limit = connection_budget(max_tcp_connections, DNS_FD_SHARE)
    udp, tcp = await _bind(host, port)
    with udp, tcp:
        bound: Address = (host, udp.getsockname()[1])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_udp, udp, answerer, limiter)
            await nursery.start(partial(_serve_tcp, tcp, answerer, limiter, tcp_limit))
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


async def _serve_udp(
    sock: trio.socket.SocketType, answerer: DnsAnswerer, limiter: SourceRateLimit
) -> None:
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
                allowed, trusted = limiter.check(src[0], trio.current_time())
                if not allowed:
                    answerer.stats["rate_limited"] += 1
                    continue
                reply = answerer.answer(data, udp=True, trusted=trusted)
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
    limiter: SourceRateLimit,
    limit: int,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    active = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal active
        if active >= limit:
            answerer.stats["tcp_refused"] += 1
            await trio.aclose_forcefully(stream)
            return
        active += 1
        try:
            # A client that goes away mid-answer has nobody left to tell.
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await _serve_connection(stream, answerer, limiter)
        finally:
            active -= 1

    listeners = [trio.SocketListener(sock)]
    await trio.serve_listeners(handle, listeners, task_status=task_status)


async def _serve_connection(
    stream: trio.SocketStream, answerer: DnsAnswerer, limiter: SourceRateLimit
) -> None:
    source = str(stream.socket.getpeername()[0])
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
        if not limiter.check(source, trio.current_time())[0]:
            answerer.stats["rate_limited"] += 1
            continue
        reply = answerer.answer(query, udp=False)
        if reply is None:
            return  # nothing to answer: a response, or bytes with no header
        await stream.send_all(len(reply).to_bytes(2, "big") + reply)
