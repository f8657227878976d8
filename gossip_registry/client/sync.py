"""The blocking client, for code that does not run trio: ``with RegistryClient(nodes) as client``.

Theory of operation: the same plans as the trio client, run with
``httpx.Client`` and ``time.sleep``. One client may be shared by threads:
the plans' bookkeeping runs under a lock, and the requests themselves
outside it. Concurrent callers of a cold or expired query share one fetch.

Freshness is by TTL plus jitter: there is no background thread, so a
cached list is refetched by the first caller after it expired. A caller
that wants changes pushed iterates ``watch(name)`` (blocking queries, in
its own thread).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import httpx

from gossip_registry.client.balancers import Strategy
from gossip_registry.client.base import ClientBase
from gossip_registry.client.cache import CachedList, WatchState
from gossip_registry.client.core import ClientSettings
from gossip_registry.client.errors import ClientError
from gossip_registry.client.instance import Instance, ServiceQuery
from gossip_registry.client.plans import Pause, Plan, call, refresh, watch_step

__all__ = ["RegistryClient"]

T = TypeVar("T")


@dataclass(slots=True)
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    error: ClientError | None = None


class RegistryClient(ClientBase):
    """Discovery, load balancing and fail-over as blocking calls. See ``ClientBase`` for
    arguments; ``transport`` replaces httpx's network transport (``httpx.MockTransport``)."""

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        token: str | None = None,
        strategy: Strategy | str | None = None,
        strategies: Mapping[str, Strategy | str] | None = None,
        settings: ClientSettings | None = None,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            nodes,
            token=token,
            strategy=strategy,
            strategies=strategies,
            settings=settings,
            rng=rng,
            clock=time.monotonic,
        )
        self._http = httpx.Client(transport=transport, trust_env=False)
        self._lock = threading.Lock()
        self._flights: dict[ServiceQuery, _Flight] = {}

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pools; idempotent."""
        self._http.close()

    # ------------------------------------------------------------ public API

    def instances(self, name: str, tag: str | None = None, passing: bool = True) -> list[Instance]:
        """As ``AsyncRegistryClient.instances``, refreshed by TTL."""
        return self._cached(ServiceQuery.of(name, tag, passing)).instances

    def pick(self, name: str, tag: str | None = None) -> Instance:
        """As ``AsyncRegistryClient.pick``."""
        instances = self.instances(name, tag)
        with self._lock:
            return self._core.pick(name, instances)

    def request(
        self, name: str, method: str, path: str, *, tag: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """As ``AsyncRegistryClient.request``; ``kwargs`` go to ``httpx.Client.request``."""
        instances = self.instances(name, tag)
        return self._run(call(self._core, name, instances, method, path, kwargs))

    def watch(
        self, name: str, tag: str | None = None, passing: bool = True
    ) -> Iterator[list[Instance]]:
        """Yield the instance list now, then again each time it changes (blocking queries;
        TTL polling against a node without them). Runs in the caller's thread."""
        query = ServiceQuery.of(name, tag, passing)
        cached = self._cached(query)
        state = WatchState(cached.index)
        seen = -1
        while True:
            if cached.version != seen:
                seen = cached.version
                yield cached.instances
            self._run(watch_step(self._core, query, state))

    # ------------------------------------------------------------ machinery

    def _run(self, plan: Plan[T]) -> T:
        """Carry out a plan's actions until it returns; plan steps hold the lock, I/O does not."""
        outcome: httpx.Response | httpx.TransportError | None = None
        with closing(plan):
            while True:
                try:
                    with self._lock:
                        action = plan.send(outcome)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                if isinstance(action, Pause):
                    time.sleep(action.seconds)
                    outcome = None
                    continue
                try:
                    outcome = self._http.request(action.method, action.url, **action.kwargs)
                except httpx.TransportError as exc:
                    outcome = exc

    def _cached(self, query: ServiceQuery) -> CachedList:
        """The query's cached list, fetched first if missing or expired (single flight)."""
        core = self._core
        while True:
            with self._lock:
                cached = core.cache.get(query)
                if cached is not None and core.cache.fresh(query, core.clock()):
                    return cached
                flight = self._flights.get(query)
                leading = flight is None
                if flight is None:
                    flight = self._flights[query] = _Flight()
            if not leading:
                flight.done.wait()
                if flight.error is not None:
                    raise flight.error
                continue
            try:
                return self._run(refresh(core, query))
            except ClientError as exc:
                flight.error = exc
                raise
            finally:
                with self._lock:
                    del self._flights[query]
                flight.done.set()
