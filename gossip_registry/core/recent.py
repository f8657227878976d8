"""Updates recently settled, by their exact bytes: repeats are recognised before decoding.

Theory of operation: gossip delivers every update to every node about
``retransmit_limit(N)`` times, plus the originator's direct copy, and
decoding a registry entry (type and range checks, building it, hashing its
digest) is most of what a node spends on a packet. Identical bytes are an
identical update, so ``Swim`` keeps the decoded form of each entry update
its delegate settled, keyed by the update's bytes, and hands a repeat over
without decoding it again (``swim.py``, ``protocol.py``: what "settled"
means and why a repeat is still checked against the table).

Bounds: at most ``max_items`` updates and ``max_bytes`` bytes of them; the
oldest are forgotten first (first in, first out: a repeat does not renew
one, so a peer that keeps resending something cannot pin it). Both add and
get are O(1). Keys are whole bytes, never a short hash of them, so no
crafted collision can pass one update off as another; a hostile peer can
at most flush the set with a stream of fresh updates, which only costs
the decoding that the set would have saved.

This module may know nothing of sockets, time or randomness.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["RecentUpdates"]

_V = TypeVar("_V")


class RecentUpdates(Generic[_V]):
    """A bounded first-in-first-out map from an update's bytes to what it decoded to."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("the bounds of RecentUpdates must be positive")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.nbytes = 0
        """Bytes of the keys held (the decoded values are not counted)."""
        self._held: OrderedDict[bytes, _V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def get(self, data: bytes) -> _V | None:
        return self._held.get(data)

    def add(self, data: bytes, value: _V) -> None:
        """Remember ``data`` as ``value``, forgetting the oldest beyond the bounds.

        An update larger than the whole byte budget is not kept; one already
        held keeps its value and its place.
        """
        size = len(data)
        if size > self.max_bytes or data in self._held:
            return
        held = self._held
        while held and (len(held) >= self.max_items or self.nbytes + size > self.max_bytes):
            old, _ = held.popitem(last=False)
            self.nbytes -= len(old)
        held[data] = value
        self.nbytes += size
