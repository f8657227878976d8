"""A host's refusal (ICMP port unreachable, TCP refused) is evidence of a crash (issue 17).

One protocol core driven by hand, as in ``test_protocol.py``: refusals are an
input (``handle_refused``), the driver reads them off the sockets.
"""

from __future__ import annotations

import pytest

from gossip_registry.core.codec import encode_packet
from gossip_registry.core.effects import TimerKind
from gossip_registry.core.messages import (
    Ack,
    Alive,
    MemberState,
    Nack,
    Packet,
    Ping,
    PingReq,
    Suspect,
)
from tests.unit.test_protocol import fire, make, peer, probe_once, sends, timers

ORDINARY_MIN = 4.0
"""suspicion_min(6) with the lan defaults: 4 x max(1, log10 6) x 1 s."""


def test_a_refused_probe_is_suspected_at_once_and_goes_indirect_without_waiting() -> None:
    node, effects = make(peers=5)
    now, _, ping, addr = probe_once(node, effects)
    out = node.handle_refused(now + 0.001, addr)
    assert node.member_states()[ping.target] is MemberState.SUSPECT
    requests = [p.primary for _, p in sends(out) if isinstance(p.primary, PingReq)]
    assert len(requests) == 3, "helpers asked at once, to see the refusal for themselves"
    timer = timers(out, TimerKind.SUSPICION)[-1]
    assert timer.at == pytest.approx(now + 0.001 + ORDINARY_MIN), "a lone refusal: the min"
    assert node.stats["probes_refused"] == 1


def test_helpers_that_see_the_refusal_too_shrink_the_wait_to_refused_suspicion() -> None:
    node, effects = make(peers=5)
    now, _, ping, addr = probe_once(node, effects)
    out = node.handle_refused(now, addr)
    helpers = [(a, p.primary) for a, p in sends(out) if isinstance(p.primary, PingReq)]
    for i, (helper, request) in enumerate(helpers[:2]):
        nack = Packet(Nack(request.seq), (Suspect(ping.target, 1, f"helper{i}"),))
        out = node.handle_packet(now + 0.01, helper, encode_packet(nack))
    timer = timers(out, TimerKind.SUSPICION)[-1]
    assert timer.at == pytest.approx(now + node.config.refused_suspicion)
    at, out = fire(node, out, TimerKind.SUSPICION)
    assert node.member_states()[ping.target] is MemberState.SUSPECT, "a last-chance probe first"
    node.handle_refused(at + 0.001, addr)
    assert node.member_states()[ping.target] is MemberState.DEAD


def test_a_helper_whose_relayed_ping_is_refused_nacks_at_once_with_its_suspicion() -> None:
    node, _ = make()
    request = PingReq(99, "p3", peer(3), "p2", want_nack=True)
    node.handle_packet(1.0, peer(2), encode_packet(Packet(request)))
    out = node.handle_refused(1.001, peer(3))
    [(addr, packet)] = sends(out)
    assert addr == peer(2)
    assert packet.primary == Nack(99)
    assert Suspect("p3", 1, "me") in packet.updates
    assert node.member_states()["p3"] is MemberState.SUSPECT
    assert timers(out, TimerKind.RELAY_TIMEOUT) == []


def test_a_refusal_from_an_address_where_no_active_member_lives_is_only_counted() -> None:
    node, _ = make()
    before = node.member_states()
    assert sends(node.handle_refused(1.0, ("198.18.0.99", 7946))) == []
    assert node.member_states() == before
    assert node.stats["refusals"] == 1


def test_a_refused_gossip_packet_prompts_one_ping_of_that_member_at_once() -> None:
    node, _ = make()
    out = node.handle_refused(1.0, peer(3))
    [(addr, packet)] = sends(out)
    assert addr == peer(3)
    assert isinstance(packet.primary, Ping)
    assert packet.primary.target == "p3"
    assert node.member_states()["p3"] is MemberState.ALIVE, "no evidence by itself"
    # Unanswered for a probe interval, the check has lapsed: a refusal now prompts a new one.
    assert [a for a, _ in sends(node.handle_refused(2.1, peer(3)))] == [peer(3)]
    assert node.member_states()["p3"] is MemberState.ALIVE
    assert node.stats["refusal_checks"] == 2


def test_a_refused_check_ping_counts_like_a_refused_probe() -> None:
    node, _ = make(peers=5)
    node.handle_refused(1.0, peer(3))
    out = node.handle_refused(1.001, peer(3))
    assert node.member_states()["p3"] is MemberState.SUSPECT
    requests = [p.primary for _, p in sends(out) if isinstance(p.primary, PingReq)]
    assert len(requests) == 3
    assert all(r.target == "p3" for r in requests)
    timer = timers(out, TimerKind.SUSPICION)[-1]
    assert timer.at == pytest.approx(1.001 + ORDINARY_MIN)
    assert node.stats["checks_refused"] == 1
    # Later refusals from there (gossip sent before) neither ask helpers again nor re-check.
    assert sends(node.handle_refused(1.002, peer(3))) == []
    assert sends(node.handle_refused(1.5, peer(3))) == []
    assert node.stats["checks_refused"] == 1
    assert node.stats["refusal_checks"] == 1


def test_an_answered_check_or_one_that_raced_a_restart_changes_nothing() -> None:
    node, _ = make(peers=5)
    [(_, packet)] = sends(node.handle_refused(1.0, peer(3)))
    assert isinstance(packet.primary, Ping)
    node.handle_packet(1.01, peer(3), encode_packet(Packet(Ack(packet.primary.seq))))
    assert node.member_states()["p3"] is MemberState.ALIVE
    node.handle_refused(2.1, peer(3))
    restarted = Alive("p3", peer(3), 2, {})
    node.handle_packet(2.11, peer(3), encode_packet(Packet(None, (restarted,))))
    node.handle_refused(2.12, peer(3))
    assert node.member_states()["p3"] is MemberState.ALIVE
    assert node.stats["checks_refused"] == 0


def test_a_refusal_that_raced_a_restart_does_not_count_against_the_new_life() -> None:
    node, effects = make(peers=5)
    now, _, ping, addr = probe_once(node, effects)
    # The restarted process announced its next incarnation before the refusal came in.
    restarted = Alive(ping.target, addr, 2, {})
    node.handle_packet(now + 0.001, addr, encode_packet(Packet(None, (restarted,))))
    out = node.handle_refused(now + 0.002, addr)
    assert node.member_states()[ping.target] is MemberState.ALIVE
    assert timers(out, TimerKind.SUSPICION) == []
    assert node.stats["probes_refused"] == 0


def test_a_process_restarted_after_a_refusal_refutes_before_the_deadline() -> None:
    node, effects = make(peers=5)
    now, _, ping, addr = probe_once(node, effects)
    out = node.handle_refused(now, addr)
    restarted = Alive(ping.target, addr, 2, {})
    node.handle_packet(now + 0.5, addr, encode_packet(Packet(None, (restarted,))))
    fire(node, out, TimerKind.SUSPICION)
    assert node.member_states()[ping.target] is MemberState.ALIVE


def test_a_silent_probe_failure_keeps_lifeguards_timing() -> None:
    node, effects = make(peers=5)
    _, out, ping, _ = probe_once(node, effects)
    fire(node, out, TimerKind.PROBE_TIMEOUT)
    at, out3 = fire(node, out, TimerKind.PROBE)
    assert node.member_states()[ping.target] is MemberState.SUSPECT
    [timer] = timers(out3, TimerKind.SUSPICION)
    assert timer.at == pytest.approx(at + ORDINARY_MIN * node.config.suspicion_max_mult)
