"""Change indexes and blocking waits: what watches and blocking queries are built on.

Theory of operation: one node-wide counter starts at 1 and goes up by one
on every change this node sees (an entry, a member, a stale flag). Each
*view* (one service's instances, the catalog of services, the member list)
remembers the counter's value at its last change: its index. A client that
read a view at index N asks "wake me when this view's index passes N", so a
change to service A never wakes the watchers of service B (the scaling
failure of one global index, Consul #1244).

Indexes are per node and per life: they start at 1 whenever the node starts
and mean nothing on another node. A client that sees an index go backwards
(another node answered, or this one restarted) must reset to 0, as Consul
asks of its clients; and an index above anything this node has handed out
is answered at once rather than held, so such a client resynchronises
without waiting out its whole timeout.

A view whose service is gone is forgotten (``forget``): peers decide which
service names exist, and one cycling through names would otherwise grow the
map by one index per name forever (issue 10). A forgotten view reads as the
*floor*, the highest index any forgotten view had, so no view's index ever
goes back; a view that never changed reads as the floor too (1 until a view
is forgotten).

Waiters sleep on one ``trio.Event`` per view, swapped for a fresh one when
the view changes: waking N waiters costs one ``set`` and no per-waiter
bookkeeping, so ten thousand of them on one view are cheap. ``max_waiters``
bounds how many may sleep at once: each holds a task (and, over HTTP, a
connection), and refusing the next one with a clear error beats running
out of file descriptors.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable

import trio

__all__ = ["CATALOG", "ENTRIES", "MEMBERS", "ChangeIndex", "TooManyWaiters"]

CATALOG: Hashable = ("catalog",)
"""The view of which services exist and how many instances each has (``/v1/services``)."""
ENTRIES: Hashable = ("entries",)
"""The view of every instance of every service: any change to any of them (the
Consul-compatible API's catalog and health-state reads, which show tags and checks)."""
MEMBERS: Hashable = ("members",)
"""The view of the member list (``/v1/members``)."""


class TooManyWaiters(RuntimeError):
    """A blocking wait was refused: ``max_waiters`` are already waiting on this node.

    The HTTP API answers it with 429; the caller should retry later or
    poll instead.
    """


class ChangeIndex:
    """The node-wide change counter, the index of each view, and the waiters on them.

    Views are any hashable key: a service name (a ``str``), ``CATALOG`` or
    ``MEMBERS``. A view that never changed, or was forgotten, has the floor
    index (1 until a view is forgotten).

    Args:
        max_waiters: the most concurrent ``wait`` calls; the next one raises
            ``TooManyWaiters``.

    Raises:
        ValueError: ``max_waiters`` is not a positive integer.
    """

    def __init__(self, max_waiters: int) -> None:
        if type(max_waiters) is not int or max_waiters < 1:
            raise ValueError(f"max_waiters: must be a positive integer, got {max_waiters!r}")
        self.max_waiters = max_waiters
        self.current = 1
        """The node-wide index: the highest any view can have."""
        self.waiters = 0
        """Waits in progress now (watches and blocking queries)."""
        self._views: dict[Hashable, int] = {}
        self._events: dict[Hashable, trio.Event] = {}
        self._floor = 1
        self._closed = False

    @property
    def views(self) -> int:
        """Views with an index of their own (the rest read as the floor)."""
        return len(self._views)

    def of(self, view: Hashable) -> int:
        """The index of ``view``'s last change (the floor if it never changed or was forgotten)."""
        return self._views.get(view, self._floor)

    def forget(self, view: Hashable) -> None:
        """Drop ``view``'s own index (its service is gone), unless someone waits on it.

        The floor rises to its index, so reading it later never goes back.
        """
        if view in self._events:
            return
        index = self._views.pop(view, None)
        if index is not None and index > self._floor:
            self._floor = index

    def changed(self, views: Iterable[Hashable]) -> None:
        """Record one change touching ``views`` and wake their waiters (once each)."""
        touched = set(views)
        if not touched:
            return
        self.current += 1
        for view in touched:
            self._views[view] = self.current
            event = self._events.pop(view, None)
            if event is not None:
                event.set()

    async def wait(self, view: Hashable, index: int, timeout: float = math.inf) -> int:
        """Wait until ``view``'s index differs from ``index``, or ``timeout`` seconds pass.

        Returns at once when the view is already past ``index`` or when
        ``index`` is one this node never handed out for it (above its
        current index: another node's or an earlier life's). Returns early,
        too, when the index is closed (the node stops). The return value is
        the view's index then, which the caller hands back next time.

        Raises:
            TooManyWaiters: ``max_waiters`` waits are already in progress.
        """
        current = self.of(view)
        if current != index or self._closed or timeout <= 0:
            return current
        if self.waiters >= self.max_waiters:
            raise TooManyWaiters(
                f"{self.waiters} blocking waits already in progress on this node "
                f"(max_waiters {self.max_waiters}); retry later"
            )
        self.waiters += 1
        try:
            event = self._events.get(view)
            if event is None:
                event = self._events[view] = trio.Event()
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            self.waiters -= 1
        return self.of(view)

    def close(self) -> None:
        """Wake every waiter and make later waits return at once (the node is stopping)."""
        self._closed = True
        for event in self._events.values():
            event.set()
        self._events.clear()
