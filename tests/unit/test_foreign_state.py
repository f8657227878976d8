"""Finding 8 of issue 10: what other owners can make a node hold is bounded and counted.

Deletions count toward the per-owner limit, entries of owners that are not
members expire after a bounded grace, and the total of other owners'
versions is capped.
"""

from __future__ import annotations

import random

import pytest

from gossip_registry.core.codec import encode_packet, encode_stream
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import EntryChanged, Notify
from gossip_registry.core.limits import Limits
from gossip_registry.core.messages import (
    Address,
    Alive,
    Dead,
    EntryUpdate,
    Packet,
    SyncFinish,
    Update,
)
from gossip_registry.core.protocol import Protocol
from gossip_registry.registry.clock import make_stamp
from gossip_registry.registry.entry import Entry, Health

ME: Address = ("198.18.0.1", 7946)
PEER: Address = ("198.18.0.2", 7946)
WALL = 1_800_000_000.0
GRACE = Limits().orphan_entry_grace
REAP = ProtocolConfig().reap_interval


def make(**limits: object) -> Protocol:
    config = ProtocolConfig(limits=Limits(**limits))  # type: ignore[arg-type]
    node = Protocol(config, "me", ME, rng=random.Random(3), now=0.0, wall_offset=WALL)
    node.start(0.0)
    return node


def entry(owner: str, i: int, *, at: float = 0.0, deleted: bool = False) -> Entry:
    return Entry(
        "web", f"{owner}-{i}", "198.18.1.1", 80, (), {}, 1, Health.PASSING, "", owner, 0,
        make_stamp(WALL + at), deleted,
    )  # fmt: skip


def gossip(node: Protocol, now: float, *updates: Update) -> list[object]:
    return list(node.handle_packet(now, PEER, encode_packet(Packet(None, updates))))


def reap_until(node: Protocol, until: float, start: float = 0.0) -> list[object]:
    """Fire the reap timer every reap interval after ``start`` up to ``until``; its effects."""
    effects: list[object] = []
    now = start
    while now + REAP <= until:
        now += REAP
        node._on_reap_tick(now, "")  # the timer's handler, without a heap
        effects += node.swim.drain(now)
    return effects


def test_deletions_count_toward_the_per_owner_limit() -> None:
    node = make(max_entries_per_owner=3)
    gossip(node, 1.0, Alive("p1", PEER, 0, {}))
    gossip(node, 1.0, *(EntryUpdate(entry("p1", i, deleted=True)) for i in range(3)))
    gossip(node, 1.0, EntryUpdate(entry("p1", 3)), EntryUpdate(entry("p1", 4, deleted=True)))
    assert len(node.table) == 3
    assert node.stats["entries_over_limit"] == 2
    gossip(node, 2.0, EntryUpdate(entry("p1", 0, at=1.0)))  # a key it holds: not growth
    assert node.table.live_count_of("p1") == 1


def test_local_deletions_count_toward_our_own_limit_too() -> None:
    node = make(max_entries_per_owner=2)
    node.register(1.0, "web", "a", "198.18.1.1", 80)
    node.deregister(1.0, ("web", "a"))
    node.register(1.0, "web", "b", "198.18.1.1", 80)
    with pytest.raises(ValueError, match="max_entries_per_owner"):
        node.register(1.0, "web", "c", "198.18.1.1", 80)
    node.register(2.0, "web", "a", "198.18.1.1", 80)  # its deletion's key is ours: reusable


def test_entries_of_an_owner_that_never_was_a_member_expire_after_the_grace() -> None:
    node = make()
    gossip(node, 1.0, *(EntryUpdate(entry("ghost", i)) for i in range(3)))
    assert node.table.live_count_of("ghost") == 3
    reap_until(node, GRACE - REAP)
    assert node.table.live_count_of("ghost") == 3
    effects = reap_until(node, GRACE + 2 * REAP, start=GRACE - REAP)
    assert node.table.live_count_of("ghost") == 0
    assert node.stats["orphan_entries_expired"] == 3
    gone = [e.event for e in effects if isinstance(e, Notify) and isinstance(e.event, EntryChanged)]
    assert sorted(c.old.instance_id for c in gone if c.old is not None) == [
        "ghost-0", "ghost-1", "ghost-2",
    ]  # fmt: skip
    gossip(node, 2 * GRACE, EntryUpdate(entry("ghost", 7, at=2 * GRACE)))  # still refused
    assert node.table.live_count_of("ghost") == 0


def test_an_orphan_that_joins_as_a_member_may_register_again() -> None:
    node = make()
    gossip(node, 1.0, EntryUpdate(entry("late", 0)))
    reap_until(node, GRACE + 2 * REAP)
    assert node.table.live_count_of("late") == 0
    now = GRACE + 3 * REAP
    gossip(node, now, Alive("late", PEER, 0, {}))
    gossip(node, now, EntryUpdate(entry("late", 1, at=now)))
    assert node.table.live_count_of("late") == 1


def test_a_members_entries_are_kept_past_the_grace() -> None:
    node = make()
    gossip(node, 1.0, Alive("p1", PEER, 0, {}), EntryUpdate(entry("p1", 0)))
    reap_until(node, 2 * GRACE)
    assert node.table.live_count_of("p1") == 1


def test_entries_of_a_reaped_member_expire_and_stay_out() -> None:
    config = ProtocolConfig(tombstone_horizon=GRACE)
    node = Protocol(config, "me", ME, rng=random.Random(3), now=0.0, wall_offset=WALL)
    node.start(0.0)
    gossip(node, 1.0, Alive("p1", PEER, 0, {}), EntryUpdate(entry("p1", 0)))
    gossip(node, 2.0, Dead("p1", 0, "x"))
    assert node.table.live_count_of("p1") == 0
    reap_until(node, 2 * GRACE + 2 * REAP)  # member reaped, its fence forgotten
    assert node.members.get("p1") is None
    later = 2 * GRACE + 3 * REAP
    gossip(node, later, EntryUpdate(entry("p1", 1, at=later)))  # a stale peer re-sends it
    reap_until(node, 4 * GRACE, start=later)
    assert node.table.live_count_of("p1") == 0


def test_the_total_of_other_owners_versions_is_capped_and_counted() -> None:
    node = make(max_foreign_entries=5)
    versions = tuple(entry(f"g{i}", 0, deleted=i % 2 == 1) for i in range(8))
    node.handle_stream(1.0, PEER, encode_stream(SyncFinish(None, versions)))
    assert len(node.table) == 5
    assert node.table.foreign_count("me") == 5
    assert node.stats["entries_over_total"] == 3
    node.register(1.0, "web", "mine", "198.18.1.1", 80)  # our own are not foreign
    assert len(node.table) == 6
    gossip(node, 2.0, EntryUpdate(entry("g0", 0, at=1.0)))  # a held key: not growth
    assert node.stats["entries_over_total"] == 3
