"""Self-preservation: when too many members die at once, doubt it and keep their entries.

Theory of operation: SWIM declares a member dead when this node, and the
few peers it asked, could not reach it. When a large share of the cluster
is declared dead within a short window, the likelier story is that *we*
were cut off (a partition, a saturated link, our own pause) rather than
that all of them failed together. Dropping all their instances would then
turn a network fault into an outage for every caller asking this node.
So this node enters self-preservation: the entries removed because their
owner died are kept and served, flagged stale, until

- the view recovers: enough of those members come back (or leave
  gracefully) that the share still dead is no longer above the threshold;
  or
- ``max_duration`` passes: a mass failure that lasts is believed in the
  end, so stale entries cannot outlive a real disaster forever (Eureka's
  self-preservation, by contrast, stays on until renewals recover).

On exit every kept entry is dropped: their owners are still dead, and
the ones that came back have re-asserted their entries by then. A kept
entry is dropped as soon as a live version of its key arrives, or its
owner is seen alive again or leaving.

The share is (members declared dead within ``window`` and still dead) /
(members active now + those). Only a death counts: a graceful leave is
not a failure, nor a dead member learnt of for the first time (a joining
node adopts old tombstones). A single death is always believed, whatever
the cluster size, so that a three-node cluster losing one node behaves
normally.

Pure: the node feeds it member transitions, removed entries and ``now``
(monotonic seconds), and asks it what to show. Every method that can
change what is shown returns the entries whose visibility changed, so the
node can wake the watchers of their services.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gossip_registry.registry.entry import Entry, EntryKey
from gossip_registry.registry.schema import FieldError

__all__ = ["MIN_DEATHS", "Preservation", "PreservationConfig"]

MIN_DEATHS = 2
"""Deaths in the window needed before the share matters: one death is always believed."""


@dataclass(frozen=True, slots=True)
class PreservationConfig:
    """When self-preservation starts and how long it may last.

    ``threshold``: the share of the cluster (0 < t <= 1) that must be
    declared dead within ``window`` to start it; 1.0 disables it (a share
    can never exceed 1). The default 0.3 is well above what independent
    failures produce in 30 s (in a healthy cluster SWIM declares deaths one
    at a time, minutes apart) and below the share a minority side of a
    partition sees (over 0.5), so a node cut off from most of the cluster
    always preserves, and a third of a cluster dying at once is treated as
    the likely network fault it usually is.

    ``window``: seconds over which deaths are counted, 1 s to 1 h. Longer
    windows catch slow-rolling partitions but also add up unrelated deaths.

    ``max_duration``: seconds after which a preservation ends by itself and
    the dead are believed, 1 s to 1 day. Stale entries served longer than
    that would send callers to instances that are really gone.

    Raises:
        ValueError: a value out of range, naming the field.
    """

    threshold: float = 0.3
    window: float = 30.0
    max_duration: float = 900.0

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, int | float) and 0 < self.threshold <= 1):
            raise FieldError(f"must be a share in (0, 1], got {self.threshold!r}", "threshold")
        for name, low, high in (("window", 1.0, 3600.0), ("max_duration", 1.0, 86400.0)):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and low <= value <= high):
                raise FieldError(f"must be {low:g}..{high:g} seconds, got {value!r}", name)


class Preservation:
    """The self-preservation state machine of one node (see the module docstring)."""

    def __init__(self, config: PreservationConfig) -> None:
        self.config = config
        self.since: float | None = None
        """When the current preservation started (monotonic seconds); None when inactive."""
        self._deaths: dict[str, float] = {}
        """Members declared dead, still dead, with the time of death: the window's content."""
        self._base = 0
        """The cluster's size when the preservation started: the share's denominator."""
        self._kept: dict[str, dict[EntryKey, Entry]] = {}
        """Entries removed because their owner died, by owner (shown only while active)."""
        self._by_service: dict[str, dict[EntryKey, Entry]] = {}

    @property
    def active(self) -> bool:
        return self.since is not None

    @property
    def deadline(self) -> float:
        """When ``evaluate`` must run next even if nothing happens (inf: never)."""
        return math.inf if self.since is None else self.since + self.config.max_duration

    # ---------------------------------------------------------------- input

    def member_died(self, now: float, name: str) -> None:
        """``name`` went from alive or suspect to dead. Call ``evaluate`` after the batch."""
        self._deaths[name] = now

    def member_returned(self, name: str) -> list[Entry]:
        """``name`` is no longer dead (alive again, suspect, or left): drop what we kept of it.

        Returns:
            The entries that were shown stale and no longer are.
        """
        self._deaths.pop(name, None)
        dropped = self._drop(self._kept.pop(name, {}).values())
        return dropped if self.active else []

    def entry_removed(self, entry: Entry) -> bool:
        """A live entry left the table. Kept if its owner is among the dead.

        Returns:
            True if it is now shown stale (the preservation is active).
        """
        if entry.owner not in self._deaths:
            return False
        self._kept.setdefault(entry.owner, {})[entry.key] = entry
        self._by_service.setdefault(entry.service, {})[entry.key] = entry
        return self.active

    def entry_replaced(self, entry: Entry) -> None:
        """A live version of ``entry.key`` arrived: it supersedes any kept copy."""
        stale = self._by_service.get(entry.service, {}).get(entry.key)
        if stale is None:
            return
        self._drop([stale])
        kept = self._kept.get(stale.owner)
        if kept is not None:
            kept.pop(stale.key, None)
            if not kept:
                del self._kept[stale.owner]

    def evaluate(self, now: float, active_members: int) -> list[Entry]:
        """Start or end a preservation after a batch of changes (or at ``deadline``).

        Args:
            now: monotonic seconds.
            active_members: members alive or suspect now, ourselves included.

        Returns:
            The entries whose stale flag appeared or disappeared.
        """
        if self.since is not None:
            if now >= self.deadline or not self._over_threshold(self._base):
                return self._end()
            return []
        horizon = now - self.config.window
        for name in [n for n, at in self._deaths.items() if at < horizon]:
            del self._deaths[name]
            self._drop(self._kept.pop(name, {}).values())
        base = active_members + len(self._deaths)
        if self._over_threshold(base):
            self.since = now
            self._base = base
            return self.stale_entries()
        return []

    # --------------------------------------------------------------- output

    def stale(self, service: str) -> list[Entry]:
        """The kept instances of ``service`` shown stale now (none when inactive)."""
        if self.since is None:
            return []
        return list(self._by_service.get(service, {}).values())

    def stale_entries(self) -> list[Entry]:
        """Every entry shown stale now."""
        if self.since is None:
            return []
        return [e for kept in self._kept.values() for e in kept.values()]

    def stale_counts(self) -> dict[str, int]:
        """Service -> number of stale instances shown now."""
        if self.since is None:
            return {}
        return {service: len(kept) for service, kept in self._by_service.items()}

    def is_stale(self, entry: Entry) -> bool:
        """True if ``entry`` is shown only because self-preservation kept it."""
        if self.since is None:
            return False
        return self._by_service.get(entry.service, {}).get(entry.key) == entry

    def status(self, now: float) -> dict[str, Any]:
        """active, since (monotonic or None), dead_in_window, threshold, window, max_duration."""
        horizon = now - self.config.window
        dead = (
            len(self._deaths)
            if self.since is not None
            else sum(1 for at in self._deaths.values() if at >= horizon)
        )
        return {
            "active": self.since is not None,
            "since": self.since,
            "dead_in_window": dead,
            "threshold": self.config.threshold,
            "window": self.config.window,
            "max_duration": self.config.max_duration,
        }

    # ------------------------------------------------------------- internal

    def _over_threshold(self, base: int) -> bool:
        dead = len(self._deaths)
        return dead >= MIN_DEATHS and base > 0 and dead / base > self.config.threshold

    def _end(self) -> list[Entry]:
        shown = self.stale_entries()
        self.since = None
        self._base = 0
        self._deaths.clear()
        self._kept.clear()
        self._by_service.clear()
        return shown

    def _drop(self, entries: Iterable[Entry]) -> list[Entry]:
        dropped = []
        for entry in entries:
            by_service = self._by_service.get(entry.service)
            # Compare: a later owner's kept version of the same key is not ours to drop.
            if by_service is not None and by_service.get(entry.key) == entry:
                del by_service[entry.key]
                dropped.append(entry)
                if not by_service:
                    del self._by_service[entry.service]
        return dropped
