"""Hostile HTTP clients on loopback (issue 10, findings 3 and 4): slow bodies, too many
connections, uploads abandoned half-way. Real sockets, bounded counts and times."""

from __future__ import annotations

import logging
import resource
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from gossip_registry.runtime.fdlimit import FD_RESERVE, connection_budget
from gossip_registry.runtime.node import Node
from tests.integration import fast_config, start_node, wait_until

TIMEOUT = 20
PARTIAL = (
    b"PUT /v1/services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 60000\r\n\r\n{"
)
GOOD = b"GET /v1/members HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@asynccontextmanager
async def http_node(**overrides: object) -> AsyncIterator[Node]:
    async with trio.open_nursery() as nursery:
        node, _ = await start_node(nursery, fast_config("h1", http=("127.0.0.1", 0), **overrides))
        yield node
        nursery.cancel_scope.cancel()


async def connect(node: Node) -> trio.SocketStream:
    assert node.http_addr is not None
    return await trio.open_tcp_stream(*node.http_addr)


async def read_all(stream: trio.SocketStream) -> bytes:
    """What the server sends until it closes (an RST counts as a close)."""
    data = bytearray()
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def test_a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closes() -> None:
    with trio.fail_after(TIMEOUT):
        async with http_node(http_body_timeout=0.5) as node:
            start = trio.current_time()
            async with await connect(node) as stream:
                await stream.send_all(PARTIAL)
                reply = await read_all(stream)
            assert reply.startswith(b"HTTP/1.1 408"), reply
            assert b"body: not received" in reply
            assert trio.current_time() - start < 5
            assert node.http_stats["body_timeouts"] == 1
            assert node.status()["entries"] == 0


async def test_a_trickling_body_is_cut_at_the_deadline_too() -> None:
    with trio.fail_after(TIMEOUT):
        async with http_node(http_body_timeout=0.5) as node:
            async with await connect(node) as stream:
                await stream.send_all(PARTIAL)

                async def trickle() -> None:
                    for _ in range(100):  # one byte every 50 ms, 5 s at most
                        await stream.send_all(b" ")
                        await trio.sleep(0.05)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trickle)
                    reply = await read_all(stream)
                    nursery.cancel_scope.cancel()
            assert reply.startswith(b"HTTP/1.1 408"), reply


async def test_a_blocking_query_is_not_cut_by_the_body_deadline() -> None:
    with trio.fail_after(TIMEOUT):
        async with http_node(http_body_timeout=0.2) as node:
            index = node.members_index()
            async with await connect(node) as stream:
                await stream.send_all(
                    b"GET /v1/members?index=%d&wait=1s HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\n\r\n" % index
                )
                start = trio.current_time()
                reply = await read_all(stream)
            assert reply.startswith(b"HTTP/1.1 200"), reply
            assert trio.current_time() - start >= 0.9  # held for its wait, not the body deadline


async def test_an_event_stream_outlives_the_body_deadline() -> None:
    """The stream's handler waits on ``receive`` for a disconnect: only the body is bounded."""
    with trio.fail_after(TIMEOUT):
        async with http_node(http_body_timeout=0.2) as node:
            async with await connect(node) as stream:
                await stream.send_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await stream.receive_some(65536)
                assert head.startswith(b"HTTP/1.1 200"), head
                deadline = trio.current_time() + 0.5  # well past the body deadline
                await trio.sleep_until(deadline)
                await node.register("late", instance_id="late-1", port=1)
                seen = bytearray()
                while b"late-1" not in seen:
                    chunk = await stream.receive_some(65536)
                    assert chunk, "the stream was closed"
                    seen += chunk
            assert node.http_stats.get("body_timeouts", 0) == 0


async def test_connections_beyond_the_limit_are_closed_at_once_and_counted() -> None:
    limit = 8
    with trio.fail_after(TIMEOUT):
        async with http_node(max_http_connections=limit, http_body_timeout=60.0) as node:
            held = [await connect(node) for _ in range(limit)]
            for stream in held:
                await stream.send_all(PARTIAL)
            await wait_until(lambda: node.http_stats.get("connections_refused", 0) == 0)
            refused = []
            for _ in range(5):
                async with await connect(node) as extra:
                    await extra.send_all(GOOD)
                    refused.append(await read_all(extra))
            assert refused == [b""] * 5
            assert node.http_stats["connections_refused"] == 5
            for stream in held:
                await stream.aclose()

            # Freed slots serve again (the server notices the closes on its own).
            async def served() -> bool:
                async with await connect(node) as stream:
                    await stream.send_all(GOOD)
                    return (await read_all(stream)).startswith(b"HTTP/1.1 200")

            await wait_until(served, 10.0, what="a connection served after the held ones closed")
            # Gossip kept working throughout: the node still answers its own status.
            assert node.status()["name"] == "h1"


async def test_a_client_that_leaves_mid_body_is_a_debug_line_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(TIMEOUT), caplog.at_level(logging.DEBUG, logger="gossip_registry.http"):
        async with http_node() as node:
            caplog.clear()  # start-up lines (e.g. "no data dir") are not the requests' doing
            for _ in range(3):
                async with await connect(node) as stream:
                    await stream.send_all(PARTIAL)
            await wait_until(lambda: node.http_stats.get("client_disconnects", 0) == 3)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
    assert "Traceback" not in caplog.text
    gone = [r for r in caplog.records if "client went away" in r.getMessage()]
    assert len(gone) == 3
    assert all(r.levelno == logging.DEBUG for r in gone)


def test_the_connection_budget_keeps_a_reserve_of_descriptors_for_gossip() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_budget(10, 0.5) == min(10, max(1, (soft - FD_RESERVE) // 2))
    if soft != resource.RLIM_INFINITY:
        assert connection_budget(10**9, 0.75) == max(1, int((soft - FD_RESERVE) * 0.75))
        assert connection_budget(10**9, 0.75) + FD_RESERVE < soft
