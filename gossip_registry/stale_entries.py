"""Self-preservation in the running node: what it is fed, when it ends, what readers see.

Theory of operation: ``registry/preservation.py`` decides, purely, whether a
burst of deaths is doubted and which entries are kept. This module is its
trio side, owned by the ``Node``:

- fed by the node's notifications: an entry written or deleted, a member
  dead (only a death of an alive or suspect member counts, not a leave nor
  old news) or back from the dead;
- evaluated once per batch of effects, after the batch, so a burst of
  deaths arriving in one packet is judged as one burst;
- ended at its deadline by a task sleeping in a cancel scope, even if no
  member changes meanwhile (``run``);
- merged into what readers get (``instances``, ``counts``), and every
  change of what is shown stale wakes the watchers of the services
  concerned and of the catalog (``watch.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from gossip_registry.core.effects import EntryChanged, MemberChanged
from gossip_registry.core.members import MemberTable
from gossip_registry.core.messages import ACTIVE_STATES, MemberState
from gossip_registry.registry.entry import Entry, EntryKey
from gossip_registry.registry.preservation import Preservation, PreservationConfig
from gossip_registry.watch import CATALOG, ChangeIndex

__all__ = ["StaleEntries"]

logger = logging.getLogger("gossip_registry")


class StaleEntries:
    """The entries self-preservation keeps, served stale, and the watchers they wake."""

    def __init__(self, config: PreservationConfig, index: ChangeIndex) -> None:
        self._preservation = Preservation(config)
        self._index = index
        self._sleep: trio.CancelScope | None = None
        self._dirty = False

    # ------------------------------------------------------------ reading

    def instances(self, live: list[Entry], service: str) -> list[Entry]:
        """``live`` (the table's instances of ``service``) with the stale ones, by id."""
        stale = self._preservation.stale(service)
        if not stale:
            return live
        return sorted([*live, *stale], key=lambda e: e.instance_id)

    def counts(self, live: dict[str, int]) -> dict[str, int]:
        """``live`` (service -> live instances) with the stale instances added."""
        for service, stale in self._preservation.stale_counts().items():
            live[service] = live.get(service, 0) + stale
        return live

    def is_stale(self, entry: Entry) -> bool:
        return self._preservation.is_stale(entry)

    def keys(self) -> set[EntryKey]:
        return {e.key for e in self._preservation.stale_entries()}

    def status(self) -> dict[str, Any]:
        """``Preservation.status`` with ``since`` on the wall clock, for people and other nodes."""
        state = self._preservation.status(trio.current_time())
        since = state["since"]
        if since is not None:  # monotonic -> wall clock seconds
            state["since"] = time.time() - (trio.current_time() - since)
        return state

    # ------------------------------------------------------------ feeding

    def entry_changed(self, event: EntryChanged) -> None:
        if event.new is not None:
            self._preservation.entry_replaced(event.new)
        elif event.old is not None:
            self._preservation.entry_removed(event.old)

    def member_changed(self, event: MemberChanged) -> None:
        """Deaths (not leaves, not old news) and returns; judged at ``settle``."""
        if event.state is MemberState.DEAD:
            if event.previous in ACTIVE_STATES:
                self._preservation.member_died(trio.current_time(), event.name)
                self._dirty = True
        elif event.previous is MemberState.DEAD:
            self._woken(self._preservation.member_returned(event.name))
            self._dirty = True

    def settle(self, members: MemberTable) -> None:
        """After a batch of effects: judge the deaths and returns it brought, if any."""
        if self._dirty:
            self._dirty = False
            self._evaluate(members)

    async def run(self, members: MemberTable) -> None:
        """Ends a preservation at its deadline even if no member changes meanwhile."""
        while True:
            with trio.CancelScope(deadline=self._preservation.deadline) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
            self._evaluate(members)

    def _evaluate(self, members: MemberTable) -> None:
        was_active = self._preservation.active
        changed = self._preservation.evaluate(trio.current_time(), members.active_count)
        self._woken(changed)
        if self._preservation.active != was_active:
            logger.warning(
                "self-preservation %s: %s",
                "started" if self._preservation.active else "ended",
                self.status(),
            )
        if self._sleep is not None:
            self._sleep.deadline = self._preservation.deadline

    def _woken(self, entries: list[Entry]) -> None:
        """Wake the watchers of services whose stale instances appeared or went."""
        if entries:
            self._index.changed([CATALOG, *(e.service for e in entries)])
