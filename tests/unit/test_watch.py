"""ChangeIndex: per-view indexes and the waits on them (in-process trio, no sockets)."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from gossip_registry.runtime.watch import CATALOG, ChangeIndex, TooManyWaiters


def test_indexes_start_at_one_and_each_view_records_the_change_that_touched_it() -> None:
    index = ChangeIndex(max_waiters=10)
    assert (index.current, index.of("web"), index.of(CATALOG)) == (1, 1, 1)
    index.changed(["web", CATALOG])
    index.changed(["db"])
    assert (index.current, index.of("web"), index.of(CATALOG), index.of("db")) == (3, 2, 2, 3)
    index.changed([])  # nothing touched: nothing counted
    assert index.current == 3


async def test_a_wait_returns_at_once_unless_the_index_is_the_views_current_one() -> None:
    index = ChangeIndex(max_waiters=10)
    index.changed(["web"])
    with trio.fail_after(1):
        assert await index.wait("web", 0) == 2  # older: the caller is behind
        assert await index.wait("web", 7) == 2  # never handed out: another node's, or a past life
        assert await index.wait("web", 2, timeout=0) == 2
    with trio.move_on_after(0.05) as scope:  # the current index: held
        await index.wait("web", 2)
    assert scope.cancelled_caught


async def test_a_change_wakes_the_waiters_of_its_view_and_no_other() -> None:
    index = ChangeIndex(max_waiters=10)
    woken: list[tuple[str, int]] = []

    async def waiter(view: str) -> None:
        woken.append((view, await index.wait(view, 1)))

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            for view in ("web", "web", "db"):
                nursery.start_soon(waiter, view)
            await trio.testing.wait_all_tasks_blocked()
            assert index.waiters == 3
            index.changed(["web"])
            await trio.testing.wait_all_tasks_blocked()
            assert woken == [("web", 2), ("web", 2)]
            index.close()
    assert woken[-1] == ("db", 1)
    assert index.waiters == 0


async def test_a_wait_times_out_with_the_unchanged_index() -> None:
    index = ChangeIndex(max_waiters=10)
    with trio.fail_after(1):
        assert await index.wait("web", 1, timeout=0.01) == 1
    assert index.waiters == 0


async def test_ten_thousand_waiters_on_one_view_all_wake_on_one_change() -> None:
    index = ChangeIndex(max_waiters=10_000)
    woken = 0

    async def waiter() -> None:
        nonlocal woken
        assert await index.wait("web", 1, timeout=math.inf) == 3  # db took 2
        woken += 1

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(10_000):
                nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert index.waiters == 10_000
            with pytest.raises(TooManyWaiters, match="max_waiters 10000"):
                await index.wait("db", 1)
            index.changed(["db"])  # another view: nobody wakes
            await trio.testing.wait_all_tasks_blocked()
            assert woken == 0
            index.changed(["web"])
    assert woken == 10_000
    assert index.waiters == 0


def test_max_waiters_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_waiters"):
        ChangeIndex(max_waiters=0)


def test_a_forgotten_view_costs_nothing_and_its_index_never_goes_back() -> None:
    index = ChangeIndex(max_waiters=10)
    for i in range(1000):  # a peer cycling service names
        index.changed([f"svc{i}"])
        index.forget(f"svc{i}")
    assert index.views == 0
    assert index.of("svc999") == index.current  # not back to 1
    index.changed(["web"])
    seen = index.of("web")
    index.forget("web")
    assert index.of("web") >= seen
    index.changed(["web"])
    assert index.of("web") > seen


async def test_a_view_someone_waits_on_is_not_forgotten() -> None:
    index = ChangeIndex(max_waiters=10)
    index.changed(["web"])
    woke: list[int] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def waiter() -> None:
                woke.append(await index.wait("web", 2))

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            index.forget("web")
            assert index.views == 1
            index.changed(["web"])
    assert woke == [3]
