"""The heap governor freezes each time the table has taken in a step of new versions."""

from __future__ import annotations

from gossip_registry.runtime.heap import FREEZE_STEP, TableHeap


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
