"""Keeps a large replicated table out of the cyclic garbage collector's full passes.

Every node holds the whole registry: 100,000 instances are about half a
million Python objects that live as long as the node. CPython's cyclic
collector walks every tracked object on each full (oldest-generation)
collection, and one such pass over a table that size took 100-400 ms on the
benchmark machine: the longest event-loop stalls of a node merging a large
push-pull were collections, not merging (issue 15). ``gc.freeze()`` moves
every object tracked so far into a permanent generation that collections
skip; reference counting still frees them (entries form no cycles), so a
replaced or deleted entry still goes away.

The price: a reference cycle that is alive when it is frozen and dies later
is never collected. The young generations are collected just before each
freeze, so only cycles older than that and still alive are affected: a few
objects per freeze, and freezes happen only once per ``FREEZE_STEP`` versions
taken in (at 200 writes a second, one every 50 s).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

FREEZE_STEP = 10_000
"""Versions taken in (stored, or queued for merging) since the last freeze that trigger the next.

It bounds what a full collection walks between freezes: 10,000 entries are
about 50,000 tracked objects, a few tens of milliseconds. (A tenth of the
table, tried first, left 25,000 at 250,000 entries, and a whole table
replaced since its freeze cost 1.5-2 s steps on the benchmark machine.)"""


def _collect_young_and_freeze() -> None:
    gc.collect(1)
    gc.freeze()


class TableHeap:
    """Freezes the heap each time the node has taken in ``FREEZE_STEP`` more versions.

    Versions stored, not size: a replaced entry is a new object the last
    freeze did not cover (a refutation's re-assertion, a fence and the
    re-merge after it, churn), so a table of constant size can still pile up
    unfrozen entries for every full collection to walk (77 ms over 100,000
    replaced ones). Entries a push-pull queued for merging count too
    (``Protocol.versions_taken_in``): they live until their chunk's turn, and
    those that lose are never stored (25,000-68,000 of them, walked by every
    full collection, made 60-130 ms steps at 100,000).

    Args:
        freeze: what a freeze does (``gc.collect(1)`` then ``gc.freeze()``); tests count it.
    """

    def __init__(self, freeze: Callable[[], None] = _collect_young_and_freeze) -> None:
        self._freeze = freeze
        self._stored_at = 0
        self.freezes = 0

    def table_changed(self, stored: int) -> None:
        """The node has taken in ``stored`` versions since it started
        (``Protocol.versions_taken_in``); O(1), called after each batch of effects."""
        if stored - self._stored_at >= FREEZE_STEP:
            self._freeze()
            self._stored_at = stored
            self.freezes += 1
