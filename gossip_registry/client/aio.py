"""The trio client: ``async with AsyncRegistryClient(nodes) as client``.

Theory of operation: the client owns a nursery for its watchers and one
``httpx.AsyncClient`` (connection pools to nodes and instances). A query
with nothing cached is fetched once for all its concurrent callers
(``plans.cached_list``). With ``settings.watch`` (the default) the query
then gets one watcher task, whatever the number of callers, which keeps
the list fresh through blocking queries; without it, a list is refetched
when its TTL (plus jitter) has run out.

Environment proxies are ignored (``trust_env=False``): nodes and instances
are inside the cluster's network, never behind an internet proxy.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, closing
from types import TracebackType
from typing import Any, TypeVar

import httpx
import trio

from gossip_registry.client.base import ClientBase
from gossip_registry.client.cache import CachedList, WatchState
from gossip_registry.client.instance import Instance, ServiceQuery, parse_instances
from gossip_registry.client.plans import (
    Fetched,
    Pause,
    Plan,
    Send,
    Steps,
    View,
    ask_view,
    cached_list,
    call,
    watch_round,
    watch_step,
)
from gossip_registry.client.views import MEMBERS, SERVICES, Member, parse_members, parse_services
from gossip_registry.runtime.owned_nursery import close_owned_nursery

__all__ = ["AsyncRegistryClient"]

T = TypeVar("T")


class AsyncRegistryClient(ClientBase[httpx.AsyncBaseTransport]):
    """Discovery, load balancing and fail-over for trio code; arguments as ``ClientBase``."""

    def _connect(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = httpx.AsyncClient(transport=transport, trust_env=False)
        self._watched: set[ServiceQuery] = set()
        self._changed: dict[ServiceQuery, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: Any = None

    def _now(self) -> float:
        return trio.current_time()

    async def __aenter__(self) -> AsyncRegistryClient:
        manager = trio.open_nursery()
        self._nursery = await manager.__aenter__()
        self._nursery_manager = manager
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        nursery, manager = self._nursery, self._nursery_manager
        assert nursery is not None, "__aexit__ without __aenter__"
        self._nursery = self._nursery_manager = None
        try:
            return await close_owned_nursery(nursery, manager, exc_type, exc, tb)  # the watchers
        finally:
            with trio.CancelScope(shield=True):
                await self._http.aclose()

    # ------------------------------------------------------------ public API

    async def instances(
        self, name: str, tag: str | None = None, passing: bool = True
    ) -> list[Instance]:
        """The instances of ``name`` (with ``tag``; only passing ones unless ``passing=False``).

        Served from the cache; a cold cache costs one fetch shared by every
        concurrent caller. When no node answers, the last good list is served.

        Raises:
            NoNodeAvailable: no node answered and nothing was cached yet.
            RegistryError: a node refused the query (bad name or tag).
        """
        query = ServiceQuery.of(name, tag, passing)
        cached = await self._cached(query)
        if self._core.settings.watch:
            self._watch_in_background(query, cached)
        return list(cached.instances)  # a copy: the caller may sort or filter it

    async def pick(self, name: str, tag: str | None = None) -> Instance:
        """One passing instance of ``name``, chosen by the service's strategy among those
        not ejected.

        Raises:
            NoInstanceAvailable: none is registered and passing.
            NoNodeAvailable, RegistryError: as for ``instances``.
        """
        return self._core.pick(name, await self.instances(name, tag))

    async def request(
        self, name: str, method: str, path: str, *, tag: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send an HTTP request to an instance of ``name``, with fail-over (``plans.call``
        says what is retried). ``kwargs`` go to ``httpx.AsyncClient.request``.

        Raises:
            CallFailed: no instance could be reached within the allowed attempts.
            NoInstanceAvailable, NoNodeAvailable, RegistryError: as for ``pick``.
        """
        instances = await self.instances(name, tag)
        return await self._run(call(self._core, name, instances, method, path, kwargs))

    async def watch(
        self, name: str, tag: str | None = None, passing: bool = True, *, shared: bool = True
    ) -> AsyncGenerator[list[Instance], None]:
        """Yield the instance list now, then again each time it changes.

        Changes while the consumer is busy fold into the next list. Every
        iterator of a query shares its one watcher, which keeps the cached
        list fresh for the client's lifetime; with ``shared=False`` the
        iterator runs blocking queries of its own that end when it is closed
        (for views followed for a while, as ``render`` does). Use it under
        ``contextlib.aclosing`` so that leaving the loop early closes it.
        """
        query = ServiceQuery.of(name, tag, passing)
        if not shared:
            async with aclosing(self._follow(query, parse_instances)) as lists:
                async for instances in lists:
                    yield instances
            return
        cached = await self._cached(query)
        self._watch_in_background(query, cached)
        seen = -1
        while True:
            if cached.version != seen:
                seen = cached.version
                yield list(cached.instances)
                continue
            await self._changed.setdefault(query, trio.Event()).wait()

    def watch_services(self) -> AsyncGenerator[dict[str, int], None]:
        """Yield service name -> live instances now, then again each time it changes.

        Unlike ``watch``, each iterator runs its own blocking queries (nothing
        is cached). Use it under ``contextlib.aclosing``.

        Raises:
            NoNodeAvailable: no node answered the first query (later failures
                are retried: the iterator then waits for the next answer).
            RegistryError: a node refused the first query (a bad token).
        """
        return self._follow(SERVICES, parse_services)

    def watch_members(self) -> AsyncGenerator[list[Member], None]:
        """Yield the cluster's members now, then again each time the list changes;
        as ``watch_services``."""
        return self._follow(MEMBERS, parse_members)

    # ------------------------------------------------------------ machinery

    async def _follow(self, view: View, parse: Callable[[Any], T]) -> AsyncGenerator[T, None]:
        first = await self._run(ask_view(self._core, view, parse))
        yield first.value
        last, state = first.value, WatchState(first.index, first.node)
        while True:
            answers: list[Fetched[T]] = []
            await self._run(watch_round(self._core, view, parse, state, answers.append))
            if answers and answers[-1].value != last:
                last = answers[-1].value
                yield last

    async def _run(self, plan: Plan[T]) -> T:
        """Carry out a plan's actions until it returns."""
        steps = Steps(plan)
        with closing(steps.actions()) as actions:
            for action in actions:
                if isinstance(action, Send):
                    try:
                        steps.outcome = await self._http.request(
                            action.method, action.url, **action.kwargs
                        )
                    except httpx.TransportError as exc:
                        steps.outcome = exc
                elif isinstance(action, Pause):
                    await trio.sleep(action.seconds)
                else:
                    await action.event.wait()
        return steps.result

    async def _cached(self, query: ServiceQuery) -> CachedList:
        if self._nursery is None:
            raise RuntimeError(
                "AsyncRegistryClient: use it as `async with AsyncRegistryClient(...)`"
            )
        cached = await self._run(
            cached_list(self._core, query, self._flights, trio.Event, self._watched)
        )
        self._wake(query)
        return cached

    def _watch_in_background(self, query: ServiceQuery, cached: CachedList) -> None:
        if query in self._watched or self._nursery is None:
            return
        self._watched.add(query)
        self._nursery.start_soon(self._watch_loop, query, WatchState(cached.index, cached.node))

    async def _watch_loop(self, query: ServiceQuery, state: WatchState) -> None:
        while True:
            await self._run(watch_step(self._core, query, state))
            self._wake(query)

    def _wake(self, query: ServiceQuery) -> None:
        """Wake ``watch`` iterators of ``query``; they compare versions, so waking is cheap."""
        event = self._changed.pop(query, None)
        if event is not None:
            event.set()
