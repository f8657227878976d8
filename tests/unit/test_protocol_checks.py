"""Entries with health checks in the protocol core: they always fit one packet."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from gossip_registry.core import codec
from gossip_registry.core.codec import decode_packet, encode_packet
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Send, SetTimer
from gossip_registry.core.messages import Alive, EntryUpdate, Packet
from gossip_registry.core.protocol import Protocol
from gossip_registry.registry.entry import CheckKind, CheckState, Health


def make() -> Protocol:
    node = Protocol(ProtocolConfig(), "me", ("127.0.0.1", 7946), rng=random.Random(7), now=0.0)
    node.start(0.0)
    return node


def checks(n: int, output: str, id_len: int = 12) -> list[CheckState]:
    return [
        CheckState(f"{i:03d}".ljust(id_len, "c"), CheckKind.HTTP, Health.CRITICAL, output)
        for i in range(n)
    ]


def test_registration_with_checks_keeps_them_and_their_outputs_when_they_fit() -> None:
    node = make()
    states = checks(3, "HTTP GET http://127.0.0.1/health: 503 Service Unavailable")
    entry, _ = node.register(
        1.0, "web", "w1", "10.0.0.1", 80, status=Health.CRITICAL, checks=states
    )
    assert entry.checks == tuple(states)
    assert node.table.get(("web", "w1")) == entry


def test_outputs_are_shortened_evenly_until_the_entry_fits_a_packet() -> None:
    node = make()
    entry, _ = node.register(1.0, "web", "w1", "10.0.0.1", 80, checks=checks(32, "o" * 256))
    size = len(codec.encode_update(EntryUpdate(entry)))
    budget = node.config.packet_size - codec.packet_overhead(None, codec.MAX_UPDATES)
    assert size <= budget
    [length] = {len(c.output) for c in entry.checks}
    assert 0 < length < 256
    # as long as possible: one more character each would not fit
    longer = tuple(replace(c, output=c.output + "o") for c in entry.checks)
    assert len(codec.encode_update(EntryUpdate(replace(entry, checks=longer)))) > budget


def test_checks_that_cannot_fit_even_without_output_are_refused() -> None:
    node = make()
    with pytest.raises(ValueError, match="bytes encoded; at most"):
        node.register(1.0, "web", "w1", "10.0.0.1", 80, checks=checks(32, "", id_len=100))


def test_an_entry_with_checks_gossips_in_packets_under_the_size_limit() -> None:
    node = make()
    news = tuple(Alive(f"p{i}", (f"198.18.0.{i}", 7946), 1, {}) for i in range(1, 4))
    effects = node.handle_packet(0.0, ("198.18.0.1", 7946), encode_packet(Packet(None, news)))
    entry, more = node.register(0.5, "web", "w1", "10.0.0.1", 80, checks=checks(32, "x" * 256))
    pending = [e for e in effects + more if isinstance(e, SetTimer)]
    packets = []
    while pending:  # drive the timers for two seconds, keeping every datagram sent
        pending.sort(key=lambda e: e.at)
        timer = pending.pop(0)
        if timer.at > 2.0:
            break
        out = node.handle_timer(timer.at, timer.timer)
        pending += [e for e in out if isinstance(e, SetTimer)]
        packets += [decode_packet(e.data) for e in out if isinstance(e, Send)]
        assert all(len(e.data) <= node.config.packet_size for e in out if isinstance(e, Send))
    assert any(EntryUpdate(entry) in p.updates for p in packets)
