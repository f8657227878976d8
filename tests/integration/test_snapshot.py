"""Snapshots: atomic files, distrust on read, and a restart that continues the old life."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest
import trio

from gossip_registry.core.messages import MemberState
from gossip_registry.core.protocol import MERGE_CHUNK
from gossip_registry.registry.entry import Entry, Health
from gossip_registry.runtime.node import Node
from gossip_registry.runtime.storage.journal import recover
from gossip_registry.runtime.storage.snapshot import (
    SNAPSHOT_FILE,
    Snapshot,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
    load_snapshot,
    read_snapshot,
    write_snapshot,
)
from tests.integration import fast_config, start_node, wait_until


def entry(instance_id: str = "w1", owner: str = "n1", **changes: object) -> Entry:
    base = Entry(
        service="web",
        instance_id=instance_id,
        address="10.0.0.1",
        port=8080,
        tags=("v1",),
        meta={"zone": "a"},
        weight=3,
        status=Health.WARNING,
        output="slow",
        owner=owner,
        owner_incarnation=2,
        stamp=123 << 16,
        deleted=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


SNAP = Snapshot(
    "n1", 2, (("n2", "127.0.0.1", 7000), ("n3", "::1", 7001)), (entry("w1"), entry("w2"))
)


def test_write_then_read_round_trips_and_leaves_no_temp_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "dir"
    write_snapshot(data_dir, SNAP)
    assert read_snapshot(data_dir) == SNAP
    write_snapshot(data_dir, replace(SNAP, incarnation=3, entries=()))
    assert read_snapshot(data_dir) == replace(SNAP, incarnation=3, entries=())
    assert [p.name for p in data_dir.iterdir()] == [SNAPSHOT_FILE]


def test_a_missing_snapshot_is_no_snapshot(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path) is None
    assert load_snapshot(tmp_path / "absent", "n1") is None


def test_a_failed_write_keeps_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_snapshot(tmp_path, SNAP)

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        write_snapshot(tmp_path, replace(SNAP, incarnation=9))
    monkeypatch.undo()
    assert read_snapshot(tmp_path) == SNAP
    assert [p.name for p in tmp_path.iterdir()] == [SNAPSHOT_FILE]


def _valid() -> dict[str, object]:
    decoded = msgpack.unpackb(encode_snapshot(SNAP))
    assert isinstance(decoded, dict)
    return decoded


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"", "msgpack"),
        (b"\xc1", "msgpack"),
        (encode_snapshot(SNAP)[:-7], "msgpack"),
        (msgpack.packb([1, 2]), "map"),
        (msgpack.packb({**_valid(), "format": 2}), "format"),
        (msgpack.packb({**_valid(), "format": True}), "format"),
        (msgpack.packb({**_valid(), "incarnation": -1}), "incarnation"),
        (msgpack.packb({**_valid(), "name": ""}), "name"),
        (msgpack.packb({**_valid(), "members": [["n2", "h", 0]]}), "port"),
        (msgpack.packb({**_valid(), "members": [["n2", "h"]]}), "member"),
        (msgpack.packb({**_valid(), "entries": [entry(port=70000).canonical()]}), "entry"),
        (msgpack.packb({**_valid(), "entries": [entry().canonical()[:5]]}), "entry"),
        (msgpack.packb({**_valid(), "entries": [entry(owner="n9").canonical()]}), "not our"),
        (msgpack.packb({**_valid(), "entries": [entry(deleted=True).canonical()]}), "not our"),
    ],
)
def test_decoding_refuses_anything_invalid(bad: bytes, reason: str) -> None:
    with pytest.raises(SnapshotError, match=reason):
        decode_snapshot(bad)


@pytest.mark.parametrize(
    "content",
    [b"garbage", encode_snapshot(SNAP)[: len(encode_snapshot(SNAP)) // 2], encode_snapshot(SNAP)],
    ids=["corrupt", "truncated", "another-node"],
)
def test_an_unusable_snapshot_is_set_aside_and_the_node_starts_fresh(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / SNAPSHOT_FILE).write_bytes(content)
    assert load_snapshot(tmp_path, "n7") is None  # n7: SNAP belongs to n1
    assert not (tmp_path / SNAPSHOT_FILE).exists()
    [aside] = tmp_path.iterdir()
    assert aside.name.startswith(f"{SNAPSHOT_FILE}.corrupt-")
    assert aside.read_bytes() == content


async def test_a_node_with_a_corrupt_snapshot_starts_fresh(tmp_path: Path) -> None:
    (tmp_path / SNAPSHOT_FILE).write_bytes(b"\x00garbage")
    with trio.fail_after(10):
        async with Node(fast_config("n1", data_dir=tmp_path)) as node:
            assert node.protocol.incarnation == 0
            assert node.services() == {}
    assert any(p.name.startswith(f"{SNAPSHOT_FILE}.corrupt-") for p in tmp_path.iterdir())
    saved = read_snapshot(tmp_path)  # written afresh at shutdown
    assert saved is not None
    assert saved.name == "n1"


async def test_an_acknowledged_write_is_on_disk_when_the_call_returns(tmp_path: Path) -> None:
    """No waiting: what register and deregister acknowledged is what a restart recovers."""

    def saved_ids() -> list[str]:
        snap, _ = recover(tmp_path, "n1")
        return [] if snap is None else [e.instance_id for e in snap.entries]

    with trio.fail_after(10):
        async with Node(fast_config("n1", data_dir=tmp_path)) as node:
            await node.register("web", instance_id="w1", port=80)
            assert saved_ids() == ["w1"]
            await node.register("web", instance_id="w2", port=81)
            await node.deregister("w1")
            assert saved_ids() == ["w2"]


async def test_a_restarted_node_continues_from_its_snapshot(tmp_path: Path) -> None:
    """Higher incarnation, registrations re-asserted, rejoined through remembered members."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            seed, _ = await start_node(nursery, fast_config("seed"))
            config = fast_config("phoenix", data_dir=tmp_path, seeds=(seed.advertise_addr,))
            first, crash = await start_node(nursery, config)
            await first.register("web", instance_id="w1", port=80, tags=["v1"])
            await wait_until(lambda: [e.instance_id for e in seed.discover("web")] == ["w1"])
            old_incarnation = first.protocol.incarnation

            crash.cancel()
            await first.wait_stopped()

            def phoenix_state() -> MemberState | None:
                return next((m.state for m in seed.members() if m.name == "phoenix"), None)

            await wait_until(lambda: phoenix_state() is MemberState.DEAD)
            assert seed.discover("web") == []  # fenced with its dead owner

            # No seeds this time: only the snapshot knows where the cluster is.
            second, _ = await start_node(nursery, replace(config, seeds=()))
            assert second.protocol.incarnation > old_incarnation

            def saved_incarnation() -> int | None:
                saved = read_snapshot(tmp_path)
                return None if saved is None else saved.incarnation

            # This life's incarnation is in the snapshot at once, so a crash now cannot reuse
            # it. Not "== the current one": a refutation may already have raised it, and that
            # goes to the journal, not to the snapshot file.
            await wait_until(lambda: (saved_incarnation() or -1) > old_incarnation)
            await wait_until(lambda: phoenix_state() is MemberState.ALIVE)
            await wait_until(lambda: [e.instance_id for e in seed.discover("web")] == ["w1"])
            [restored] = seed.discover("web")
            assert restored.tags == ("v1",)
            assert restored.owner_incarnation == second.protocol.incarnation
            nursery.cancel_scope.cancel()


async def test_a_restart_serves_every_instance_of_a_large_snapshot_once_started(
    tmp_path: Path,
) -> None:
    """The restore is restamped a chunk per step (issue 15: one 1.7 s step at 50,000), yet
    a started node already serves all of it, under the new incarnation, and keeps it."""
    count = 5 * MERGE_CHUNK
    entries = tuple(entry(f"w{i:04}") for i in range(count))
    write_snapshot(tmp_path, replace(SNAP, members=(), entries=entries))
    with trio.fail_after(10):
        async with Node(fast_config("n1", data_dir=tmp_path)) as node:
            served = node.discover("web", passing_only=False)
            assert len(served) == count
            assert {e.owner_incarnation for e in served} == {3}
    saved = read_snapshot(tmp_path)
    assert saved is not None
    assert len(saved.entries) == count


# --- Special files in the data dir (issue 10, finding 6) ------------------------------


def _load_in_thread(data_dir: Path) -> list[Snapshot | None]:
    """load_snapshot in a daemon thread, joined with a bound: a hang fails the test."""
    result: list[Snapshot | None] = []
    worker = threading.Thread(target=lambda: result.append(load_snapshot(data_dir, "n1")))
    worker.daemon = True
    worker.start()
    worker.join(5.0)
    assert not worker.is_alive(), "load_snapshot hung"
    return result


def test_a_fifo_snapshot_is_set_aside_at_once_instead_of_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / SNAPSHOT_FILE)
    assert _load_in_thread(tmp_path) == [None]
    [aside] = tmp_path.iterdir()
    assert aside.name.startswith(f"{SNAPSHOT_FILE}.corrupt-")


@pytest.mark.parametrize("target", ["/dev/zero", "real"])
def test_a_symlinked_snapshot_is_refused_and_its_target_left_alone(
    tmp_path: Path, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    if target == "real":  # even a link to a valid snapshot: the data dir holds regular files
        write_snapshot(tmp_path / "elsewhere", SNAP)
        target = str(tmp_path / "elsewhere" / SNAPSHOT_FILE)
    (tmp_path / SNAPSHOT_FILE).symlink_to(target)
    assert _load_in_thread(tmp_path) == [None]
    assert "symbolic link" in caplog.text
    assert Path(target).exists()


def test_reading_a_snapshot_stops_at_its_size_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gossip_registry.runtime.storage.snapshot.MAX_SNAPSHOT_BYTES", 1000)
    (tmp_path / SNAPSHOT_FILE).write_bytes(b"\x00" * 1001)
    with pytest.raises(OSError, match="larger than 1000 bytes"):
        read_snapshot(tmp_path)
