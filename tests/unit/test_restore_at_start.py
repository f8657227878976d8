"""A restart restamps its snapshot's instances a chunk at a time (issue 15).

Restamping 50,000 instances in ``start`` was one 1.7 s step of the event
loop. The restore now runs as MERGE steps; until an instance's turn comes it
waits aside, and everything that touches one of our keys (a write, a
deletion, a check result, a peer's old version of it) restores that key first,
so no caller can tell the restore is still going on.
"""

from __future__ import annotations

import random

from gossip_registry.core.codec import encode_packet
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Effect
from gossip_registry.core.messages import Address, EntryUpdate, Packet
from gossip_registry.core.protocol import MERGE_CHUNK, Protocol
from gossip_registry.registry.entry import CheckKind, CheckState, Entry, EntryKey, Health
from tests.unit.test_push_pull import drive

A: Address = ("198.18.0.1", 7946)
B: Address = ("198.18.0.2", 7946)
COUNT = 3 * MERGE_CHUNK


def snapshot_entries(count: int = COUNT) -> list[Entry]:
    """Our live instances as a snapshot of our previous life (incarnation 3) holds them."""
    old = Protocol(ProtocolConfig(), "me", A, rng=random.Random(1), now=0.0, incarnation=2)
    for i in range(count):
        old.register(0.0, "web", f"w{i}", "10.0.0.1", 80)
    return old.own_entries()


def restarted_core(entries: list[Entry]) -> Protocol:
    """Our next life (incarnation 4), not yet started, given the snapshot's ``entries``."""
    return Protocol(
        ProtocolConfig(), "me", A, rng=random.Random(2), now=1.0, incarnation=3, entries=entries
    )


def restarted(entries: list[Entry]) -> tuple[Protocol, list[Effect]]:
    node = restarted_core(entries)
    return node, node.start(1.0)


def last_key(entries: list[Entry]) -> EntryKey:
    """A key whose turn comes in the last chunk."""
    return entries[-1].key


def test_restored_instances_are_restamped_a_chunk_per_step_and_all_are_ours_meanwhile() -> None:
    entries = snapshot_entries()
    node, out = restarted(entries)
    assert node.table.count_of("me") == MERGE_CHUNK, "one chunk at once, the rest on MERGE"
    assert {e.key for e in node.own_entries()} == {e.key for e in entries}
    assert node.restoring
    drive(node, out, 1.0)
    assert not node.restoring
    own = node.own_entries()
    assert len(own) == COUNT == node.table.live_count
    assert {e.owner_incarnation for e in own} == {4}


def test_an_instance_not_yet_restored_can_be_deregistered_and_stays_deleted() -> None:
    entries = snapshot_entries()
    node, out = restarted(entries)
    gone, more = node.deregister(1.0, last_key(entries))
    assert gone is not None
    drive(node, out + more, 1.0)
    current = node.table.get(last_key(entries))
    assert current is not None
    assert current.deleted
    assert node.table.live_count == COUNT - 1


def test_registering_an_instance_not_yet_restored_keeps_the_new_registration() -> None:
    entries = snapshot_entries()
    node, out = restarted(entries)
    service, instance = last_key(entries)
    _, more = node.register(1.0, service, instance, "10.0.0.9", 81)
    drive(node, out + more, 1.0)
    current = node.table.get(last_key(entries))
    assert current is not None
    assert (current.address, current.port) == ("10.0.0.9", 81)


def test_a_check_result_for_an_instance_not_yet_restored_is_written() -> None:
    entries = snapshot_entries()
    node, out = restarted(entries)
    state = CheckState("c1", CheckKind.TTL, Health.CRITICAL, "down")
    written, more = node.update_checks(1.0, last_key(entries), [state])
    assert written is not None
    assert written.status is Health.CRITICAL
    drive(node, out + more, 1.0)
    current = node.table.get(last_key(entries))
    assert current is not None
    assert current.status is Health.CRITICAL


def test_a_peer_showing_our_old_version_of_an_instance_not_yet_restored_deletes_nothing() -> None:
    """The owner's authority rule tombstones keys it does not hold: a key still waiting
    for its turn is held, so it is restored now, never deleted and gossiped as deleted."""
    entries = snapshot_entries()
    node, out = restarted(entries)
    old = entries[-1]
    out += node.handle_packet(1.0, B, encode_packet(Packet(None, (EntryUpdate(old),))))
    current = node.table.get(old.key)
    assert current is not None
    assert not current.deleted
    assert current.owner_incarnation == 4
    drive(node, out, 1.0)
    assert node.table.live_count == COUNT
