"""The client's view of each service: cached lists, their expiry, and blocking-query state.

Rules: pure; ``now`` and the random generator come from the caller.

Two ways to stay fresh. With watching, a blocking query per cached query
holds the list current and the list never expires (``WatchState`` keeps
the index and applies Consul's rules). Without it, a list expires after
``ttl`` plus up to ``jitter`` x ``ttl`` (random per refresh, so clients
started together spread their refreshes instead of polling in step).

Whatever happens to the nodes, the last good list is kept and served:
like Eureka's client cache, stale instances beat no instances, and the
callers' own failures (and ejection) deal with instances that are gone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gossip_registry.client.instance import Instance, ServiceQuery

__all__ = ["CachedList", "ServiceCache", "WatchState"]


@dataclass(slots=True)
class CachedList:
    instances: list[Instance]
    index: int | None
    """The node's ``X-Registry-Index`` for this list; None from a node without blocking queries."""
    expires: float
    node: str | None = None
    """The node that gave ``index``: indexes are per node, meaningless to another."""
    version: int = 0
    """Bumped on every change, for ``watch`` iterators."""


class ServiceCache:
    def __init__(self, ttl: float, jitter: float, rng: random.Random) -> None:
        if ttl <= 0 or jitter < 0:
            raise ValueError("cache: ttl must be > 0 and jitter >= 0")
        self.ttl = ttl
        self.jitter = jitter
        self._rng = rng
        self._lists: dict[ServiceQuery, CachedList] = {}

    def get(self, query: ServiceQuery) -> CachedList | None:
        return self._lists.get(query)

    def fresh(self, query: ServiceQuery, now: float) -> bool:
        cached = self._lists.get(query)
        return cached is not None and cached.expires > now

    def ttl_delay(self) -> float:
        return self.ttl * (1 + self._rng.uniform(0, self.jitter))

    def next_expiry(self, now: float) -> float:
        return now + self.ttl_delay()

    def store(
        self,
        query: ServiceQuery,
        instances: list[Instance],
        index: int | None,
        now: float,
        node: str | None = None,
    ) -> CachedList:
        """Keep a fetched list; its version moves only if the list itself changed."""
        cached = self._lists.get(query)
        if cached is None:
            cached = CachedList(instances, index, self.next_expiry(now), node)
            self._lists[query] = cached
            return cached
        if cached.instances != instances:
            cached.version += 1
        cached.instances, cached.index, cached.node = instances, index, node
        cached.expires = self.next_expiry(now)
        return cached

    def hold(self, query: ServiceQuery, now: float, delay: float) -> None:
        """After a failed refresh: serve the old list ``delay`` longer before trying again."""
        cached = self._lists.get(query)
        if cached is not None:
            cached.expires = now + delay


@dataclass(slots=True)
class WatchState:
    """Where one blocking-query loop stands (Consul's client rules, per query).

    ``index`` None means the node sent no ``X-Registry-Index`` (a node
    without blocking queries): the loop polls with the TTL instead.
    ``node`` is the node that gave the index: each node counts its own, so
    only that node is asked to block on it (another node answers at once,
    and its index starts the next round).
    """

    index: int | None
    node: str | None = None
    quick_repeats: int = 0

    def observe(self, index: int | None, node: str, elapsed: float, min_block: float) -> int:
        """Fold in one answer from ``node``; returns how many quick unchanged answers
        came in a row.

        An index that went backwards (the node restarted) resets to 0, so
        the next query returns at once with the whole list rather than
        blocking on a number the node will not reach for a while. An answer
        with the same index that came back faster than ``min_block`` seconds
        is a node not really blocking: the caller backs off by the returned
        count, so a loop never spins.
        """
        previous = self.index if node == self.node else None
        self.node = node
        if index is None or (previous is not None and index < previous):
            self.index = None if index is None else 0
            self.quick_repeats = 0
            return 0
        self.index = index
        if index == previous and elapsed < min_block:
            self.quick_repeats += 1
        else:
            self.quick_repeats = 0
        return self.quick_repeats
