"""Renderings of discovery answers, reused while the answer is unchanged.

Theory of operation: ``Node.discover`` is cheap (the table keeps each
service's sorted list), but turning its 100 entries into JSON or DNS
records costs a hundred times more. Entries are immutable and the table
replaces the object on every change, so an answer made of the very same
Entry objects, in the same order, renders the same: the cache compares
identities (no version counter or change hook needed from the node) and
renders again only when something changed. A ``version`` (the service's
change index) covers what the entries alone do not show, such as an
instance turning stale; it is compared, not part of the key, so a query
keeps one rendering however often its service changes. Keys come from
client input, so the cache is bounded: past ``max_size`` keys it starts
over.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from gossip_registry.registry.entry import Entry

__all__ = ["IndexedCache", "ViewCache"]

_T = TypeVar("_T")


class ViewCache(Generic[_T]):
    """``build(entries)`` per key, rebuilt when the entries under the key change."""

    def __init__(self, build: Callable[[list[Entry]], _T], *, max_size: int = 1024) -> None:
        self._build = build
        self._max_size = max_size
        self._views: dict[Hashable, tuple[int, list[Entry], _T]] = {}

    def get(self, key: Hashable, entries: list[Entry], version: int = 0) -> _T:
        cached = self._views.get(key)
        if (
            cached is not None
            and cached[0] == version
            and len(cached[1]) == len(entries)
            and all(map(operator.is_, cached[1], entries))
        ):
            return cached[2]
        if cached is None and len(self._views) >= self._max_size:
            self._views.clear()
        view = self._build(entries)
        self._views[key] = (version, entries, view)
        return view


class IndexedCache(Generic[_T]):
    """``build()`` per key, rebuilt when the key's index moves: for answers that visit every
    entry (the Consul catalog, Prometheus targets), whose view index says when they change.
    Bounded like ``ViewCache``: past ``max_size`` keys it starts over."""

    def __init__(self, *, max_size: int = 64) -> None:
        self._max_size = max_size
        self._views: dict[Hashable, tuple[int, _T]] = {}

    def get(self, key: Hashable, index: int, build: Callable[[], _T]) -> _T:
        cached = self._views.get(key)
        if cached is not None and cached[0] == index:
            return cached[1]
        if cached is None and len(self._views) >= self._max_size:
            self._views.clear()
        view = build()
        self._views[key] = (index, view)
        return view
