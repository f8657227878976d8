"""Watches on real nodes over loopback: indexes, blocking queries across nodes, long holds."""

from __future__ import annotations

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig

from gossip_registry.runtime.threaded import ThreadedNode
from gossip_registry.runtime.watch import TooManyWaiters
from tests.integration import fast_config, start_cluster, start_node, wait_until


async def test_a_blocking_query_on_a_returns_within_a_second_of_a_registration_on_b() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            (a, _), (b, _) = await start_cluster(nursery, 2, http=("127.0.0.1", 0))
            assert a.http_addr is not None
            url = f"http://{a.http_addr[0]}:{a.http_addr[1]}/v1/services/web"
            async with httpx.AsyncClient(timeout=30) as client:
                first = await client.get(url)
                index = first.headers["X-Registry-Index"]
                result: list[tuple[httpx.Response, float]] = []

                async def block() -> None:
                    response = await client.get(url, params={"index": index, "wait": "20s"})
                    result.append((response, trio.current_time()))

                nursery.start_soon(block)
                await wait_until(lambda: a.status()["waiters"] == 1)
                registered_at = trio.current_time()
                await b.register("web", instance_id="w1", port=80)
                await wait_until(lambda: bool(result), timeout=5)
            (response, answered_at) = result[0]
            assert answered_at - registered_at < 1.0
            assert [i["id"] for i in response.json()] == ["w1"]
            assert int(response.headers["X-Registry-Index"]) > int(index)
            nursery.cancel_scope.cancel()


async def test_a_held_request_outlives_hypercorns_keep_alive_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Shrink the idle timeout so the test is short: a held request must not count as idle.
    monkeypatch.setattr(HypercornConfig, "keep_alive_timeout", 0.1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("solo", http=("127.0.0.1", 0)))
            assert node.http_addr is not None
            url = f"http://{node.http_addr[0]}:{node.http_addr[1]}/v1/members"
            async with httpx.AsyncClient(timeout=10) as client:
                index = node.members_index()
                started = trio.current_time()
                response = await client.get(url, params={"index": index, "wait": "1s"})
            assert response.status_code == 200
            assert trio.current_time() - started >= 1.0  # held for the whole wait
            assert response.headers["X-Registry-Index"] == str(index)
            nursery.cancel_scope.cancel()


async def test_indexes_track_services_catalog_and_members_separately() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("a"))
            web, catalog, members = node.index("web"), node.index(), node.members_index()
            assert min(web, catalog, members) >= 1
            await node.register("db", instance_id="d1", port=1)
            assert node.index("web") == web
            assert node.index("db") > web
            assert node.index() == node.index("db")  # a new instance changes the catalog
            before = node.index()
            await node.register("db", instance_id="d1", port=2)  # same instance, new port
            assert node.index() == before
            assert node.members_index() == members
            await start_node(nursery, fast_config("b", seeds=(node.advertise_addr,)))
            await wait_until(lambda: node.members_index() > members)
            nursery.cancel_scope.cancel()


async def test_wait_for_change_wakes_on_its_service_and_refuses_past_max_waiters() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("a", max_waiters=1))
            results: list[int] = []

            async def wait() -> None:
                results.append(await node.wait_for_change("web", node.index("web"), 10))

            nursery.start_soon(wait)
            await wait_until(lambda: node.status()["waiters"] == 1)
            with pytest.raises(TooManyWaiters):
                await node.wait_for_change(None, node.index(), 10)
            await node.register("db", instance_id="d1", port=1)
            assert results == []
            await node.register("web", instance_id="w1", port=1)
            await wait_until(lambda: results == [node.index("web")])
            nursery.cancel_scope.cancel()


async def test_waits_return_when_the_node_stops() -> None:
    with trio.fail_after(10):
        results: list[int] = []
        async with trio.open_nursery() as nursery:
            node, crash = await start_node(nursery, fast_config("a"))

            async def wait() -> None:
                results.append(await node.wait_for_members_change(node.members_index(), 60))

            nursery.start_soon(wait)
            await wait_until(lambda: node.status()["waiters"] == 1)
            crash.cancel()
        assert results == [1]


def test_the_threaded_node_offers_index_and_wait_for_change() -> None:
    with ThreadedNode(fast_config("t")) as node:
        index = node.index("web")
        assert node.wait_for_change("web", index, timeout=0.01) == index
        node.register("web", instance_id="w1", port=1)
        assert node.wait_for_change("web", index, timeout=5) == node.index("web") > index
