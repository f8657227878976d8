"""What a node keeps on disk so that a restart is a continuation, not a stranger.

Theory of operation: after a crash a node must come back above the
incarnation it had (so its old life's news, still gossiped, cannot beat it),
with its registrations (its services did not go away because the agent
restarted), and knowing where the cluster was (its seeds may be gone). The
snapshot holds exactly that, in ``<data_dir>/snapshot.msgpack``::

    {"format": 1, "name": str, "incarnation": int,
     "members": [[name, host, port], ...],   # others we knew alive or suspect
     "entries": [Entry.canonical(), ...],    # our own live entries
     "checks": [[service, instance_id, [{field: value}, ...]], ...],
                                             # the health checks of those entries
     "journal": int}                         # generation of the journal continuing it

``checks`` holds each check's ``CheckSpec`` fields (those not None) so that a
restarted node runs the same checks again; it is optional, so files written
before health checks existed still load. ``journal`` (optional, 0 when
absent) names the write-ahead journal whose records continue this snapshot
(``runtime/storage/journal.py``): the running node appends each acknowledged change there
and folds the journal into a new snapshot now and then.

Writes are atomic (temp file in the same directory, fsync, ``os.replace``,
fsync of the directory), so a crash mid-write leaves the old snapshot or the
new one, never half of one. Reads validate everything: entries go through the
wire codec's own decoder (the rules peers apply), so a snapshot can never
inject an entry that peers would reject. A file that fails validation, or
belongs to another node name, is renamed to ``snapshot.msgpack.corrupt-<unix
time>`` and the node starts fresh: losing a snapshot costs a rejoin, refusing
to start costs an outage.

This module does blocking file I/O; the trio node calls it in a worker thread.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import msgpack

from gossip_registry.core.codec import (
    MAX_HOST_LEN,
    MAX_INCARNATION,
    MAX_NAME_LEN,
    MAX_PORT,
    CodecError,
    assemble_packet,
    decode_packet,
    unpack_bounded,
)
from gossip_registry.core.messages import EntryUpdate, MsgType
from gossip_registry.registry.entry import Entry, EntryKey
from gossip_registry.registry.health import CheckSpec
from gossip_registry.runtime.storage.regular_file import read_regular_file

__all__ = [
    "FORMAT",
    "SNAPSHOT_FILE",
    "Snapshot",
    "SnapshotError",
    "decode_entry",
    "decode_snapshot",
    "decode_spec",
    "encode_snapshot",
    "fsync_dir",
    "load_snapshot",
    "read_snapshot",
    "spec_fields",
    "write_atomically",
    "write_snapshot",
]

logger = logging.getLogger("gossip_registry")

SNAPSHOT_FILE = "snapshot.msgpack"
FORMAT = 1
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024
"""Refuse larger files outright: no node owns that much, so it is not ours."""

MemberAddress = tuple[str, str, int]
"""(name, host, port) of a member the node knew."""
InstanceChecks = tuple[EntryKey, tuple[CheckSpec, ...]]
"""The health checks registered with one of the node's entries."""
_SPEC_FIELDS = frozenset(f.name for f in fields(CheckSpec))


class SnapshotError(ValueError):
    """A snapshot file we will not trust (corrupt, truncated, another node's, unknown format)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One node's persisted state.

    ``entries`` are the node's own live registrations; ``members`` the other
    members it last knew alive or suspect, where a restart looks for the
    cluster.
    """

    name: str
    incarnation: int
    members: tuple[MemberAddress, ...] = ()
    entries: tuple[Entry, ...] = ()
    checks: tuple[InstanceChecks, ...] = ()
    journal: int = 0
    """Generation of the journal whose records continue this snapshot (``journal.py``)."""


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """The file's bytes."""
    body = {
        "format": FORMAT,
        "name": snapshot.name,
        "incarnation": snapshot.incarnation,
        "members": [list(m) for m in snapshot.members],
        "entries": [e.canonical() for e in snapshot.entries],
        "checks": [
            [service, instance_id, [spec_fields(s) for s in specs]]
            for (service, instance_id), specs in snapshot.checks
        ],
        "journal": snapshot.journal,
    }
    return msgpack.packb(body, use_bin_type=True)


def spec_fields(spec: CheckSpec) -> dict[str, Any]:
    """A check as stored: its CheckSpec fields that are set."""
    return {k: v for k, v in asdict(spec).items() if v is not None}


def decode_spec(raw: Any) -> CheckSpec:
    """A stored check, validated.

    Raises:
        SnapshotError: it is not a valid CheckSpec.
    """
    if type(raw) is not dict or not set(raw) <= _SPEC_FIELDS:
        raise SnapshotError("a check is not a map of CheckSpec fields")
    check_id, name = raw.get("check_id"), raw.get("name")
    if not (type(check_id) is str and 0 < len(check_id) <= MAX_NAME_LEN):
        raise SnapshotError("invalid check id")
    if name is not None and not (type(name) is str and len(name) <= MAX_NAME_LEN):
        raise SnapshotError("invalid check name")
    try:
        return CheckSpec(**raw)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"invalid check {check_id!r}: {exc}") from None


def _instance_checks(raw: Any, keys: set[EntryKey]) -> InstanceChecks:
    if not (type(raw) is tuple and len(raw) == 3 and type(raw[2]) is tuple):
        raise SnapshotError("checks are not [service, instance_id, [check, ...]]")
    key = (raw[0], raw[1])
    if key not in keys:
        raise SnapshotError(f"checks for {key[0]}/{key[1]}, which is not our live entry")
    return key, tuple(decode_spec(c) for c in raw[2])


def decode_entry(fields: Any) -> Entry:
    """Validate one canonical entry with the wire decoder, so the rules cannot drift apart.

    Raises:
        SnapshotError: it is not an entry peers would accept.
    """
    if type(fields) is not tuple:
        raise SnapshotError("an entry is not a list")
    try:
        blob = msgpack.packb((int(MsgType.ENTRY), *fields), use_bin_type=True)
        packet = decode_packet(assemble_packet(None, [blob]))
    except (CodecError, TypeError, ValueError) as exc:
        raise SnapshotError(f"invalid entry: {exc}") from None
    update = packet.updates[0]
    assert isinstance(update, EntryUpdate)
    return update.entry


def _member(m: Any) -> MemberAddress:
    if not (type(m) is tuple and len(m) == 3):
        raise SnapshotError("a member is not [name, host, port]")
    name, host, port = m
    if not (type(name) is str and 0 < len(name) <= MAX_NAME_LEN):
        raise SnapshotError("invalid member name")
    if not (type(host) is str and 0 < len(host) <= MAX_HOST_LEN):
        raise SnapshotError("invalid member host")
    if not (type(port) is int and 0 < port <= MAX_PORT):
        raise SnapshotError("invalid member port")
    return (name, host, port)


def decode_snapshot(data: bytes) -> Snapshot:
    """Parse and validate a snapshot file's bytes.

    Raises:
        SnapshotError: anything we will not trust; the message says what.
    """
    try:
        body = unpack_bounded(data, MAX_SNAPSHOT_BYTES)
    except CodecError as exc:
        raise SnapshotError(f"not a valid snapshot: {exc}") from None
    if type(body) is not dict:
        raise SnapshotError("not a snapshot map")
    if body.get("format") != FORMAT or type(body.get("format")) is not int:
        raise SnapshotError(f"unknown snapshot format {body.get('format')!r}")
    name, incarnation = body.get("name"), body.get("incarnation")
    members, entries = body.get("members"), body.get("entries")
    checks = body.get("checks", ())
    journal = body.get("journal", 0)
    if not (type(name) is str and 0 < len(name) <= MAX_NAME_LEN):
        raise SnapshotError("invalid name")
    if not (type(incarnation) is int and 0 <= incarnation <= MAX_INCARNATION):
        raise SnapshotError("invalid incarnation")
    if not (type(journal) is int and 0 <= journal < 2**63):
        raise SnapshotError("invalid journal generation")
    if type(members) is not tuple or type(entries) is not tuple or type(checks) is not tuple:
        raise SnapshotError("members, entries and checks must be lists")
    decoded = tuple(decode_entry(e) for e in entries)
    for entry in decoded:
        if entry.owner != name or entry.deleted:
            raise SnapshotError(f"entry {entry.service}/{entry.instance_id} is not our live entry")
    keys = {e.key for e in decoded}
    return Snapshot(
        name,
        incarnation,
        tuple(_member(m) for m in members),
        decoded,
        tuple(_instance_checks(c, keys) for c in checks),
        journal,
    )


def write_snapshot(data_dir: Path, snapshot: Snapshot) -> None:
    """Replace ``data_dir/snapshot.msgpack`` atomically and durably.

    Raises:
        OSError: the directory cannot be created or written (the caller logs
            it and keeps running; the previous snapshot stays intact).
    """
    write_atomically(data_dir, SNAPSHOT_FILE, encode_snapshot(snapshot))


def write_atomically(directory: Path, name: str, data: bytes) -> None:
    """Replace ``directory/name`` with ``data`` atomically and durably; the file is 0600.

    mkstemp creates the temporary file readable by its owner only, and the
    rename keeps that mode, so a secret (the keyring) is never readable by
    others, not even for a moment.

    Raises:
        OSError: the directory cannot be created or written; the old file stays.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(directory)


_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})
"""What a filesystem answers when it cannot fsync a directory at all (some network and
FUSE filesystems): nothing more can be done there, so it is not an error."""


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file's directory entry durable (POSIX).

    A failure (EIO, ENOSPC) raises: the caller must not acknowledge what
    may not survive a power cut. Windows cannot open a directory for this,
    and some filesystems cannot fsync one; both are skipped.

    Raises:
        OSError: the directory could not be made durable.
    """
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def read_snapshot(data_dir: Path) -> Snapshot | None:
    """The snapshot in ``data_dir``; None if there is none.

    Raises:
        SnapshotError: the file exists but is not a valid snapshot.
        OSError: the file exists but cannot be read, or is no regular file.
    """
    path = data_dir / SNAPSHOT_FILE
    try:
        # Not a link, FIFO or device, and no more than a snapshot can hold (regular_file.py).
        data = read_regular_file(path, MAX_SNAPSHOT_BYTES)
    except FileNotFoundError:
        return None
    return decode_snapshot(data)


def load_snapshot(data_dir: Path, name: str) -> Snapshot | None:
    """What a starting node named ``name`` restores; never raises for a bad file.

    A corrupt snapshot, or one written by another node name (a data_dir
    reused by mistake: adopting its entries would re-assert them under the
    wrong owner), is logged and set aside as ``snapshot.msgpack.corrupt-<unix
    time>`` for a human to inspect, and the node starts fresh (None).
    """
    path = data_dir / SNAPSHOT_FILE
    try:
        snapshot = read_snapshot(data_dir)
        if snapshot is not None and snapshot.name != name:
            raise SnapshotError(f"it belongs to node {snapshot.name!r}, not {name!r}")
    except (SnapshotError, OSError) as exc:
        aside = path.with_name(f"{SNAPSHOT_FILE}.corrupt-{int(time.time())}")
        try:
            os.replace(path, aside)
        except OSError as move_error:
            logger.error(
                "snapshot %s is unusable (%s) and could not be set aside (%s); starting fresh",
                path,
                exc,
                move_error,
            )
        else:
            logger.error(
                "snapshot %s is unusable (%s); moved to %s, starting fresh", path, exc, aside
            )
        return None
    return snapshot
