"""An originator sends its own fresh writes straight to the members (``Protocol._write``).

Gossip alone carries about 100 updates a second for a whole 20-node cluster
(``tests/simulation/test_churn_sim.py``); the direct fan-out takes each write
to every node in one hop, batched: one burst per ``fanout_interval`` of up
to ``FANOUT_PACKETS`` packets per member, and only our own writes: news from
peers never is.
"""

from __future__ import annotations

from collections.abc import Sequence

from gossip_registry.core.codec import (
    MAX_UPDATES,
    assemble_packet,
    decode_packet,
    encode_update,
    packet_overhead,
)
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Effect, Send, SetTimer, TimerKind
from gossip_registry.core.messages import EntryUpdate
from gossip_registry.core.protocol import FANOUT_BUFFER, FANOUT_PACKETS, Protocol
from gossip_registry.registry.entry import Entry, Health
from tests.unit.test_bulk_load import node_among

CONFIG = ProtocolConfig()


def fanout_timer(effects: Sequence[Effect]) -> SetTimer:
    (timer,) = [e for e in effects if isinstance(e, SetTimer) and e.timer.kind is TimerKind.FANOUT]
    return timer


def burst(node: Protocol, timer: SetTimer) -> dict[tuple[str, int], list[Entry]]:
    """Fire the fan-out timer: the entries each address got, over all its packets."""
    sent: dict[tuple[str, int], list[Entry]] = {}
    for effect in node.handle_timer(timer.at, timer.timer):
        if isinstance(effect, Send):
            updates = decode_packet(effect.data).updates
            got = sent.setdefault(effect.addr, [])
            got += [u.entry for u in updates if isinstance(u, EntryUpdate)]
    return sent


def others(node: Protocol) -> set[tuple[str, int]]:
    return {node.members.addr_of(n) for n in node.members.sample(10**6)}


def test_an_own_write_goes_straight_to_every_member() -> None:
    node = node_among(CONFIG, 20)
    entry, effects = node.register(0.0, "web", "w1", "10.0.0.1", 80)
    timer = fanout_timer(effects)
    assert timer.at == 0.0
    sent = burst(node, timer)
    assert set(sent) == others(node)
    assert len(sent) == 19
    assert all(entries == [entry] for entries in sent.values())

    gone, effects = node.deregister(1.0, entry.key)
    assert gone == entry
    sent = burst(node, fanout_timer(effects))
    assert len(sent) == 19
    assert all(len(es) == 1 and es[0].deleted and es[0].key == entry.key for es in sent.values())


def test_writes_within_one_interval_share_one_packet_and_wait_for_the_next_burst() -> None:
    node = node_among(CONFIG, 5)
    burst(node, fanout_timer(node.register(0.0, "web", "w0", "10.0.0.1", 80)[1]))
    first, effects = node.register(0.05, "web", "w1", "10.0.0.1", 80)
    timer = fanout_timer(effects)
    assert timer.at == CONFIG.fanout_interval  # one burst per interval
    second, effects = node.register(0.1, "web", "w2", "10.0.0.1", 80)
    newer, effects = node.register(0.1, "web", "w1", "10.0.0.1", 81)
    assert not [e for e in effects if isinstance(e, SetTimer) and e.timer.kind is TimerKind.FANOUT]
    sent = burst(node, timer)
    assert len(sent) == 4
    assert all(entries == [second, newer] for entries in sent.values())  # w1's old version is gone
    assert first not in next(iter(sent.values()))


def test_at_most_fanout_nodes_members_get_a_burst() -> None:
    node = node_among(CONFIG.with_(fanout_nodes=32), 100)
    sent = burst(node, fanout_timer(node.register(0.0, "web", "w1", "10.0.0.1", 80)[1]))
    assert len(sent) == 32


def test_news_from_peers_is_never_fanned_out() -> None:
    node = node_among(CONFIG, 20)
    peer = node.members.get("m1")
    assert peer is not None
    entries = [
        Entry("web", f"p{i}", "10.0.0.2", 80, (), {}, 1, Health.PASSING, "", "m1", 0, 1 + i, False)
        for i in range(20)
    ]
    packet = assemble_packet(None, [encode_update(EntryUpdate(e)) for e in entries])
    effects = node.handle_packet(0.0, peer.addr, packet)
    assert node.table.live_count == 20  # merged, and queued for gossip
    assert len(node.queue) == 20
    assert not [e for e in effects if isinstance(e, SetTimer) and e.timer.kind is TimerKind.FANOUT]
    assert node.stats["fanout_writes"] == 0


def test_a_burst_sends_the_oldest_writes_in_up_to_fanout_packets_packets_per_member() -> None:
    """One burst a second must still carry a busy node's writes: a few full packets, not one."""
    node = node_among(CONFIG.with_(broadcast_queue_limit=10**6), 20)
    effects: list[Effect] = []
    for i in range(FANOUT_BUFFER + 5):
        effects += node.register(0.0, "bulk", f"b{i}", "10.0.0.1", 80)[1]
    assert node.stats["fanout_overflow"] == 5
    assert len(node.queue) == min(FANOUT_BUFFER + 5, CONFIG.queue_limit(20))
    timer = fanout_timer(effects)
    fired = node.handle_timer(timer.at, timer.timer)
    packets = [e for e in fired if isinstance(e, Send)]
    assert len(packets) == 19 * FANOUT_PACKETS
    room = CONFIG.payload_size - packet_overhead(None, MAX_UPDATES)
    sizes = [
        len(encode_update(EntryUpdate(node.table.get(("bulk", f"b{i}")))))  # type: ignore[arg-type]
        for i in range(FANOUT_BUFFER)
    ]
    fit, used, filled = 0, 0, 1
    for size in sizes:  # greedy packing, oldest first, into FANOUT_PACKETS packets
        if used + size > room:
            filled, used = filled + 1, 0
        if filled > FANOUT_PACKETS:
            break
        fit, used = fit + 1, used + size
    assert 20 * FANOUT_PACKETS < fit < FANOUT_BUFFER
    sent: dict[tuple[str, int], list[str]] = {}
    for packet in packets:
        updates = decode_packet(packet.data).updates
        sent.setdefault(packet.addr, []).extend(
            u.entry.instance_id for u in updates if isinstance(u, EntryUpdate)
        )
    assert all(ids == [f"b{i}" for i in range(fit)] for ids in sent.values())
    assert node.stats["fanout_writes"] == fit
    assert fanout_timer(fired).at == timer.at + CONFIG.fanout_interval  # the rest waits
