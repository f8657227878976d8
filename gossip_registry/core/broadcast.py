"""Transmit-limited broadcast queue (memberlist ``queue.go``, SWIM section 4.1).

Updates ride on outgoing packets ("piggybacking") until each has been sent
``retransmit_limit(N)`` times, which spreads it to every member with high
probability in O(log N) rounds. Order: the lower rank first (membership news
before registry news, as memberlist sends its own broadcasts before its
delegate's: a refutation must not wait behind thousands of fresh
registrations, or the suspicion becomes a death); then fewest transmissions,
so fresh news goes out before old; among equals the larger first (they are
harder to fit later), then the newest. A newer update about the same subject
(a member name, a registry key) replaces the queued one: nobody needs the
old news.

The queue stores encoded bytes, so a packet is filled to an exact byte budget
without re-encoding. It is bounded: beyond ``limit`` items the most-sent of
the highest rank are dropped (anti-entropy repairs whatever that loses), the
oldest of equals first.

Cost: O(log n) per push, take and drop, also at and beyond the limit
(memberlist keeps a B-tree ordered by transmits for the same reason). Two
binary heaps, one in send order and one in drop order, hold every version of
an item; a version stays in them after it is sent, replaced or dropped and is
skipped when it surfaces (lazy deletion). When stale versions outnumber live
items both heaps are rebuilt, which is O(n) once per n pushes: amortised O(1).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import NamedTuple


class _Queued(NamedTuple):
    serial: int
    transmits: int
    data: bytes
    rank: int


class BroadcastQueue:
    """Send heap of (rank, transmits, -size, -serial, subject) and drop heap of
    (-rank, -transmits, serial, subject); a heap entry is current only while
    ``_items[subject]`` still has its serial (lazy invalidation)."""

    __slots__ = ("_drops", "_heap", "_items", "_serial", "limit")

    def __init__(self, limit: int) -> None:
        self._heap: list[tuple[int, int, int, int, Hashable]] = []
        self._drops: list[tuple[int, int, int, Hashable]] = []
        self._items: dict[Hashable, _Queued] = {}
        self.limit = limit
        """Most items kept; a push beyond it drops the most-sent (the owner may change it)."""
        self._serial = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, subject: Hashable, data: bytes, *, rank: int = 0) -> int:
        """Queue ``data`` about ``subject``, replacing anything queued about it; a lower
        ``rank`` goes out first.

        Returns:
            How many items were dropped to stay within ``limit``.
        """
        self._push(subject, data, 0, rank)
        dropped = 0
        while len(self._items) > self.limit:
            self._drop_most_sent()
            dropped += 1
        return dropped

    def take(self, budget: int, limit: int, most: int = 1024) -> list[bytes]:
        """Up to ``budget`` bytes and ``most`` updates; each counts one transmission.

        Args:
            budget: bytes available in the packet for update bodies.
            limit: current retransmit limit; items sent that often are dropped.
            most: cap on the number of updates (a packet holds at most 1024).
        """
        chosen: list[tuple[Hashable, _Queued]] = []
        skipped: list[tuple[int, int, int, int, Hashable]] = []
        heap, items = self._heap, self._items
        while heap and budget > 0 and len(skipped) < 16 and len(chosen) < most:
            head = heapq.heappop(heap)
            subject = head[4]
            queued = items.get(subject)
            if queued is None or queued.serial != -head[3]:
                continue
            if queued.transmits >= limit:
                del items[subject]
                continue
            if len(queued.data) > budget:
                skipped.append(head)
                continue
            budget -= len(queued.data)
            chosen.append((subject, queued))
        for head in skipped:
            heapq.heappush(heap, head)
        out: list[bytes] = []
        for subject, queued in chosen:
            out.append(queued.data)
            if queued.transmits + 1 < limit:
                self._push(subject, queued.data, queued.transmits + 1, queued.rank)
            else:
                del items[subject]
        return out

    def _push(self, subject: Hashable, data: bytes, transmits: int, rank: int) -> None:
        self._serial += 1
        self._items[subject] = _Queued(self._serial, transmits, data, rank)
        heapq.heappush(self._heap, (rank, transmits, -len(data), -self._serial, subject))
        heapq.heappush(self._drops, (-rank, -transmits, self._serial, subject))
        if len(self._heap) + len(self._drops) > 4 * len(self._items) + 128:
            self._compact()

    def _drop_most_sent(self) -> None:
        drops, items = self._drops, self._items
        while drops:
            _, _, serial, subject = heapq.heappop(drops)
            queued = items.get(subject)
            if queued is not None and queued.serial == serial:
                del items[subject]
                return

    def _compact(self) -> None:
        """Rebuild both heaps from the live items, shedding stale versions."""
        items = self._items.items()
        self._heap = [(q.rank, q.transmits, -len(q.data), -q.serial, s) for s, q in items]
        heapq.heapify(self._heap)
        self._drops = [(-q.rank, -q.transmits, q.serial, s) for s, q in items]
        heapq.heapify(self._drops)
