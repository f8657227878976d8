"""Hybrid logical clock: monotonic whatever the wall clock does, causal across nodes."""

from __future__ import annotations

import itertools
import math

import pytest

from gossip_registry.registry.clock import (
    LOGICAL_BITS,
    LOGICAL_MASK,
    HybridClock,
    make_stamp,
    stamp_wall,
)

T0 = 1_700_000_000.123


def test_tick_follows_the_wall_clock_when_it_moves_forward() -> None:
    clock = HybridClock()
    assert clock.tick(T0) == make_stamp(T0)
    assert clock.tick(T0 + 1.5) == make_stamp(T0 + 1.5)
    assert clock.last == make_stamp(T0 + 1.5)


def test_ticks_increase_when_the_wall_clock_stands_still() -> None:
    clock = HybridClock()
    stamps = [clock.tick(T0) for _ in range(1000)]
    assert stamps == sorted(set(stamps))
    assert stamps[-1] == make_stamp(T0, 999)
    assert all(stamp_wall(s) == stamp_wall(stamps[0]) for s in stamps)


def test_ticks_increase_when_the_wall_clock_goes_backwards() -> None:
    clock = HybridClock()
    walls = [T0, T0 - 10.0, T0 + 0.001, T0 - 3600.0, 0.0, T0 + 0.002, T0 - 0.5]
    stamps = [clock.tick(w) for w in walls]
    assert all(b > a for a, b in itertools.pairwise(stamps))


def test_clock_catches_up_with_the_wall_clock_after_a_step_back() -> None:
    clock = HybridClock()
    clock.tick(T0)
    clock.tick(T0 - 10.0)
    assert clock.tick(T0 + 1.0) == make_stamp(T0 + 1.0)


def test_observing_a_far_future_stamp_makes_the_next_tick_exceed_it() -> None:
    clock = HybridClock()
    clock.tick(T0)
    far = make_stamp(T0 + 86_400.0, 7)
    clock.observe(far)
    assert clock.last == far
    assert clock.tick(T0 + 1.0) == far + 1


def test_observing_an_older_stamp_does_not_move_the_clock_back() -> None:
    clock = HybridClock()
    latest = clock.tick(T0)
    clock.observe(make_stamp(T0 - 5.0))
    assert clock.last == latest
    assert clock.tick(T0) > latest


def test_logical_counter_overflow_carries_into_the_millisecond_part() -> None:
    clock = HybridClock(last=make_stamp(T0, LOGICAL_MASK))
    stamp = clock.tick(T0)
    assert stamp == make_stamp(T0 + 0.001, 0)
    assert stamp > make_stamp(T0, LOGICAL_MASK)
    assert stamp_wall(stamp) == pytest.approx(T0 + 0.001, abs=1e-6)


def test_clock_restored_from_a_saved_stamp_continues_above_it() -> None:
    saved = make_stamp(T0 + 60.0, 3)
    clock = HybridClock(last=saved)
    assert clock.tick(T0) == saved + 1


@pytest.mark.parametrize("wall", [0.0, 0.001, 1.0, 12.345, T0, 4_102_444_800.999])
def test_stamp_wall_round_trips_to_the_millisecond(wall: float) -> None:
    stamp = make_stamp(wall, 42)
    assert stamp & LOGICAL_MASK == 42
    assert stamp_wall(stamp) == pytest.approx(wall, abs=0.0005)
    assert make_stamp(stamp_wall(stamp), 42) == stamp


@pytest.mark.parametrize("ms", [0, 1, 999, 1_001, 1_700_000_000_123, 4_102_444_800_999])
def test_make_stamp_of_stamp_wall_gives_back_the_physical_part_exactly(ms: int) -> None:
    stamp = (ms << LOGICAL_BITS) | 5
    assert make_stamp(stamp_wall(stamp)) == ms << LOGICAL_BITS


@pytest.mark.parametrize("wall", [-0.001, -1.0, math.nan, math.inf, -math.inf])
def test_negative_or_non_finite_wall_time_is_rejected(wall: float) -> None:
    with pytest.raises(ValueError, match="wall time"):
        HybridClock().tick(wall)
    with pytest.raises(ValueError, match="wall time"):
        make_stamp(wall)


def test_negative_stamps_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        HybridClock(last=-1)
    with pytest.raises(ValueError, match="non-negative"):
        HybridClock().observe(-1)
    with pytest.raises(ValueError, match="non-negative"):
        stamp_wall(-1)


@pytest.mark.parametrize("logical", [-1, LOGICAL_MASK + 1])
def test_make_stamp_rejects_a_logical_counter_outside_16_bits(logical: int) -> None:
    with pytest.raises(ValueError, match="16 bits"):
        make_stamp(T0, logical)
