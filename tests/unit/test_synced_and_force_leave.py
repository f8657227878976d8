"""The core's Synced notification and force-leave, driven by hand (no sockets, no clock)."""

from __future__ import annotations

import random

import pytest

from gossip_registry.core.codec import encode_packet
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import MemberChanged, Notify, StreamRequest, Synced, TimerKind
from gossip_registry.core.messages import Dead, Left, MemberState, Packet
from gossip_registry.core.protocol import Protocol
from tests.unit.test_protocol import fire, make, peer, sends


def test_a_completed_push_pull_notifies_synced_and_a_failed_one_does_not() -> None:
    a, _ = make(peers=0)
    b = Protocol(ProtocolConfig(), "p1", peer(1), rng=random.Random(3), now=0.0)
    b.start(0.0)
    out = a.join(1.0, [peer(1), peer(2)])
    answered, silent = [e for e in out if isinstance(e, StreamRequest)]
    reply, _ = b.handle_stream(1.0, answered.addr, answered.data)
    assert Notify(Synced(peer(1), agreed=True)) in a.handle_stream_reply(1.1, answered.token, reply)
    failed = a.handle_stream_reply(1.2, silent.token, None)
    assert not any(isinstance(e, Notify) and isinstance(e.event, Synced) for e in failed)


def synced_after_push_pull(a: Protocol, b: Protocol) -> list[Synced]:
    """The Synced notifications of one push-pull that ``a`` starts with ``b``, run to its end."""
    out = a.join(1.0, [peer(1)])
    [request] = [e for e in out if isinstance(e, StreamRequest)]
    reply, _ = b.handle_stream(1.0, request.addr, request.data)
    effects = a.handle_stream_reply(1.1, request.token, reply)
    return [e.event for e in effects if isinstance(e, Notify) and isinstance(e.event, Synced)]


def test_synced_says_whether_the_peer_held_the_same_table_when_it_answered() -> None:
    a, _ = make(peers=0)
    b = Protocol(ProtocolConfig(), "p1", peer(1), rng=random.Random(3), now=0.0)
    b.start(0.0)
    assert synced_after_push_pull(a, b) == [Synced(peer(1), agreed=True)]
    b.register(1.0, "web", "web-1", "10.0.0.1", 80)
    assert synced_after_push_pull(a, b) == [Synced(peer(1), agreed=False)]
    assert synced_after_push_pull(a, b) == [Synced(peer(1), agreed=True)]  # merged by then


def test_force_leave_turns_a_dead_member_left_and_spreads_it() -> None:
    node, effects = make(peers=2)
    dead = Packet(None, (Dead("p1", 1, "p2"),))
    effects += node.handle_packet(1.0, peer(2), encode_packet(dead))
    out = node.force_leave(2.0, "p1")
    assert node.member_states()["p1"] is MemberState.LEFT
    assert Notify(MemberChanged("p1", peer(1), MemberState.LEFT, 1, MemberState.DEAD)) in out
    again = node.force_leave(2.0, "p1")  # already left: nothing new, no error
    assert not any(isinstance(e, Notify) for e in again)
    _, gossip = fire(node, effects + out, TimerKind.GOSSIP)
    assert any(Left("p1", 1) in packet.updates for _, packet in sends(gossip))


@pytest.mark.parametrize(
    ("name", "message"), [("p1", "p1 is alive"), ("me", "cannot force itself")]
)
def test_force_leave_refuses_a_live_member_and_ourselves(name: str, message: str) -> None:
    node, _ = make(peers=2)
    with pytest.raises(ValueError, match=message):
        node.force_leave(1.0, name)
    assert node.member_states()["p1"] is MemberState.ALIVE


def test_force_leave_of_an_unknown_member_is_a_key_error() -> None:
    node, _ = make(peers=1)
    with pytest.raises(KeyError):
        node.force_leave(1.0, "ghost")
