"""The event-loop stall meter: the longest task step, counted from a clock we drive."""

from __future__ import annotations

import pytest

from gossip_registry.runtime.stall import RECENT_STALLS, STALL_THRESHOLD, StallMeter


class _Task:
    def __init__(self, name: str) -> None:
        self.name = name


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def step(
    meter: StallMeter, clock: _Clock, name: str, took: float, cpu: _Clock | None = None
) -> None:
    """One task step of ``took`` seconds; of CPU too, unless ``cpu`` is a clock of its own."""
    task = _Task(name)
    meter.before_task_step(task)  # type: ignore[arg-type]
    clock.now += took
    if cpu is not None and cpu is not clock:
        cpu.now += took
    meter.after_task_step(task)  # type: ignore[arg-type]


def test_the_longest_task_step_is_kept_with_its_task_and_long_ones_are_counted() -> None:
    clock = _Clock()
    meter = StallMeter(clock, clock)
    step(meter, clock, "receive", 0.002)
    step(meter, clock, "merge", STALL_THRESHOLD + 0.03)
    step(meter, clock, "timer", 0.010)
    step(meter, clock, "http", STALL_THRESHOLD + 0.001)
    assert meter.longest == pytest.approx(STALL_THRESHOLD + 0.03)
    assert meter.longest_task == "merge"
    assert meter.stalls == 2
    clock.now += 1.0
    status = meter.status()
    recent = status.pop("recent_stalls")
    assert status == {
        "longest_stall_ms": pytest.approx((STALL_THRESHOLD + 0.03) * 1000),
        "longest_stall_task": "merge",
        "stalls_over_threshold": 2,
        "longest_cpu_step_ms": pytest.approx((STALL_THRESHOLD + 0.03) * 1000),
        "cpu_stalls_over_threshold": 2,
        "threshold_ms": STALL_THRESHOLD * 1000,
    }
    assert recent == [
        {"ago_s": pytest.approx(1.061), "ms": pytest.approx(80.0), "cpu_ms": 80.0, "task": "merge"},
        {"ago_s": pytest.approx(1.0), "ms": pytest.approx(51.0), "cpu_ms": 51.0, "task": "http"},
    ]


def test_a_step_the_process_spent_waiting_for_a_cpu_is_a_stall_but_not_a_cpu_stall() -> None:
    """On a host with more busy processes than cores a step lasts long while another runs.

    Peers see the same silence, so it is a stall; but no code of ours blocked the
    loop, and only the CPU time tells the two apart.
    """
    clock, cpu = _Clock(), _Clock()
    meter = StallMeter(clock, cpu)
    meter.before_task_step(_Task("send"))  # type: ignore[arg-type]
    clock.now += 0.08  # descheduled for most of it
    cpu.now += 0.002
    meter.after_task_step(_Task("send"))  # type: ignore[arg-type]
    step(meter, clock, "merge", STALL_THRESHOLD + 0.005, cpu)  # on the CPU throughout
    assert (meter.stalls, meter.cpu_stalls) == (2, 1)
    status = meter.status()
    assert status["longest_stall_task"] == "send"
    assert status["longest_cpu_step_ms"] == pytest.approx((STALL_THRESHOLD + 0.005) * 1000)
    assert [(r["task"], r["cpu_ms"]) for r in status["recent_stalls"]] == [  # type: ignore[attr-defined]
        ("send", pytest.approx(2.0)),
        ("merge", pytest.approx((STALL_THRESHOLD + 0.005) * 1000)),
    ]


def test_time_between_steps_is_not_a_stall() -> None:
    clock = _Clock()
    meter = StallMeter(clock, clock)
    step(meter, clock, "a", 0.001)
    clock.now = 200.0  # the loop slept: nothing was blocked
    step(meter, clock, "b", 0.001)
    assert meter.longest == pytest.approx(0.001)
    assert meter.stalls == 0


def test_the_step_the_meter_was_installed_in_is_not_measured() -> None:
    clock = _Clock()
    meter = StallMeter(clock, clock)
    clock.now += 1.0
    meter.after_task_step(_Task("installer"))  # type: ignore[arg-type]
    assert meter.longest == 0.0
    assert meter.stalls == 0


def test_only_the_most_recent_stalls_are_kept() -> None:
    clock = _Clock()
    meter = StallMeter(clock, clock)
    for i in range(RECENT_STALLS + 5):
        step(meter, clock, f"t{i}", 2 * STALL_THRESHOLD)
    recent = meter.status()["recent_stalls"]
    assert isinstance(recent, list)
    assert [r["task"] for r in recent] == [f"t{i}" for i in range(5, RECENT_STALLS + 5)]
    assert meter.stalls == RECENT_STALLS + 5
