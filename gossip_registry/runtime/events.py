"""The node's event stream: member, entry and check changes, for monitors.

Theory of operation: the node turns each ``Notify`` of the core into an
``Event`` (``describe``) and publishes it on its ``EventBus``; each subscriber
has a bounded queue of its own. Publishing never blocks and never fails: a
subscriber that falls behind loses its oldest events and is told how many by
a ``dropped`` marker, ahead of the events it still gets (Serf's event
handlers block the agent instead; a monitor must never slow the protocol).
Events are built only while someone subscribes.

Kinds:

- ``member``: ``joined`` (new, or back after dead/left), ``alive`` (a
  suspicion refuted, or a new incarnation), ``suspect``, ``dead``, ``left``.
- ``entry``: ``registered``, ``updated``, ``deregistered`` (a tombstone),
  ``removed`` (its owner died or left, or restarted without it: a fence).
- ``check``: the entry's only change is its health status or check output;
  the event is the new status.
- ``dropped``: the marker, with ``count``.

An entry re-asserted under a new version with the same content (the owner
refuted a suspicion) is not an event: nothing a monitor shows changed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from gossip_registry.core.effects import EntryChanged, MemberChanged
from gossip_registry.core.messages import MemberState
from gossip_registry.registry.entry import Entry

__all__ = [
    "DEFAULT_CAPACITY",
    "KINDS",
    "Event",
    "EventBus",
    "Subscription",
    "describe",
    "parse_kinds",
]

KINDS = ("member", "entry", "check")
"""What a subscriber can ask for; ``dropped`` markers reach every subscriber."""
DEFAULT_CAPACITY = 1024
"""Events queued per subscriber before the oldest are dropped (Serf's EventBuffer is 512)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One change, as monitors see it. ``time`` is wall-clock seconds since the epoch."""

    time: float
    kind: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"time": round(self.time, 3), "kind": self.kind, "event": self.event, **self.fields}


def parse_kinds(text: str | None) -> frozenset[str]:
    """``member,entry`` to a set of kinds; None or empty means all.

    Raises:
        ValueError: an unknown kind (the message lists the known ones).
    """
    if not text:
        return frozenset(KINDS)
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = sorted(kinds - set(KINDS))
    if unknown or not kinds:
        what = f"unknown {', '.join(unknown)}" if unknown else "none given"
        raise ValueError(f"kind: {what} (known: {', '.join(KINDS)})")
    return kinds


def _member_event(change: MemberChanged) -> str:
    state, previous = change.state, change.previous
    if state is MemberState.ALIVE:
        gone = previous is None or previous in (MemberState.DEAD, MemberState.LEFT)
        return "joined" if gone else "alive"
    return state.label


def _entry_fields(entry: Entry) -> dict[str, Any]:
    return {
        "service": entry.service,
        "id": entry.instance_id,
        "address": entry.address,
        "port": entry.port,
        "node": entry.owner,
        "status": str(entry.status),
    }


def _same_but_health(old: Entry, new: Entry) -> bool:
    """True when only the version or the health (status, output, each check's verdict) differs.

    The same checks means the same ids and kinds in the same order; their verdicts may differ.
    """
    same_checks = [(c.check_id, c.kind) for c in old.checks] == [
        (c.check_id, c.kind) for c in new.checks
    ]
    checks = new.checks if same_checks else old.checks
    health = replace(old, status=new.status, output=new.output, checks=checks)
    return replace(health, owner_incarnation=new.owner_incarnation, stamp=new.stamp) == new


def describe(change: MemberChanged | EntryChanged, now: float) -> Event | None:
    """The event for one core notification; None when nothing visible changed."""
    if isinstance(change, MemberChanged):
        return Event(
            now,
            "member",
            _member_event(change),
            {
                "name": change.name,
                "address": change.addr[0],
                "port": change.addr[1],
                "incarnation": change.incarnation,
                "previous": change.previous.label if change.previous is not None else None,
            },
        )
    old, new = change.old, change.new
    if new is None:
        assert old is not None
        return Event(
            now, "entry", "removed" if change.fenced else "deregistered", _entry_fields(old)
        )
    if old is None:
        return Event(now, "entry", "registered", _entry_fields(new))
    if not _same_but_health(old, new):
        return Event(now, "entry", "updated", _entry_fields(new))
    if old.status is new.status and old.output == new.output:
        return None
    health = {"previous": str(old.status), "output": new.output}
    return Event(now, "check", str(new.status), _entry_fields(new) | health)


class Subscription:
    """One subscriber's bounded queue; iterate it with ``async for``.

    Iteration yields ``Event``s in publication order, a ``dropped`` marker
    first whenever events were lost since the last one yielded, and ends
    when the bus closes (the node stopped).
    """

    def __init__(self, kinds: Iterable[str], capacity: int) -> None:
        self.kinds = frozenset(kinds)
        self.dropped = 0
        """Events lost since the last marker."""
        self._queue: deque[Event] = deque(maxlen=capacity)
        self._wake = trio.Event()
        self._closed = False

    def offer(self, event: Event) -> bool:
        """Queue ``event`` if wanted; the oldest goes when full. True if one was dropped."""
        if event.kind not in self.kinds:
            return False
        full = len(self._queue) == self._queue.maxlen
        if full:
            self.dropped += 1
        self._queue.append(event)
        self._wake.set()
        return full

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        batch = await self.take(1)
        if not batch:
            raise StopAsyncIteration
        return batch[0]

    async def take(self, limit: int) -> list[Event]:
        """Wait for news, then return up to ``limit`` events at once; [] once the bus closed.

        A reader that writes each event out (the HTTP stream) pays per write,
        not per byte: taking what queued up while it wrote keeps its cost
        per event falling as the rate rises, instead of one wake-up and one
        send per event.
        """
        while not self._queue and not self.dropped:
            if self._closed:
                return []
            self._wake = trio.Event()
            await self._wake.wait()
        batch: list[Event] = []
        if self.dropped:
            count, self.dropped = self.dropped, 0
            batch.append(Event(time.time(), "dropped", "dropped", {"count": count}))
        while self._queue and len(batch) < limit:
            batch.append(self._queue.popleft())
        return batch


class EventBus:
    """Fan-out of the node's events to any number of bounded subscribers."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be at least 1, got {capacity}")
        self.capacity = capacity
        self.dropped_total = 0
        """Events dropped over all subscribers (a metric)."""
        self._subscribers: set[Subscription] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber that wants its kind. Never blocks."""
        for subscription in self._subscribers:
            self.dropped_total += subscription.offer(event)

    def notify(self, change: MemberChanged | EntryChanged) -> None:
        """Publish the event for a core notification, if anyone listens and it shows."""
        if self._subscribers:
            event = describe(change, time.time())
            if event is not None:
                self.publish(event)

    @asynccontextmanager
    async def subscribe(
        self, kinds: Iterable[str] = KINDS, capacity: int | None = None
    ) -> AsyncIterator[Subscription]:
        """``async with bus.subscribe({"member"}) as events: async for event in events: ...``

        Events published after entering are delivered; leaving unsubscribes.
        On a closed bus the iteration ends at once.
        """
        subscription = Subscription(kinds, capacity or self.capacity)
        if self._closed:
            subscription.close()
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    def close(self) -> None:
        """End every subscriber's iteration (after what it has queued); idempotent."""
        self._closed = True
        for subscription in self._subscribers:
            subscription.close()
