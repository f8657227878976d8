"""Fail-over, retries, ejection, single flight and blocking queries, over httpx.MockTransport.

No sockets: one fake answers for the registry nodes (``n1``, ``n2``) and the
instances (``127.0.0.1:900x``). The trio tests run on trio's autojump clock,
so TTLs, backoffs and 30 s blocking waits cost no wall time.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from contextlib import aclosing
from typing import Any, TypeVar

import httpx
import pytest
import trio
import trio.testing

from gossip_registry.client import (
    AsyncRegistryClient,
    CallFailed,
    ClientSettings,
    NoInstanceAvailable,
    NoNodeAvailable,
    RegistryClient,
    RegistryError,
)
from tests.polling import eventually

NODES = ["http://n1", "http://n2"]


def instance(port: int, weight: int = 1) -> dict[str, Any]:
    return {
        "id": f"api-{port}",
        "name": "api",
        "address": "127.0.0.1",
        "port": port,
        "tags": [],
        "meta": {},
        "weight": weight,
        "status": "passing",
        "node": "n1",
    }


class Fake:
    """Registry nodes and service instances behind one mock transport.

    ``broken[host]`` makes a host fail: ``"refuse"`` (connect error),
    ``"timeout"`` (read timeout, the request may have arrived), an int
    (that HTTP status) or ``"garbage"`` (a body that is not the API's).
    ``index`` None plays a node without blocking queries; ``blocks`` False
    one that ignores ``index`` and answers at once.
    """

    def __init__(self, ports: tuple[int, ...] = (9001, 9002)) -> None:
        self.instances = [instance(p) for p in ports]
        self.index: int | None = 10
        self.blocks = True
        self.broken: dict[str, Any] = {}
        self.joining: set[str] = set()
        """Hosts that answer as a node not yet synced with the cluster: empty, flagged."""
        self.requests: list[httpx.Request] = []
        self.changed = trio.Event()
        self.latency = 0.0
        self.seen_load: list[dict[Any, int]] = []
        self.client: AsyncRegistryClient | RegistryClient | None = None

    def change(self, instances: list[dict[str, Any]], index: int) -> None:
        self.instances, self.index = instances, index
        self.changed.set()
        self.changed = trio.Event()

    def node_requests(self, **params: str) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if r.url.path.startswith("/v1/")
            and all(r.url.params.get(k) == v for k, v in params.items())
        ]

    def _fail(self, request: httpx.Request) -> httpx.Response | None:
        host = request.url.netloc.decode()
        how = self.broken.get(host)
        if how == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if how == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if how == "garbage":
            return httpx.Response(200, text="<html>proxy</html>")
        if isinstance(how, int):
            return httpx.Response(how, json={"error": f"status {how}"})
        return None

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.startswith("/v1/"):
            if self.client is not None:
                self.seen_load.append(self.client.outstanding())
            return httpx.Response(200, text=request.url.netloc.decode())
        headers = {} if self.index is None else {"X-Registry-Index": str(self.index)}
        if request.url.netloc.decode() in self.joining:
            return httpx.Response(200, json=[], headers={**headers, "X-Registry-Joining": "true"})
        return httpx.Response(200, json=self.instances, headers=headers)

    def sync_handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._fail(request) or self._answer(request)

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await trio.sleep(self.latency)
        asked = request.url.params.get("index")
        if asked is not None and self.blocks and int(asked) == self.index:
            wait = float(request.url.params["wait"].removesuffix("s"))
            with trio.move_on_after(wait):
                await self.changed.wait()
        return self._fail(request) or self._answer(request)


C = TypeVar("C", AsyncRegistryClient, RegistryClient)


def connect(kind: type[C], handler: Any, fake: Fake, **settings: Any) -> C:
    client = kind(
        NODES,
        settings=ClientSettings(**settings),
        rng=random.Random(1),
        transport=httpx.MockTransport(handler),
    )
    fake.client = client
    return client


def aclient(fake: Fake, **settings: Any) -> AsyncRegistryClient:
    return connect(AsyncRegistryClient, fake.async_handler, fake, **settings)


def sclient(fake: Fake, **settings: Any) -> RegistryClient:
    return connect(RegistryClient, fake.sync_handler, fake, **settings)


def host(client: AsyncRegistryClient | RegistryClient) -> str:
    return client.node.removeprefix("http://")


# Single flight.


async def test_a_hundred_cold_callers_share_one_fetch(autojump_clock: Any) -> None:
    fake = Fake()
    fake.latency = 0.5
    with trio.fail_after(60):
        async with aclient(fake, watch=False, ttl=10, ttl_jitter=0.1) as client:
            results: list[list[str]] = []

            async def caller() -> None:
                results.append([i.id for i in await client.instances("api")])

            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(caller)
            assert len(fake.node_requests()) == 1
            assert client.stats["shared_fetches"] == 99
            assert results == [["api-9001", "api-9002"]] * 100

            await trio.sleep(11.1)  # past ttl + jitter: the list is stale
            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(caller)
            assert len(fake.node_requests()) == 2


async def test_callers_of_a_failed_cold_fetch_all_get_its_error(autojump_clock: Any) -> None:
    fake = Fake()
    fake.latency = 0.5
    fake.broken = {"n1": "refuse", "n2": "refuse"}
    errors: list[Exception] = []
    with trio.fail_after(60):
        async with aclient(fake, watch=False) as client:

            async def caller() -> None:
                try:
                    await client.instances("api")
                except NoNodeAvailable as exc:
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(caller)
    assert len(errors) == 20
    assert len(fake.node_requests()) == 2  # one fetch: each node tried once
    assert "n1: ConnectError" in str(errors[0])
    assert "n2: ConnectError" in str(errors[0])


# Node fail-over.


@pytest.mark.parametrize("failure", ["refuse", 503, 429, "garbage"])
async def test_a_failing_node_is_skipped_and_the_answering_one_remembered(
    autojump_clock: Any, failure: Any
) -> None:
    fake = Fake()
    with trio.fail_after(60):
        async with aclient(fake, watch=False, ttl=1) as client:
            bad = host(client)
            fake.broken[bad] = failure
            assert len(await client.instances("api")) == 2
            good = host(client)
            assert good != bad
            assert [r.url.host for r in fake.node_requests()] == [bad, good]
            await trio.sleep(2)
            await client.instances("api")
            assert [r.url.host for r in fake.node_requests()][-1] == good
            assert len(fake.node_requests()) == 3
            assert client.stats["node_failures"] == 1


async def test_a_first_discovery_asks_past_a_node_still_joining_the_cluster(
    autojump_clock: Any,
) -> None:
    fake = Fake()
    with trio.fail_after(60):
        async with aclient(fake, watch=False) as client:
            joining = host(client)
            fake.joining.add(joining)
            assert len(await client.instances("api")) == 2
            assert host(client) != joining
            assert client.stats["joining_answers"] == 1


async def test_when_every_node_is_joining_their_answer_is_taken(autojump_clock: Any) -> None:
    fake = Fake()
    fake.joining = {"n1", "n2"}
    with trio.fail_after(60):
        async with aclient(fake, watch=False) as client:
            assert await client.instances("api") == []
    assert len(fake.node_requests()) == 2


async def test_a_refusal_is_not_retried_on_other_nodes(autojump_clock: Any) -> None:
    fake = Fake()
    fake.broken = {"n1": 400, "n2": 400}
    with trio.fail_after(60):
        async with aclient(fake) as client:
            with pytest.raises(RegistryError, match="400: status 400"):
                await client.instances("api")
    assert len(fake.node_requests()) == 1


async def test_when_every_node_fails_the_last_good_list_is_served(autojump_clock: Any) -> None:
    fake = Fake()
    with trio.fail_after(60):
        async with aclient(fake, watch=False, ttl=1, node_backoff_max=5) as client:
            first = await client.instances("api")
            fake.broken = {"n1": "refuse", "n2": "refuse"}
            await trio.sleep(2)
            assert await client.instances("api") == first
            asked = len(fake.node_requests())
            await trio.sleep(1)
            assert await client.instances("api") == first
            assert len(fake.node_requests()) == asked  # held: no request per call
            fake.broken = {}
            fake.instances = fake.instances[:1]
            await trio.sleep(5)
            assert len(await client.instances("api")) == 1


async def test_the_token_goes_to_nodes_and_never_to_instances(autojump_clock: Any) -> None:
    fake = Fake()
    client = AsyncRegistryClient(
        NODES,
        token="s3cret",
        settings=ClientSettings(watch=False),
        transport=httpx.MockTransport(fake.async_handler),
    )
    with trio.fail_after(60):
        async with client:
            await client.request("api", "GET", "/x")
    [ask] = fake.node_requests()
    assert ask.headers["Authorization"] == "Bearer s3cret"
    assert [r for r in fake.requests if "Authorization" in r.headers] == [ask]


# Requests to instances: retries and ejection.


async def test_a_refused_connection_is_retried_once_on_another_instance(
    autojump_clock: Any,
) -> None:
    fake = Fake(ports=(9001, 9002, 9003))
    fake.broken["127.0.0.1:9002"] = "refuse"
    with trio.fail_after(60):
        async with aclient(fake, strategy="round_robin") as client:
            answered: Counter[str] = Counter()
            for _ in range(12):
                before = client.stats.get("retries", 0)
                response = await client.request("api", "GET", "/hello")
                assert client.stats.get("retries", 0) - before <= 1
                answered[response.text] += 1
            assert client.stats["instance_failures"] == 3
            assert client.stats["retries"] == 3
            assert client.ejected() == {("api", "api-9002")}
            assert answered.keys() == {"127.0.0.1:9001", "127.0.0.1:9003"}
            assert all(load == {} or sum(load.values()) == 1 for load in fake.seen_load)
            assert client.outstanding() == {}


@pytest.mark.parametrize(
    ("method", "failure", "attempts"),
    [
        ("POST", "refuse", 2),  # never sent: safe to send elsewhere
        ("POST", "timeout", 1),  # may have run: never twice
        ("GET", "timeout", 2),  # idempotent: safe
        ("put", "timeout", 2),
    ],
)
async def test_retries_follow_idempotency(
    autojump_clock: Any, method: str, failure: str, attempts: int
) -> None:
    fake = Fake()
    fake.broken = {"127.0.0.1:9001": failure, "127.0.0.1:9002": failure}
    with trio.fail_after(60):
        async with aclient(fake) as client:
            with pytest.raises(CallFailed) as caught:
                await client.request("api", method, "/op", json={"x": 1})
    assert len(caught.value.attempts) == attempts
    assert isinstance(caught.value.__cause__, httpx.TransportError)
    sent = [r for r in fake.requests if r.url.path == "/op"]
    assert len(sent) == attempts
    assert json.loads(sent[-1].content) == {"x": 1}


async def test_5xx_answers_count_toward_ejection_but_are_returned(autojump_clock: Any) -> None:
    fake = Fake(ports=(9001,))
    fake.broken["127.0.0.1:9001"] = 503
    with trio.fail_after(60):
        async with aclient(fake, eject_after=2) as client:
            assert (await client.request("api", "GET", "/")).status_code == 503
            assert (await client.request("api", "GET", "/")).status_code == 503
            assert client.ejected() == {("api", "api-9001")}
            # Panic threshold: the only instance is still used.
            assert (await client.pick("api")).port == 9001


async def test_an_empty_service_raises_no_instance(autojump_clock: Any) -> None:
    fake = Fake(ports=())
    with trio.fail_after(60):
        async with aclient(fake) as client:
            with pytest.raises(NoInstanceAvailable, match="api"):
                await client.pick("api")


# Blocking queries.


async def test_a_change_reaches_watchers_through_one_blocking_query(autojump_clock: Any) -> None:
    fake = Fake()
    with trio.fail_after(120):
        async with aclient(fake) as client:
            seen: list[list[list[int]]] = [[], []]

            async def follow(mine: list[list[int]]) -> None:
                async with aclosing(client.watch("api")) as updates:
                    async for instances in updates:
                        mine.append([i.port for i in instances])
                        if len(mine) == 2:
                            return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow, seen[0])
                nursery.start_soon(follow, seen[1])
                await client.instances("api")
                await trio.sleep(100)  # three 30 s waits expire unchanged meanwhile
                fake.change([instance(9001), instance(9003)], index=11)
            assert seen == [[[9001, 9002], [9001, 9003]]] * 2
            blocking = fake.node_requests(index="10")
            assert blocking
            assert all(r.url.params["wait"] == "30s" for r in blocking)
            assert 3 <= len(blocking) <= 5  # one watcher for two followers and the caller
            assert [i.port for i in await client.instances("api")] == [9001, 9003]


async def test_an_index_going_backwards_is_reset_to_zero(autojump_clock: Any) -> None:
    fake = Fake()
    with trio.fail_after(60):
        async with aclient(fake) as client:
            await client.instances("api")
            await trio.testing.wait_all_tasks_blocked()
            fake.change(fake.instances, index=3)  # a restarted node, say
            await trio.sleep(1)
            assert fake.node_requests(index="0")


async def test_after_a_fail_over_the_other_node_is_not_asked_to_block_on_an_index_it_never_gave(
    autojump_clock: Any,
) -> None:
    fake = Fake()
    with trio.fail_after(60):
        async with aclient(fake) as client:
            await client.instances("api")
            await trio.testing.wait_all_tasks_blocked()
            first = host(client)
            fake.broken[first] = "refuse"
            fake.change([instance(9003)], index=11)  # the held query ends, and its node is gone
            await trio.sleep(1)
            other = [r for r in fake.node_requests() if r.url.host != first]
            assert [r.url.params.get("index") for r in other] == [None, "11"]
            assert [i.port for i in await client.instances("api")] == [9003]


async def test_a_node_that_does_not_block_is_not_hammered(autojump_clock: Any) -> None:
    fake = Fake()
    fake.blocks = False
    with trio.fail_after(600):
        async with aclient(fake, wait=30) as client:
            await client.instances("api")
            await trio.sleep(300)
            assert client.stats["quick_returns"] >= 3
            # Backing off doubles up to the 30 s wait: about a dozen queries in 5 minutes.
            assert len(fake.node_requests()) < 25


async def test_without_an_index_header_the_watcher_polls_at_the_ttl(autojump_clock: Any) -> None:
    fake = Fake()
    fake.index = None
    with trio.fail_after(600):
        async with aclient(fake, ttl=10, ttl_jitter=0.1) as client:
            await client.instances("api")
            await trio.sleep(100)
            polls = fake.node_requests()
            assert 9 <= len(polls) <= 11
            assert all("index" not in r.url.params for r in polls)


async def test_a_node_refusing_index_turns_the_watch_to_polling(autojump_clock: Any) -> None:
    fake = Fake()
    with trio.fail_after(600):
        async with aclient(fake, ttl=10, ttl_jitter=0) as client:
            await client.instances("api")
            fake.broken = {"n1": 400, "n2": 400}  # answered when the 30 s wait ends
            await trio.sleep(35)
            fake.broken = {}
            await trio.sleep(10)
            # The cold fetch, the refused blocking query, a poll one TTL later, whose
            # index header resumes blocking.
            cold, refused, poll, resumed = fake.node_requests()
            assert "index" not in cold.url.params
            assert "index" not in poll.url.params
            assert refused.url.params["index"] == resumed.url.params["index"] == "10"
            assert client.stats["node_requests"] == 3  # the resumed query is still held


async def test_the_async_client_must_be_entered_to_watch() -> None:
    fake = Fake()
    client = aclient(fake)
    with trio.fail_after(5), pytest.raises(RuntimeError, match="async with"):
        await client.instances("api")


# The blocking client runs the same plans.


def test_blocking_client_fails_over_retries_and_ejects() -> None:
    fake = Fake(ports=(9001, 9002, 9003))
    with sclient(fake, eject_after=1, retry_backoff=0.001, node_backoff=0.001) as client:
        fake.broken[host(client)] = "refuse"
        fake.broken["127.0.0.1:9001"] = "refuse"
        answers = {client.request("api", "GET", "/").text for _ in range(6)}
        assert answers == {"127.0.0.1:9002", "127.0.0.1:9003"}
        assert client.ejected() == {("api", "api-9001")}
        assert client.stats["retries"] == 1
        assert client.stats["node_failures"] == 1
        assert client.pick("api").port != 9001


def test_blocking_client_watch_yields_each_change() -> None:
    fake = Fake()
    fake.blocks = False  # the sync fake answers at once
    with sclient(fake, min_block=0.001) as client:
        watch = client.watch("api")
        assert [i.port for i in next(watch)] == [9001, 9002]
        fake.instances, fake.index = [instance(9009)], 11
        assert [i.port for i in next(watch)] == [9009]
        assert fake.node_requests(index="10")
        watch.close()


def test_blocking_callers_in_many_threads_share_one_fetch() -> None:
    fake = Fake()
    release = threading.Event()
    answer = fake.sync_handler

    def slow(request: httpx.Request) -> httpx.Response:
        assert release.wait(10), "never released"
        return answer(request)

    results: list[int] = []
    with connect(RegistryClient, slow, fake) as client:
        threads = [
            threading.Thread(target=lambda: results.append(len(client.instances("api"))))
            for _ in range(20)
        ]
        for thread in threads:
            thread.start()
        eventually(  # all but the fetching thread wait
            lambda: client.stats.get("shared_fetches", 0) >= 19, detail=lambda: str(client.stats)
        )
        release.set()
        for thread in threads:
            thread.join(10)
        assert results == [2] * 20
        assert len(fake.node_requests()) == 1


def test_bad_settings_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="strategy"):
        RegistryClient(NODES, strategies={"api": "nope"})
    with pytest.raises(ValueError, match="attempts"):
        ClientSettings(attempts=0)
    with pytest.raises(ValueError, match="ttl"):
        ClientSettings(ttl=0)
