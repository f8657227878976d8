"""The check scheduler alone: which check runs when, driven by hand with ``now``.

The status rules of one check (thresholds, TTL, critical time) are tested in
test_health_rules.py; the trio runner that carries the scheduler out in
tests/integration/test_health_checks.py.
"""

from __future__ import annotations

import random

import pytest

from gossip_registry.registry.check_schedule import (
    CancelProbe,
    CheckEffect,
    ChecksChanged,
    CheckScheduler,
    DeregisterCritical,
    RunProbe,
)
from gossip_registry.registry.entry import CheckKind, CheckState, Entry, EntryKey, Health
from gossip_registry.registry.health import CheckSpec, assign_check_ids, initial_states

P, W, C = Health.PASSING, Health.WARNING, Health.CRITICAL
KEY: EntryKey = ("web", "w1")


def start(
    scheduler: CheckScheduler, now: float, key: EntryKey, *specs: CheckSpec
) -> list[CheckEffect]:
    named = assign_check_ids(key[1], specs)
    return scheduler.replace(now, key, named, initial_states(named))


def runs(effects: list[CheckEffect]) -> list[RunProbe]:
    return [e for e in effects if isinstance(e, RunProbe)]


def test_a_probe_check_first_runs_within_its_interval_then_every_interval() -> None:
    scheduler = CheckScheduler(random.Random(3))
    assert start(scheduler, 100.0, KEY, CheckSpec(tcp="a:1", interval=10.0, timeout=2.0)) == []
    first = scheduler.next_due
    assert 100.0 <= first < 110.0
    assert scheduler.advance(first - 0.001) == []
    [run] = runs(scheduler.advance(first))
    assert (run.key, run.timeout) == (KEY, 2.0)
    assert scheduler.next_due == float("inf")  # nothing until the result is back
    scheduler.probe_done(first + 1.5, run.token, P, "up")
    assert scheduler.next_due == first + 10.0  # counted from when the run was due


def test_first_runs_of_many_checks_are_spread_over_the_interval() -> None:
    scheduler = CheckScheduler(random.Random(4))
    for i in range(200):
        start(scheduler, 0.0, ("web", f"w{i}"), CheckSpec(tcp="a:1", interval=10.0))
    due = sorted(e.key for e in runs(scheduler.advance(5.0)))
    assert 60 <= len(due) <= 140  # about half in the first half of the interval


def test_at_most_max_concurrent_probes_run_and_the_rest_wait_in_order() -> None:
    scheduler = CheckScheduler(random.Random(5), max_concurrent=2)
    keys = [("web", f"w{i}") for i in range(4)]
    for key in keys:
        start(scheduler, 0.0, key, CheckSpec(tcp="a:1", interval=1.0))
    first = runs(scheduler.advance(1.0))
    assert len(first) == 2
    waiting = [k for k in keys if k not in {r.key for r in first}]
    [third] = runs(scheduler.probe_done(1.2, first[0].token, P, ""))
    [fourth] = runs(scheduler.probe_timed_out(1.3, first[1].token))
    assert [third.key, fourth.key] == sorted(waiting, key=waiting.index)
    assert scheduler.states(first[1].key)[0].output == "timed out after 1s"


def test_a_ttl_check_expires_unless_reported_and_a_report_applies_at_once() -> None:
    scheduler = CheckScheduler(random.Random(6))
    start(scheduler, 0.0, KEY, CheckSpec(ttl=30.0))
    assert scheduler.next_due == 30.0
    [changed] = scheduler.report_ttl(10.0, "service:w1", P, "up")
    assert changed == ChecksChanged(KEY, (CheckState("service:w1", CheckKind.TTL, P, "up"),))
    assert scheduler.report_ttl(20.0, "service:w1", P, "up") == []  # renewed, no change
    assert scheduler.advance(49.9) == []
    [expired] = scheduler.advance(50.0)
    assert expired == ChecksChanged(
        KEY, (CheckState("service:w1", CheckKind.TTL, C, "TTL expired"),)
    )
    assert scheduler.next_due == float("inf")  # critical until reported again
    [clipped] = scheduler.report_ttl(60.0, "service:w1", W, "x" * 1000)
    assert isinstance(clipped, ChecksChanged)
    assert len(clipped.states[0].output) == 256


def test_reports_on_unknown_or_probe_checks_are_refused() -> None:
    scheduler = CheckScheduler(random.Random(7))
    start(scheduler, 0.0, KEY, CheckSpec(tcp="a:1"))
    with pytest.raises(KeyError):
        scheduler.report_ttl(1.0, "nope", P)
    with pytest.raises(ValueError, match="is a tcp check, not ttl"):
        scheduler.report_ttl(1.0, "service:w1", P)


def test_a_ttl_check_critical_past_deregister_after_deregisters_once_and_stops() -> None:
    scheduler = CheckScheduler(random.Random(8))
    start(scheduler, 0.0, KEY, CheckSpec(ttl=5.0, deregister_after=60.0), CheckSpec(ttl=99.0))
    [expired] = scheduler.advance(5.0)
    assert isinstance(expired, ChecksChanged)
    assert expired.states[0].output == "TTL expired"
    assert scheduler.advance(59.0) == []  # critical from the start: since 0, not since 5
    assert scheduler.advance(60.0) == [DeregisterCritical(KEY)]
    assert len(scheduler) == 0
    assert scheduler.next_due == float("inf")


def test_a_probe_check_deregisters_at_its_first_result_past_deregister_after() -> None:
    scheduler = CheckScheduler(random.Random(9))
    start(scheduler, 0.0, KEY, CheckSpec(tcp="a:1", interval=10.0, deregister_after=15.0))
    results: list[CheckEffect] = []
    while not any(isinstance(e, DeregisterCritical) for e in results):
        now = scheduler.next_due
        assert now < 40.0
        [run] = runs(scheduler.advance(now))
        results = scheduler.probe_done(now, run.token, C, "down")
    assert 15.0 <= now < 25.0
    assert results[-1] == DeregisterCritical(KEY)


def test_removing_an_instance_cancels_its_probe_and_ignores_a_late_result() -> None:
    scheduler = CheckScheduler(random.Random(10), max_concurrent=1)
    start(scheduler, 0.0, KEY, CheckSpec(tcp="a:1", interval=1.0))
    start(scheduler, 0.0, ("web", "w2"), CheckSpec(tcp="a:1", interval=1.0))
    [run] = runs(scheduler.advance(1.0))
    effects = scheduler.remove(run.key)
    assert effects[0] == CancelProbe(run.token)
    [waiting] = runs(effects)  # the freed slot goes to the other check
    assert waiting.key != run.key
    assert scheduler.probe_done(1.5, run.token, P, "") == []


def test_restore_runs_only_the_checks_of_instances_still_ours_from_their_states() -> None:
    scheduler = CheckScheduler(random.Random(11))
    specs = assign_check_ids("w1", [CheckSpec(ttl=30.0)])
    warned = (CheckState("service:w1", CheckKind.TTL, W, "warming up"),)
    entry = Entry("web", "w1", "10.0.0.1", 80, (), {}, 1, W, "", "n1", 3, 7, False, warned)
    scheduler.restore(0.0, {KEY: entry}, [(KEY, specs), (("web", "gone"), specs)])
    assert scheduler.states(KEY) == warned
    assert scheduler.owner_of("service:w1") == KEY
    assert len(scheduler) == 1


def test_ttl_reports_far_more_often_than_it_expires_keep_the_heap_bounded() -> None:
    scheduler = CheckScheduler(random.Random(12))
    for i in range(10):
        start(scheduler, 0.0, ("web", f"w{i}"), CheckSpec(ttl=30.0))
    for step in range(10_000):
        scheduler.report_ttl(step * 0.001, f"service:w{step % 10}", P)
    assert len(scheduler._heap) <= 2 * 10 + 64 + 1
    assert scheduler.next_due == pytest.approx(9.990 + 30.0)  # w0's last report
