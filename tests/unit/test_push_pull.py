"""Push-pull anti-entropy driven by hand: hello, reply and finish frames passed between cores.

These pin behaviour that convergence alone hides: a single-line change to any
of them still lets a simulation converge (a later sync repairs it), so only a
test of one exchange sees it.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from gossip_registry.core.codec import decode_stream, encode_packet, encode_stream
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import (
    Effect,
    EntryChanged,
    Notify,
    SetTimer,
    StreamRequest,
    StreamSend,
    Synced,
    TimerKind,
)
from gossip_registry.core.messages import (
    Address,
    Alive,
    Dead,
    MemberRecord,
    MemberState,
    Packet,
    Suspect,
    SyncFinish,
    SyncHello,
    SyncMore,
    SyncReply,
)
from gossip_registry.core.protocol import (
    MERGE_CHUNK,
    REGOSSIP_PER_SYNC,
    SYNC_PAGE_ENTRIES,
    Protocol,
)
from gossip_registry.registry.entry import Entry

A: Address = ("198.18.0.1", 7946)
B: Address = ("198.18.0.2", 7946)


def pair() -> tuple[Protocol, Protocol]:
    a = Protocol(ProtocolConfig(), "a", A, rng=random.Random(1), now=0.0)
    b = Protocol(ProtocolConfig(), "b", B, rng=random.Random(2), now=0.0)
    a.start(0.0)
    b.start(0.0)
    return a, b


def sync(a: Protocol, b: Protocol, now: float) -> None:
    """One whole push-pull started by ``a``: hello, reply, finish."""
    [request] = [e for e in a.join(now, [b.addr]) if isinstance(e, StreamRequest)]
    reply, _ = b.handle_stream(now, a.addr, request.data)
    assert reply is not None
    out = a.handle_stream_reply(now, request.token, reply)
    for finish in (e for e in out if isinstance(e, StreamSend)):
        b.handle_stream(now, a.addr, finish.data)


def test_initiator_sends_its_tombstones_in_sync_finish_so_the_peer_deletes_its_copy() -> None:
    a, b = pair()
    entry = a.register(1.0, "web", "w1", "10.0.0.1", 80)[0]
    assert b.table.merge(entry)[0]
    a.deregister(2.0, entry.key)  # b never hears the gossip
    sync(a, b, 3.0)
    stored = b.table.get(entry.key)
    assert stored is not None
    assert stored.deleted
    assert b.table.live("web") == []
    # the whole-table digest counts live entries only; the bucket digests see tombstones
    assert a.table.bucket_digests() == b.table.bucket_digests()


@pytest.mark.parametrize("known", [True, False], ids=["known-member", "unknown-member"])
def test_member_learnt_left_through_push_pull_is_left_without_a_suspicion(known: bool) -> None:
    node = Protocol(ProtocolConfig(), "me", A, rng=random.Random(3), now=0.0)
    node.start(0.0)
    if known:
        node.handle_packet(0.5, B, encode_packet(Packet(None, (Alive("p1", B, 1, {}),))))
    left = MemberRecord("p1", B, 1, MemberState.LEFT, {})
    out = node.handle_stream(1.0, B, encode_stream(SyncFinish((node.members.me, left), ())))[1]
    assert node.member_states()["p1"] is MemberState.LEFT
    assert [e for e in out if isinstance(e, SetTimer) and e.timer.kind is TimerKind.SUSPICION] == []
    assert node.stats["suspicions"] == 0


def test_suspicion_timer_scales_with_the_live_cluster_size() -> None:
    config = ProtocolConfig()
    node = Protocol(config, "me", A, rng=random.Random(4), now=0.0)
    node.start(0.0)
    news = tuple(Alive(f"p{i}", (f"198.18.1.{i}", 7946), 1, {}) for i in range(1, 100))
    for start in range(0, len(news), 20):  # a packet holds a bounded number of updates
        node.handle_packet(0.0, B, encode_packet(Packet(None, news[start : start + 20])))
    n = node.members.active_count
    assert n == 100
    low = config.suspicion_min(n)
    assert low != config.suspicion_min(1), "at this size the live N must matter"

    def suspect(accuser: str, now: float) -> list[SetTimer]:
        out = node.handle_packet(now, B, encode_packet(Packet(None, (Suspect("p1", 1, accuser),))))
        return [e for e in out if isinstance(e, SetTimer) and e.timer.kind is TimerKind.SUSPICION]

    [first] = suspect("p2", 10.0)
    assert first.at == pytest.approx(10.0 + low * config.suspicion_max_mult)
    wanted = config.suspicion_mult - 2
    confirmed: list[SetTimer] = []
    for i in range(wanted):
        confirmed += suspect(f"p{3 + i}", 11.0)
    assert confirmed[-1].at == pytest.approx(10.0 + low), "fully confirmed: the minimum"


def _tombstone_of(entry: Entry) -> Entry:
    return replace(entry, deleted=True, stamp=entry.stamp + (1 << 16))


def test_tombstone_in_sync_finish_deletes_the_live_copy_and_counts_as_repaired() -> None:
    a, b = pair()
    entry = a.register(1.0, "web", "w1", "10.0.0.1", 80)[0]
    b.table.merge(entry)
    out = b.handle_stream(2.0, A, encode_stream(SyncFinish(None, (_tombstone_of(entry),))))[1]
    assert b.table.live("web") == []
    stored = b.table.get(entry.key)
    assert stored is not None
    assert stored.deleted
    assert b.stats["entries_repaired"] == 1
    assert Notify(EntryChanged(entry, None)) in out


def test_tombstone_in_sync_reply_deletes_the_live_copy_and_counts_as_repaired() -> None:
    a, b = pair()
    entry = b.register(1.0, "web", "w1", "10.0.0.1", 80)[0]
    a.table.merge(entry)
    [request] = [e for e in a.join(2.0, [B]) if isinstance(e, StreamRequest)]
    bucket = a.table.bucket_of(entry.key)
    reply = SyncReply(None, False, (bucket,), (_tombstone_of(entry),))
    out = a.handle_stream_reply(2.0, request.token, encode_stream(reply))
    assert a.table.live("web") == []
    stored = a.table.get(entry.key)
    assert stored is not None
    assert stored.deleted
    assert a.stats["entries_repaired"] == 1
    assert Notify(EntryChanged(entry, None)) in out


def _finish_of(count: int) -> tuple[Protocol, bytes]:
    source = Protocol(ProtocolConfig(), "p1", B, rng=random.Random(5), now=0.0)
    for i in range(count):
        source.register(0.0, "web", f"w{i}", "10.0.0.1", 80)
    fresh = Protocol(ProtocolConfig(), "me", A, rng=random.Random(6), now=0.0)
    return fresh, encode_stream(SyncFinish(None, tuple(source.table.entries())))


def test_a_few_entries_repaired_by_push_pull_are_gossiped_on() -> None:
    fresh, frame = _finish_of(3)
    fresh.handle_stream(1.0, B, frame)
    assert len(fresh.queue) == 3


def test_a_bulk_transfer_by_push_pull_is_not_piggybacked_entry_by_entry() -> None:
    fresh, frame = _finish_of(1000)
    drive(fresh, fresh.handle_stream(1.0, B, frame)[1], 1.0)
    assert fresh.table.live_count == 1000
    assert len(fresh.queue) == REGOSSIP_PER_SYNC
    assert fresh.stats["repairs_not_regossiped"] == 1000 - REGOSSIP_PER_SYNC


def drive(node: Protocol, effects: list[Effect], now: float) -> list[Effect]:
    """Fire the MERGE timers the core arms (at ``now``) until it has merged everything."""
    seen: list[Effect] = list(effects)
    for _ in range(10_000):
        merges = [e for e in effects if isinstance(e, SetTimer) and e.timer.kind is TimerKind.MERGE]
        if not merges:
            return seen
        assert merges[-1].at == now, "merging goes on at once, after other events had a turn"
        effects = node.handle_timer(now, merges[-1].timer)
        seen += effects
    raise AssertionError("the merge never finished")


def full_sync(
    a: Protocol, b: Protocol, now: float, finishes: list[SyncFinish] | None = None
) -> list[int]:
    """A whole push-pull started by ``a``, every page; the ``Synced`` said after each page.

    ``finishes`` collects the finish frames ``a`` sent, decoded.
    """
    pending = [e for e in a.join(now, [b.addr]) if isinstance(e, StreamRequest)]
    synced: list[int] = []
    while pending:
        request = pending.pop()
        reply, out = b.handle_stream(now, a.addr, request.data)
        drive(b, out, now)
        assert reply is not None
        page = decode_stream(reply, 1 << 24)
        assert isinstance(page, SyncReply)
        assert len(page.entries) <= SYNC_PAGE_ENTRIES
        out = drive(a, a.handle_stream_reply(now, request.token, reply), now)
        synced.append(sum(isinstance(e, Notify) and isinstance(e.event, Synced) for e in out))
        for finish in (e for e in out if isinstance(e, StreamSend)):
            if finishes is not None:
                decoded = decode_stream(finish.data, 1 << 26)
                assert isinstance(decoded, SyncFinish)
                finishes.append(decoded)
            drive(b, b.handle_stream(now, a.addr, finish.data)[1], now)
        pending += [e for e in out if isinstance(e, StreamRequest)]
    return synced


def test_a_large_table_is_pulled_in_bounded_pages_and_merged_in_chunks() -> None:
    a, b = pair()
    for i in range(5000):
        b.register(1.0, f"svc{i % 50}", f"i{i}", "10.0.0.2", 80)
    exchanges = len(full_sync(a, b, 2.0))
    assert a.table.bucket_digests() == b.table.bucket_digests()
    assert a.table.live_count == 5000
    assert exchanges >= 5000 // SYNC_PAGE_ENTRIES
    assert a.stats["sync_pages"] == exchanges - 1


def test_a_large_initiator_sends_a_peer_that_lacks_it_all_bounded_finish_frames() -> None:
    """The reverse direction: the page was bounded by the responder's (empty) buckets.

    The whole table went back in one finish, encoded in one step on one side
    and decoded in one on the other: 0.8 s each at 100,000 entries (issue 15,
    the multi-second stall of a node serving stream frames).
    """
    a, b = pair()
    for i in range(5000):
        a.register(1.0, f"svc{i % 50}", f"i{i}", "10.0.0.1", 80)
    finishes: list[SyncFinish] = []
    full_sync(a, b, 2.0, finishes)
    assert b.table.bucket_digests() == a.table.bucket_digests()
    assert b.table.live_count == 5000
    assert len(finishes) >= 5000 // SYNC_PAGE_ENTRIES
    assert max(len(f.entries) for f in finishes) <= SYNC_PAGE_ENTRIES


def test_a_hello_with_another_bucket_count_gets_the_members_and_no_entries() -> None:
    """A peer configured with other ``registry_buckets`` (or a forged hello) cannot make us
    encode the whole table in one step; push-pull between such nodes carries members only."""
    a, b = pair()
    for i in range(600):
        b.register(1.0, f"svc{i % 50}", f"i{i}", "10.0.0.2", 80)
    hello = SyncHello(a.members.me, 0, (0,) * 16)
    reply, _ = b.handle_stream(2.0, A, encode_stream(hello))
    assert reply is not None
    answer = decode_stream(reply, 1 << 24)
    assert isinstance(answer, SyncReply)
    assert answer.entries == ()
    assert answer.members is not None
    assert b.stats["sync_bucket_count_mismatch"] == 1


def test_synced_is_said_once_when_the_last_page_is_merged() -> None:
    a, b = pair()
    for i in range(2000):
        b.register(1.0, f"svc{i % 20}", f"i{i}", "10.0.0.2", 80)
    synced = full_sync(a, b, 2.0)
    assert len(synced) > 1  # paged
    assert synced == [0] * (len(synced) - 1) + [1]


def test_one_merge_step_handles_at_most_a_chunk_of_entries() -> None:
    source = Protocol(ProtocolConfig(), "p1", B, rng=random.Random(5), now=0.0)
    for i in range(3 * MERGE_CHUNK + 1):
        source.register(0.0, "web", f"w{i}", "10.0.0.1", 80)
    fresh = Protocol(ProtocolConfig(), "me", A, rng=random.Random(6), now=0.0)
    frame = encode_stream(SyncFinish(None, tuple(source.table.entries())))
    out = fresh.handle_stream(1.0, B, frame)[1]
    assert fresh.table.live_count == MERGE_CHUNK
    drive(fresh, out, 1.0)
    assert fresh.table.live_count == 3 * MERGE_CHUNK + 1
    assert fresh.stats["entries_repaired"] == 3 * MERGE_CHUNK + 1


@pytest.mark.parametrize(("buckets", "resume"), [((999,), 0), ((0, -1), 0), ((0,), 10_000)])
def test_a_reply_naming_buckets_we_do_not_have_is_a_failed_sync_not_a_crash(
    buckets: tuple[int, ...], resume: int
) -> None:
    a, b = pair()
    b.register(1.0, "web", "w1", "10.0.0.2", 80)
    [request] = [e for e in a.join(2.0, [b.addr]) if isinstance(e, StreamRequest)]
    reply = SyncReply(None, False, buckets, tuple(b.table.entries()), resume)
    out = a.handle_stream_reply(2.1, request.token, encode_stream(reply))
    assert a.stats["syncs_failed"] == 1
    assert not [e for e in out if isinstance(e, StreamRequest | StreamSend)]
    assert a.table.live_count == 0  # nothing from a reply we refused


def test_a_refuting_node_reasserts_a_large_table_a_chunk_at_a_time_before_other_merges() -> None:
    node = Protocol(ProtocolConfig(), "me", A, rng=random.Random(7), now=0.0)
    node.start(0.0)
    mine = [node.register(0.0, "api", f"a{i}", "10.0.0.1", 80)[0] for i in range(3 * MERGE_CHUNK)]
    peer_frame = _finish_of(2 * MERGE_CHUNK)[1]
    out = node.handle_stream(0.5, B, peer_frame)[1]  # a merge is under way
    out += node.handle_packet(1.0, B, encode_packet(Packet(None, (Suspect("me", 0, "p1"),))))
    assert node.incarnation == 1

    def reasserted() -> int:
        return sum(e.owner_incarnation == 1 for e in node.own_entries())

    assert reasserted() == MERGE_CHUNK, "one chunk at once, the rest on the MERGE timer"
    [*_, merge] = [e for e in out if isinstance(e, SetTimer) and e.timer.kind is TimerKind.MERGE]
    out = node.handle_timer(1.0, merge.timer)
    assert reasserted() == 2 * MERGE_CHUNK, "ahead of the push-pull merge queued before it"
    drive(node, out, 1.0)
    assert reasserted() == len(mine)
    assert node.table.live_count == len(mine) + 2 * MERGE_CHUNK


def test_a_member_with_a_large_table_is_fenced_a_chunk_at_a_time() -> None:
    node = Protocol(ProtocolConfig(), "me", A, rng=random.Random(8), now=0.0)
    node.start(0.0)
    node.handle_packet(0.0, B, encode_packet(Packet(None, (Alive("p1", B, 1, {}),))))
    source = Protocol(ProtocolConfig(), "p1", B, rng=random.Random(9), now=0.0, incarnation=0)
    count = 3 * MERGE_CHUNK
    for i in range(count):
        node.table.merge(source.register(0.0, "web", f"w{i}", "10.0.0.1", 80)[0])
    out = node.handle_packet(1.0, B, encode_packet(Packet(None, (Dead("p1", 1, "p2"),))))
    assert node.table.live_count == count - MERGE_CHUNK, "one chunk at once"
    out = drive(node, out, 1.0)
    assert node.table.live_count == 0
    gone = [e for e in out if isinstance(e, Notify) and isinstance(e.event, EntryChanged)]
    assert len(gone) == count
    assert all(n.event.fenced and n.event.new is None for n in gone)  # type: ignore[union-attr]
    assert node.stats["entries_fenced"] == count
    # the fence itself holds at once: an old version arriving meanwhile is refused
    old = source.table.get(("web", "w0"))
    assert old is not None
    assert node.table.merge(replace(old, stamp=1 << 40)) == (False, None)


FRAME_LIMIT = 64 * 1024
"""A small ``max_stream_bytes``: a few hundred members with 1 KiB of meta exceed it, as
10,000 do the default (9.1 MiB against 8 MiB)."""


def crowded(name: str, addr: Address, members: int, buckets: int = 256) -> Protocol:
    """A started node that knows ``members`` others, each with about 1 KiB of meta."""
    config = ProtocolConfig(max_stream_bytes=FRAME_LIMIT, registry_buckets=buckets)
    node = Protocol(config, name, addr, rng=random.Random(len(name)), now=0.0)
    node.start(0.0)
    meta = {f"k{i}": "v" * 120 for i in range(8)}
    others = [
        MemberRecord(
            f"{name}-m{i}", (f"198.19.{i // 250}.{i % 250 + 1}", 7946), 1, MemberState.ALIVE, meta
        )
        for i in range(members)
    ]
    node.merge_records(0.0, others)
    assert len(node.members) == members + 1
    return node


def framed_sync(a: Protocol, b: Protocol, now: float) -> list[int]:
    """A whole push-pull started by ``a``, every page and finish; the size of every frame."""
    pending = [e for e in a.join(now, [b.addr]) if isinstance(e, StreamRequest)]
    sizes: list[int] = []
    for _ in range(1000):
        if not pending:
            return sizes
        request = pending.pop(0)
        sizes.append(len(request.data))
        reply, out = b.handle_stream(now, a.addr, request.data)
        drive(b, out, now)
        assert reply is not None
        sizes.append(len(reply))
        out = drive(a, a.handle_stream_reply(now, request.token, reply), now)
        for finish in (e for e in out if isinstance(e, StreamSend)):
            sizes.append(len(finish.data))
            drive(b, b.handle_stream(now, a.addr, finish.data)[1], now)
        pending += [e for e in out if isinstance(e, StreamRequest)]
    raise AssertionError("the sync never ended")


@pytest.mark.parametrize(
    ("large", "buckets"),
    [("responder", 256), ("initiator", 256), ("responder", 16)],
    ids=["responders-list", "initiators-list", "another-bucket-count"],
)
def test_a_member_list_larger_than_the_frame_limit_syncs_in_pages(large: str, buckets: int) -> None:
    """Every frame of the exchange stays within ``max_stream_bytes``, and both sides end
    up knowing every member: a whole list in one frame would be refused by the peer."""
    many = 400
    a = crowded("a", A, many if large == "initiator" else 0, buckets)
    b = crowded("b", B, many if large == "responder" else 0)
    whole = len(
        encode_stream(SyncFinish(tuple(a.members if large == "initiator" else b.members), ()))
    )
    assert whole > FRAME_LIMIT, "the list must not fit one frame"
    sizes = framed_sync(a, b, 1.0)
    assert max(sizes) <= FRAME_LIMIT
    assert {r.name for r in a.members} == {r.name for r in b.members}
    assert len(a.members) == many + 2


def test_a_member_page_that_does_not_move_on_ends_the_sync() -> None:
    """A peer (buggy or forged) cannot keep us asking for member pages forever: each must
    move on, and not past ``max_members``."""
    a, b = pair()
    [request] = [e for e in a.join(1.0, [b.addr]) if isinstance(e, StreamRequest)]
    first = SyncReply((b.members.me,), False, (), (), 0, 5)
    out = a.handle_stream_reply(1.1, request.token, encode_stream(first))
    [more] = [e for e in out if isinstance(e, StreamRequest)]
    assert decode_stream(more.data, FRAME_LIMIT) == SyncMore(0, (), 5)
    again = a.handle_stream_reply(1.2, more.token, encode_stream(first))
    assert not [e for e in again if isinstance(e, StreamRequest | StreamSend)]
    assert a.stats["sync_replies_out_of_range"] == 1
    [request] = [e for e in a.join(2.0, [b.addr]) if isinstance(e, StreamRequest)]
    beyond = SyncReply((b.members.me,), False, (), (), 0, a.config.limits.max_members + 1)
    a.handle_stream_reply(2.1, request.token, encode_stream(beyond))
    assert a.stats["sync_replies_out_of_range"] == 2
