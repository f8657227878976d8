"""The heap governor freezes as the table takes in new versions, by steps that grow with it."""

from __future__ import annotations

import itertools

from gossip_registry.heap import FREEZE_STEP, TableHeap


def test_freezes_once_per_step_of_growth_then_per_tenth() -> None:
    frozen: list[int] = []
    size = 0
    heap = TableHeap(lambda: frozen.append(size))
    for size in range(0, 30 * FREEZE_STEP, 100):
        heap.table_changed(size, stored=size)
    assert frozen[:3] == [FREEZE_STEP, 2 * FREEZE_STEP, 3 * FREEZE_STEP]
    # beyond ten steps the next freeze waits for a tenth more: a bounded number of freezes
    assert all(b - a >= max(FREEZE_STEP, a // 10) for a, b in itertools.pairwise(frozen))
    assert heap.freezes == len(frozen) < 30


def test_a_table_whose_entries_are_replaced_is_frozen_again() -> None:
    """Replaced entries are new objects the last freeze did not cover: a refutation's
    re-assertion, fences and re-merges, churn. Counted by size alone they piled up
    unfrozen, and a full collection walked them all (77 ms at 100,000)."""
    calls: list[int] = []
    heap = TableHeap(lambda: calls.append(1))
    size = 5 * FREEZE_STEP
    heap.table_changed(size, stored=size)
    assert len(calls) == 1
    heap.table_changed(size, stored=size + FREEZE_STEP - 1)
    assert len(calls) == 1
    heap.table_changed(size, stored=size + FREEZE_STEP)
    assert len(calls) == 2


def test_a_table_that_took_in_few_versions_never_freezes() -> None:
    calls: list[int] = []
    heap = TableHeap(lambda: calls.append(1))
    for stored in range(FREEZE_STEP):
        heap.table_changed(min(stored, 100), stored=stored)
    assert calls == []
