"""Following node-wide views (the service list, the member list) with blocking queries.

Over httpx.MockTransport on trio's autojump clock: a 30 s blocking wait
costs no wall time, and a test fails (not hangs) if the client polls
instead of blocking.
"""

from __future__ import annotations

import random
from contextlib import aclosing
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from gossip_registry.client import (
    AsyncRegistryClient,
    BadResponse,
    ClientSettings,
    Member,
    NoNodeAvailable,
)
from gossip_registry.client.views import parse_members, parse_services


def member(name: str, state: str = "alive") -> dict[str, Any]:
    return {
        "name": name,
        "address": "127.0.0.1",
        "port": 7946,
        "state": state,
        "incarnation": 1,
        "meta": {"zone": "a"},
        "gone_for": None,
    }


class Node:
    """One node serving /v1/services and /v1/members, blocking on ``index`` like ours."""

    def __init__(self) -> None:
        self.bodies: dict[str, Any] = {"/v1/services": {"web": 2}, "/v1/members": [member("n1")]}
        self.index = 5
        self.changed = trio.Event()
        self.requests: list[httpx.Request] = []

    def change(self, path: str, body: Any) -> None:
        self.bodies[path] = body
        self.index += 1
        self.changed.set()
        self.changed = trio.Event()

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        asked = request.url.params.get("index")
        if asked is not None and int(asked) == self.index:
            with trio.move_on_after(float(request.url.params["wait"].removesuffix("s"))):
                await self.changed.wait()
        headers = {"X-Registry-Index": str(self.index)}
        return httpx.Response(200, json=self.bodies[request.url.path], headers=headers)


def connect(node: Node) -> AsyncRegistryClient:
    return AsyncRegistryClient(
        ["http://n1"],
        settings=ClientSettings(),
        rng=random.Random(1),
        transport=httpx.MockTransport(node.handler),
    )


async def test_watch_services_yields_the_list_then_each_change_through_blocking_queries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = Node()
    seen: list[dict[str, int]] = []
    with trio.fail_after(300):
        async with connect(node) as client, aclosing(client.watch_services()) as views:
            async for services in views:
                seen.append(services)
                if len(seen) == 1:
                    await trio.sleep(100)  # three 30 s blocking waits pass unanswered
                    node.change("/v1/services", {"web": 2, "api": 1})
                else:
                    break
    assert seen == [{"web": 2}, {"web": 2, "api": 1}]
    blocking = [r for r in node.requests if "index" in r.url.params]
    assert blocking, "the client polled instead of blocking"
    # A blocking query is held 30 s: 100 s of virtual time is a handful of requests, not a poll.
    assert len(node.requests) < 10


async def test_watch_members_skips_answers_whose_list_did_not_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = Node()
    seen: list[list[Member]] = []
    with trio.fail_after(300):
        async with connect(node) as client, aclosing(client.watch_members()) as views:
            async for members in views:
                seen.append(members)
                if len(seen) == 1:
                    node.change("/v1/services", {"web": 3})  # the index moves, members do not
                    await trio.sleep(1)
                    node.change("/v1/members", [member("n1"), member("n2", "suspect")])
                else:
                    break
    assert [[m.name for m in ms] for ms in seen] == [["n1"], ["n1", "n2"]]
    assert seen[1][1].state == "suspect"
    assert seen[1][1].meta == {"zone": "a"}


async def test_watch_services_raises_when_no_node_answers_the_first_fetch() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = AsyncRegistryClient(
        ["http://n1"], rng=random.Random(1), transport=httpx.MockTransport(refuse)
    )
    with trio.fail_after(10):
        async with client, aclosing(client.watch_services()) as views:
            with pytest.raises(NoNodeAvailable):
                await views.__anext__()


@pytest.mark.parametrize("body", [[], {"web": "2"}, {"web": True}, {"web": -1}, "x", None])
def test_a_service_list_of_the_wrong_shape_is_a_bad_response(body: Any) -> None:
    with pytest.raises(BadResponse):
        parse_services(body)


@pytest.mark.parametrize(
    "body",
    [{}, [1], [{"name": "n1"}], [{**member("n1"), "port": "7946"}], [{**member("n1"), "meta": []}]],
)
def test_a_member_list_of_the_wrong_shape_is_a_bad_response(body: Any) -> None:
    with pytest.raises(BadResponse):
        parse_members(body)


async def test_an_unshared_watch_stops_its_blocking_queries_when_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = Node()
    node.bodies["/v1/services/web"] = []
    seen: list[list[Any]] = []

    async def follow(client: AsyncRegistryClient, scope: trio.CancelScope) -> None:
        with scope:
            async with aclosing(client.watch("web", shared=False)) as lists:
                async for instances in lists:
                    seen.append(instances)

    with trio.fail_after(600):
        async with connect(node) as client:
            scope = trio.CancelScope()
            client_nursery = trio.open_nursery()
            async with client_nursery as nursery:
                nursery.start_soon(follow, client, scope)
                await trio.sleep(100)
                scope.cancel()
            asked = len(node.requests)
            assert seen == [[]]
            assert asked >= 3  # it blocked and asked again while open
            await trio.sleep(300)
            assert len(node.requests) == asked
