"""Finding 1 of issue 10: counters a peer can move stay within what this node could reach.

A 27-byte plaintext ``dead`` about a node at incarnation 2**63-1 used to make
it refute at 2**63, which no decoder accepts: it stayed dead everywhere until
the 24 h reap. News beyond a bounded step above the incarnation we know (or
above the plausible ceiling) is now refused and counted, our own refutation
never leaves the encodable range, and a snapshot holding such an incarnation
starts the node afresh instead of overflowing again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from gossip_registry.core.codec import (
    MAX_INCARNATION,
    decode_packet,
    encode_packet,
    encode_stream,
)
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Send
from gossip_registry.core.limits import Limits
from gossip_registry.core.messages import (
    Address,
    Alive,
    Dead,
    EntryUpdate,
    Left,
    MemberRecord,
    MemberState,
    Packet,
    Ping,
    Suspect,
    SyncFinish,
    Update,
)
from gossip_registry.core.protocol import Protocol
from gossip_registry.core.swim import INCARNATION_CEILING
from gossip_registry.registry.clock import make_stamp
from gossip_registry.registry.entry import Entry, Health

WALL = 1_800_000_000.0
STEP = Limits().max_incarnation_step
ADDRS: dict[str, Address] = {f"h{i}": (f"198.18.0.{i}", 7946) for i in range(1, 4)}
ATTACKER: Address = ("198.18.0.66", 7946)


def node(name: str, *, incarnation: int | None = None) -> Protocol:
    core = Protocol(
        ProtocolConfig(),
        name,
        ADDRS[name],
        rng=random.Random(7),
        now=0.0,
        wall_offset=WALL,
        incarnation=incarnation,
    )
    core.start(0.0)
    return core


def cluster() -> dict[str, Protocol]:
    """Three cores that know each other alive at incarnation 0."""
    cores = {name: node(name) for name in ADDRS}
    for core in cores.values():
        for name, addr in ADDRS.items():
            if name != core.name:
                core.handle_packet(
                    0.0, ATTACKER, encode_packet(Packet(None, (Alive(name, addr, 0, {}),)))
                )
    return cores


def datagram(*updates: Update) -> bytes:
    return encode_packet(Packet(None, updates))


def sent_updates(effects: Sequence[object]) -> list[Update]:
    """Every update in the datagrams among ``effects``: each must decode at a peer."""
    found: list[Update] = []
    for effect in effects:
        if isinstance(effect, Send):
            found.extend(decode_packet(effect.data).updates)
    return found


def test_the_27_byte_dead_datagram_at_the_top_incarnation_is_refused_by_everyone() -> None:
    attack = datagram(Dead("h1", MAX_INCARNATION, "attacker"))
    assert len(attack) == 27
    cores = cluster()
    for core in cores.values():
        core.handle_packet(1.0, ATTACKER, attack)
        assert core.stats["incarnations_refused"] == 1
    assert cores["h1"].incarnation == 0
    for name in ("h2", "h3"):
        record = cores[name].members.get("h1")
        assert record is not None
        assert (record.state, record.incarnation) == (MemberState.ALIVE, 0)


def test_an_accusation_within_the_step_is_refuted_and_the_refutation_decodes() -> None:
    h1 = cluster()["h1"]
    h1.handle_packet(1.0, ATTACKER, datagram(Dead("h1", STEP, "x")))
    assert h1.incarnation == STEP + 1
    # A ping makes h1 answer with the refutation piggybacked: a peer must decode it.
    effects = h1.handle_packet(2.0, ADDRS["h2"], encode_packet(Packet(Ping(1, "h1", "h2"), ())))
    alive = [u for u in sent_updates(effects) if isinstance(u, Alive) and u.name == "h1"]
    assert [a.incarnation for a in alive] == [STEP + 1]


def test_news_more_than_the_step_above_the_known_incarnation_is_refused_for_every_kind() -> None:
    for update in (
        Alive("h2", ADDRS["h2"], STEP + 1, {}),
        Suspect("h2", STEP + 1, "x"),
        Dead("h2", STEP + 1, "x"),
        Left("h2", STEP + 1),
        Suspect("h1", STEP + 1, "x"),
        Alive("h1", ADDRS["h1"], STEP + 1, {}),
        Left("h1", STEP + 1),
    ):
        core = cluster()["h1"]
        core.handle_packet(1.0, ATTACKER, datagram(update))
        assert core.stats["incarnations_refused"] == 1, update
        assert core.incarnation == 0, update
        record = core.members.get("h2")
        assert record is not None
        assert record.incarnation == 0, update


def test_a_member_we_never_knew_may_appear_only_within_the_step() -> None:
    core = node("h1")
    core.handle_packet(1.0, ATTACKER, datagram(Alive("h2", ADDRS["h2"], STEP + 1, {})))
    assert core.members.get("h2") is None
    record = MemberRecord("h3", ADDRS["h3"], MAX_INCARNATION, MemberState.DEAD, {})
    core.handle_stream(1.0, ATTACKER, _finish(record))
    assert core.members.get("h3") is None
    assert core.stats["incarnations_refused"] == 2
    core.handle_packet(1.0, ATTACKER, datagram(Alive("h2", ADDRS["h2"], STEP, {})))
    assert core.members.get("h2") is not None


def _finish(*records: MemberRecord) -> bytes:
    return encode_stream(SyncFinish(records, ()))


def test_a_member_list_claiming_we_died_at_the_top_incarnation_changes_nothing() -> None:
    h1 = node("h1")
    record = MemberRecord("h1", ADDRS["h1"], MAX_INCARNATION, MemberState.DEAD, {})
    h1.handle_stream(1.0, ATTACKER, _finish(record))
    assert h1.incarnation == 0
    assert h1.stats["incarnations_refused"] == 1


def test_a_ratchet_of_accusations_never_takes_our_refutation_past_the_ceiling() -> None:
    h1 = node("h1", incarnation=INCARNATION_CEILING - 2)
    for _ in range(4):
        h1.handle_packet(1.0, ATTACKER, datagram(Dead("h1", h1.incarnation + 1, "x")))
        assert h1.incarnation <= MAX_INCARNATION
    assert h1.incarnation <= INCARNATION_CEILING + 1
    assert h1.stats["incarnations_refused"] >= 1


def test_a_snapshot_holding_the_top_incarnation_restarts_the_node_from_zero() -> None:
    h1 = node("h1", incarnation=MAX_INCARNATION)
    assert h1.incarnation == 0
    assert h1.stats["snapshot_incarnation_reset"] == 1
    fine = node("h1", incarnation=41)
    assert fine.incarnation == 42


def _entry(owner: str, owner_incarnation: int) -> Entry:
    return Entry(
        "web", f"{owner}-1", "198.18.1.1", 80, (), {}, 1, Health.PASSING, "", owner,
        owner_incarnation, make_stamp(WALL), False,
    )  # fmt: skip


def test_an_entry_claiming_an_owner_incarnation_beyond_the_step_is_refused() -> None:
    core = cluster()["h1"]
    core.handle_packet(1.0, ATTACKER, datagram(EntryUpdate(_entry("h2", MAX_INCARNATION))))
    core.handle_packet(1.0, ATTACKER, datagram(EntryUpdate(_entry("ghost", STEP + 1))))
    core.handle_packet(1.0, ATTACKER, datagram(EntryUpdate(_entry("h1", STEP + 1))))
    assert core.table.live_count == 0
    assert core.stats["incarnations_refused"] == 3
    core.handle_packet(1.0, ATTACKER, datagram(EntryUpdate(_entry("h2", 3))))
    assert core.table.live_count == 1
