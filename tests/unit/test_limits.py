"""Limits where data enters the core: member cap, entries per owner, packet size, clock skew."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from gossip_registry.core.codec import encode_packet, encode_stream
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import (
    Effect,
    EntryChanged,
    Notify,
    SetTimer,
    Timer,
    TimerKind,
)
from gossip_registry.core.limits import Limits
from gossip_registry.core.messages import (
    Address,
    Alive,
    EntryUpdate,
    MemberRecord,
    MemberState,
    Packet,
    SyncFinish,
)
from gossip_registry.core.protocol import Protocol
from gossip_registry.registry.clock import make_stamp, stamp_wall
from gossip_registry.registry.entry import Entry, Health

ME: Address = ("198.18.0.1", 7946)
PEER: Address = ("198.18.0.2", 7946)
WALL = 1_800_000_000.0
"""Wall-clock seconds at now=0 (2027): stamps look like real ones."""
YEAR = 365 * 24 * 3600.0
DAY = 24 * 3600.0


def make(**limits: object) -> Protocol:
    config = ProtocolConfig(limits=Limits(**limits))  # type: ignore[arg-type]
    node = Protocol(config, "me", ME, rng=random.Random(3), now=0.0, wall_offset=WALL)
    node.start(0.0)
    return node


def entry(owner: str, i: int, *, wall: float = WALL, deleted: bool = False) -> Entry:
    return Entry(
        service="web",
        instance_id=f"{owner}-{i}",
        address="198.18.1.1",
        port=80,
        tags=(),
        meta={},
        weight=1,
        status=Health.PASSING,
        output="",
        owner=owner,
        owner_incarnation=0,
        stamp=make_stamp(wall),
        deleted=deleted,
    )


def gossip(node: Protocol, now: float, *updates: Alive | EntryUpdate) -> None:
    node.handle_packet(now, PEER, encode_packet(Packet(None, updates)))


# --- members per cluster ----------------------------------------------------------------


def test_a_flood_of_fake_alive_members_stops_at_the_cap_and_is_counted() -> None:
    node = make(max_members=10)
    for batch in range(5):
        fakes = [Alive(f"fake{batch}-{i}", PEER, 1, {}) for i in range(10)]
        gossip(node, 1.0, *fakes)
    assert len(node.members) == 10
    assert node.stats["members_refused"] == 50 - 9
    known = next(r.name for r in node.members if r.name != "me")
    gossip(node, 2.0, Alive(known, PEER, 7, {}))  # news about a known member still counts
    record = node.members.get(known)
    assert record is not None
    assert record.incarnation == 7


def test_a_push_pull_member_list_cannot_exceed_the_cap_either() -> None:
    node = make(max_members=5)
    records = tuple(
        MemberRecord(f"m{i}", PEER, 1, MemberState.DEAD if i % 2 else MemberState.ALIVE, {})
        for i in range(20)
    )
    node.handle_stream(1.0, PEER, encode_stream(SyncFinish(records, ())))
    assert len(node.members) == 5
    assert node.stats["members_refused"] == 20 - 4


# --- entries per owner ---------------------------------------------------------------------


def test_a_peers_entries_beyond_the_per_owner_limit_are_dropped_and_counted() -> None:
    node = make(max_entries_per_owner=3)
    gossip(node, 1.0, *(EntryUpdate(entry("p1", i)) for i in range(5)))
    assert node.table.live_count_of("p1") == 3
    assert node.stats["entries_over_limit"] == 2
    gossip(node, 1.0, EntryUpdate(entry("p2", 0)))  # another owner has its own budget
    assert node.table.live_count_of("p2") == 1
    newer = replace(entry("p1", 0, wall=WALL + 1), port=81)
    gossip(node, 2.0, EntryUpdate(newer))  # replacing a held entry is not growth
    assert node.table.get(newer.key) == newer
    gossip(node, 3.0, EntryUpdate(entry("p1", 1, wall=WALL + 2, deleted=True)))
    gossip(node, 4.0, EntryUpdate(entry("p1", 4, wall=WALL + 3)))  # the deletion holds its slot
    assert node.table.live_count_of("p1") == 2
    assert node.stats["entries_over_limit"] == 3
    node.table.collect(WALL + DAY + 10, DAY)  # until it is collected
    gossip(node, 5.0, EntryUpdate(entry("p1", 4, wall=WALL + 4)))
    assert node.table.live_count_of("p1") == 3
    assert node.stats["entries_over_limit"] == 3


def test_registering_beyond_the_limit_locally_is_a_clear_error() -> None:
    node = make(max_entries_per_owner=2)
    node.register(1.0, "web", "a", "198.18.1.1", 80)
    node.register(1.0, "web", "b", "198.18.1.1", 80)
    with pytest.raises(ValueError, match="max_entries_per_owner"):
        node.register(1.0, "web", "c", "198.18.1.1", 80)
    node.register(2.0, "web", "a", "198.18.1.1", 81)  # overwriting one of ours is fine
    assert node.table.live_count_of("me") == 2


# --- packet size ---------------------------------------------------------------------


def test_a_datagram_over_the_packet_limit_is_dropped_before_decoding() -> None:
    node = make(max_packet_bytes=600)
    small = encode_packet(Packet(None, (Alive("a", PEER, 1, {}),)))
    big = encode_packet(Packet(None, (Alive("b", PEER, 1, {"k": "v" * 600}),)))
    node.handle_packet(1.0, PEER, small)
    node.handle_packet(1.0, PEER, big)
    assert node.members.get("a") is not None
    assert node.members.get("b") is None
    assert node.stats["malformed_packets"] == 1


def test_limits_refuse_nonsense_values() -> None:
    for bad in ({"max_members": 0}, {"max_clock_skew": float("inf")}, {"max_packet_bytes": 100}):
        with pytest.raises(ValueError, match=r"limits\.max_"):
            Limits(**bad)
    with pytest.raises(ValueError, match="max_members"):
        Limits(max_members=True)


# --- clock skew ----------------------------------------------------------------------


def test_an_entry_stamped_beyond_the_skew_limit_is_dropped_and_not_observed() -> None:
    node = make(max_clock_skew=60.0)
    clock_before = node.clock.last
    digest_before = node.table.digest
    gossip(node, 1.0, EntryUpdate(entry("p1", 0, wall=WALL + YEAR)))
    assert node.stats["entries_from_future"] == 1
    assert node.table.digest == digest_before
    assert node.clock.last == clock_before
    gossip(node, 1.0, EntryUpdate(entry("p1", 1, wall=WALL + 30)))  # within the bound
    assert node.table.live_count_of("p1") == 1
    assert stamp_wall(node.clock.last) == WALL + 30


def test_an_owner_whose_clock_was_a_year_ahead_restamps_its_entries_once_it_is_sane() -> None:
    node = make(max_clock_skew=60.0)
    node.wall_offset = WALL + YEAR  # the operator's clock is a year off
    node.register(1.0, "web", "kept", "198.18.1.1", 80)
    node.register(1.0, "web", "gone", "198.18.1.1", 80)
    node.deregister(1.0, ("web", "gone"))
    node.wall_offset = WALL  # NTP fixed it
    node.register(2.0, "web", "new", "198.18.1.1", 80)
    assert node.stats["clock_resets"] == 1
    for key in (("web", "kept"), ("web", "gone"), ("web", "new")):
        stored = node.table.get(key)
        assert stored is not None
        assert WALL <= stamp_wall(stored.stamp) <= WALL + 3, key
    gone = node.table.get(("web", "gone"))
    assert gone is not None
    assert gone.deleted
    assert stamp_wall(node.clock.last) <= WALL + 3


def probe_timer(effects: list[Effect]) -> tuple[float, Timer]:
    """The probe tick armed among ``effects``."""
    return next(
        (e.at, e.timer)
        for e in effects
        if isinstance(e, SetTimer) and e.timer.kind is TimerKind.PROBE
    )


def test_a_corrected_clock_restamps_refused_entries_at_the_next_probe_without_a_new_write() -> None:
    node = Protocol(
        ProtocolConfig(), "me", ME, rng=random.Random(3), now=0.0, wall_offset=WALL + 600
    )
    at, timer = probe_timer(node.start(0.0))
    node.register(0.0, "web", "w1", "198.18.1.1", 80)  # stamped ten minutes ahead
    node.observe_wall(0.0, WALL)  # NTP steps the clock back
    effects = node.handle_timer(at, timer)
    assert node.stats["clock_resets"] == 1
    stored = node.table.get(("web", "w1"))
    assert stored is not None
    assert WALL <= stamp_wall(stored.stamp) <= WALL + at + 0.001
    changed = [e.event for e in effects if isinstance(e, Notify)]
    assert changed == [EntryChanged(None, stored)]  # re-gossiped like any write


def test_the_driver_passes_wall_time_and_later_stamps_follow_it() -> None:
    node = make(max_clock_skew=60.0)
    node.observe_wall(5.0, WALL + 1000.0)
    written, _ = node.register(5.0, "web", "w1", "198.18.1.1", 80)
    assert stamp_wall(written.stamp) == WALL + 1000.0
    assert node.wall_offset == WALL + 995.0


def test_a_write_after_a_clock_reset_beats_an_own_version_stamped_within_the_skew() -> None:
    node = make(max_clock_skew=60.0)
    node.observe_wall(1.0, WALL + 50)
    node.register(1.0, "web", "near", "198.18.1.1", 80)  # ahead, but within the limit: kept
    node.observe_wall(1.0, WALL + 600)
    node.register(1.0, "web", "far", "198.18.1.1", 80)  # beyond it: restamped at the reset
    node.observe_wall(2.0, WALL)
    again, _ = node.register(2.0, "web", "near", "198.18.1.1", 81)
    assert node.stats["clock_resets"] == 1
    assert node.table.get(("web", "near")) == again  # the new write won, it was not lost
