"""A byte-identical repeat of a registry update is neither decoded nor merged again.

Every node gets each update about 9 times under churn (``retransmit_limit``
gossip copies plus the originator's direct one), and decoding an entry is
most of the core's work per packet. Identical bytes are an identical
version, and merging a version the table already holds (or beats) changes
nothing, so a repeat of an update that settled is counted and skipped
before decoding. What did not settle (refused for a reason that can change)
and a version the table no longer holds are merged again.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gossip_registry.core.codec import assemble_packet, encode_update
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.messages import Address, Alive, EntryUpdate
from gossip_registry.core.protocol import Protocol
from gossip_registry.core.recent import RecentUpdates
from gossip_registry.registry.entry import Entry
from tests.unit.test_bulk_load import node_among
from tests.unit.test_limits import entry as limits_entry

CONFIG = ProtocolConfig()
PEER: Address = ("198.18.0.2", 7946)


def entry(instance: int, *, wall: float = 1.0, owner: str = "m1", incarnation: int = 0) -> Entry:
    return replace(limits_entry(owner, instance, wall=wall), owner_incarnation=incarnation)


def packet(*entries: Entry) -> bytes:
    return assemble_packet(None, [encode_update(EntryUpdate(e)) for e in entries])


class Counts:
    """How often entries are built (each decode builds one) and the table merges."""

    def __init__(self) -> None:
        self.built = 0
        self.merges = 0


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> tuple[Protocol, Counts]:
    proto = node_among(CONFIG, 5)
    counts = Counts()
    post_init = Entry.__post_init__

    def counting_post_init(self: Entry) -> None:
        counts.built += 1
        post_init(self)

    merge = proto.table.merge

    def counting_merge(e: Entry) -> tuple[bool, Entry | None]:
        counts.merges += 1
        return merge(e)

    monkeypatch.setattr(Entry, "__post_init__", counting_post_init)
    monkeypatch.setattr(proto.table, "merge", counting_merge)
    return proto, counts


def test_a_repeated_entry_update_is_neither_decoded_nor_merged_again(
    node: tuple[Protocol, Counts],
) -> None:
    proto, counts = node
    e, other = entry(1), entry(2)
    start = counts.built
    proto.handle_packet(1.0, PEER, packet(e))
    assert proto.table.get(e.key) == e
    once = counts.built - start  # what taking in one new entry costs: decoding builds it
    assert once >= 1
    assert counts.merges == 1

    proto.handle_packet(1.1, PEER, packet(e))
    proto.handle_packet(1.2, PEER, packet(other, e))  # the same bytes in another packet
    assert (counts.built - start, counts.merges) == (2 * once, 2)  # only the other's
    assert proto.stats["entry_updates_repeated"] == 2


def test_a_repeat_of_an_update_that_lost_to_a_newer_version_is_skipped(
    node: tuple[Protocol, Counts],
) -> None:
    proto, counts = node
    newer, older = entry(1, wall=2.0), entry(1, wall=1.0)
    proto.handle_packet(2.0, PEER, packet(newer))
    proto.handle_packet(2.1, PEER, packet(older))
    built = counts.built
    proto.handle_packet(2.2, PEER, packet(older))
    assert proto.table.get(newer.key) == newer
    assert (counts.built, counts.merges) == (built, 2)
    assert proto.stats["entry_updates_repeated"] == 1


def test_a_refused_update_is_merged_when_it_arrives_again(node: tuple[Protocol, Counts]) -> None:
    proto, _ = node
    ahead = CONFIG.limits.max_clock_skew + 10.0
    e = entry(1, wall=1.0 + ahead)
    proto.handle_packet(1.0, PEER, packet(e))
    assert proto.table.get(e.key) is None
    assert proto.stats["entries_from_future"] == 1

    proto.observe_wall(1.0 + ahead, 1.0 + ahead)  # our clock caught up: no longer ahead
    proto.handle_packet(1.0 + ahead, PEER, packet(e))
    assert proto.table.get(e.key) == e
    assert proto.stats["entry_updates_repeated"] == 0


def test_an_update_from_an_owner_not_yet_plausible_is_merged_once_it_is(
    node: tuple[Protocol, Counts],
) -> None:
    proto, _ = node
    ahead = CONFIG.limits.max_incarnation_step + 1
    e = entry(1, owner="m9", incarnation=ahead)  # an owner we never heard of, far ahead
    proto.handle_packet(1.0, PEER, packet(e))
    assert proto.table.get(e.key) is None
    assert proto.stats["incarnations_refused"] == 1

    joined = encode_update(Alive("m9", ("198.18.0.9", 7946), 1, {}))
    proto.handle_packet(1.1, PEER, assemble_packet(None, [joined]))  # now within reach
    proto.handle_packet(1.2, PEER, packet(e))
    assert proto.table.get(e.key) == e


def test_a_repeat_whose_version_left_the_table_is_merged_again(
    node: tuple[Protocol, Counts],
) -> None:
    proto, counts = node
    e = entry(1)
    proto.handle_packet(1.0, PEER, packet(e))
    built = counts.built
    proto.table.discard(e.key)
    proto.handle_packet(1.1, PEER, packet(e))
    assert proto.table.get(e.key) == e
    assert counts.merges == 2
    assert counts.built == built  # remembered: merged again without decoding


def test_a_repeat_of_a_version_of_our_own_key_is_merged_again(
    node: tuple[Protocol, Counts],
) -> None:
    proto, counts = node
    e = entry(1, owner="m0")  # ours, from an earlier life: superseded, and may be again
    proto.handle_packet(1.0, PEER, packet(e))
    merges = counts.merges
    proto.handle_packet(1.1, PEER, packet(e))
    assert counts.merges > merges
    assert proto.stats["entry_updates_repeated"] == 0


def test_the_recent_set_is_bounded_in_count_and_bytes_and_forgets_the_oldest_first() -> None:
    recent: RecentUpdates[int] = RecentUpdates(max_items=3, max_bytes=10)
    for i in range(5):
        recent.add(bytes([i]), i)
    assert len(recent) == 3
    assert [recent.get(bytes([i])) for i in range(5)] == [None, None, 2, 3, 4]
    recent.add(b"x" * 9, 9)  # 3 + 9 bytes > 10: the oldest go until it fits
    assert len(recent) == 2
    assert recent.nbytes == 10
    assert recent.get(bytes([3])) is None
    assert recent.get(bytes([4])) == 4
    recent.add(b"y" * 11, 11)  # larger than the whole budget: not kept, nothing evicted
    assert recent.get(b"y" * 11) is None
    assert recent.get(b"x" * 9) == 9
    recent.add(b"x" * 9, 10)  # already held: kept where it was
    assert recent.get(b"x" * 9) == 9
    assert len(recent) == 2
