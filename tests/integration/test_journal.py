"""The journal and compaction on disk: torn writes at every byte, crashes between steps."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from gossip_registry.registry.entry import Entry, Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.runtime.storage.journal import (
    Delete,
    IncarnationRaised,
    JournalFile,
    Put,
    Record,
    compact,
    decode_journal,
    encode_records,
    journal_path,
    recover,
    replay,
)
from gossip_registry.runtime.storage.snapshot import (
    SNAPSHOT_FILE,
    Snapshot,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)


def entry(instance_id: str, port: int = 80) -> Entry:
    return Entry(
        service="web",
        instance_id=instance_id,
        address="10.0.0.1",
        port=port,
        tags=("v1",),
        meta={"zone": "a"},
        weight=1,
        status=Health.PASSING,
        output="",
        owner="n1",
        owner_incarnation=1,
        stamp=(1000 + port) << 16,
        deleted=False,
    )


BASE = Snapshot("n1", 1, (("n2", "127.0.0.1", 7000),), (entry("a"), entry("b")), (), 1)
BATCHES: list[list[Record]] = [
    [Put(entry("c", 81), (CheckSpec(ttl=10.0, check_id="c-ttl"),))],
    [Delete(("web", "a")), Put(entry("b", 82))],
    [IncarnationRaised(2)],
    [Put(entry("a", 83)), Delete(("web", "c"))],
]


def ids(snapshot: Snapshot | None) -> list[tuple[str, int]]:
    assert snapshot is not None
    return [(e.instance_id, e.port) for e in snapshot.entries]


def write_history(data_dir: Path) -> list[int]:
    """BASE compacted, then BATCHES appended; returns each record's end offset in the journal."""
    journal = compact(data_dir, BASE)
    ends = []
    for batch in BATCHES:
        for record in batch:
            journal.append(encode_records([record]))
            ends.append(journal.size)
    journal.close()
    return ends


def test_recovery_replays_the_journal_over_the_snapshot(tmp_path: Path) -> None:
    write_history(tmp_path)
    snapshot, generation = recover(tmp_path, "n1")
    assert snapshot is not None
    assert ids(snapshot) == [("a", 83), ("b", 82)]
    assert snapshot.incarnation == 2
    assert snapshot.checks == ()  # c (and its check) went away
    assert generation == 1


def test_a_journal_torn_at_any_byte_keeps_every_complete_record(tmp_path: Path) -> None:
    source = tmp_path / "source"
    ends = write_history(source)
    records = [r for batch in BATCHES for r in batch]
    data = journal_path(source, 1).read_bytes()
    assert len(data) == ends[-1]
    for cut in range(len(data) + 1):
        data_dir = tmp_path / f"cut{cut}"
        shutil.copytree(source, data_dir)
        journal_path(data_dir, 1).write_bytes(data[:cut])
        complete = sum(end <= cut for end in ends)
        recovered, _ = recover(data_dir, "n1")
        assert recovered == replay(BASE, records[:complete]), f"cut at byte {cut}"
        shutil.rmtree(data_dir)


def test_a_corrupt_byte_ends_the_journal_there(tmp_path: Path) -> None:
    ends = write_history(tmp_path)
    path = journal_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[ends[1] + 12] ^= 0xFF  # inside the third record's payload
    records, span = decode_journal(bytes(data), "n1")
    assert span == ends[1]
    assert len(records) == 2


def test_another_nodes_records_are_refused(tmp_path: Path) -> None:
    write_history(tmp_path)
    records, span = decode_journal(journal_path(tmp_path, 1).read_bytes(), "n7")
    assert (records, span) == ([], 0)


def test_a_snapshot_truncated_at_any_byte_is_refused_on_read() -> None:
    data = encode_snapshot(replace(BASE, checks=((("web", "a"), (CheckSpec(ttl=5.0),)),)))
    for cut in range(len(data)):
        with pytest.raises(SnapshotError):
            decode_snapshot(data[:cut])


def test_a_power_cut_during_compaction_never_loses_the_previous_state(tmp_path: Path) -> None:
    """Every byte prefix of the new snapshot's temporary file, left beside the old state."""
    source = tmp_path / "source"
    write_history(source)
    before, _ = recover(source, "n1")
    assert before is not None
    new = encode_snapshot(replace(before, journal=2))
    for cut in range(len(new) + 1):
        data_dir = tmp_path / f"cut{cut}"
        shutil.copytree(source, data_dir)
        (data_dir / f".{SNAPSHOT_FILE}.x{cut}.tmp").write_bytes(new[:cut])
        recovered, _ = recover(data_dir, "n1")
        assert recovered == before, f"cut at byte {cut}"
        assert not list(data_dir.glob("*.tmp"))  # leftovers are cleared
        shutil.rmtree(data_dir)


def test_a_crash_between_the_steps_of_a_compaction_keeps_the_state(tmp_path: Path) -> None:
    write_history(tmp_path)
    before, _ = recover(tmp_path, "n1")
    assert before is not None
    # The new snapshot is in place, the new journal not yet created, the old not yet deleted.
    (tmp_path / SNAPSHOT_FILE).write_bytes(encode_snapshot(replace(before, journal=2)))
    after, generation = recover(tmp_path, "n1")
    assert after == replace(before, journal=2)
    assert generation == 2
    # A compaction after that goes above every generation on disk.
    journal = compact(tmp_path, replace(before, journal=generation + 1))
    journal.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.3", SNAPSHOT_FILE]
    assert recover(tmp_path, "n1") == (replace(before, journal=3), 3)


def test_appends_go_on_after_a_reopen_of_an_empty_journal(tmp_path: Path) -> None:
    journal = JournalFile.create(journal_path(tmp_path, 5))
    journal.append(encode_records([Put(entry("z"))]))
    journal.close()
    records, span = decode_journal(journal_path(tmp_path, 5).read_bytes(), "n1")
    assert records == [Put(entry("z"))]
    assert span == journal_path(tmp_path, 5).stat().st_size


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
def test_a_directory_fsync_that_fails_is_an_error_not_a_silent_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    real_fsync = os.fsync

    def failing_on_directories(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_on_directories)
    with pytest.raises(OSError, match=os.strerror(code)) as raised:
        JournalFile.create(tmp_path / "journal.1")
    assert raised.value.errno == code


def test_a_directory_fsync_the_filesystem_does_not_support_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def unsupported_on_directories(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", unsupported_on_directories)
    journal = JournalFile.create(tmp_path / "journal.1")
    journal.append(b"x")
    journal.close()
    assert (tmp_path / "journal.1").read_bytes() == b"x"


def test_a_journal_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    write_history(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    journal_path(tmp_path, 1).rename(elsewhere)
    journal_path(tmp_path, 1).symlink_to(elsewhere)
    recovered, _ = recover(tmp_path, "n1")
    assert recovered == BASE  # the snapshot alone; the link's records are not trusted
