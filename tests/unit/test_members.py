"""SWIM precedence and the member table's probe ring."""

import random
from dataclasses import replace

import pytest

from gossip_registry.core.members import MemberSeed, MemberTable, wins
from gossip_registry.core.messages import MemberRecord, MemberState

A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT


def rec(name: str = "x", incarnation: int = 5, state: MemberState = A) -> MemberRecord:
    return MemberRecord(name, ("198.18.0.1", 7946), incarnation, state, {})


@pytest.mark.parametrize(
    ("incoming", "incarnation", "held", "expected"),
    [
        (A, 0, None, True),
        (S, 9, None, False),
        (D, 9, None, False),
        (A, 5, rec(state=A), False),
        (A, 6, rec(state=S), True),
        (A, 5, rec(state=S), False),
        (A, 6, rec(state=D), True),
        (A, 5, rec(state=D), False),
        (S, 5, rec(state=A), True),
        (S, 4, rec(state=A), False),
        (S, 9, rec(state=D), True),
        (S, 5, rec(state=D), False),
        (D, 9, rec(state=D), True),
        (D, 5, rec(state=S), True),
        (D, 5, rec(state=A), True),
        (D, 4, rec(state=A), False),
        (D, 9, rec(state=L), True),
        (D, 5, rec(state=L), False),
        (L, 5, rec(state=D), True),
        (L, 5, rec(state=L), False),
        (L, 4, rec(state=A), False),
    ],
)
def test_precedence_follows_incarnation_then_state(
    incoming: MemberState, incarnation: int, held: MemberRecord | None, expected: bool
) -> None:
    assert wins(incoming, incarnation, held) is expected


def table_with(n: int, seed: int = 1) -> MemberTable:
    table = MemberTable(rec("me", 0), random.Random(seed))
    for i in range(n):
        table.put(rec(f"m{i}", 0), now=0.0)
    return table


def next_target(table: MemberTable) -> str:
    target = table.next_probe_target()
    assert target is not None, "the table has members to probe"
    return target


def test_round_robin_probes_every_active_member_once_per_round() -> None:
    table = table_with(20)
    first = [next_target(table) for _ in range(20)]
    second = [next_target(table) for _ in range(20)]
    assert sorted(first) == sorted(second) == sorted(f"m{i}" for i in range(20))
    assert "me" not in first


def test_failed_members_leave_the_ring_and_digest_tracks_state() -> None:
    table = table_with(5)
    before = table.digest
    table.put(rec("m1", 0, D), now=3.0)
    assert table.active_count == 5
    assert table.since("m1") == 3.0
    assert "m1" not in {table.next_probe_target() for _ in range(10)}
    assert table.digest != before
    table.put(rec("m1", 1, A), now=4.0)
    assert table.since("m1") is None
    assert table.active_count == 6


def test_sample_never_returns_self_or_the_excluded_member() -> None:
    table = table_with(50)
    for _ in range(200):
        picked = table.sample(3, exclude="m7")
        assert len(set(picked)) == 3
        assert "m7" not in picked
        assert "me" not in picked
    assert sorted(table_with(2).sample(5, exclude="m0")) == ["m1"]


def test_gossip_targets_reach_every_active_member_before_repeating_one() -> None:
    # A node sends an update only retransmit_limit(n) times; drawn at random,
    # those sends could all miss one member (1 leave in 50 went unheard by a
    # peer of an 8-node cluster until push-pull, 30 s later). Walked in turn,
    # they reach min(limit, n - 1) distinct members.
    table = table_with(7)
    for k in (1, 2, 3, 7):
        walked = [name for _ in range(7) for name in table.gossip_targets(k)][:7]
        assert sorted(walked) == sorted(f"m{i}" for i in range(7)), k
    assert sorted(table.gossip_targets(10)) == sorted(f"m{i}" for i in range(7))
    table.put(rec("m3", 0, D), now=1.0)
    assert "m3" not in {n for _ in range(10) for n in table.gossip_targets(3)}
    assert table_with(0).gossip_targets(3) == []


def test_digest_is_independent_of_insertion_order() -> None:
    one, two = table_with(0), table_with(0)
    records = [rec(f"m{i}", i, A) for i in range(10)]
    for r in records:
        one.put(r, 0.0)
    for r in reversed(records):
        two.put(r, 0.0)
    assert one.digest == two.digest


def test_name_at_finds_the_active_member_on_an_address_in_own_changes_and_a_shared_seed() -> None:
    def at(name: str, i: int, state: MemberState = A) -> MemberRecord:
        return MemberRecord(name, ("198.18.0.1", 7000 + i), 1, state, {})

    table = MemberTable(at("me", 0), random.Random(1))
    table.seed(MemberSeed.build([at("me", 0), at("a", 1), at("b", 2, D)]))
    assert table.name_at(("198.18.0.1", 7001)) == "a"
    assert table.name_at(("198.18.0.1", 7002)) is None, "a dead member is nobody to check"
    assert table.name_at(("198.18.0.1", 7000)) is None, "never ourselves"
    # "c" restarted on b's address under a new name; then a moves away.
    table.put(at("c", 2), 1.0)
    assert table.name_at(("198.18.0.1", 7002)) == "c"
    table.put(replace(at("a", 9), incarnation=2), 1.0)
    assert table.name_at(("198.18.0.1", 7001)) is None
    assert table.name_at(("198.18.0.1", 7009)) == "a"
    table.put(replace(at("a", 9), incarnation=2, state=D), 2.0)
    assert table.name_at(("198.18.0.1", 7009)) is None
    table.remove("c")
    assert table.name_at(("198.18.0.1", 7002)) is None
