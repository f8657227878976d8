"""A suspicion that runs out probes the suspect one last time before the death (issue 17).

Under heavy loss a suspect refutes, every node but one hears it, and that one
declares a live member dead. The last-chance probe gives the suspect one more
probe window, direct (with the accusation, so the ack carries the refutation),
indirect and over TCP; a refusal on it is a death at once, silence a death at
the end of the window.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gossip_registry.core.codec import decode_stream, encode_packet, encode_stream
from gossip_registry.core.effects import Effect, StreamRequest, TimerKind
from gossip_registry.core.messages import (
    Ack,
    Alive,
    MemberState,
    Packet,
    Ping,
    PingReq,
    Suspect,
    SyncHello,
)
from gossip_registry.core.protocol import Protocol
from tests.unit.test_protocol import fire, make, peer, sends, timers

SUSPECT, DEAD, ALIVE = MemberState.SUSPECT, MemberState.DEAD, MemberState.ALIVE


def suspected(peers: int = 5) -> tuple[Protocol, float, list[Effect]]:
    """p1 suspected (incarnation 1) by someone else at t=1; returns the node at the deadline."""
    node, _ = make(peers=peers)
    out = node.handle_packet(1.0, peer(1), encode_packet(Packet(None, (Suspect("p1", 1, "x"),))))
    at, out = fire(node, out, TimerKind.SUSPICION)
    return node, at, out


def last_chance_ping(out: Sequence[Effect]) -> Ping:
    [ping] = [p.primary for a, p in sends(out) if a == peer(1) and isinstance(p.primary, Ping)]
    assert isinstance(ping, Ping)
    return ping


def test_a_suspicion_that_runs_out_probes_the_suspect_once_more_then_declares_it_dead() -> None:
    node, at, out = suspected()
    assert node.member_states()["p1"] is SUSPECT, "not dead yet: the last chance runs first"
    direct = [(a, p) for a, p in sends(out) if isinstance(p.primary, Ping)]
    assert [(a, p.primary.target) for a, p in direct if isinstance(p.primary, Ping)] == [
        (peer(1), "p1")
    ]
    assert Suspect("p1", 1, "me") in direct[0][1].updates, "the accusation rides with the ping"
    requests = [p.primary for _, p in sends(out) if isinstance(p.primary, PingReq)]
    assert len(requests) == node.config.indirect_checks
    assert all(r.target == "p1" and r.target_addr == peer(1) for r in requests)
    [tcp] = [e for e in out if isinstance(e, StreamRequest)]
    assert tcp.addr == peer(1)
    # No answer half-way: the accusing ping goes out once more.
    retry_at, retry = fire(node, out, TimerKind.LAST_CHANCE)
    assert retry_at == pytest.approx(at + node.config.probe_timeout)
    assert last_chance_ping(retry).seq == direct[0][1].primary.seq  # type: ignore[union-attr]
    # Silence to the end of the probe window: dead.
    end, _ = fire(node, out, TimerKind.SUSPICION)
    assert end == pytest.approx(at + node.config.probe_interval)
    assert node.member_states()["p1"] is DEAD
    assert node.stats["last_chances"] == 1


def test_a_suspect_whose_refutation_we_missed_answers_the_last_chance_and_lives() -> None:
    node, at, out = suspected()
    ping = last_chance_ping(out)
    # Its ack carries its refutation (``_on_ping`` answers an accusation with its Alive).
    answer = Packet(Ack(ping.seq), (Alive("p1", peer(1), 2, {}),))
    node.handle_packet(at + 0.01, peer(1), encode_packet(answer))
    assert node.member_states()["p1"] is ALIVE
    fire(node, out, TimerKind.SUSPICION)
    fire(node, out, TimerKind.LAST_CHANCE)
    assert node.member_states()["p1"] is ALIVE


@pytest.mark.parametrize("route", ["relayed", "tcp"])
def test_an_ack_to_the_last_chance_without_a_refutation_starts_the_suspicion_over(
    route: str,
) -> None:
    node, at, out = suspected()
    ping = last_chance_ping(out)
    if route == "relayed":
        [(helper, _)] = [(a, p) for a, p in sends(out) if isinstance(p.primary, PingReq)][:1]
        after = node.handle_packet(at + 0.02, helper, encode_packet(Packet(Ack(ping.seq))))
    else:
        [tcp] = [e for e in out if isinstance(e, StreamRequest)]
        after = node.handle_stream_reply(at + 0.02, tcp.token, encode_stream(Ack(ping.seq)))
    assert node.member_states()["p1"] is SUSPECT
    assert node.stats["last_chances_answered"] == 1
    [timer] = timers(after, TimerKind.SUSPICION)
    full = node.config.suspicion_min(6) * node.config.suspicion_max_mult
    assert timer.at == pytest.approx(at + 0.02 + full), "Lifeguard's timer from the start"
    [sync] = [e for e in after if isinstance(e, StreamRequest)]
    assert sync.addr == peer(1)
    assert isinstance(decode_stream(sync.data, 1 << 20), SyncHello), "asks for its record"
    # The old window's end no longer kills it.
    fire(node, out, TimerKind.SUSPICION)
    assert node.member_states()["p1"] is SUSPECT


def test_a_refused_last_chance_is_a_death_at_once() -> None:
    node, at, _ = suspected()
    node.handle_refused(at + 0.001, peer(1))
    assert node.member_states()["p1"] is DEAD
    assert node.stats["last_chances_refused"] == 1


def test_a_refusal_during_the_last_chance_of_an_older_life_does_not_count() -> None:
    node, at, _ = suspected()
    # p1 restarted and is suspected again at its new incarnation before the refusal arrives.
    newer = Packet(None, (Suspect("p1", 2, "y"),))
    node.handle_packet(at + 0.001, peer(2), encode_packet(newer))
    node.handle_refused(at + 0.002, peer(1))
    assert node.member_states()["p1"] is SUSPECT
    assert node.stats["last_chances_refused"] == 0


def test_confirmations_during_the_last_chance_do_not_cut_it_short() -> None:
    node, at, out = suspected()
    for i in range(3):
        confirm = Packet(None, (Suspect("p1", 1, f"c{i}"),))
        assert (
            timers(
                node.handle_packet(at + 0.01, peer(2), encode_packet(confirm)), TimerKind.SUSPICION
            )
            == []
        )
    assert node.member_states()["p1"] is SUSPECT
    end, _ = fire(node, out, TimerKind.SUSPICION)
    assert end == pytest.approx(at + node.config.probe_interval)
    assert node.member_states()["p1"] is DEAD
