"""Acknowledged writes are on disk before the answer: group commit, failed fsyncs, no data dir."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from gossip_registry.api.http import build_app
from gossip_registry.core.codec import encode_packet
from gossip_registry.core.messages import Packet, Suspect
from gossip_registry.runtime.node import Node
from gossip_registry.runtime.storage.durability import DurabilityError
from gossip_registry.runtime.storage.journal import recover
from gossip_registry.runtime.storage.snapshot import read_snapshot
from tests.integration import fast_config, start_node, wait_until

TIMEOUT = 20.0


def saved_ids(data_dir: Path, name: str = "n1") -> list[str]:
    snapshot, _ = recover(data_dir, name)
    return [] if snapshot is None else [e.instance_id for e in snapshot.entries]


def failing_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fsync and fdatasync fails as a dying disk's would."""

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("os.fsync", broken)
    monkeypatch.setattr("os.fdatasync", broken)


def counting_fsync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    for name in ("fsync", "fdatasync"):
        real: Callable[[int], None] = getattr(os, name)

        def counted(fd: int, real: Callable[[int], None] = real) -> None:
            calls.append(fd)
            real(fd)

        monkeypatch.setattr(f"os.{name}", counted)
    return calls


async def test_a_write_whose_fsync_fails_is_a_503_naming_the_cause_and_is_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("n1", data_dir=tmp_path))
            peer, _ = await start_node(nursery, fast_config("n2", seeds=(node.advertise_addr,)))
            await wait_until(lambda: len(peer.members()) == 2)
            transport = httpx.ASGITransport(app=build_app(node))
            async with httpx.AsyncClient(transport=transport, base_url="http://n1") as http:
                ok = await http.put("/v1/services", json={"name": "web", "id": "w0", "port": 80})
                assert ok.status_code == 200
                failing_fsync(monkeypatch)
                put = await http.put("/v1/services", json={"name": "web", "id": "w1", "port": 81})
                assert put.status_code == 503
                assert "Input/output error" in put.json()["error"]
                assert "journal" in put.json()["error"]
                delete = await http.delete("/v1/services/w0")
                assert delete.status_code == 503
                # Undone: the node serves, and gossips, what is on disk.
                read = await http.get("/v1/services/web")
                assert read.status_code == 200
                assert [i["id"] for i in read.json()] == ["w0"]
                await wait_until(lambda: [e.instance_id for e in peer.discover("web")] == ["w0"])
                monkeypatch.undo()
                # Once the disk works again, the next write is durable (after a compaction).
                put = await http.put("/v1/services", json={"name": "web", "id": "w2", "port": 82})
                assert put.status_code == 200
                assert saved_ids(tmp_path) == ["w0", "w2"]
            nursery.cancel_scope.cancel()


async def test_register_raises_durability_error_when_the_disk_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(TIMEOUT):
        async with Node(fast_config("n1", data_dir=tmp_path)) as node:
            await node.register("web", instance_id="w0", port=80)
            failing_fsync(monkeypatch)
            with pytest.raises(DurabilityError, match="Input/output error"):
                await node.register("web", instance_id="w0", port=90)
            [entry] = node.discover("web")
            assert entry.port == 80  # the previous version is back
        monkeypatch.undo()
    assert saved_ids(tmp_path) == ["w0"]


async def test_concurrent_writes_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers = 32
    with trio.fail_after(TIMEOUT):
        async with Node(fast_config("n1", data_dir=tmp_path)) as node:
            await node.register("warm", instance_id="warm", port=1)
            calls = counting_fsync(monkeypatch)
            async with trio.open_nursery() as nursery:
                for i in range(writers):
                    nursery.start_soon(
                        partial(node.register, "web", instance_id=f"w{i}", port=i + 1)
                    )
            assert 1 <= len(calls) < writers // 2
            monkeypatch.undo()
    assert len(saved_ids(tmp_path)) == writers + 1


async def test_without_a_data_dir_the_start_up_log_says_nothing_is_durable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(TIMEOUT), caplog.at_level(logging.INFO, "gossip_registry"):
        async with Node(fast_config("n1")):
            pass
    [line] = [r.getMessage() for r in caplog.records if "durable" in r.getMessage()]
    assert line.startswith("no data dir: nothing is durable")


async def test_a_full_journal_is_folded_into_a_new_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gossip_registry.runtime.storage.durability.COMPACT_MIN_BYTES", 1024)
    with trio.fail_after(TIMEOUT):
        async with Node(fast_config("n1", data_dir=tmp_path)) as node:
            for i in range(40):
                await node.register("web", instance_id=f"w{i:02}", port=i + 1)
                if i % 3 == 0:
                    await node.deregister(f"w{i:02}")
            journals = sorted(p.name for p in tmp_path.glob("journal.*"))
            assert len(journals) == 1, journals  # the older ones were deleted
            assert journals != ["journal.1"], "never compacted"
            expected = sorted(e.instance_id for e in node.protocol.own_entries())
            assert saved_ids(tmp_path) == expected
            assert len(expected) == 26


async def test_a_refutation_journals_the_new_incarnation_without_a_compaction(
    tmp_path: Path,
) -> None:
    accusation = encode_packet(Packet(None, (Suspect("n1", 0, "n9"),)))
    with trio.fail_after(TIMEOUT):
        async with Node(fast_config("n1", data_dir=tmp_path)) as node:
            await wait_until(lambda: read_snapshot(tmp_path) is not None)
            with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
                await sock.sendto(accusation, node.gossip_addr)
                await wait_until(lambda: node.protocol.incarnation == 1)

            def recovered_incarnation() -> int | None:
                snapshot, _ = recover(tmp_path, "n1")
                return None if snapshot is None else snapshot.incarnation

            await wait_until(lambda: recovered_incarnation() == 1)
            snapshot = read_snapshot(tmp_path)
            assert snapshot is not None
            assert snapshot.incarnation == 0  # the journal alone carries it
