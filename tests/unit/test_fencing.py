"""When a member's instances leave the other nodes' tables: at its death or leave, not a refutation.

A discovery system must never stop handing out a live owner's healthy
instances because that owner answered a suspicion (issue 15): an owner of
tens of thousands of entries that refuted used to make every peer drop them
all at once (a fence below its new incarnation) and they stayed missing until
its re-asserted versions came back by gossip or push-pull, minutes at that
size. Its re-asserted versions replace the old ones key by key instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from gossip_registry.core.codec import decode_packet, encode_packet
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Effect, EntryChanged, Notify, Send
from gossip_registry.core.messages import (
    Ack,
    Address,
    Alive,
    Dead,
    EntryUpdate,
    Packet,
    Ping,
    Suspect,
    Update,
)
from gossip_registry.core.protocol import MERGE_CHUNK, Protocol
from gossip_registry.registry.entry import Entry
from tests.unit.test_push_pull import drive

ME: Address = ("198.18.0.1", 7946)
OWNER: Address = ("198.18.0.2", 7946)
COUNT = 3 * MERGE_CHUNK + 5


def hear(node: Protocol, now: float, *updates: Update) -> list[Effect]:
    return drive(node, node.handle_packet(now, OWNER, encode_packet(Packet(None, updates))), now)


def fenced(effects: Sequence[Effect]) -> list[Entry]:
    return [
        e.event.old
        for e in effects
        if isinstance(e, Notify) and isinstance(e.event, EntryChanged) and e.event.fenced
        if e.event.old is not None
    ]


def owner_and_peer() -> tuple[Protocol, Protocol]:
    """``p1`` owning COUNT instances at incarnation 1, and ``me`` holding all of them."""
    owner = Protocol(ProtocolConfig(), "p1", OWNER, rng=random.Random(3), now=0.0, incarnation=0)
    owner.start(0.0)
    me = Protocol(ProtocolConfig(), "me", ME, rng=random.Random(4), now=0.0)
    me.start(0.0)
    hear(me, 0.0, Alive("p1", OWNER, owner.incarnation, {}))
    for i in range(COUNT):
        entry = owner.register(0.0, "web", f"w{i}", "10.0.0.2", 80)[0]
        hear(me, 0.0, EntryUpdate(entry))
    assert me.table.count_of("p1") == COUNT
    return owner, me


def live_of(node: Protocol, owner: str) -> list[Entry]:
    return [e for e in node.table.owned_by(owner) if not e.deleted]


def test_an_owner_that_refutes_a_suspicion_keeps_every_instance_on_its_peers() -> None:
    _, me = owner_and_peer()
    out = hear(me, 1.0, Suspect("p1", 1, "p9"))
    out += hear(me, 1.5, Alive("p1", OWNER, 2, {}))  # the refutation
    assert len(live_of(me, "p1")) == COUNT
    assert fenced(out) == []
    assert me.stats["entries_fenced"] == 0


def test_reasserted_versions_replace_the_old_ones_key_by_key() -> None:
    owner, me = owner_and_peer()
    drive(
        owner,
        owner.handle_packet(1.0, ME, encode_packet(Packet(None, (Suspect("p1", 1, "me"),)))),
        1.0,
    )
    assert owner.incarnation == 2
    reasserted = sorted(owner.own_entries(), key=lambda e: e.key)
    assert all(e.owner_incarnation == 2 for e in reasserted)
    hear(me, 1.5, Alive("p1", OWNER, 2, {}))
    half = reasserted[: COUNT // 2]
    out: list[Effect] = []
    for entry in half:
        out += hear(me, 2.0, EntryUpdate(entry))
    held = live_of(me, "p1")
    assert len(held) == COUNT, "the rest still served at their old incarnation"
    assert sorted(e.owner_incarnation for e in held) == [1] * (COUNT - len(half)) + [2] * len(half)
    changes = [e.event for e in out if isinstance(e, Notify) and isinstance(e.event, EntryChanged)]
    assert len(changes) == len(half)
    assert all(c.old is not None and c.new is not None for c in changes), "replaced, never gone"
    # an old version still travelling loses to the re-asserted one
    stale = replace(half[0], owner_incarnation=1, stamp=half[0].stamp - 1)
    hear(me, 3.0, EntryUpdate(stale))
    assert me.table.get(half[0].key) == half[0]


def test_a_dead_owners_instances_go_and_only_its_next_life_brings_them_back() -> None:
    _, me = owner_and_peer()
    old = live_of(me, "p1")
    out = hear(me, 1.0, Dead("p1", 1, "p9"))
    assert live_of(me, "p1") == []
    assert sorted(fenced(out), key=lambda e: e.key) == sorted(old, key=lambda e: e.key)
    hear(me, 2.0, Alive("p1", OWNER, 2, {}))
    hear(me, 2.0, EntryUpdate(old[0]))
    assert live_of(me, "p1") == [], "fenced below the incarnation it came back at"
    reborn = replace(old[0], owner_incarnation=2, stamp=old[0].stamp + 1)
    hear(me, 2.5, EntryUpdate(reborn))
    assert live_of(me, "p1") == [reborn]


def test_a_refutation_goes_out_ahead_of_thousands_of_queued_registrations() -> None:
    """The owner's refutation shares the piggyback queue with its own fresh writes (a
    registration burst, or the re-assertion the refutation itself starts). Ordered by
    size it went out after all of them, minutes at 16,384 queued: the suspicion
    meanwhile turned into a death and a real fence everywhere."""
    owner, _ = owner_and_peer()
    owner.handle_packet(0.0, ME, encode_packet(Packet(None, (Alive("me", ME, 0, {}),))))
    for i in range(2_000):
        owner.register(0.5, "api", f"a{i}", "10.0.0.2", 80)
    owner.handle_packet(1.0, ME, encode_packet(Packet(None, (Suspect("p1", 1, "me"),))))
    assert owner.incarnation == 2
    out = owner.handle_packet(1.1, ME, encode_packet(Packet(Ping(7, "p1", "me"))))
    [ack] = [decode_packet(e.data) for e in out if isinstance(e, Send)]
    assert ack.primary == Ack(7)
    assert Alive("p1", OWNER, 2, {}) in ack.updates
