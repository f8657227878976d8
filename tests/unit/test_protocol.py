"""One protocol core driven by hand: crafted packets in, effects out, no clock, no sockets."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest

from gossip_registry.core.codec import (
    decode_packet,
    decode_stream,
    encode_packet,
    encode_stream,
)
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import (
    Effect,
    EntryChanged,
    Notify,
    Send,
    SetTimer,
    StreamRequest,
    StreamSend,
    TimerKind,
)
from gossip_registry.core.messages import (
    Ack,
    Address,
    Alive,
    Dead,
    EntryUpdate,
    Left,
    MemberRecord,
    MemberState,
    Nack,
    Packet,
    Ping,
    PingReq,
    Suspect,
    SyncFinish,
    SyncHello,
    SyncReply,
    Update,
)
from gossip_registry.core.protocol import Protocol

ME: Address = ("198.18.0.1", 7946)


def peer(i: int) -> Address:
    return (f"198.18.0.{i + 1}", 7946)


def make(peers: int = 4, **config: object) -> tuple[Protocol, list[Effect]]:
    node = Protocol(ProtocolConfig().with_(**config), "me", ME, rng=random.Random(7), now=0.0)
    effects = node.start(0.0)
    news: list[Update] = [Alive(f"p{i}", peer(i), 1, {}) for i in range(1, peers + 1)]
    effects += node.handle_packet(0.0, peer(1), encode_packet(Packet(None, tuple(news))))
    return node, effects


def sends(effects: Sequence[Effect]) -> list[tuple[Address, Packet]]:
    return [(e.addr, decode_packet(e.data)) for e in effects if isinstance(e, Send)]


def timers(effects: Sequence[Effect], kind: TimerKind) -> list[SetTimer]:
    return [e for e in effects if isinstance(e, SetTimer) and e.timer.kind is kind]


def fire(node: Protocol, effects: Sequence[Effect], kind: TimerKind) -> tuple[float, list[Effect]]:
    timer = timers(effects, kind)[-1]
    return timer.at, node.handle_timer(timer.at, timer.timer)


def probe_once(node: Protocol, effects: list[Effect]) -> tuple[float, list[Effect], Ping, Address]:
    now, out = fire(node, effects, TimerKind.PROBE)
    [(addr, packet)] = [(a, p) for a, p in sends(out) if isinstance(p.primary, Ping)]
    assert isinstance(packet.primary, Ping)
    return now, out, packet.primary, addr


def test_ping_is_answered_with_an_ack_to_its_sender() -> None:
    node, _ = make()
    out = node.handle_packet(1.0, peer(2), encode_packet(Packet(Ping(42, "me", "p2"))))
    [(addr, packet)] = sends(out)
    assert addr == peer(2)
    assert packet.primary == Ack(42)


def test_ping_meant_for_another_node_is_ignored() -> None:
    node, _ = make()
    out = node.handle_packet(1.0, peer(2), encode_packet(Packet(Ping(42, "other", "p2"))))
    assert sends(out) == []
    assert node.stats["misdirected_pings"] == 1


def test_malformed_datagram_is_counted_and_dropped_without_changing_state() -> None:
    node, _ = make()
    before = node.member_states()
    for junk in (b"", b"\xff\x00garbage", b"\x93\x01\xc0"):
        assert node.handle_packet(1.0, peer(2), junk) == []
    assert node.stats["malformed_packets"] == 3
    assert node.member_states() == before


def test_missed_ack_goes_indirect_through_k_helpers_and_tries_tcp() -> None:
    node, effects = make(peers=5)
    _, out, ping, target_addr = probe_once(node, effects)
    _, out = fire(node, out, TimerKind.PROBE_TIMEOUT)
    requests = [(a, p.primary) for a, p in sends(out) if isinstance(p.primary, PingReq)]
    assert len(requests) == 3
    assert all(r.target == ping.target and r.want_nack for _, r in requests)
    assert target_addr not in [a for a, _ in requests]
    [tcp] = [e for e in out if isinstance(e, StreamRequest)]
    assert tcp.addr == target_addr
    assert decode_stream(tcp.data, 1 << 20) == Ping(ping.seq, ping.target, "me")


def test_tcp_ack_rescues_a_probe_that_udp_lost() -> None:
    node, effects = make(peers=5)
    now, out, ping, _ = probe_once(node, effects)
    _, out = fire(node, out, TimerKind.PROBE_TIMEOUT)
    [tcp] = [e for e in out if isinstance(e, StreamRequest)]
    node.handle_stream_reply(now + 0.6, tcp.token, encode_stream(Ack(ping.seq)))
    fire(node, effects + out, TimerKind.PROBE)
    assert node.member_states()[ping.target] is MemberState.ALIVE
    assert node.stats["tcp_rescues"] == 1


def test_unanswered_probe_makes_the_target_suspect_and_the_next_ping_tells_it() -> None:
    node, effects = make(peers=1)
    _, out, _, _ = probe_once(node, effects)
    fire(node, out, TimerKind.PROBE_TIMEOUT)
    _, out = fire(node, out, TimerKind.PROBE)  # the window closes with no ack at all
    assert node.member_states()["p1"] is MemberState.SUSPECT
    assert node.awareness.score == 1, "no helpers to nack, so the failure counts against us"
    [ping_packet] = [p for _, p in sends(out) if isinstance(p.primary, Ping)]
    assert Suspect("p1", 1, "me") in ping_packet.updates, "buddy system"


def test_nacks_from_every_helper_spare_our_own_health_score() -> None:
    node, effects = make(peers=5)
    now, out, ping, _ = probe_once(node, effects)
    _, out2 = fire(node, out, TimerKind.PROBE_TIMEOUT)
    helpers = [a for a, p in sends(out2) if isinstance(p.primary, PingReq)]
    for helper in helpers:
        node.handle_packet(now + 0.7, helper, encode_packet(Packet(Nack(ping.seq))))
    fire(node, out, TimerKind.PROBE)
    assert node.member_states()[ping.target] is MemberState.SUSPECT
    assert node.awareness.score == 0


def test_ping_req_is_relayed_and_the_ack_forwarded_to_the_requester() -> None:
    node, _ = make()
    request = PingReq(99, "p3", peer(3), "p2", want_nack=True)
    out = node.handle_packet(1.0, peer(2), encode_packet(Packet(request)))
    [(addr, packet)] = sends(out)
    assert addr == peer(3)
    assert isinstance(packet.primary, Ping)
    relayed = node.handle_packet(1.1, peer(3), encode_packet(Packet(Ack(packet.primary.seq))))
    assert [(a, p.primary) for a, p in sends(relayed)] == [(peer(2), Ack(99))]


def test_ping_req_without_an_answer_sends_a_nack() -> None:
    node, _ = make()
    out = node.handle_packet(
        1.0, peer(2), encode_packet(Packet(PingReq(99, "p3", peer(3), "p2", True)))
    )
    _, out = fire(node, out, TimerKind.RELAY_TIMEOUT)
    assert [(a, p.primary) for a, p in sends(out)] == [(peer(2), Nack(99))]


@pytest.mark.parametrize("accusation", [Suspect("me", 0, "p1"), Dead("me", 0, "p1"), Left("me", 0)])
def test_accused_node_refutes_with_a_higher_incarnation(accusation: Update) -> None:
    node, effects = make()
    out = node.handle_packet(1.0, peer(1), encode_packet(Packet(None, (accusation,))))
    assert node.incarnation == 1
    assert node.member_states()["me"] is MemberState.ALIVE
    _, gossip = fire(node, effects + out, TimerKind.FAST_GOSSIP)
    assert any(Alive("me", ME, 1, {}) in p.updates for _, p in sends(gossip))


def test_suspicion_expires_into_death_and_fences_the_members_entries() -> None:
    node, _ = make(peers=1)
    entry = node.register(0.0, "web", "w1", "10.0.0.1", 80)[0]
    theirs = replace(entry, owner="p1", instance_id="w2", owner_incarnation=1)
    node.handle_packet(0.5, peer(1), encode_packet(Packet(None, (EntryUpdate(theirs),))))
    assert [e.instance_id for e in node.table.live("web")] == ["w1", "w2"]
    out = node.handle_packet(1.0, peer(1), encode_packet(Packet(None, (Suspect("p1", 1, "x"),))))
    [timer] = timers(out, TimerKind.SUSPICION)
    assert timer.at == pytest.approx(1.0 + 4.0), "min suspicion at N=2 with no confirmations wanted"
    out = node.handle_timer(timer.at, timer.timer)
    assert node.member_states()["p1"] is MemberState.SUSPECT, "a last-chance probe first"
    _, out = fire(node, out, TimerKind.SUSPICION)
    assert node.member_states()["p1"] is MemberState.DEAD
    assert [e.instance_id for e in node.table.live("web")] == ["w1"]
    assert Notify(EntryChanged(theirs, None, fenced=True)) in out
    # the dead member's old entry cannot come back, its next life's can
    node.handle_packet(6.0, peer(1), encode_packet(Packet(None, (EntryUpdate(theirs),))))
    assert [e.instance_id for e in node.table.live("web")] == ["w1"]
    node.handle_packet(7.0, peer(1), encode_packet(Packet(None, (Alive("p1", peer(1), 2, {}),))))
    reborn = replace(theirs, owner_incarnation=2, stamp=theirs.stamp + 1)
    node.handle_packet(7.0, peer(1), encode_packet(Packet(None, (EntryUpdate(reborn),))))
    assert node.member_states()["p1"] is MemberState.ALIVE
    assert [e.instance_id for e in node.table.live("web")] == ["w1", "w2"]


def test_node_declared_dead_reasserts_its_entries_under_the_new_incarnation() -> None:
    node, _ = make()
    entry = node.register(0.0, "web", "w1", "10.0.0.1", 80)[0]
    node.handle_packet(1.0, peer(1), encode_packet(Packet(None, (Dead("me", 0, "p1"),))))
    [mine] = node.own_entries()
    assert mine.owner_incarnation == 1
    assert mine.stamp > entry.stamp


def test_our_own_key_from_an_earlier_life_is_deleted_not_adopted() -> None:
    node, _ = make()
    ghost = node.register(0.0, "web", "old", "10.0.0.1", 80)[0]
    fresh = Protocol(ProtocolConfig(), "me", ME, rng=random.Random(1), now=0.0)
    fresh.start(0.0)
    fresh.handle_packet(1.0, peer(1), encode_packet(Packet(None, (EntryUpdate(ghost),))))
    assert fresh.table.live("web") == []
    stored = fresh.table.get(ghost.key)
    assert stored is not None
    assert stored.deleted
    assert stored.order > ghost.order


def test_only_the_owner_may_deregister() -> None:
    node, _ = make()
    theirs = node.register(0.0, "web", "w1", "10.0.0.1", 80)[0]
    other = Protocol(ProtocolConfig(), "p1", peer(1), rng=random.Random(2), now=0.0)
    other.handle_packet(0.1, ME, encode_packet(Packet(None, (EntryUpdate(theirs),))))
    with pytest.raises(ValueError, match="owned by node 'me'"):
        other.deregister(0.2, theirs.key)


def test_idle_node_sends_nothing_but_probes_and_acks() -> None:
    node, effects = make(peers=3)
    # drain the join news completely
    now = 0.0
    pending = list(effects)
    for _ in range(200):
        gossip = timers(pending, TimerKind.GOSSIP) + timers(pending, TimerKind.FAST_GOSSIP)
        if not gossip:
            break
        timer = gossip[0]
        pending.remove(timer)
        now = max(now, timer.at)
        pending += node.handle_timer(now, timer.timer)
    assert len(node.queue) == 0
    now, out, _, _ = probe_once(node, pending)
    assert [type(p.primary) for _, p in sends(out)] == [Ping]
    assert all(p.updates == () for _, p in sends(out))
    assert timers(out, TimerKind.GOSSIP) == []


def test_push_pull_exchanges_only_what_differs() -> None:
    a, _ = make(peers=0)
    b = Protocol(ProtocolConfig(), "p1", peer(1), rng=random.Random(3), now=0.0)
    b.start(0.0)
    for i in range(50):
        a.register(0.0, "web", f"a{i}", "10.0.0.1", 80)
        b.register(0.0, "api", f"b{i}", "10.0.0.2", 81)
    out = a.join(1.0, [peer(1)])
    [req] = [e for e in out if isinstance(e, StreamRequest)]
    reply, _ = b.handle_stream(1.0, ME, req.data)
    assert reply is not None
    decoded = decode_stream(reply, 1 << 24)
    assert isinstance(decoded, SyncReply)
    assert len(decoded.entries) == 50
    out = a.handle_stream_reply(1.1, req.token, reply)
    [finish] = [e for e in out if isinstance(e, StreamSend)]
    b.handle_stream(1.2, ME, finish.data)
    assert a.table.digest == b.table.digest
    assert a.member_states() == b.member_states()
    # Now nothing differs: the reply carries no entries and no member list.
    hello = SyncHello(a.members.me, a.members.digest, a.table.bucket_digests())
    reply2, _ = b.handle_stream(2.0, ME, encode_stream(hello))
    assert reply2 is not None
    assert decode_stream(reply2, 1 << 24) == SyncReply(None, False, (), ())


def test_sync_finish_is_not_sent_when_the_peer_lacks_nothing() -> None:
    a, _ = make(peers=0)
    b = Protocol(ProtocolConfig(), "p1", peer(1), rng=random.Random(3), now=0.0)
    b.register(0.0, "api", "b1", "10.0.0.2", 81)
    out = a.join(1.0, [peer(1)])
    [req] = [e for e in out if isinstance(e, StreamRequest)]
    reply, _ = b.handle_stream(1.0, ME, req.data)
    out = a.handle_stream_reply(1.1, req.token, reply)
    finishes = [decode_stream(e.data, 1 << 24) for e in out if isinstance(e, StreamSend)]
    assert all(isinstance(f, SyncFinish) and f.entries == () for f in finishes)


def test_news_too_large_for_any_packet_is_kept_but_left_to_push_pull() -> None:
    node, _ = make(peers=1)
    big = {f"k{i}": "v" * 400 for i in range(8)}
    data = encode_packet(Packet(None, (Alive("p9", peer(9), 1, big),)))
    node.handle_packet(1.0, peer(9), data)
    assert node.member_states()["p9"] is MemberState.ALIVE
    assert node.stats["broadcasts_too_large"] == 1


def test_push_pull_between_identical_large_tables_costs_only_the_digests() -> None:
    a, _ = make(peers=0)
    b = Protocol(ProtocolConfig(), "p1", peer(1), rng=random.Random(3), now=0.0)
    for i in range(5000):
        a.register(0.0, "web", f"w{i}", "10.0.0.1", 80)
    for entry in a.table.entries():
        b.table.merge(entry)
    b.merge_records(0.0, list(a.members))
    a.merge_records(0.0, list(b.members))
    assert a.table.digest == b.table.digest
    out = a.join(1.0, [peer(1)])
    [req] = [e for e in out if isinstance(e, StreamRequest)]
    reply, _ = b.handle_stream(1.0, ME, req.data)
    assert reply is not None
    # 256 bucket digests out, an empty answer back: independent of the 5,000 entries.
    assert len(req.data) < 256 * 9 + 200
    assert len(reply) < 50


def test_a_suspect_heard_alive_again_counts_one_refuted_suspicion() -> None:
    node, _ = make(peers=2)

    def hear(now: float, update: Update) -> None:
        node.handle_packet(now, peer(1), encode_packet(Packet(None, (update,))))

    hear(1.0, Suspect("p1", 1, "p2"))
    assert node.member_states()["p1"] is MemberState.SUSPECT
    hear(1.1, Alive("p1", peer(1), 2, {}))
    assert node.member_states()["p1"] is MemberState.ALIVE
    assert node.stats["suspicions_refuted"] == 1
    hear(1.2, Alive("p1", peer(1), 3, {}))  # news about an alive member refutes nothing
    assert node.stats["suspicions_refuted"] == 1


def spend_broadcasts(node: Protocol) -> None:
    """Every queued update has been sent its retransmit limit (a limit of 0 drops them all)."""
    node.queue.take(1 << 20, limit=0)
    assert len(node.queue) == 0


def test_a_stale_buddy_accusation_is_answered_with_our_current_alive_on_the_ack() -> None:
    node, _ = make()
    node.handle_packet(1.0, peer(1), encode_packet(Packet(None, (Suspect("me", 0, "p1"),))))
    assert node.incarnation == 1
    spend_broadcasts(node)
    # The prober never heard that refutation and still accuses the older incarnation.
    ping = Packet(Ping(42, "me", "p2"), (Suspect("me", 0, "p2"),))
    out = node.handle_packet(30.0, peer(2), encode_packet(ping))
    [(addr, packet)] = sends(out)
    assert addr == peer(2)
    assert packet.primary == Ack(42)
    assert Alive("me", ME, 1, {}) in packet.updates
    assert node.incarnation == 1, "an old accusation is answered, not refuted again"


def test_a_direct_ack_from_a_suspect_that_refuted_long_ago_ends_the_suspicion() -> None:
    """The false death after a heal (issue 17): the refutation was lost, the ack must carry it."""
    prober, effects = make(peers=1)
    suspect = Protocol(ProtocolConfig(), "p1", peer(1), rng=random.Random(3), now=0.0)
    # The prober is a member the suspect knows at its address: only those get gossip.
    suspect.handle_packet(0.4, ME, encode_packet(Packet(None, (Alive("me", ME, 0, {}),))))
    suspect.handle_packet(0.5, ME, encode_packet(Packet(None, (Suspect("p1", 0, "p9"),))))
    suspect.handle_packet(0.6, ME, encode_packet(Packet(None, (Suspect("p1", 1, "p9"),))))
    assert suspect.incarnation == 2
    spend_broadcasts(suspect)
    prober.handle_packet(1.0, peer(1), encode_packet(Packet(None, (Suspect("p1", 1, "p9"),))))
    assert prober.member_states()["p1"] is MemberState.SUSPECT
    now, out, _, addr = probe_once(prober, effects)
    [ping] = [e.data for e in out if isinstance(e, Send) and e.addr == addr]
    [ack] = [e.data for e in suspect.handle_packet(now, ME, ping) if isinstance(e, Send)]
    prober.handle_packet(now + 0.01, peer(1), ack)
    assert prober.member_states()["p1"] is MemberState.ALIVE
    assert suspect.incarnation == 2


def test_a_suspect_that_answers_over_tcp_is_asked_for_its_record_by_push_pull() -> None:
    """A relayed or TCP ack carries no refutation; a sync fetches the suspect's own record."""
    node, effects = make(peers=1)
    node.handle_packet(0.5, peer(1), encode_packet(Packet(None, (Suspect("p1", 1, "p9"),))))
    now, out, ping, _ = probe_once(node, effects)
    _, out = fire(node, out, TimerKind.PROBE_TIMEOUT)
    [tcp] = [e for e in out if isinstance(e, StreamRequest)]
    out = node.handle_stream_reply(now + 0.6, tcp.token, encode_stream(Ack(ping.seq)))
    [sync] = [e for e in out if isinstance(e, StreamRequest)]
    assert sync.addr == peer(1)
    assert isinstance(decode_stream(sync.data, 1 << 20), SyncHello)
    own = MemberRecord("p1", peer(1), 2, MemberState.ALIVE, {})
    reply = SyncReply((own,), True, (), ())
    node.handle_stream_reply(now + 0.7, sync.token, encode_stream(reply))
    assert node.member_states()["p1"] is MemberState.ALIVE
