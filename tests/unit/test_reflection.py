"""Found while fuzzing issue 10's gossip side: a node must not be a UDP amplifier.

An 11-byte ping from a spoofed source drew a 1,370-byte ack carrying queued
gossip (124x), and a 24-byte ping-req made a node send 1,377 bytes to any
address named in it: a reflector for whoever can reach the gossip port, and
every such packet spent the transmit budget of real updates on a stranger.
Gossip now rides only on packets to the address a member is known at.
"""

from __future__ import annotations

import random

from gossip_registry.core.codec import decode_packet, encode_packet
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Effect, Send
from gossip_registry.core.messages import Address, Alive, Packet, Ping, PingReq
from gossip_registry.core.protocol import Protocol
from gossip_registry.core.swim import MAX_RELAYS

WALL = 1_800_000_000.0
VICTIM: Address = ("203.0.113.9", 53)
PEER: Address = ("198.18.0.2", 7946)


def busy_node() -> Protocol:
    """A node that knows p1 at PEER and has a full broadcast queue."""
    node = Protocol(
        ProtocolConfig(), "me", ("198.18.0.1", 7946), rng=random.Random(1), now=0.0,
        wall_offset=WALL,
    )  # fmt: skip
    node.start(0.0)
    node.handle_packet(0.0, PEER, encode_packet(Packet(None, (Alive("p1", PEER, 0, {}),))))
    for i in range(30):
        node.register(0.0, "web", f"i{i}", "198.18.1.1", 80, meta={"k": "v" * 50})
    return node


def sent_to(effects: list[Effect], addr: Address) -> list[bytes]:
    return [e.data for e in effects if isinstance(e, Send) and e.addr == addr]


def test_a_ping_from_an_address_no_member_has_is_answered_without_gossip() -> None:
    node = busy_node()
    ping = encode_packet(Packet(Ping(1, "me", "stranger"), ()))
    (ack,) = sent_to(node.handle_packet(1.0, VICTIM, ping), VICTIM)
    assert decode_packet(ack).updates == ()
    assert len(ack) <= len(ping)
    ping = encode_packet(Packet(Ping(1, "me", "p1"), ()))  # a name we know, another address
    (ack,) = sent_to(node.handle_packet(1.0, VICTIM, ping), VICTIM)
    assert decode_packet(ack).updates == ()


def test_a_member_pinging_from_its_own_address_still_gets_gossip() -> None:
    node = busy_node()
    ping = encode_packet(Packet(Ping(1, "me", "p1"), ()))
    (ack,) = sent_to(node.handle_packet(1.0, PEER, ping), PEER)
    assert decode_packet(ack).updates


def test_a_ping_req_to_an_address_no_member_has_relays_a_bare_ping() -> None:
    node = busy_node()
    request = encode_packet(Packet(PingReq(1, "x", VICTIM, "p1", True), ()))
    (ping,) = sent_to(node.handle_packet(1.0, PEER, request), VICTIM)
    assert decode_packet(ping).updates == ()
    assert len(ping) <= len(request)


def test_a_ping_req_for_a_member_at_its_address_relays_with_gossip() -> None:
    node = busy_node()
    other: Address = ("198.18.0.3", 7946)
    node.handle_packet(0.0, PEER, encode_packet(Packet(None, (Alive("p2", other, 0, {}),))))
    request = encode_packet(Packet(PingReq(1, "p2", other, "p1", True), ()))
    (ping,) = sent_to(node.handle_packet(1.0, PEER, request), other)
    assert decode_packet(ping).updates


def test_ping_reqs_beyond_the_relay_limit_are_refused_and_counted() -> None:
    node = busy_node()
    sent = 0
    for seq in range(MAX_RELAYS + 10):
        request = encode_packet(Packet(PingReq(seq, "x", VICTIM, "p1", True), ()))
        sent += len(sent_to(node.handle_packet(1.0, PEER, request), VICTIM))
    assert sent == MAX_RELAYS
    assert node.stats["ping_reqs_refused"] == 10
