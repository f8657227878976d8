"""The simulator itself, driven by a tiny fake protocol (not the real core).

``FloodNode`` floods a counter to every peer it knows over UDP on a 10 ms
tick, answers streams with ``b"re:" + request``, and sends whatever a test
puts in its ``outbox`` on its next tick. That is enough to observe delays,
losses, cuts, crashes, pauses and streams from the receiving end, with
every timing predictable when the link's sigma is 0.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import random
import statistics
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import (
    Effect,
    EntryChanged,
    IncarnationChanged,
    LeaveDrained,
    MemberChanged,
    Notify,
    Send,
    SetTimer,
    StreamRequest,
    StreamSend,
    Timer,
    TimerKind,
)
from gossip_registry.core.members import MemberSeed
from gossip_registry.core.messages import Address, MemberState
from gossip_registry.registry.entry import CheckState, Entry, EntryKey, Health
from gossip_registry.sim import (
    LinkModel,
    NodeFactory,
    NodeStatus,
    SimCluster,
    SimulationError,
    node_address,
)

pytestmark = pytest.mark.simulation

TICK = 0.01
MEDIAN = 0.001
EXACT = LinkModel(median_delay=MEDIAN, sigma=0.0)
"""Every datagram takes exactly 1 ms: timings in these tests are exact."""


class FakeTable:
    def __init__(self, node: FloodNode) -> None:
        self._node = node

    @property
    def digest(self) -> int:
        return zlib.crc32(",".join(sorted(self._node.member_states())).encode())

    def get(self, key: EntryKey) -> Entry | None:
        return self._node.entries.get(key)


class FloodNode:
    """Implements the protocol interface the simulator drives, and records what it sees."""

    def __init__(
        self,
        config: ProtocolConfig,
        name: str,
        addr: Address,
        *,
        rng: random.Random,
        now: float,
        wall_offset: float,
        incarnation: int | None,
        entries: Sequence[Entry],
        flood: bool = True,
    ) -> None:
        self.name = name
        self.addr = addr
        self.rng = rng
        self.wall_offset = wall_offset
        self.incarnation = 0 if incarnation is None else incarnation
        self.restored = tuple(entries)
        self.entries: dict[EntryKey, Entry] = {e.key: e for e in entries}
        self.flood = flood
        # A per-object token: a timer armed by another (older) object is recognisable.
        self.nonce = rng.getrandbits(32)
        self.stats: Counter[str] = Counter()
        self.table = FakeTable(self)
        self.now = now
        self.peers: list[Address] = []
        self.last_heard: dict[str, float] = {}
        self.counter = 0
        self.outbox: list[Effect] = []
        self.flushed_at: list[float] = []
        self.received: list[tuple[float, Address, bytes]] = []
        self.timer_fires: list[float] = []
        self.served: list[tuple[float, Address, bytes]] = []
        self.replies: list[tuple[float, int, bytes | None]] = []
        self.refused: list[tuple[float, Address]] = []
        self.joined: list[tuple[float, list[Address]]] = []
        self.seeded: MemberSeed | None = None
        self.left = False

    # Driven by the simulator.

    def start(self, now: float) -> list[Effect]:
        self.now = now
        return [
            Notify(IncarnationChanged(self.incarnation, None)),
            SetTimer(now + TICK, Timer(TimerKind.GOSSIP, self.nonce)),
        ]

    def refute(self, incarnation: int) -> None:
        """Raise our incarnation; the core's word about it goes out with the next tick."""
        self.outbox.append(Notify(IncarnationChanged(incarnation, self.incarnation)))
        self.incarnation = incarnation

    def join(self, now: float, seeds: Iterable[Address], *, tag: int = 0) -> list[Effect]:
        self.now = now
        seeds = list(seeds)
        self.joined.append((now, seeds))
        self._learn(seeds)
        return [Send(a, self._message(b"hello")) for a in seeds]

    def join_at_start(
        self,
        now: float,
        seeds: Iterable[Address],
        known: Iterable[Address] = (),
        *,
        tag: int = 0,
        resolve: bool = False,
    ) -> list[Effect]:
        """No policy of its own: asks everyone it is given (the real core caps ``known``)."""
        return self.join(now, dict.fromkeys([*seeds, *known]), tag=tag)

    def join_resolved(self, now: float, tag: int, seeds: Iterable[Address]) -> list[Effect]:
        """Never asked: the simulator's seeds are addresses, so no join waits on names."""
        return []

    def leave(self, now: float, timeout: float) -> list[Effect]:
        """Says goodbye at once; drained after ``timeout``, like the core at its leave timeout."""
        self.now = now
        self.left = True
        bye = [Send(a, self._message(b"bye")) for a in self.peers]
        return [*bye, SetTimer(now + timeout, Timer(TimerKind.LEAVE, self.nonce))]

    def seed_members(self, seed: MemberSeed) -> None:
        self.seeded = seed
        self._learn(r.addr for r in seed.records.values() if r.name != self.name)

    def handle_packet(self, now: float, src: Address, data: bytes) -> list[Effect]:
        self.now = now
        self.stats["packets"] += 1
        self.received.append((now, src, data))
        name, body, peers = parse(data)
        effects: list[Effect] = []
        if body == b"bye":
            self.last_heard.pop(name, None)
            return effects
        if name not in self.last_heard:
            effects.append(Notify(MemberChanged(name, src, MemberState.ALIVE, 0, None)))
        self.last_heard[name] = now
        self._learn([src, *peers])
        return effects

    def handle_timer(self, now: float, timer: Timer) -> list[Effect]:
        self.now = now
        self.timer_fires.append(now)
        if timer.token != self.nonce:
            self.stats["foreign timers"] += 1
            return []
        if timer.kind is TimerKind.LEAVE:
            return [Notify(LeaveDrained(drained=False))]
        effects, self.outbox = self.outbox, []
        if effects:
            self.flushed_at.append(now)
        if self.flood and not self.left:
            self.counter += 1
            known = ",".join(f"{host}:{port}" for host, port in self.peers).encode()
            data = self._message(str(self.counter).encode() + b"|" + known)
            effects += [Send(a, data) for a in self.peers]
        effects.append(SetTimer(now + TICK, Timer(TimerKind.GOSSIP, self.nonce)))
        return effects

    def handle_stream(
        self, now: float, src: Address, data: bytes
    ) -> tuple[bytes | None, list[Effect]]:
        self.now = now
        self.served.append((now, src, data))
        if data.startswith(b"silent"):
            return None, []
        return b"re:" + data, []

    def handle_stream_reply(self, now: float, token: int, reply: bytes | None) -> list[Effect]:
        self.now = now
        self.replies.append((now, token, reply))
        return []

    def handle_refused(self, now: float, addr: Address) -> list[Effect]:
        self.now = now
        self.refused.append((now, addr))
        return []

    def register(
        self,
        now: float,
        service: str,
        instance_id: str,
        address: str,
        port: int,
        *,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        weight: int = 1,
        status: Health = Health.PASSING,
        output: str = "",
        checks: Sequence[CheckState] = (),
    ) -> tuple[Entry, list[Effect]]:
        entry = Entry(
            service,
            instance_id,
            address,
            port,
            tuple(tags),
            dict(meta or {}),
            weight,
            status,
            output,
            self.name,
            self.incarnation,
            int(now * 1000),
            False,
            tuple(checks),
        )
        self.entries[entry.key] = entry
        return entry, []

    def update_checks(
        self, now: float, key: EntryKey, checks: Sequence[CheckState]
    ) -> tuple[Entry | None, list[Effect]]:
        current = self.entries.get(key)
        if current is None:
            return None, []
        self.entries[key] = updated = dataclasses.replace(current, checks=tuple(checks))
        return updated, []

    def deregister(self, now: float, key: EntryKey) -> tuple[Entry | None, list[Effect]]:
        return self.entries.pop(key, None), []

    def rewrite(
        self, now: float, entry: Entry, *, status: Health, checks: Sequence[CheckState]
    ) -> tuple[Entry, list[Effect]]:
        self.entries[entry.key] = new = dataclasses.replace(
            entry, status=status, checks=tuple(checks)
        )
        return new, []

    def force_leave(self, now: float, name: str) -> list[Effect]:
        self.last_heard.pop(name, None)
        return []

    def observe_wall(self, now: float, wall: float) -> None:
        self.wall_offset = wall - now

    # Read by the simulator.

    def member_states(self) -> dict[str, MemberState]:
        """ALIVE if heard from within 5 ticks, else DEAD: enough to test agreement."""
        states = {
            name: MemberState.ALIVE if self.now - t <= 5 * TICK else MemberState.DEAD
            for name, t in self.last_heard.items()
        }
        states[self.name] = MemberState.ALIVE
        return states

    def own_entries(self) -> list[Entry]:
        return list(self.entries.values())

    def own_entry(self, key: EntryKey) -> Entry | None:
        return self.entries.get(key)

    def own_keys(self, instance_id: str, service: str | None = None) -> list[EntryKey]:
        return [k for k in self.entries if k[1] == instance_id and service in (None, k[0])]

    def owned_copy(self) -> list[Entry]:
        return list(self.entries.values())

    # Helpers.

    def _message(self, body: bytes) -> bytes:
        return self.name.encode() + b"|" + body

    def _learn(self, addrs: Iterable[Address]) -> None:
        for a in addrs:
            if a != self.addr and a not in self.peers:
                self.peers.append(a)


def parse(data: bytes) -> tuple[str, bytes, list[Address]]:
    """``name|body[|host:port,...]`` -> (name, body, addresses)."""
    name, body, *rest = data.split(b"|")
    peers: list[Address] = []
    for item in rest[0].split(b",") if rest and rest[0] else ():
        host, _, port = item.decode().rpartition(":")
        peers.append((host, int(port)))
    return name.decode(), body, peers


def flood_factory(*, flood: bool = True) -> NodeFactory:
    def make(
        config: ProtocolConfig,
        name: str,
        addr: Address,
        *,
        rng: random.Random,
        now: float,
        wall_offset: float,
        incarnation: int | None,
        entries: Sequence[Entry],
    ) -> FloodNode:
        return FloodNode(
            config,
            name,
            addr,
            rng=rng,
            now=now,
            wall_offset=wall_offset,
            incarnation=incarnation,
            entries=entries,
            flood=flood,
        )

    return make


def make_cluster(
    n: int, *, seed: int = 1, flood: bool = True, link: LinkModel = EXACT, **kw: object
) -> SimCluster:
    return SimCluster(
        n,
        seed=seed,
        link=link,
        node_factory=flood_factory(flood=flood),
        **kw,  # type: ignore[arg-type]
    )


def fake(cluster: SimCluster, name: str) -> FloodNode:
    node = cluster.node(name)
    assert isinstance(node, FloodNode)
    return node


def counters_from(node: FloodNode, sender: str) -> list[int]:
    """The flood counters ``node`` received from ``sender``, in arrival order."""
    out = []
    for _, _, data in node.received:
        name, body, _ = parse(data)
        if name == sender and body.isdigit():
            out.append(int(body))
    return out


A, B, C, D = "n00000", "n00001", "n00002", "n00003"


# Determinism.


def eventful_run(seed: int) -> tuple[object, ...]:
    """A run touching every mechanism: loss, jitter, streams, crash, restart, pause, cuts."""
    cluster = make_cluster(6, seed=seed, link=LinkModel(loss=0.05), clock_skew=0.5, trace=True)
    cluster.run_for(0.3)
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(B), b"sync", 7))
    cluster.call_at(0.5, lambda: cluster.crash(C))
    cluster.call_at(0.6, lambda: cluster.pause(D, 0.2))
    cluster.call_at(0.7, lambda: cluster.partition([A], ["n00004"], one_way=True))
    cluster.run_for(0.7)
    cluster.restart(C)
    cluster.heal()
    cluster.set_loss(0.2)
    cluster.run_for(0.5)
    names = cluster.names
    return (
        cluster.trace,
        [fake(cluster, n).stats for n in names],
        [cluster.traffic(n) for n in names],
        [cluster.digest(n) for n in names],
        [fake(cluster, n).wall_offset for n in names],
        dict(cluster.drops),
    )


def test_same_seed_and_calls_give_an_identical_run() -> None:
    first, second = eventful_run(seed=42), eventful_run(seed=42)
    trace = first[0]
    assert isinstance(trace, list)
    assert len(trace) > 1000
    assert first == second


def test_different_seeds_give_different_runs() -> None:
    assert eventful_run(seed=1)[0] != eventful_run(seed=2)[0]


def test_trace_is_off_unless_asked_for() -> None:
    cluster = make_cluster(2)
    cluster.run_for(0.1)
    assert cluster.trace is None
    assert cluster.events_delivered > 0


# The link model.


def test_datagram_loss_rate_matches_the_setting() -> None:
    cluster = make_cluster(2, flood=False)
    cluster.set_loss(0.25)
    sent = 20_000
    fake(cluster, A).outbox.extend(Send(cluster.address(B), b"n00000|x") for _ in range(sent))
    cluster.run_for(0.1)
    received = len(fake(cluster, B).received)
    # Binomial: sd = sqrt(n p q) ~ 61; allow 5 sd.
    assert abs(received - 0.75 * sent) < 5 * math.sqrt(sent * 0.25 * 0.75)
    assert cluster.network.lost == sent - received
    assert cluster.traffic(A).udp_sent == sent
    assert cluster.traffic(B).udp_received == received


def test_datagram_delays_are_lognormal_around_the_median() -> None:
    link = LinkModel(median_delay=0.002, sigma=0.5)
    cluster = make_cluster(2, flood=False, link=link)
    fake(cluster, A).outbox.extend(Send(cluster.address(B), b"n00000|x") for _ in range(10_000))
    cluster.run_for(0.5)
    (sent_at,) = fake(cluster, A).flushed_at
    delays = [t - sent_at for t, _, _ in fake(cluster, B).received]
    assert len(delays) == 10_000
    assert statistics.median(delays) == pytest.approx(0.002, rel=0.03)
    assert statistics.stdev(math.log(d) for d in delays) == pytest.approx(0.5, rel=0.05)
    assert "lognormal" in link.describe()
    assert "median 2 ms" in link.describe()


def test_a_per_link_override_changes_one_direction_only() -> None:
    cluster = make_cluster(2, flood=False)
    cluster.set_link(A, B, EXACT.with_(loss=1.0))
    fake(cluster, A).outbox.append(Send(cluster.address(B), b"n00000|x"))
    fake(cluster, B).outbox.append(Send(cluster.address(A), b"n00001|x"))
    cluster.run_for(0.1)
    assert fake(cluster, B).received == []
    assert [d for _, _, d in fake(cluster, A).received] == [b"n00001|hello", b"n00001|x"]


# Partitions.


def test_partition_blocks_datagrams_both_ways_between_the_groups_only() -> None:
    cluster = make_cluster(4)
    cluster.run_for(0.1)
    cluster.partition([A, B], [C])
    cut_at = cluster.now
    cluster.run_for(0.5)

    def heard_after(receiver: str, sender: str, t: float) -> bool:
        prefix = sender.encode() + b"|"
        return any(
            when > t + 0.002 and data.startswith(prefix)
            for when, _, data in fake(cluster, receiver).received
        )

    assert not heard_after(C, A, cut_at)
    assert not heard_after(A, C, cut_at)
    assert not heard_after(C, B, cut_at)
    assert heard_after(A, B, cut_at)
    assert heard_after(C, D, cut_at)
    assert heard_after(D, A, cut_at)
    cluster.heal()
    healed_at = cluster.now
    cluster.run_for(0.1)
    assert heard_after(C, A, healed_at)
    assert heard_after(A, C, healed_at)


def test_one_way_partition_blocks_datagrams_one_way_and_streams_both_ways() -> None:
    cluster = make_cluster(2, link=EXACT.with_(stream_timeout=3.0))
    cluster.run_for(0.1)
    cluster.partition(A, B, one_way=True)
    cut_at = cluster.now
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(B), b"ab", 1))
    fake(cluster, B).outbox.append(StreamRequest(cluster.address(A), b"ba", 2))
    cluster.run_for(0.2)
    assert max(counters_from(fake(cluster, B), A)) < 12
    assert any(t > cut_at + 0.05 for t, _, _ in fake(cluster, A).received)
    cluster.run_for(3.0)
    for name, token in ((A, 1), (B, 2)):
        ((when, got_token, reply),) = fake(cluster, name).replies
        (flushed,) = fake(cluster, name).flushed_at
        assert (got_token, reply) == (token, None)
        assert when == pytest.approx(flushed + 3.0)
    assert fake(cluster, A).served == fake(cluster, B).served == []


def test_isolate_cuts_one_node_from_everyone_until_unisolated() -> None:
    cluster = make_cluster(3)
    cluster.run_for(0.1)
    cluster.isolate(C)
    cut_at = cluster.now
    cluster.run_for(0.2)
    for name in (A, B):
        assert max(counters_from(fake(cluster, name), C)) <= 11
    assert all(t <= cut_at + 0.002 for t, _, _ in fake(cluster, C).received)
    cluster.unisolate(C)
    cluster.run_for(0.1)
    assert fake(cluster, C).received[-1][0] > cut_at + 0.2


# Streams.


def test_stream_reply_arrives_after_handshake_request_and_reply_legs() -> None:
    cluster = make_cluster(2, flood=False)
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(B), b"hello", 9))
    cluster.run_for(0.1)
    (sent,) = fake(cluster, A).flushed_at
    ((served_at, src, data),) = fake(cluster, B).served
    assert (src, data) == (cluster.address(A), b"hello")
    assert served_at == pytest.approx(sent + 3 * MEDIAN)  # SYN, SYN-ACK, data
    ((replied_at, token, reply),) = fake(cluster, A).replies
    assert (token, reply) == (9, b"re:hello")
    assert replied_at == pytest.approx(sent + 4 * MEDIAN)
    assert cluster.traffic(A).stream_bytes_sent == 5
    assert cluster.traffic(B).stream_bytes_sent == 8


def test_stream_to_a_crashed_node_is_refused_after_one_round_trip() -> None:
    cluster = make_cluster(2, flood=False)
    cluster.crash(B)
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(B), b"x", 3))
    cluster.run_for(11.0)
    (sent,) = fake(cluster, A).flushed_at
    ((replied_at, token, reply),) = fake(cluster, A).replies
    assert (token, reply) == (3, None)
    assert replied_at == pytest.approx(sent + 2 * MEDIAN)


def test_a_process_crashed_on_a_live_host_is_refused_but_a_dead_or_paused_one_is_silent() -> None:
    cluster = make_cluster(4)
    cluster.run_for(0.2)
    cluster.crash(B, host_up=True)
    cluster.crash(C)
    cluster.pause(D, 5.0)
    cluster.run_for(0.5)
    refused = {addr for _, addr in fake(cluster, A).refused}
    assert refused == {cluster.address(B)}, "only the live host answers"
    quiet = make_cluster(2, flood=False)
    quiet.crash(B, host_up=True)
    fake(quiet, A).outbox.append(StreamRequest(quiet.address(B), b"x", 3))
    quiet.run_for(11.0)
    (sent,) = fake(quiet, A).flushed_at
    ((refused_at, addr),) = fake(quiet, A).refused
    assert addr == quiet.address(B)
    assert refused_at == pytest.approx(sent + 2 * MEDIAN)
    ((replied_at, token, reply),) = fake(quiet, A).replies
    assert (token, reply) == (3, None)
    assert replied_at == pytest.approx(sent + 2 * MEDIAN)
    cluster.restart(B)
    count = len(fake(cluster, A).refused)
    cluster.run_for(0.5)
    assert len(fake(cluster, A).refused) == count, "the restarted process answers again"


def test_stream_whose_receiver_crashes_in_flight_is_reset() -> None:
    cluster = make_cluster(2, flood=False)
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(B), b"x", 3))
    cluster.run_for(TICK + 0.0015)  # the request leg takes 3 ms
    cluster.crash(B)
    cluster.run_for(11.0)
    ((when, token, reply),) = fake(cluster, A).replies
    assert (token, reply) == (3, None)
    assert when == pytest.approx(TICK + 4 * MEDIAN)


def test_stream_without_a_reply_fails_when_the_receiver_closes() -> None:
    cluster = make_cluster(2, flood=False)
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(B), b"silent", 4))
    cluster.run_for(0.1)
    (sent,) = fake(cluster, A).flushed_at
    ((replied_at, token, reply),) = fake(cluster, A).replies
    assert (token, reply) == (4, None)
    assert replied_at == pytest.approx(sent + 4 * MEDIAN)


def test_stream_across_a_partition_fails_at_the_stream_timeout() -> None:
    cluster = make_cluster(2, flood=False)
    cluster.partition(A, B)
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(B), b"x", 5))
    cluster.run_for(9.9)
    assert fake(cluster, A).replies == []
    cluster.run_for(0.2)
    (sent,) = fake(cluster, A).flushed_at
    ((replied_at, token, reply),) = fake(cluster, A).replies
    assert (token, reply) == (5, None)
    assert replied_at == pytest.approx(sent + 10.0)


def test_stream_under_total_loss_times_out_and_under_some_loss_pays_retransmissions() -> None:
    cluster = make_cluster(2, flood=False)
    cluster.set_loss(1.0)
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(B), b"x", 1))
    cluster.run_for(10.1)
    assert [r[1:] for r in fake(cluster, A).replies] == [(1, None)]

    cluster.set_loss(0.3)
    fake(cluster, A).outbox.extend(
        StreamRequest(cluster.address(B), b"x", token) for token in range(2, 402)
    )
    cluster.run_for(11.0)
    sent = fake(cluster, A).flushed_at[-1]
    durations = [t - sent for t, token, reply in fake(cluster, A).replies[1:] if reply]
    assert len(fake(cluster, A).replies) == 401
    # 4 segments, each lost with p = 0.3: about 1 - 0.7^4 = 76% of streams pay an RTO.
    slow = sum(d >= 0.2 for d in durations)
    assert 0.65 < slow / len(durations) < 0.85
    assert min(durations) == pytest.approx(4 * MEDIAN)
    assert all(d <= 10.0 for d in durations)


def test_stream_to_a_paused_node_is_served_at_resume_or_times_out() -> None:
    cluster = make_cluster(3, flood=False, link=EXACT.with_(stream_timeout=2.0))
    cluster.pause(B, 1.0)
    cluster.pause(C, 5.0)
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(B), b"b", 1))
    fake(cluster, A).outbox.append(StreamRequest(cluster.address(C), b"c", 2))
    cluster.run_for(6.0)
    (sent,) = fake(cluster, A).flushed_at
    assert [r[1:] for r in fake(cluster, A).replies] == [(1, b"re:b"), (2, None)]
    assert [r[0] for r in fake(cluster, A).replies] == pytest.approx([1.0 + MEDIAN, sent + 2.0])
    # C still reads the request when it wakes up; its answer goes nowhere.
    ((served_at, _, data),) = fake(cluster, C).served
    assert data == b"c"
    assert served_at == pytest.approx(5.0)


def test_stream_send_is_one_way() -> None:
    cluster = make_cluster(2, flood=False)
    fake(cluster, A).outbox.append(StreamSend(cluster.address(B), b"push"))
    cluster.run_for(0.1)
    assert [d for _, _, d in fake(cluster, B).served] == [b"push"]
    assert fake(cluster, A).replies == []


# Crash, restart, pause, leave.


def test_crash_drops_traffic_and_old_timers_never_fire_after_restart() -> None:
    cluster = make_cluster(3)
    cluster.run_for(0.2)
    old = fake(cluster, B)
    old.entries[("web", "1")] = cluster.register(B, "web", "1")
    old.refute(3)
    cluster.run_for(0.2)  # a tick carries the notification out
    cluster.crash(B)
    crashed_at = cluster.now
    seen = len(old.received)
    cluster.run_for(0.2)
    assert len(old.received) == seen
    assert all(t <= crashed_at for t in old.timer_fires)
    assert cluster.drops["packet to crashed"] > 0
    assert cluster.status(B) is NodeStatus.CRASHED
    assert cluster.live_names() == [A, C]

    cluster.restart(B)
    new = fake(cluster, B)
    assert new is not old
    cluster.run_for(0.2)
    assert new.stats["foreign timers"] == 0
    assert all(t <= crashed_at for t in old.timer_fires)
    assert new.timer_fires
    assert new.incarnation == 3
    assert [e.key for e in new.restored] == [("web", "1")]
    ((_, seeds),) = new.joined
    assert seeds == [cluster.address(A), cluster.address(C)]


def test_restart_from_snapshot_hands_the_core_every_member_it_saw_for_the_core_to_cap() -> None:
    cluster = make_cluster(12)
    cluster.run_for(0.2)
    cluster.seed_names = []
    cluster.crash("n00005")
    cluster.restart("n00005")
    ((_, seeds),) = fake(cluster, "n00005").joined
    others = [n for n in cluster.names if n != "n00005"]
    assert sorted(seeds) == sorted(cluster.address(n) for n in others)


def test_restart_without_snapshot_starts_empty_and_joins_via_seeds() -> None:
    cluster = make_cluster(3)
    cluster.run_for(0.2)
    cluster.register(C, "web", "1")
    cluster.crash(C)
    cluster.restart(C, from_snapshot=False)
    new = fake(cluster, C)
    assert (new.incarnation, new.restored) == (0, ())
    assert new.joined == [(cluster.now, [cluster.address(A)])]


def test_pause_delivers_held_datagrams_and_timers_at_resume_in_order() -> None:
    cluster = make_cluster(2)
    cluster.run_for(0.1)
    cluster.pause(B, 0.5)
    paused_at = cluster.now
    assert cluster.is_paused(B)
    cluster.run_for(0.3)
    node = fake(cluster, B)
    before = len(node.received)
    assert all(t <= paused_at for t, _, _ in node.received)
    assert all(t <= paused_at for t in node.timer_fires)
    cluster.run_for(0.3)
    resumed_at = paused_at + 0.5
    assert not cluster.is_paused(B)
    held = [r for r in node.received[before:] if r[0] == pytest.approx(resumed_at)]
    assert len(held) >= 45  # one flood packet per 10 ms tick
    numbers = [int(parse(data)[1]) for _, _, data in held]
    assert numbers == sorted(numbers)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert resumed_at in [pytest.approx(t) for t in node.timer_fires]
    assert not any(paused_at < t < resumed_at - 1e-9 for t, _, _ in node.received)


def test_crash_while_paused_discards_what_was_held() -> None:
    cluster = make_cluster(2)
    cluster.run_for(0.1)
    cluster.pause(B, 1.0)
    cluster.run_for(0.2)
    cluster.crash(B)
    cluster.run_for(1.0)
    assert cluster.drops["held while paused, then crashed"] > 0
    assert all(t <= 0.1 for t, _, _ in fake(cluster, B).received)


def test_leave_runs_until_the_node_says_it_drained_then_stops() -> None:
    cluster = make_cluster(3)
    cluster.run_for(0.2)
    cluster.leave(B)
    assert fake(cluster, A).last_heard.get(B) is not None
    cluster.run_for(0.1)
    assert B not in fake(cluster, A).last_heard  # the goodbye went out
    assert cluster.status(B) is NodeStatus.RUNNING
    cluster.run_for(2.0)
    assert cluster.status(B) is NodeStatus.LEFT
    assert cluster.live_names() == [A, C]
    with pytest.raises(SimulationError):
        cluster.crash(B)


def test_misuse_raises_clear_errors() -> None:
    cluster = make_cluster(2)
    with pytest.raises(SimulationError):
        cluster.restart(A)
    with pytest.raises(KeyError, match="nope"):
        cluster.crash("nope")
    cluster.pause(A, 1.0)
    with pytest.raises(SimulationError):
        cluster.register(A, "web", "1")
    with pytest.raises(SimulationError):
        cluster.add_node(B)


# Running.


def test_run_until_returns_true_as_soon_as_the_predicate_holds() -> None:
    cluster = make_cluster(2)
    assert cluster.run_until(lambda: True, timeout=5.0)
    assert cluster.now == 0.0
    assert cluster.run_until(lambda: len(fake(cluster, B).received) >= 3, timeout=5.0)
    assert 0.02 < cluster.now <= 0.1 + 1e-9


def test_run_until_returns_false_at_the_timeout() -> None:
    cluster = make_cluster(2)
    checks: list[float] = []

    def never() -> bool:
        checks.append(cluster.now)
        return False

    assert not cluster.run_until(never, timeout=2.5, check_every=0.5)
    assert cluster.now == pytest.approx(2.5)
    assert checks == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])


def test_call_at_runs_fault_schedules_in_virtual_time() -> None:
    cluster = make_cluster(2)
    cluster.call_at(0.25, lambda: cluster.crash(B))
    cluster.run_for(0.2)
    assert cluster.status(B) is NodeStatus.RUNNING
    cluster.run_for(0.1)
    assert cluster.status(B) is NodeStatus.CRASHED


def test_a_node_failure_names_the_seed_time_and_node() -> None:
    cluster = make_cluster(2, seed=1234)

    def broken(now: float, timer: Timer) -> list[Effect]:
        raise RuntimeError("boom")

    fake(cluster, B).handle_timer = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom") as caught:
        cluster.run_for(1.0)
    assert "simulation seed=1234 t=0.01 node=n00001 event=timer" in caught.value.__notes__


# Forming the cluster and looking at it.


def test_joins_are_staggered_through_the_first_node() -> None:
    cluster = make_cluster(4)
    assert fake(cluster, A).joined == []
    cluster.run_for(0.01)
    for i, name in enumerate([B, C, D], start=1):
        ((joined_at, seeds),) = fake(cluster, name).joined
        assert seeds == [node_address(0)]
        assert joined_at == pytest.approx(i * 0.001)


def test_bootstrap_seeds_every_node_with_one_shared_member_list() -> None:
    cluster = make_cluster(5, bootstrap=True)
    lists = [fake(cluster, n).seeded for n in cluster.names]
    first = lists[0]
    assert first is not None
    assert all(seed is first for seed in lists)
    assert list(first.records) == cluster.names
    assert all(r.state is MemberState.ALIVE for r in first.records.values())
    assert all(r.incarnation == 0 for r in first.records.values())
    assert all(fake(cluster, n).joined == [] for n in cluster.names)
    cluster.run_for(0.05)
    assert cluster.agree_on_membership()


def test_names_and_addresses_are_synthetic_and_stable() -> None:
    cluster = make_cluster(0)
    for _ in range(252):
        cluster.add_node()
    assert cluster.names[0] == "n00000"
    assert cluster.address("n00000") == ("198.18.0.1", 7946)
    assert cluster.address("n00249") == ("198.18.0.250", 7946)
    assert cluster.address("n00251") == ("198.18.1.2", 7946)
    assert cluster.name_at(("198.18.1.2", 7946)) == "n00251"


def test_added_node_joins_and_converges() -> None:
    cluster = make_cluster(3)
    cluster.run_for(0.1)
    name = cluster.add_node(join_via=C)
    assert name == D
    assert fake(cluster, D).joined == [(cluster.now, [cluster.address(C)])]
    assert cluster.run_until(cluster.agree_on_membership, timeout=1.0)


def test_membership_and_digest_agreement() -> None:
    cluster = make_cluster(4)
    assert cluster.run_until(cluster.agree_on_membership, timeout=1.0)
    assert cluster.digests_agree()
    cluster.crash(D)
    assert not cluster.agree_on_membership()  # the others still see it alive
    assert cluster.run_until(cluster.agree_on_membership, timeout=1.0)
    cluster.partition([A, B], [C])
    cluster.run_for(0.2)
    assert not cluster.agree_on_membership()
    assert cluster.agree_on_membership([A, B])
    assert cluster.digests_agree([A, B])
    assert cluster.states(A)[C] is MemberState.DEAD


def test_notify_effects_reach_observers_and_are_counted() -> None:
    cluster = make_cluster(3)
    seen: list[tuple[str, float, str]] = []

    def observe(node: str, now: float, event: MemberChanged | EntryChanged) -> None:
        assert isinstance(event, MemberChanged)
        seen.append((node, now, event.name))

    cluster.on_notify(observe)
    cluster.run_for(0.1)
    assert sorted((node, about) for node, _, about in seen) == sorted(
        (x, y) for x in (A, B, C) for y in (A, B, C) if x != y
    )
    assert cluster.notify_counts["member alive"] == 6


def test_traffic_accounting_adds_up_and_resets() -> None:
    cluster = make_cluster(4, link=LinkModel(loss=0.1))
    cluster.run_for(1.0)
    total = cluster.total_traffic()
    net = cluster.network
    assert total.udp_sent == net.sent > 1000
    in_flight = 4 * 3  # at most one datagram per directed pair is in the air at the end
    assert net.sent - net.lost - in_flight <= total.udp_received <= net.sent - net.lost
    assert total.udp_bytes_sent == sum(cluster.traffic(n).udp_bytes_sent for n in cluster.names)
    assert total.elapsed == 1.0
    cluster.reset_traffic()
    assert cluster.total_traffic().udp_sent == 0
    cluster.run_for(0.5)
    rates = cluster.traffic(A).per_second()
    assert cluster.traffic(A).elapsed == 0.5
    assert rates["udp_sent"] == pytest.approx(300, rel=0.05)  # 3 peers x 100 ticks/s


def test_clock_skew_draws_each_offset_within_bounds() -> None:
    cluster = make_cluster(50, clock_skew=2.0)
    offsets = [fake(cluster, n).wall_offset for n in cluster.names]
    assert all(-2.0 <= o <= 2.0 for o in offsets)
    assert len(set(offsets)) == 50
    plain = make_cluster(3)
    assert all(fake(plain, n).wall_offset == 0.0 for n in plain.names)


def test_link_model_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="loss"):
        LinkModel(loss=1.5)
    with pytest.raises(ValueError, match="median_delay"):
        LinkModel(median_delay=0.0)


# The simulator's own rules.

SIM_DIR = Path(__file__).resolve().parents[2] / "gossip_registry" / "sim"


@pytest.mark.parametrize("path", sorted(SIM_DIR.glob("*.py")), ids=lambda p: p.name)
def test_simulator_imports_only_core_registry_and_pure_stdlib(path: Path) -> None:
    tree = ast.parse(path.read_text())
    banned = {"trio", "socket", "time", "asyncio", "threading", "datetime"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            assert top not in banned, f"{path.name} imports {module}"
            if top == "gossip_registry":
                assert module.split(".")[1] in {"core", "registry", "sim"}, module
            if isinstance(node, ast.ImportFrom) and module == "random":
                pytest.fail(f"{path.name} imports names from random; use a Random instance")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
        ):
            assert node.attr == "Random", f"{path.name} uses the global random.{node.attr}"
