"""The blocking client, for code that does not run trio: ``with RegistryClient(nodes) as client``.

Theory of operation: the same plans as the trio client, run with
``httpx.Client`` and ``time.sleep``. One client may be shared by threads:
plan steps run under a lock, and the requests and waits outside it.
Concurrent callers of a cold or expired query share one fetch.

Freshness is by TTL plus jitter: there is no background thread, so a
cached list is refetched by the first caller after it expired. A caller
that wants changes pushed iterates ``watch(name)`` (blocking queries, in
its own thread).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from contextlib import closing
from types import TracebackType
from typing import Any, TypeVar

import httpx

from gossip_registry.client.base import ClientBase
from gossip_registry.client.cache import CachedList, WatchState
from gossip_registry.client.instance import Instance, ServiceQuery
from gossip_registry.client.plans import Pause, Plan, Send, Steps, cached_list, call, watch_step

__all__ = ["RegistryClient"]

T = TypeVar("T")


class RegistryClient(ClientBase[httpx.BaseTransport]):
    """Discovery, load balancing and fail-over as blocking calls; arguments as ``ClientBase``.

    The methods behave as ``AsyncRegistryClient``'s, except for freshness (see the module).
    """

    def _connect(self, transport: httpx.BaseTransport | None) -> None:
        self._http = httpx.Client(transport=transport, trust_env=False)
        self._lock = threading.Lock()

    def _now(self) -> float:
        return time.monotonic()

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

    def instances(self, name: str, tag: str | None = None, passing: bool = True) -> list[Instance]:
        return list(self._cached(ServiceQuery.of(name, tag, passing)).instances)

    def pick(self, name: str, tag: str | None = None) -> Instance:
        instances = self.instances(name, tag)
        with self._lock:
            return self._core.pick(name, instances)

    def request(
        self, name: str, method: str, path: str, *, tag: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        instances = self.instances(name, tag)
        return self._run(call(self._core, name, instances, method, path, kwargs))

    def watch(
        self, name: str, tag: str | None = None, passing: bool = True
    ) -> Generator[list[Instance], None, None]:
        """Yield the list now, then again each time it changes; runs in the caller's thread."""
        query = ServiceQuery.of(name, tag, passing)
        cached = self._cached(query)
        state = WatchState(cached.index, cached.node)
        seen = -1
        while True:
            if cached.version != seen:
                seen = cached.version
                yield list(cached.instances)
            self._run(watch_step(self._core, query, state))

    def _run(self, plan: Plan[T]) -> T:
        """Carry out a plan's actions until it returns; plan steps hold the lock, I/O does not."""
        steps = Steps(plan, self._lock)
        with closing(steps.actions()) as actions:
            for action in actions:
                if isinstance(action, Send):
                    try:
                        steps.outcome = self._http.request(
                            action.method, action.url, **action.kwargs
                        )
                    except httpx.TransportError as exc:
                        steps.outcome = exc
                elif isinstance(action, Pause):
                    time.sleep(action.seconds)
                else:
                    action.event.wait()
        return steps.result

    def _cached(self, query: ServiceQuery) -> CachedList:
        return self._run(cached_list(self._core, query, self._flights, threading.Event))
