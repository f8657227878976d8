"""The heap governor freezes as the table grows, by steps that grow with it."""

from __future__ import annotations

import itertools

from gossip_registry.heap import FREEZE_STEP, TableHeap


def test_freezes_once_per_step_of_growth_then_per_tenth() -> None:
    frozen: list[int] = []
    size = 0
    heap = TableHeap(lambda: frozen.append(size))
    for size in range(0, 30 * FREEZE_STEP, 100):
        heap.table_size(size)
    assert frozen[:3] == [FREEZE_STEP, 2 * FREEZE_STEP, 3 * FREEZE_STEP]
    # beyond ten steps the next freeze waits for a tenth more: a bounded number of freezes
    assert all(b - a >= max(FREEZE_STEP, a // 10) for a, b in itertools.pairwise(frozen))
    assert heap.freezes == len(frozen) < 30


def test_a_table_that_shrank_counts_its_growth_from_the_low_point() -> None:
    calls: list[int] = []
    heap = TableHeap(lambda: calls.append(1))
    heap.table_size(5 * FREEZE_STEP)
    heap.table_size(FREEZE_STEP)
    heap.table_size(2 * FREEZE_STEP - 1)
    assert len(calls) == 1
    heap.table_size(2 * FREEZE_STEP)
    assert len(calls) == 2


def test_a_small_table_never_freezes() -> None:
    calls: list[int] = []
    heap = TableHeap(lambda: calls.append(1))
    for size in range(FREEZE_STEP):
        heap.table_size(size)
    assert calls == []
