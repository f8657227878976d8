"""chaos/http11.py: the chaos runner's and the benchmarks' HTTP/1.1 client, on h11."""

from __future__ import annotations

from contextlib import aclosing

import trio

from gossip_registry.chaos.http11 import HttpClient, HttpConnection
from tests.integration import fast_config, start_node

TIMEOUT = 5.0


async def test_requests_to_one_node_share_a_kept_connection() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node, scope = await start_node(nursery, fast_config("a", http=("127.0.0.1", 0)))
            assert node.http_addr is not None
            host, port = node.http_addr
            async with HttpClient(TIMEOUT) as http:
                put = await http.request(
                    host, port, "PUT", "/v1/services", {"name": "web", "id": "w1", "port": 80}
                )
                got = await http.request(host, port, "GET", "/v1/services/web")
                assert http.connections == 1

            assert put is not None
            assert put[0] == 200
            assert got is not None
            assert got[0] == 200
            assert [x["id"] for x in got[1]] == ["w1"]
            scope.cancel()


async def test_a_server_that_does_not_answer_gives_none_and_counts_the_failure() -> None:
    with trio.fail_after(20):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        async with trio.open_nursery() as nursery:

            async def close_at_once(stream: trio.SocketStream) -> None:
                await stream.aclose()

            nursery.start_soon(trio.serve_listeners, close_at_once, [listener])
            async with HttpClient(TIMEOUT) as http:
                answer = await http.request("127.0.0.1", port, "GET", "/v1/members")

            assert answer is None
            assert sum(http.failures.values()) == 1
            nursery.cancel_scope.cancel()


async def test_a_connection_reads_a_streamed_body_chunk_by_chunk() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node, scope = await start_node(nursery, fast_config("a", http=("127.0.0.1", 0)))
            assert node.http_addr is not None
            host, port = node.http_addr
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                connection = HttpConnection(stream, host, port)
                await connection.send("GET", "/v1/events?kind=entry")
                status, _ = await connection.head()
                seen = b""
                async with aclosing(connection.chunks()) as chunks:
                    async for data in chunks:
                        seen += data
                        if b'"subscribed"' in data:  # registered from now on, it is streamed
                            await node.register("web", instance_id="w1", port=80)
                        if b'"w1"' in data:
                            break

            assert status == 200
            assert b'"registered"' in seen
            scope.cancel()
