"""The client library against real nodes and real instances on loopback.

Instances are tiny HTTP servers in the test's nursery that answer with
their own port; killing one closes its listening socket, so a call to it is
refused like a crashed process's. Nodes run in-process with their HTTP API
on a free port.
"""

from __future__ import annotations

import random
from collections import Counter
from contextlib import aclosing
from typing import Any

import pytest
import trio

from gossip_registry.client import AsyncRegistryClient, ClientSettings, RegistryClient
from gossip_registry.runtime.node import Node
from tests.integration import start_cluster, wait_until
from tests.support.backends import Instances

HTTP = ("127.0.0.1", 0)


def url(node: Node) -> str:
    assert node.http_addr is not None
    return f"http://{node.http_addr[0]}:{node.http_addr[1]}"


async def one_node_with_instances(
    nursery: trio.Nursery, weights: list[int]
) -> tuple[Node, Instances, list[int]]:
    [(node, _)] = await start_cluster(nursery, 1, http=HTTP)
    instances = Instances(nursery)
    ports = [await instances.start() for _ in weights]
    # Ids in port-independent order: with the seeded client, every choice is reproducible.
    for n, (port, weight) in enumerate(zip(ports, weights, strict=True)):
        await node.register("api", instance_id=f"api-{n}", port=port, weight=weight)
    return node, instances, ports


async def spread(client: AsyncRegistryClient, calls: int, concurrency: int = 1) -> Counter[int]:
    answered: Counter[int] = Counter()

    async def worker(count: int) -> None:
        for _ in range(count):
            response = await client.request("api", "GET", "/")
            answered[int(response.text)] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker, calls // concurrency)
    return answered


@pytest.mark.parametrize(
    ("strategy", "weights", "calls", "concurrency", "expected", "tolerance"),
    [
        ("round_robin", [1, 1, 1], 30, 1, [1 / 3] * 3, 0),
        ("weighted", [6, 2, 0], 200, 1, [0.75, 0.25, 0], 0.08),
        ("random", [1, 1, 1], 150, 1, [1 / 3] * 3, 0.12),
        ("least_outstanding", [1, 1, 1], 150, 6, [1 / 3] * 3, 0.12),
        ("power_of_two", [1, 1, 1], 150, 6, [1 / 3] * 3, 0.12),
    ],
)
async def test_calls_spread_over_instances_as_the_strategy_says(
    strategy: str,
    weights: list[int],
    calls: int,
    concurrency: int,
    expected: list[float],
    tolerance: float,
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node, instances, ports = await one_node_with_instances(nursery, weights)
            async with AsyncRegistryClient(
                [url(node)], strategy=strategy, rng=random.Random(11)
            ) as client:
                answered = await spread(client, calls, concurrency)
            assert sum(answered.values()) == calls
            assert answered == instances.hits
            for port, share in zip(ports, expected, strict=True):
                assert answered[port] / calls == pytest.approx(share, abs=tolerance)
            nursery.cancel_scope.cancel()


async def test_a_killed_instance_costs_one_retry_per_call_until_it_is_ejected() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node, instances, ports = await one_node_with_instances(nursery, [1, 1, 1])
            async with AsyncRegistryClient([url(node)], rng=random.Random(3)) as client:
                await spread(client, 6)  # every instance answers
                dead = ports[1]
                await instances.kill(dead)
                answered: Counter[int] = Counter()
                for _ in range(12):
                    before = client.stats.get("retries", 0)
                    response = await client.request("api", "GET", "/")
                    assert client.stats.get("retries", 0) - before <= 1
                    answered[int(response.text)] += 1
                assert answered.keys() == {ports[0], ports[2]}
                assert client.stats["instance_failures"] == 3  # eject_after
                assert client.stats["retries"] == 3
                assert client.ejected() == {("api", "api-1")}
                # Ejected, it is no longer picked, though the registry still lists it.
                assert len(await client.instances("api")) == 3
                assert {(await client.pick("api")).port for _ in range(20)} == {
                    ports[0],
                    ports[2],
                }
            nursery.cancel_scope.cancel()


async def test_the_client_carries_on_through_another_node_when_its_node_dies() -> None:
    settings = ClientSettings(ttl=0.2, node_timeout=2.0, node_backoff=0.01)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nodes = await start_cluster(nursery, 2, http=HTTP)
            instances = Instances(nursery)
            ports = [await instances.start() for _ in nodes]
            for (node, _), port in zip(nodes, ports, strict=True):
                await node.register("api", instance_id=f"api-{port}", port=port)
            await wait_until(lambda: all(len(n.discover("api")) == 2 for n, _ in nodes))

            urls = [url(node) for node, _ in nodes]
            async with AsyncRegistryClient(urls, settings=settings) as client:
                assert len(await client.instances("api")) == 2
                first = urls.index(client.node)
                survivor, _ = nodes[1 - first]
                nodes[first][1].cancel()  # crash the node the client talks to
                late = await instances.start()
                await survivor.register("api", instance_id=f"api-{late}", port=late)

                # The dead node's instance goes (fenced when it is declared dead);
                # the new one arrives: both only through the surviving node.
                wanted = {ports[1 - first], late}
                async with aclosing(client.watch("api")) as updates:
                    async for current in updates:
                        if {i.port for i in current} == wanted:
                            break
                assert client.node == urls[1 - first]
                response = await client.request("api", "GET", "/")
                assert int(response.text) in wanted
            nursery.cancel_scope.cancel()


async def test_the_blocking_client_works_against_a_real_node_from_a_thread() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node, _, ports = await one_node_with_instances(nursery, [1, 1])

            def calls() -> list[Any]:
                with RegistryClient([url(node)], rng=random.Random(5)) as client:
                    return [int(client.request("api", "GET", "/").text) for _ in range(10)]

            answered = await trio.to_thread.run_sync(calls)
            assert Counter(answered) == {ports[0]: 5, ports[1]: 5}
            nursery.cancel_scope.cancel()
