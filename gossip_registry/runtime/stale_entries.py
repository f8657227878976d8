"""Self-preservation in the running node: what readers see, and whom a change wakes.

Theory of operation: ``registry/preservation.py`` decides, purely, whether a
burst of deaths is doubted and which entries are kept, and the protocol core
runs it (``core/protocol.py``: fed by its own member and entry changes,
judged once per batch, ended at its deadline by a core timer), so the
simulator runs the very same policy. This module is the node's reading side:

- merged into what readers get (``instances``, ``counts``), from the core's
  ``Preservation``;
- every ``StaleChanged`` the core sends wakes the watchers of the services
  concerned and of the catalog (``runtime/watch.py``), and a start or an end is
  logged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from gossip_registry.core.effects import StaleChanged
from gossip_registry.registry.entry import Entry, EntryKey
from gossip_registry.registry.preservation import Preservation, PreservationConfig
from gossip_registry.runtime.watch import CATALOG, ENTRIES, ChangeIndex

__all__ = ["StaleEntries"]

logger = logging.getLogger("gossip_registry")


class StaleEntries:
    """The entries self-preservation keeps, served stale, and the watchers they wake.

    Until ``attach`` gives it the core's ``Preservation`` it serves nothing stale.
    """

    def __init__(self, config: PreservationConfig, index: ChangeIndex) -> None:
        self._preservation = Preservation(config)
        self._index = index
        self._logged_active = False

    def attach(self, preservation: Preservation) -> None:
        """Serve what the core's self-preservation keeps (once the core exists)."""
        self._preservation = preservation

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

    # ------------------------------------------------------------ changes

    def changed(self, event: StaleChanged) -> None:
        """The core changed what is served stale: wake the watchers, log a start or an end."""
        if event.entries:
            self._index.changed([CATALOG, ENTRIES, *(e.service for e in event.entries)])
        if event.active != self._logged_active:
            self._logged_active = event.active
            logger.warning(
                "self-preservation %s: %s",
                "started" if event.active else "ended",
                self.status(),
            )
