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
objects per freeze, and freezes happen only as the table takes in a tenth of
its size in new versions (at least ``FREEZE_STEP``).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

FREEZE_STEP = 10_000
"""Versions stored since the last freeze that trigger the next: at least this, and a tenth
of the table."""


def _collect_young_and_freeze() -> None:
    gc.collect(1)
    gc.freeze()


class TableHeap:
    """Freezes the heap each time the table has stored ``FREEZE_STEP`` and a tenth more versions.

    Versions stored, not size: a replaced entry is a new object the last
    freeze did not cover (a refutation's re-assertion, a fence and the
    re-merge after it, churn), so a table of constant size can still pile up
    unfrozen entries for every full collection to walk (77 ms over 100,000
    replaced ones).

    Args:
        freeze: what a freeze does (``gc.collect(1)`` then ``gc.freeze()``); tests count it.
    """

    def __init__(self, freeze: Callable[[], None] = _collect_young_and_freeze) -> None:
        self._freeze = freeze
        self._stored_at = 0
        self.freezes = 0

    def table_changed(self, size: int, stored: int) -> None:
        """The table holds ``size`` versions and has stored ``stored`` since it was made; O(1),
        called after each batch of effects."""
        if stored - self._stored_at >= max(FREEZE_STEP, size // 10):
            self._freeze()
            self._stored_at = stored
            self.freezes += 1
