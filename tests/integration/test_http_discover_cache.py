"""GET /v1/services/{name} on a real node follows every change, though its body is cached."""

from __future__ import annotations

import httpx
import trio

from gossip_registry.runtime.node import Node
from tests.integration import fast_config


async def test_discovery_over_http_follows_registrations_and_filters() -> None:
    with trio.fail_after(10):
        async with Node(fast_config("h1", http=("127.0.0.1", 0))) as node:
            assert node.http_addr is not None
            base = f"http://{node.http_addr[0]}:{node.http_addr[1]}/v1/services/api"
            async with httpx.AsyncClient(trust_env=False) as client:

                async def ports(**params: str) -> list[int]:
                    answer = await client.get(base, params=params)
                    assert answer.status_code == 200
                    return [i["port"] for i in answer.json()]

                await node.register("api", instance_id="a1", port=1, tags=["x"])
                assert await ports() == [1]
                assert await ports() == [1]  # the cached body
                await node.register("api", instance_id="a1", port=2, tags=["x"])
                assert await ports() == [2]
                await node.register("api", instance_id="a2", port=3)
                assert await ports() == [2, 3]
                assert await ports(tag="x") == [2]
                await node.deregister("a1")
                assert await ports() == [3]
                assert await ports(tag="x") == []
