"""The write-ahead journal of a node's own changes, and recovery of snapshot + journal.

Theory of operation: a registration is acknowledged only once it is on disk,
and rewriting the whole snapshot for every write would cost O(own entries)
per write. So each acknowledged change to our own entries is appended to a
journal (``<data_dir>/journal.<generation>``) and fsynced; a burst of
concurrent writes shares one append and one fsync (group commit, in
``runtime/storage/durability.py``). Now and then the running node folds everything into a
new snapshot (``runtime/storage/snapshot.py``) that names the next generation, then deletes
the older journals: the snapshot plus the journal of its generation are the
node's durable state.

A journal file is a sequence of frames, each ``>II`` (payload length,
CRC-32 of the payload) and a msgpack payload, one of::

    [1, Entry.canonical(), [{check field: value}, ...]]   # put: our live entry and its checks
    [2, service, instance_id]                             # delete: we deregistered it
    [3, incarnation]                                      # our incarnation rose

Reading stops at the first frame that is incomplete, fails its CRC or does
not validate (entries go through the wire decoder, as in snapshots): a power
cut in the middle of an append tears only the last, unacknowledged batch,
and every complete frame before it is kept.

Compaction writes the snapshot (temp file, fsync, rename, directory fsync)
*before* it creates the new journal and deletes the old ones, so a crash at
any step leaves either the old snapshot with its journal or the new snapshot
(whose generation's journal, if missing, is empty). Journals of an older
generation than the snapshot's are ignored and removed.

This module does blocking file I/O; the trio node calls it in a worker thread.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack

from gossip_registry.core.codec import MAX_INCARNATION, MAX_NAME_LEN, CodecError, unpack_bounded
from gossip_registry.registry.entry import Entry, EntryKey
from gossip_registry.registry.health import CheckSpec
from gossip_registry.runtime.storage.snapshot import (
    SNAPSHOT_FILE,
    Snapshot,
    SnapshotError,
    decode_entry,
    decode_spec,
    fsync_dir,
    load_snapshot,
    spec_fields,
    write_snapshot,
)

__all__ = [
    "Delete",
    "IncarnationRaised",
    "JournalFile",
    "Put",
    "Record",
    "compact",
    "decode_journal",
    "encode_records",
    "journal_path",
    "recover",
    "replay",
]

logger = logging.getLogger("gossip_registry")

JOURNAL_PREFIX = "journal."
MAX_RECORD_BYTES = 1024 * 1024
"""A frame longer than this is not one we wrote (an entry fits one packet): the journal ends."""
MAX_JOURNAL_BYTES = 256 * 1024 * 1024
"""Read at most this much of a journal; compaction keeps them far smaller."""
_FRAME = struct.Struct(">II")
_PUT, _DELETE, _INCARNATION = 1, 2, 3


@dataclass(frozen=True, slots=True)
class Put:
    """We registered (or re-registered) ``entry``, with these checks."""

    entry: Entry
    checks: tuple[CheckSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    """We deregistered ``key``."""

    key: EntryKey


@dataclass(frozen=True, slots=True)
class IncarnationRaised:
    """Our incarnation rose (we refuted a suspicion): a restart must start above it."""

    incarnation: int


Record = Put | Delete | IncarnationRaised


def journal_path(data_dir: Path, generation: int) -> Path:
    return data_dir / f"{JOURNAL_PREFIX}{generation}"


def _payload(record: Record) -> list[Any]:
    if isinstance(record, Put):
        return [_PUT, record.entry.canonical(), [spec_fields(s) for s in record.checks]]
    if isinstance(record, Delete):
        return [_DELETE, *record.key]
    return [_INCARNATION, record.incarnation]


def encode_records(records: Iterable[Record]) -> bytes:
    """The frames of ``records``, to be appended in one write."""
    out = bytearray()
    for record in records:
        payload = msgpack.packb(_payload(record), use_bin_type=True)
        out += _FRAME.pack(len(payload), zlib.crc32(payload))
        out += payload
    return bytes(out)


def _record(body: Any, name: str) -> Record:
    """One payload, validated like a snapshot's content.

    Raises:
        SnapshotError: anything we did not write.
    """
    if type(body) is not tuple or not body or type(body[0]) is not int:
        raise SnapshotError("a journal record is not [kind, ...]")
    kind = body[0]
    if kind == _PUT and len(body) == 3 and type(body[2]) is tuple:
        entry = decode_entry(body[1])
        if entry.owner != name or entry.deleted:
            raise SnapshotError(f"entry {entry.service}/{entry.instance_id} is not our live entry")
        return Put(entry, tuple(decode_spec(c) for c in body[2]))
    if kind == _DELETE and len(body) == 3:
        service, instance_id = body[1], body[2]
        for part in (service, instance_id):
            if not (type(part) is str and 0 < len(part) <= MAX_NAME_LEN):
                raise SnapshotError("invalid key in a delete record")
        return Delete((service, instance_id))
    if kind == _INCARNATION and len(body) == 2:
        incarnation = body[1]
        if not (type(incarnation) is int and 0 <= incarnation <= MAX_INCARNATION):
            raise SnapshotError("invalid incarnation record")
        return IncarnationRaised(incarnation)
    raise SnapshotError(f"unknown journal record kind {kind!r}")


def decode_journal(data: bytes, name: str) -> tuple[list[Record], int]:
    """The valid records of a journal written by node ``name``, and the bytes they span.

    Never raises: a torn or corrupt frame ends the journal (the caller logs
    what was cut off when the span is shorter than ``data``).
    """
    records: list[Record] = []
    offset = 0
    while offset + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        payload = data[start : start + length]
        if length > MAX_RECORD_BYTES or len(payload) < length or zlib.crc32(payload) != crc:
            break
        try:
            records.append(_record(unpack_bounded(payload, MAX_RECORD_BYTES), name))
        except (CodecError, SnapshotError) as exc:
            logger.error(
                "journal record at byte %d is invalid (%s); ignoring the rest", offset, exc
            )
            break
        offset = start + length
    return records, offset


def replay(snapshot: Snapshot, records: Sequence[Record]) -> Snapshot:
    """``snapshot`` with ``records`` applied in order (the last change of a key wins)."""
    entries = {e.key: e for e in snapshot.entries}
    checks = dict(snapshot.checks)
    incarnation = snapshot.incarnation
    for record in records:
        if isinstance(record, Put):
            key = record.entry.key
            entries[key] = record.entry
            checks.pop(key, None)
            if record.checks:
                checks[key] = record.checks
        elif isinstance(record, Delete):
            entries.pop(record.key, None)
            checks.pop(record.key, None)
        else:
            incarnation = max(incarnation, record.incarnation)
    return replace(
        snapshot,
        incarnation=incarnation,
        entries=tuple(entries[k] for k in sorted(entries)),
        checks=tuple(sorted(checks.items())),
    )


def _journal_generations(data_dir: Path) -> list[int]:
    found = []
    for path in data_dir.glob(f"{JOURNAL_PREFIX}*"):
        suffix = path.name[len(JOURNAL_PREFIX) :]
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def _read_bounded(path: Path) -> bytes | None:
    """The journal's first MAX_JOURNAL_BYTES; None if there is none. A symlink is refused
    (ELOOP): the data dir is ours, a link in it is not."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(MAX_JOURNAL_BYTES)


def recover(data_dir: Path, name: str) -> tuple[Snapshot | None, int]:
    """What a starting node ``name`` restores: its snapshot with its journal replayed.

    Returns it (None when there is neither: a first start, or an unusable
    snapshot set aside by ``load_snapshot``) and the newest journal
    generation in ``data_dir``, which the next compaction must go above.
    Leftover temporary files of interrupted
    snapshot writes are removed. Never raises for bad content; an unreadable
    journal is logged and its records are lost (as a corrupt snapshot is).
    """
    for leftover in data_dir.glob(f".{SNAPSHOT_FILE}.*.tmp"):
        leftover.unlink(missing_ok=True)
    snapshot = load_snapshot(data_dir, name)
    generation = 0 if snapshot is None else snapshot.journal
    try:
        data = _read_bounded(journal_path(data_dir, generation))
    except OSError as exc:
        logger.error("journal %s is unreadable (%s)", journal_path(data_dir, generation), exc)
        data = None
    newest = max(generation, newest_generation(data_dir))
    if data is None:
        return snapshot, newest
    records, span = decode_journal(data, name)
    if span < len(data):
        logger.warning(
            "journal %s: kept %d records, ignored %d torn or invalid bytes at its end",
            journal_path(data_dir, generation),
            len(records),
            len(data) - span,
        )
    return replay(snapshot or Snapshot(name, 0, journal=generation), records), newest


def compact(data_dir: Path, snapshot: Snapshot) -> JournalFile:
    """Make ``snapshot`` the durable state and open its (new, empty) journal.

    ``snapshot.journal`` must be a generation above every journal in use.
    The order (snapshot, then the new journal, then deleting the old ones)
    keeps a consistent state on disk at every step of a crash.

    Raises:
        OSError: the snapshot or journal could not be written; the previous
            state on disk stays usable.
    """
    write_snapshot(data_dir, snapshot)
    journal = JournalFile.create(journal_path(data_dir, snapshot.journal))
    for generation in _journal_generations(data_dir):
        if generation < snapshot.journal:
            journal_path(data_dir, generation).unlink(missing_ok=True)
    return journal


def newest_generation(data_dir: Path) -> int:
    """The highest journal generation in ``data_dir`` (0 if none): compaction goes above it."""
    return max(_journal_generations(data_dir), default=0)


def sync_file(fd: int) -> None:
    """Flush a file's data (and its size) to stable storage; fdatasync where there is one."""
    flush = getattr(os, "fdatasync", os.fsync)
    flush(fd)


class JournalFile:
    """An open journal, appended to by one writer at a time."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.size = 0
        self._fd = fd

    @classmethod
    def create(cls, path: Path) -> JournalFile:
        """A new empty journal at ``path``, its directory entry durable.

        Raises:
            OSError: it cannot be created.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        try:
            sync_file(fd)
            fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def append(self, data: bytes) -> None:
        """Append ``data`` and make it durable: one write and one fsync for a whole batch.

        Raises:
            OSError: the write or the fsync failed; what is on disk is then
                unknown, and the journal must not be appended to again.
        """
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        sync_file(self._fd)
        self.size += len(data)

    def close(self) -> None:
        os.close(self._fd)
