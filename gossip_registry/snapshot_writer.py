"""When a running node writes its snapshot: soon after a change of its own, rarely otherwise.

Theory of operation: ``snapshot.py`` knows the file; this module knows when
to write it. A change to our own entries or to our incarnation wakes the
writer task (``entries_changed``, ``effects_applied``); a change only to the
member list waits for the slow periodic write, since a stale member list
only costs a few more seeds to try. Writes are at most one per
``SNAPSHOT_MIN_INTERVAL`` (a burst of registrations costs one write), run
in a worker thread, and are skipped when the snapshot equals the last one
written. A failed write is logged and retried at the next change: the node
keeps serving.

The first write happens as soon as the writer starts, so the file holds
this life's incarnation before anything else; ``save_last`` is the bounded
write of the node's ``finally``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from gossip_registry.core.messages import ACTIVE_STATES
from gossip_registry.core.protocol import Protocol
from gossip_registry.health import CheckRunner
from gossip_registry.snapshot import Snapshot, write_snapshot

__all__ = [
    "SNAPSHOT_MEMBERS_INTERVAL",
    "SNAPSHOT_MIN_INTERVAL",
    "SNAPSHOT_SHUTDOWN_TIMEOUT",
    "SnapshotWriter",
]

logger = logging.getLogger("gossip_registry")

SNAPSHOT_MIN_INTERVAL = 1.0
"""Seconds between snapshot writes at most: a burst of registrations costs one write."""
SNAPSHOT_MEMBERS_INTERVAL = 30.0
"""Seconds between snapshot writes when only the member list may have changed."""
SNAPSHOT_SHUTDOWN_TIMEOUT = 5.0
"""Bound on the last write at shutdown, so a hung disk cannot keep the node alive."""


class SnapshotWriter:
    """Writes one node's snapshot into ``data_dir`` while the node runs, and once at the end.

    Changes reported before ``start`` are ignored: the first write, at
    ``start``, covers them.
    """

    def __init__(self, data_dir: Path, name: str, protocol: Protocol, checks: CheckRunner) -> None:
        self._data_dir = data_dir
        self._name = name
        self._protocol = protocol
        self._checks = checks
        self._wanted: trio.Event | None = None
        self._incarnation: int | None = None
        self._written: Snapshot | None = None

    def start(self, nursery: trio.Nursery) -> None:
        """Write at once, then whenever asked, in a task of ``nursery``."""
        self._wanted = trio.Event()
        self._wanted.set()
        nursery.start_soon(self._loop)

    def entries_changed(self) -> None:
        """One of our own entries changed: write soon."""
        if self._wanted is not None:
            self._wanted.set()

    def effects_applied(self) -> None:
        """Write soon if our incarnation moved since the last write (we refuted a suspicion)."""
        if self._wanted is not None and self._protocol.incarnation != self._incarnation:
            self._wanted.set()

    async def save_last(self) -> None:
        """The write at shutdown: shielded from the cancellation stopping the node, but bounded."""
        with trio.CancelScope(shield=True), trio.move_on_after(SNAPSHOT_SHUTDOWN_TIMEOUT):
            await self._save(abandon_on_cancel=True)

    def _snapshot(self) -> Snapshot:
        protocol = self._protocol
        members = sorted(
            (r.name, r.addr[0], r.addr[1])
            for r in protocol.members
            if r.name != self._name and r.state in ACTIVE_STATES
        )
        return Snapshot(
            self._name,
            protocol.incarnation,
            tuple(members),
            tuple(protocol.own_entries()),
            tuple(sorted(self._checks.specs().items())),
        )

    async def _save(self, *, abandon_on_cancel: bool = False) -> None:
        """Write the snapshot in a worker thread unless it is unchanged; errors are logged."""
        snapshot = self._snapshot()
        self._incarnation = snapshot.incarnation
        if snapshot == self._written:
            return
        try:
            await trio.to_thread.run_sync(
                write_snapshot, self._data_dir, snapshot, abandon_on_cancel=abandon_on_cancel
            )
        except OSError as exc:
            logger.error("could not write the snapshot in %s: %s", self._data_dir, exc)
            return
        self._written = snapshot

    async def _loop(self) -> None:
        """Write when our entries or incarnation change (at most every SNAPSHOT_MIN_INTERVAL)
        and every SNAPSHOT_MEMBERS_INTERVAL for the member list."""
        while True:
            with trio.move_on_after(SNAPSHOT_MEMBERS_INTERVAL):
                assert self._wanted is not None
                await self._wanted.wait()
            self._wanted = trio.Event()
            await self._save()
            await trio.sleep(SNAPSHOT_MIN_INTERVAL)
