"""The heap governor freezes each time the table has taken in a step of new versions."""

from __future__ import annotations

import random

from gossip_registry.core.codec import encode_stream
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.messages import SyncFinish
from gossip_registry.core.protocol import Protocol
from gossip_registry.runtime.heap import FREEZE_STEP, TableHeap
from tests.unit.test_push_pull import drive
from tests.unit.test_restore_at_start import restarted_core, snapshot_entries


def test_freezes_once_per_step_of_versions_stored() -> None:
    frozen: list[int] = []
    stored = 0
    heap = TableHeap(lambda: frozen.append(stored))
    for stored in range(0, 30 * FREEZE_STEP, 100):
        heap.table_changed(stored)
    assert frozen == [i * FREEZE_STEP for i in range(1, 30)]
    assert heap.freezes == len(frozen)


def test_a_table_whose_entries_are_replaced_is_frozen_again() -> None:
    """Replaced entries are new objects the last freeze did not cover: a refutation's
    re-assertion, fences and re-merges, churn. Counted by table size they piled up
    unfrozen, and full collections walked them all: 1.5-2 s steps at 250,000."""
    calls: list[int] = []
    heap = TableHeap(lambda: calls.append(1))
    size = 5 * FREEZE_STEP
    heap.table_changed(size)
    assert len(calls) == 1
    heap.table_changed(size + FREEZE_STEP - 1)  # as many replaced, the size unchanged
    assert len(calls) == 1
    heap.table_changed(size + FREEZE_STEP)
    assert len(calls) == 2


def test_a_table_that_took_in_few_versions_never_freezes() -> None:
    calls: list[int] = []
    heap = TableHeap(lambda: calls.append(1))
    for stored in range(FREEZE_STEP):
        heap.table_changed(stored)
    assert calls == []


def test_entries_a_push_pull_queues_count_on_the_heap_clock_even_if_they_lose() -> None:
    """A page's decoded entries live in the merge queue, often for seconds while pages
    arrive faster than chunks merge; those that lose the merge are never stored. Counted
    by versions stored alone, 25,000-68,000 of them sat unfrozen in the oldest
    generation and every full collection walked them: 60-130 ms steps at 100,000."""
    source = Protocol(ProtocolConfig(), "p1", ("198.18.0.2", 7946), rng=random.Random(1), now=0.0)
    for i in range(300):
        source.register(0.0, "web", f"w{i}", "10.0.0.1", 80)
    node = Protocol(ProtocolConfig(), "me", ("198.18.0.1", 7946), rng=random.Random(2), now=0.0)
    node.start(0.0)
    for entry in source.table.entries():
        node.table.merge(entry)
    before = node.versions_taken_in
    frame = encode_stream(SyncFinish(None, tuple(source.table.entries())))
    drive(node, node.handle_stream(1.0, source.addr, frame)[1], 1.0)
    assert node.table.versions_stored == 300, "every entry lost: nothing new stored"
    assert node.versions_taken_in - before == 300


def test_a_snapshot_restored_at_start_counts_on_the_heap_clock_at_once() -> None:
    """Decoded from the snapshot (in a thread) before anything is stored: 20,000 of them
    with their checks made a 144 ms full collection (CPU time) during the restore."""
    node = restarted_core(snapshot_entries(300))
    node.start(1.0)
    assert node.table.versions_stored < 300, "restored a chunk at a time"
    assert node.versions_taken_in >= 300
