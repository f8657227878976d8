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
objects per freeze, and freezes happen only as the table grows by a tenth.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

FREEZE_STEP = 10_000
"""Growth of the table (stored versions) that triggers a freeze, at least; and a tenth."""


def _collect_young_and_freeze() -> None:
    gc.collect(1)
    gc.freeze()


class TableHeap:
    """Freezes the heap each time the table has grown by ``FREEZE_STEP`` and a tenth since.

    Args:
        freeze: what a freeze does (``gc.collect(1)`` then ``gc.freeze()``); tests count it.
    """

    def __init__(self, freeze: Callable[[], None] = _collect_young_and_freeze) -> None:
        self._freeze = freeze
        self._frozen_at = 0
        self.freezes = 0

    def table_size(self, size: int) -> None:
        """The table now stores ``size`` versions; O(1), called after each batch of effects."""
        if size < self._frozen_at:
            self._frozen_at = size  # it shrank: growth is counted again from here
        elif size - self._frozen_at >= max(FREEZE_STEP, self._frozen_at // 10):
            self._freeze()
            self._frozen_at = size
            self.freezes += 1
