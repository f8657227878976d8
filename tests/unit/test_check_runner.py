"""The health-check runner (``gossip_registry/runtime/checks.py``) on trio's mock clock.

A scripted probe stands in for HTTP and TCP, so these tests need no socket
and wait no real time: ``autojump_clock`` jumps to the runner's next due
time. The scheduling rules themselves are in test_check_schedule.py and the
status rules in test_health_rules.py; real probes over loopback are in
tests/integration/test_health_checks.py.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from gossip_registry.registry.entry import CheckKind, CheckState, EntryKey, Health
from gossip_registry.registry.health import CheckSpec, assign_check_ids, initial_states
from gossip_registry.runtime.checks import CheckRunner, http_status
from tests.polling import wait_until

P, W, C = Health.PASSING, Health.WARNING, Health.CRITICAL
KEY: EntryKey = ("web", "w1")


class Recorder:
    """The node's side of a runner: remembers what changed and what it had to deregister."""

    def __init__(self) -> None:
        self.changes: list[EntryKey] = []
        self.deregistered: list[EntryKey] = []

    def runner(
        self, probe: Callable[[CheckSpec], object] | None = None, **kw: object
    ) -> CheckRunner:
        return CheckRunner(
            on_change=self.changes.append,
            on_deregister=self.deregistered.append,
            rng=random.Random(1),
            probe=probe,  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )


def start(runner: CheckRunner, key: EntryKey, *specs: CheckSpec) -> None:
    named = assign_check_ids(key[1], specs)
    runner.replace(key, named, initial_states(named))


def scripted(results: Iterator[Health]) -> Callable[[CheckSpec], object]:
    async def probe(spec: CheckSpec) -> tuple[Health, str]:
        status = next(results)
        return status, f"scripted {status}"

    return probe


async def test_a_flapping_check_does_not_flap_the_registry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    runner = recorder.runner(scripted(itertools.cycle([P, C, C])))
    async with running(runner, 600):
        spec = CheckSpec(
            tcp="a:1", interval=1.0, success_before_passing=2, failures_before_critical=3
        )
        start(runner, KEY, spec)
        await trio.sleep(60)  # 60 probes: never 2 passes nor 3 failures in a row
        assert recorder.changes == []
        assert runner.states(KEY)[0].status is C


async def test_thresholds_let_a_steady_check_through_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    runner = recorder.runner(scripted(itertools.chain([P] * 5, itertools.repeat(C))))
    async with running(runner, 600):
        start(runner, KEY, CheckSpec(tcp="a:1", interval=1.0, success_before_passing=2,
                                     failures_before_critical=3))  # fmt: skip
        await trio.sleep(4.5)  # first run within 1 s, then every second: 4 or 5 runs
        assert recorder.changes == [KEY]
        assert runner.states(KEY)[0].status is P
        await trio.sleep(10)
        assert recorder.changes == [KEY, KEY]
        assert runner.counts() == {"passing": 0, "warning": 0, "critical": 1}


async def test_first_runs_are_spread_over_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first_runs: dict[str | None, float] = {}

    async def probe(spec: CheckSpec) -> tuple[Health, str]:
        first_runs.setdefault(spec.check_id, trio.current_time())
        return P, ""

    runner = Recorder().runner(probe)
    async with running(runner, 600):
        began = trio.current_time()
        for i in range(50):
            start(runner, ("web", f"w{i}"), CheckSpec(tcp="a:1", interval=10.0))
        await trio.sleep(10)
        offsets = sorted(t - began for t in first_runs.values())
        assert len(offsets) == 50
        assert offsets[-1] - offsets[0] > 5.0  # spread, not fired together
        assert sum(o < 5.0 for o in offsets) in range(15, 36)  # about half in each half


async def test_ttl_check_expires_to_critical_and_recovers_on_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    runner = recorder.runner()
    async with running(runner, 600):
        start(runner, KEY, CheckSpec(ttl=30.0))
        runner.report_ttl("service:w1", P, "up")
        assert runner.states(KEY)[0] == CheckState("service:w1", CheckKind.TTL, P, "up")
        await trio.sleep(29)
        runner.report_ttl("service:w1", P, "up")  # renews the TTL, changes nothing
        assert recorder.changes == [KEY]
        await trio.sleep(29)
        assert runner.states(KEY)[0].status is P
        await trio.sleep(2)
        assert runner.states(KEY)[0] == CheckState("service:w1", CheckKind.TTL, C, "TTL expired")
        runner.report_ttl("service:w1", W, "x" * 1000)
        state = runner.states(KEY)[0]
        assert state.status is W
        assert len(state.output) == 256  # clipped to what the wire carries
        assert recorder.changes == [KEY, KEY, KEY]


async def test_report_on_an_unknown_or_non_ttl_check_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = Recorder().runner(scripted(itertools.repeat(P)))
    async with running(runner, 600):
        start(runner, KEY, CheckSpec(tcp="a:1"))
        with pytest.raises(KeyError):
            runner.report_ttl("nope", P)
        with pytest.raises(ValueError, match="is a tcp check, not ttl"):
            runner.report_ttl("service:w1", P)


async def test_critical_past_deregister_after_asks_for_deregistration_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    runner = recorder.runner()
    async with running(runner, 600):
        start(runner, KEY, CheckSpec(ttl=5.0, deregister_after=60.0))
        await trio.sleep(59)
        assert recorder.deregistered == []
        await trio.sleep(2)
        assert recorder.deregistered == [KEY]
        assert runner.states(KEY) == ()
        assert len(runner) == 0
        await trio.sleep(100)
        assert recorder.deregistered == [KEY]


@pytest.mark.parametrize(("code", "status"), [(200, P), (204, P), (429, W), (500, C), (302, C)])
def test_http_codes_map_like_consul(code: int, status: Health) -> None:
    assert http_status(code) is status


# --- what the runner adds to the scheduler: tasks, timeouts, cancellation ---------------


@asynccontextmanager
async def running(runner: CheckRunner, timeout: float) -> AsyncIterator[None]:
    """The runner running in a nursery of its own, stopped at the end, all within ``timeout``."""
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            yield
            nursery.cancel_scope.cancel()


class Hanging:
    """A probe that never finishes on its own; notes which checks began and were cancelled."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.cancelled: list[str] = []

    async def probe(self, spec: CheckSpec) -> tuple[Health, str]:
        assert spec.check_id is not None
        self.entered.append(spec.check_id)
        try:
            await trio.sleep_forever()
        finally:
            self.cancelled.append(spec.check_id)
        raise AssertionError("unreachable")


async def test_a_probe_that_raises_is_critical_with_the_error_and_the_runner_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = itertools.count()

    async def probe(spec: CheckSpec) -> tuple[Health, str]:
        if next(calls) == 0:
            raise ValueError("no scheme in 'x'")
        return P, "fine"

    recorder = Recorder()
    runner = recorder.runner(probe)
    async with running(runner, 60):
        start(runner, KEY, CheckSpec(tcp="a:1", interval=1.0))
        await wait_until(lambda: runner.states(KEY)[0].output != "")  # the first run
        assert runner.states(KEY)[0].output == "ValueError: no scheme in 'x'"
        assert runner.states(KEY)[0].status is C
        await wait_until(lambda: runner.states(KEY)[0].status is P)  # the next one, 1 s on
        assert runner.states(KEY)[0].output == "fine"
        assert recorder.changes == [KEY, KEY]


async def test_a_probe_past_its_timeout_is_cancelled_and_counts_as_critical(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hanging, recorder = Hanging(), Recorder()
    runner = recorder.runner(hanging.probe)
    async with running(runner, 60):
        start(runner, KEY, CheckSpec(tcp="a:1", interval=2.0, timeout=0.5))
        await wait_until(lambda: hanging.cancelled != [])  # the first run, and its timeout
        assert hanging.entered == hanging.cancelled == ["service:w1"]
        state = runner.states(KEY)[0]
        assert (state.status, state.output) == (C, "timed out after 0.5s")
        assert recorder.changes == [KEY]  # still critical, with the reason now


async def test_removing_an_instance_cancels_its_probe_in_flight_and_drops_the_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hanging, recorder = Hanging(), Recorder()
    runner = recorder.runner(hanging.probe)
    async with running(runner, 60):
        start(runner, KEY, CheckSpec(tcp="a:1", interval=10.0, timeout=5.0))
        await wait_until(lambda: hanging.entered != [])  # the probe is in flight
        runner.remove(KEY)
        await trio.testing.wait_all_tasks_blocked()
        assert hanging.cancelled == ["service:w1"]
        assert len(runner) == 0
        assert runner.states(KEY) == ()
        await trio.sleep(30)
        assert hanging.entered == ["service:w1"]  # nothing runs for it any more
        assert recorder.changes == []


async def test_no_more_than_max_concurrent_probes_are_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    in_flight: list[int] = [0, 0]  # now, most ever
    ran = 0

    async def probe(spec: CheckSpec) -> tuple[Health, str]:
        nonlocal ran
        ran += 1
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            await trio.sleep(3)  # slow, within its timeout
        finally:
            in_flight[0] -= 1
        return P, ""

    runner = Recorder().runner(probe, max_concurrent=2)
    async with running(runner, 120):
        for i in range(5):
            start(runner, ("web", f"w{i}"), CheckSpec(tcp="a:1", interval=5.0, timeout=4.0))
        await trio.sleep(60)
    assert in_flight == [0, 2]  # the others waited their turn; stopping ended the rest
    assert ran >= 5


async def test_a_check_due_sooner_than_the_sleep_wakes_the_runner_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs: list[tuple[str | None, float]] = []

    async def probe(spec: CheckSpec) -> tuple[Health, str]:
        runs.append((spec.check_id, trio.current_time()))
        return P, ""

    runner = Recorder().runner(probe)
    async with running(runner, 600):
        start(runner, ("slow", "s1"), CheckSpec(tcp="a:1", interval=300.0))
        await trio.testing.wait_all_tasks_blocked()  # asleep until the slow check's turn
        began = trio.current_time()
        start(runner, KEY, CheckSpec(tcp="a:1", interval=1.0))
        await trio.sleep(3)
        fast = [t - began for check, t in runs if check == "service:w1"]
        assert len(fast) >= 2
        assert fast[0] < 1.0


def test_checks_cannot_start_on_a_runner_that_is_not_running() -> None:
    runner = Recorder().runner(scripted(itertools.repeat(P)))
    with pytest.raises(RuntimeError, match="not running"):
        start(runner, KEY, CheckSpec(tcp="a:1"))
    assert len(runner) == 0
