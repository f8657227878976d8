"""Acknowledged writes on disk before the acknowledgement: group commit of the journal.

Theory of operation: ``runtime/storage/journal.py`` knows the files; this module is the one
task that writes them while the node runs. The node applies a registration
or deregistration to its core, then awaits ``commit(record, undo)``: the
record joins the batch being gathered, and the writer task appends the
whole batch in one write and one fsync in a worker thread (group commit:
the writes that arrive while an fsync runs share the next one), then wakes
every waiter. Only then does the node answer, so a crash can never fall
between an acknowledgement and the disk.

Check *status* changes and member-list changes are not journaled: statuses
are re-derived by running the checks after a restart, and a stale member
list only costs a few more seeds to try. They reach disk with the next
compaction, which folds the journal into a new snapshot (``journal.compact``)
when the journal has grown past a size proportional to the snapshot (so its
cost per write stays O(1) amortised), every ``COMPACT_INTERVAL`` seconds
if something lazy changed, at start (the file must hold this life's
incarnation before anything is acknowledged) and at shutdown. An
incarnation rise is journaled as a record of its own, without waiting.

When an append fails (EIO, ENOSPC ...), what is on disk is unknown. Every
write applied since the last durable one, in this batch and in the batches
gathered behind it, is undone in the core in reverse order (their
``undo`` callbacks write back the previous version, which gossips like any
write), their callers get ``DurabilityError`` naming the cause, and no
record is appended again until a compaction has rewritten the snapshot from
the node's state (then equal to the last durable one). Reads never wait on
any of this.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from gossip_registry.core.effects import IncarnationChanged
from gossip_registry.core.messages import ACTIVE_STATES
from gossip_registry.core.protocol import Protocol
from gossip_registry.runtime.checks import CheckRunner
from gossip_registry.runtime.storage.journal import (
    IncarnationRaised,
    JournalFile,
    Record,
    compact,
    encode_records,
)
from gossip_registry.runtime.storage.snapshot import Snapshot

__all__ = [
    "COMPACT_INTERVAL",
    "SHUTDOWN_TIMEOUT",
    "DurabilityError",
    "DurableStore",
]

logger = logging.getLogger("gossip_registry")

COMPACT_INTERVAL = 30.0
"""Seconds between compactions when only lazy state (statuses, members) changed."""
COMPACT_MIN_BYTES = 4 * 1024 * 1024
"""A journal is folded into the snapshot once it is this long and twice the snapshot's size."""
ENTRY_BYTES_ESTIMATE = 300
"""Rough size of one entry in a snapshot, for the snapshot size above."""
RETRY_INTERVAL = 1.0
"""Seconds between compaction attempts after the disk failed; commits wait meanwhile."""
SHUTDOWN_TIMEOUT = 5.0
"""Bound on the last compaction at shutdown, so a hung disk cannot keep the node alive."""

Undo = Callable[[], None]


class DurabilityError(RuntimeError):
    """A write could not be made durable; it was undone. The message names the cause."""


@dataclass(slots=True)
class _Batch:
    """Records gathered for one append, and the callers waiting on it."""

    records: list[Record] = field(default_factory=list)
    undos: list[Undo | None] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    error: str | None = None


class DurableStore:
    """The journal writer of one node with a data dir.

    Commits before ``start`` wait for it: the first compaction comes first.
    ``generation`` is the newest journal generation on disk (``journal.recover``);
    compactions go above it.
    """

    def __init__(
        self,
        data_dir: Path,
        name: str,
        protocol: Protocol,
        checks: CheckRunner,
        generation: int,
    ) -> None:
        self._data_dir = data_dir
        self._name = name
        self._protocol = protocol
        self._checks = checks
        self._generation = generation
        self._journal: JournalFile | None = None
        self._snapshot_bytes = 0
        self._gathering = _Batch()
        self._wake = trio.Event()
        self._lazy_changes = False
        self._due = -math.inf
        """When lazy changes are next saved or, with no usable journal (at start, after
        a failure), when compaction is next tried."""
        self._incarnation: int | None = None
        """This life's incarnation, from the core's ``IncarnationChanged`` (``start`` sends it)."""
        self.stats = {"commits": 0, "appends": 0, "compactions": 0, "failures": 0}
        self.append_seconds = 0.0
        """Seconds spent in appends (write + fsync, in the worker thread) so far."""

    def status(self) -> dict[str, float]:
        """Counters for /v1/status: commits, appends (one fsync each), compactions, failures,
        and the seconds spent appending (write + fsync), for the share of time it takes."""
        return {**self.stats, "append_seconds": round(self.append_seconds, 6)}

    def start(self, nursery: trio.Nursery) -> None:
        """Compact at once, then append batches as they come, in a task of ``nursery``."""
        nursery.start_soon(self._loop)

    async def commit(self, record: Record, undo: Undo | None) -> None:
        """Return once ``record`` is on disk; ``undo`` reverts its change if it cannot be.

        Call it right after applying the change to the core, before any
        other await, so journal order is the order of the changes.

        Raises:
            DurabilityError: the append failed; the change was undone.
        """
        batch = self._gathering
        batch.records.append(record)
        batch.undos.append(undo)
        self.stats["commits"] += 1
        self._wake.set()
        await batch.done.wait()
        if batch.error is not None:
            raise DurabilityError(batch.error)

    def record_lazily(self, record: Record) -> None:
        """Journal ``record`` with the next batch, nobody waiting (a check's own deregistration)."""
        self._gathering.records.append(record)
        self._gathering.undos.append(None)
        self._wake.set()

    def lazy_change(self) -> None:
        """Something only the next compaction saves changed (a check status)."""
        self._lazy_changes = True

    def incarnation_changed(self, event: IncarnationChanged) -> None:
        """Journal a rise of our incarnation (we refuted a suspicion) without waiting; the
        incarnation ``start`` announces reaches disk with the compaction at start."""
        self._incarnation = event.incarnation
        if event.previous is not None:
            self.record_lazily(IncarnationRaised(event.incarnation))

    async def save_last(self) -> None:
        """The compaction at shutdown: shielded from the stopping cancellation, but bounded.

        Waiters still gathered are answered: with success if it works.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_TIMEOUT):
            await self._compact(abandon_on_cancel=True)
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _snapshot(self) -> Callable[[], Snapshot]:
        """The node's state now, copied cheaply; the call builds the Snapshot (sorting,
        filtering) in a worker thread, so the event loop pays only the copies."""
        protocol = self._protocol
        name, incarnation, generation = self._name, self._incarnation, self._generation + 1
        assert incarnation is not None, "compaction before the core started"
        members = [
            (r.name, r.addr[0], r.addr[1])
            for r in protocol.members
            if r.name != name and r.state in ACTIVE_STATES
        ]
        entries = protocol.owned_copy()
        checks = self._checks.specs()

        def build() -> Snapshot:
            own = sorted((e for e in entries if not e.deleted), key=lambda e: e.key)
            return Snapshot(
                name,
                incarnation,
                tuple(sorted(members)),
                tuple(own),
                tuple(sorted(checks.items())),
                generation,
            )

        return build

    def _compact_in_thread(self, build: Callable[[], Snapshot]) -> tuple[JournalFile, Snapshot]:
        snapshot = build()
        return compact(self._data_dir, snapshot), snapshot

    async def _compact(self, *, abandon_on_cancel: bool = False) -> bool:
        """Fold everything into a new snapshot and journal; False (logged) if it failed.

        The snapshot is the node's state now, which includes the batch being
        gathered: those waiters are answered as soon as it is on disk.
        """
        build = self._snapshot()
        batch, self._gathering = self._gathering, _Batch()
        self._lazy_changes = False
        old = self._journal
        self._journal = None
        try:
            if old is not None:
                old.close()
            journal, snapshot = await trio.to_thread.run_sync(
                self._compact_in_thread, build, abandon_on_cancel=abandon_on_cancel
            )
        except OSError as exc:
            self._lazy_changes = True
            self._fail(batch, f"could not write the snapshot in {self._data_dir}: {exc}")
            return False
        self._generation = snapshot.journal
        self._journal = journal
        self._snapshot_bytes = len(snapshot.entries) * ENTRY_BYTES_ESTIMATE
        self.stats["compactions"] += 1
        batch.done.set()
        return True

    async def _append(self, batch: _Batch) -> None:
        journal = self._journal
        assert journal is not None
        data = encode_records(batch.records)
        start = trio.current_time()
        try:
            await trio.to_thread.run_sync(journal.append, data)
        except OSError as exc:
            self._journal = None
            journal.close()
            self._fail(batch, f"could not write the journal {journal.path}: {exc}")
            return
        finally:
            self.append_seconds += trio.current_time() - start
        self.stats["appends"] += 1
        batch.done.set()

    def _fail(self, batch: _Batch, cause: str) -> None:
        """Undo ``batch`` and everything gathered behind it, newest first, and tell the callers."""
        later, self._gathering = self._gathering, _Batch()
        failed = [batch] if later is batch else [batch, later]
        logger.error("%s; the writes waiting on it are undone and refused", cause)
        self.stats["failures"] += 1
        self._due = trio.current_time() + RETRY_INTERVAL
        for each in reversed(failed):
            for undo in reversed(each.undos):
                if undo is None:
                    continue
                try:
                    undo()
                except Exception:  # a bug; the disk failure must not stop the node too
                    logger.exception("could not undo a write that is not durable")
            each.error = f"not durable: {cause}; the change was undone"
            each.done.set()

    def _journal_full(self, journal: JournalFile) -> bool:
        return journal.size >= max(COMPACT_MIN_BYTES, 2 * self._snapshot_bytes)

    async def _loop(self) -> None:
        """Compact first, then append each gathered batch; compact when due."""
        while True:
            with trio.move_on_at(self._due):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            journal = self._journal
            if journal is None and now < self._due:
                continue  # the disk failed: commits wait for the retry
            if journal is None or self._journal_full(journal) or now >= self._due:
                if journal is None or self._journal_full(journal) or self._lazy_changes:
                    if await self._compact():
                        self._due = trio.current_time() + COMPACT_INTERVAL
                    continue  # the gathered batch went into the snapshot
                self._due = now + COMPACT_INTERVAL
            batch = self._gathering
            if batch.records:
                self._gathering = _Batch()
                await self._append(batch)
