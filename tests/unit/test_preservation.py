"""The self-preservation state machine, driven by hand: deaths, returns, entries, time."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gossip_registry.registry.entry import Entry, Health
from gossip_registry.registry.preservation import Preservation, PreservationConfig


def entry(owner: str, instance_id: str, service: str = "web", port: int = 80) -> Entry:
    return Entry(
        service=service,
        instance_id=instance_id,
        address="10.0.0.1",
        port=port,
        tags=(),
        meta={},
        weight=1,
        status=Health.PASSING,
        output="",
        owner=owner,
        owner_incarnation=0,
        stamp=1,
        deleted=False,
    )


@dataclass(frozen=True)
class Case:
    name: str
    cluster: int
    """Members before anything happens, ourselves included."""
    deaths: tuple[tuple[float, str], ...]
    """(time, member) deaths, each followed by an evaluation, as a node does per batch."""
    active: bool


CASES = [
    Case("one death in five is believed", 5, ((0, "a"),), False),
    Case("one death in three is believed although it is a third", 3, ((0, "a"),), False),
    Case("one death in two is believed", 2, ((0, "a"),), False),
    Case("two deaths in five (40 %) start it", 5, ((0, "a"), (1, "b")), True),
    Case("three deaths in five start it", 5, ((0, "a"), (0, "b"), (0, "c")), True),
    Case("two deaths in ten (20 %) do not", 10, ((0, "a"), (1, "b")), False),
    Case(
        "three deaths in ten (30 %) do not: it must exceed",
        10,
        ((0, "a"), (1, "b"), (2, "c")),
        False,
    ),
    Case("four deaths in ten start it", 10, ((0, "a"), (1, "b"), (2, "c"), (3, "d")), True),
    Case("deaths further apart than the window do not add up", 5, ((0, "a"), (31, "b")), False),
    Case("deaths just inside the window add up", 5, ((0, "a"), (30, "b")), True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_preservation_starts_only_when_the_dead_share_in_the_window_exceeds_the_threshold(
    case: Case,
) -> None:
    machine = Preservation(PreservationConfig(threshold=0.3, window=30.0))
    for dead, (at, name) in enumerate(case.deaths, start=1):
        machine.member_died(at, name)
        machine.evaluate(at, case.cluster - dead)
    assert machine.active is case.active


def cut_off_three_of_five() -> Preservation:
    """Five members, three of which die at t=0 after their entries are kept."""
    machine = Preservation(PreservationConfig(threshold=0.3, window=30.0, max_duration=900.0))
    for name in ("a", "b", "c"):
        machine.member_died(0.0, name)
        machine.entry_removed(entry(name, f"{name}-1"))
    return machine


def test_entries_of_the_dead_are_kept_hidden_until_it_starts_then_shown_stale() -> None:
    machine = cut_off_three_of_five()
    assert not machine.active
    assert machine.stale("web") == []
    shown = machine.evaluate(0.0, 2)
    assert machine.active
    assert sorted(e.instance_id for e in shown) == ["a-1", "b-1", "c-1"]
    assert sorted(e.instance_id for e in machine.stale("web")) == ["a-1", "b-1", "c-1"]
    assert machine.stale_counts() == {"web": 3}
    assert machine.is_stale(entry("a", "a-1"))
    assert not machine.is_stale(entry("a", "a-1", port=81))  # another version is not the kept one


def test_an_entry_removed_while_active_is_shown_stale_at_once() -> None:
    machine = cut_off_three_of_five()
    machine.evaluate(0.0, 2)
    assert machine.entry_removed(entry("a", "a-2", service="db"))
    assert [e.instance_id for e in machine.stale("db")] == ["a-2"]


def test_entries_of_a_member_that_was_not_declared_dead_are_not_kept() -> None:
    machine = cut_off_three_of_five()
    machine.evaluate(0.0, 2)
    assert not machine.entry_removed(entry("left-gracefully", "x-1"))  # deregistered or left
    assert len(machine.stale("web")) == 3


def test_a_returning_owner_loses_its_stale_entries_and_the_view_recovers_below_threshold() -> None:
    machine = cut_off_three_of_five()
    machine.evaluate(0.0, 2)
    assert [e.instance_id for e in machine.member_returned("a")] == ["a-1"]
    assert machine.evaluate(1.0, 3) == []  # 2 of 5 still dead: 40 % > 30 %
    assert machine.active
    machine.member_returned("b")
    dropped = machine.evaluate(2.0, 4)  # 1 of 5: recovered; the last one's death is believed
    assert not machine.active
    assert [e.instance_id for e in dropped] == ["c-1"]
    assert machine.stale("web") == []
    assert machine.status(2.0)["dead_in_window"] == 0


def test_a_live_version_replaces_the_stale_copy_of_its_key() -> None:
    machine = cut_off_three_of_five()
    machine.evaluate(0.0, 2)
    machine.entry_replaced(entry("a", "a-1", port=9))
    assert sorted(e.instance_id for e in machine.stale("web")) == ["b-1", "c-1"]


def test_it_ends_by_itself_after_max_duration_and_drops_everything() -> None:
    machine = cut_off_three_of_five()
    machine.evaluate(0.0, 2)
    assert machine.deadline == 900.0
    assert machine.evaluate(899.0, 2) == []
    dropped = machine.evaluate(900.0, 2)
    assert not machine.active
    assert len(dropped) == 3
    assert machine.deadline == float("inf")
    # The deaths are believed now: one more death does not restart it.
    machine.member_died(901.0, "d")
    assert machine.evaluate(901.0, 1) == []
    assert not machine.active


def test_a_threshold_of_one_disables_it() -> None:
    machine = Preservation(PreservationConfig(threshold=1.0))
    for name in ("a", "b", "c", "d"):
        machine.member_died(0.0, name)
    machine.evaluate(0.0, 0)  # everyone else is dead: a share of exactly 1
    assert not machine.active


def test_status_reports_the_deaths_in_the_window_and_the_settings() -> None:
    machine = Preservation(PreservationConfig(threshold=0.3, window=30.0, max_duration=60.0))
    machine.member_died(0.0, "a")
    machine.evaluate(0.0, 9)
    assert machine.status(10.0) == {
        "active": False,
        "since": None,
        "dead_in_window": 1,
        "threshold": 0.3,
        "window": 30.0,
        "max_duration": 60.0,
    }
    assert machine.status(31.0)["dead_in_window"] == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"window": 0.5}, "window"),
        ({"window": 7200.0}, "window"),
        ({"max_duration": 0.0}, "max_duration"),
        ({"max_duration": float("nan")}, "max_duration"),
    ],
)
def test_config_out_of_range_is_refused_naming_the_field(
    kwargs: dict[str, float], field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        PreservationConfig(**kwargs)
