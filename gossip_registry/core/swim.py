"""SWIM failure detection and membership, with Lifeguard (the membership half of the core).

Theory of operation (Das et al. 2002, "SWIM"; Dadgar et al. 2017, "Lifeguard";
behaviour and defaults follow hashicorp/memberlist ``state.go``):

- Every (awareness-scaled) probe interval we ping the next member in a
  shuffled round-robin order. No ack within the probe timeout: we ask
  ``indirect_checks`` random members to ping it for us (ping-req) and, at the
  same time, ping it over TCP (memberlist's fallback: lossy UDP paths often
  still pass TCP). Helpers that get no ack send a nack, which tells us our
  own link works. No ack of any kind by the end of the probe window: suspect.
- A suspicion becomes a death when its Lifeguard timer runs out; the timer
  shrinks as independent members confirm (``suspicion.py``). A member that
  hears itself suspected or declared dead refutes with a higher incarnation.
  When we probe a suspect we tell it so in the same packet (buddy system).
- Our own health (``awareness.py``) stretches our probe interval and timeout
  when our probes fail with missing nacks or we have to refute.
- Updates are piggybacked on every packet from a transmit-limited queue
  (``broadcast.py``), gossiped every gossip interval while any are queued,
  and pushed at once (rate-limited) to a few peers when they are fresh. With
  nothing queued a node sends only its probes and acks.

The state machine is sans-I/O: entry points take ``now`` and return effects
(``effects.py``); randomness comes from the ``rng`` passed in. Subclasses
add replicated state through the hooks at the end of the class.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace

from gossip_registry.core.awareness import Awareness
from gossip_registry.core.broadcast import BroadcastQueue
from gossip_registry.core.codec import (
    MAX_INCARNATION,
    MAX_UPDATES,
    CodecError,
    assemble_packet,
    decode_packet,
    decode_stream,
    encode_primary,
    encode_stream,
    encode_update,
    packet_overhead,
)
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import (
    Effect,
    MemberChanged,
    Notify,
    Send,
    SetTimer,
    StreamRequest,
    Timer,
    TimerKind,
)
from gossip_registry.core.members import MemberSeed, MemberTable, wins
from gossip_registry.core.messages import (
    ACTIVE_STATES,
    Ack,
    Address,
    Alive,
    Dead,
    EntryUpdate,
    Left,
    MemberRecord,
    MemberState,
    Nack,
    Ping,
    PingReq,
    Primary,
    StreamMessage,
    Suspect,
    Update,
)
from gossip_registry.core.suspicion import Suspicion

_SEQ_MASK = 2**32 - 1
MAX_RELAYS = 1024
"""Ping-reqs carried out at once; more are refused and counted (``ping_reqs_refused``).
Each holds a timer for the probe timeout and sends a ping to an address the requester
chose: honest members ask ``indirect_checks`` (3) of us per failed probe, so this
is far above need and bounds what a flood of ping-reqs can make us hold or send."""
INCARNATION_CEILING = MAX_INCARNATION // 2
"""No news about any member above this is believed (issue 10, finding 1). It leaves
2**62 refutations of headroom below what the codec can carry, so our own
refutation of anything we accept always stays encodable; an honest node would need
a refutation a nanosecond for 146 years to get here."""


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    acked: bool = False
    nacks_expected: int = 0
    nacks: int = 0


@dataclass(frozen=True, slots=True)
class _Relay:
    """A ping-req we are carrying out for ``requester``."""

    requester: Address
    seq: int
    want_nack: bool
    gossip: bool
    """Whether the requester is a member at that address (see ``Swim._member_at``)."""


class Swim:
    """Membership and failure detection for one node. See the module docstring."""

    def __init__(
        self,
        config: ProtocolConfig,
        name: str,
        addr: Address,
        *,
        rng: random.Random,
        incarnation: int = 0,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.addr = addr
        self.rng = rng
        self.incarnation = incarnation
        self.meta: dict[str, str] = dict(meta or {})
        self.members = MemberTable(self._own_record(MemberState.ALIVE), rng)
        self.awareness = Awareness(config.awareness_max)
        self.queue = BroadcastQueue(config.broadcast_queue_limit)
        self.stats: Counter[str] = Counter()
        self.leaving = False
        self._out: list[Effect] = []
        self._tokens: dict[tuple[TimerKind, str], int] = {}
        self._next_token = 0
        self._seq = rng.randrange(_SEQ_MASK)
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._streams: dict[int, Callable[[float, StreamMessage | None], None]] = {}
        self._suspicions: dict[str, Suspicion] = {}
        self._gossip_armed = False
        self._fast_armed = False
        self._fresh = False
        self._last_fast = float("-inf")
        self._update_budget = config.payload_size - packet_overhead(None, MAX_UPDATES)
        self._timer_handlers: dict[TimerKind, Callable[[float, str], None]] = {
            TimerKind.PROBE: self._on_probe_tick,
            TimerKind.PROBE_TIMEOUT: self._on_probe_timeout,
            TimerKind.RELAY_TIMEOUT: self._on_relay_timeout,
            TimerKind.SUSPICION: self._on_suspicion_timeout,
            TimerKind.GOSSIP: self._on_gossip_tick,
            TimerKind.FAST_GOSSIP: self._on_fast_gossip,
        }

    # ----------------------------------------------------------- entry points

    def start(self, now: float) -> list[Effect]:
        """Arm the periodic timers, staggered so nodes started together do not beat in step."""
        self._arm(TimerKind.PROBE, now + self.rng.uniform(0, self.config.probe_interval))
        return self._drain(now)

    def seed_members(self, seed: MemberSeed) -> None:
        """Start from a known membership (simulator bootstrap); shares the records."""
        self.members.seed(seed)

    def member_states(self) -> dict[str, MemberState]:
        return {r.name: r.state for r in self.members}

    def handle_packet(self, now: float, src: Address, data: bytes) -> list[Effect]:
        """A UDP datagram arrived. Garbage is counted in ``stats`` and dropped."""
        self.stats["udp_in"] += 1
        self.stats["udp_bytes_in"] += len(data)
        try:
            packet = decode_packet(data, self.config.limits.max_packet_bytes)
        except CodecError:
            self.stats["malformed_packets"] += 1
            return self._drain(now)
        for update in packet.updates:
            self._apply_update(now, update)
        primary = packet.primary
        if isinstance(primary, Ping):
            self._on_ping(now, src, primary)
        elif isinstance(primary, Ack):
            self._on_ack(now, primary.seq)
        elif isinstance(primary, PingReq):
            self._on_ping_req(now, src, primary)
        elif isinstance(primary, Nack):
            self._on_nack(primary.seq)
        return self._drain(now)

    def handle_timer(self, now: float, timer: Timer) -> list[Effect]:
        key = (timer.kind, timer.subject)
        if self._tokens.get(key) == timer.token:
            del self._tokens[key]
            self._timer_handlers[timer.kind](now, timer.subject)
        return self._drain(now)

    def handle_stream(
        self, now: float, src: Address, data: bytes
    ) -> tuple[bytes | None, list[Effect]]:
        """One TCP frame arrived; returns the reply frame to write back (or None)."""
        self.stats["stream_in"] += 1
        try:
            message = decode_stream(data, self.config.max_stream_bytes)
        except CodecError:
            self.stats["malformed_streams"] += 1
            return None, self._drain(now)
        reply = self._on_stream_message(now, src, message)
        return reply, self._drain(now)

    def handle_stream_reply(self, now: float, token: int, reply: bytes | None) -> list[Effect]:
        """The outcome of a StreamRequest: the reply frame, or None if it failed."""
        callback = self._streams.pop(token, None)
        if callback is None:
            return self._drain(now)
        message: StreamMessage | None = None
        if reply is not None:
            try:
                message = decode_stream(reply, self.config.max_stream_bytes)
            except CodecError:
                self.stats["malformed_streams"] += 1
        callback(now, message)
        return self._drain(now)

    def leave(self, now: float) -> list[Effect]:
        """Announce a graceful leave at once; the driver lingers a bounded time, then stops."""
        if not self.leaving:
            self.leaving = True
            self.members.put(self._own_record(MemberState.LEFT), now)
            self._broadcast(("m", self.name), encode_update(Left(self.name, self.incarnation)))
        return self._drain(now)

    # ------------------------------------------------------------- probing

    def _on_probe_tick(self, now: float, _: str) -> None:
        if self._probe is not None:
            self._finish_probe(now)
        self._arm(TimerKind.PROBE, now + self.awareness.scale(self.config.probe_interval))
        name = self.members.next_probe_target()
        if name is None:
            return
        target = self.members.get(name)
        assert target is not None
        probe = self._probe = _Probe(self._next_seq(), name)
        buddy = []
        if target.state is MemberState.SUSPECT:
            # Lifeguard buddy system: tell the suspect so it can refute at once.
            buddy.append(encode_update(Suspect(name, target.incarnation, self.name)))
        self._send(target.addr, Ping(probe.seq, name, self.name), buddy)
        self.stats["probes"] += 1
        self._arm(TimerKind.PROBE_TIMEOUT, now + self.awareness.scale(self.config.probe_timeout))

    def _on_probe_timeout(self, now: float, _: str) -> None:
        probe = self._probe
        if probe is None or probe.acked:
            return
        target = self.members.get(probe.target)
        if target is None or target.state not in ACTIVE_STATES:
            return
        helpers = self.members.sample(self.config.indirect_checks, exclude=probe.target)
        request = PingReq(probe.seq, probe.target, target.addr, self.name, want_nack=True)
        for helper in helpers:
            self._send(self.members.addr_of(helper), request)
        probe.nacks_expected = len(helpers)
        self.stats["indirect_probes"] += len(helpers)
        if self.config.tcp_fallback:
            self.stats["tcp_pings"] += 1
            ping = encode_stream(Ping(probe.seq, probe.target, self.name))
            self._stream(target.addr, ping, self._on_tcp_ack)

    def _on_tcp_ack(self, now: float, message: StreamMessage | None) -> None:
        probe = self._probe
        if isinstance(message, Ack) and probe is not None and message.seq == probe.seq:
            if not probe.acked:
                self.stats["tcp_rescues"] += 1
            self._on_ack(now, message.seq)

    def _finish_probe(self, now: float) -> None:
        probe, self._probe = self._probe, None
        if probe is None or probe.acked:
            return
        self.stats["probe_failures"] += 1
        # Lifeguard: missing nacks mean our own links may be at fault.
        missing = probe.nacks_expected - probe.nacks
        self.awareness.apply(max(missing, 0) if probe.nacks_expected else 1)
        target = self.members.get(probe.target)
        if target is not None and target.state in ACTIVE_STATES:
            self._suspect(now, Suspect(target.name, target.incarnation, self.name))

    def _on_ping(self, now: float, src: Address, ping: Ping) -> None:
        if ping.target != self.name:
            self.stats["misdirected_pings"] += 1
            return
        self._send(src, Ack(ping.seq), gossip=self._member_at(ping.source, src))

    def _on_ack(self, now: float, seq: int) -> None:
        probe = self._probe
        if probe is not None and seq == probe.seq:
            if not probe.acked:
                probe.acked = True
                self.awareness.apply(-1)
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send(relay.requester, Ack(relay.seq), gossip=relay.gossip)

    def _on_nack(self, seq: int) -> None:
        probe = self._probe
        if probe is not None and seq == probe.seq:
            probe.nacks += 1

    def _on_ping_req(self, now: float, src: Address, request: PingReq) -> None:
        if len(self._relays) >= MAX_RELAYS:
            self.stats["ping_reqs_refused"] += 1
            return
        seq = self._next_seq()
        requester = self._member_at(request.source, src)
        self._relays[seq] = _Relay(src, request.seq, request.want_nack, requester)
        target = self._member_at(request.target, request.target_addr)
        self._send(request.target_addr, Ping(seq, request.target, self.name), gossip=target)
        self._arm(TimerKind.RELAY_TIMEOUT, now + self.config.probe_timeout, str(seq))

    def _on_relay_timeout(self, now: float, subject: str) -> None:
        relay = self._relays.pop(int(subject), None)
        if relay is not None and relay.want_nack:
            self._send(relay.requester, Nack(relay.seq), gossip=relay.gossip)

    # ------------------------------------------------------- membership news

    def _apply_update(self, now: float, update: Update) -> None:
        if isinstance(update, Alive):
            self._alive(now, update)
        elif isinstance(update, Suspect):
            self._suspect(now, update)
        elif isinstance(update, Dead):
            self._dead(now, update)
        elif isinstance(update, Left):
            self._left(now, update)
        else:
            self._on_entry_update(now, update)

    def _alive(self, now: float, msg: Alive) -> None:
        if not self._plausible(msg.name, msg.incarnation):
            return
        if msg.name == self.name:
            if msg.incarnation > self.incarnation and not self.leaving:
                # An older life of ours got further than we remember: jump past it.
                self._refute(now, msg.incarnation, MemberState.ALIVE)
            return
        current = self.members.get(msg.name)
        if not wins(MemberState.ALIVE, msg.incarnation, current):
            return
        if current is not None and current.state is MemberState.SUSPECT:
            self.stats["suspicions_refuted"] += 1
        if current is None and not self._room_for_member():
            return
        self._set(
            now, MemberRecord(msg.name, msg.addr, msg.incarnation, MemberState.ALIVE, msg.meta)
        )
        self._broadcast(("m", msg.name), encode_update(msg))

    def _suspect(self, now: float, msg: Suspect) -> None:
        if not self._plausible(msg.name, msg.incarnation):
            return
        if msg.name == self.name:
            if msg.incarnation >= self.incarnation and not self.leaving:
                self._refute(now, msg.incarnation, MemberState.SUSPECT)
            return
        current = self.members.get(msg.name)
        if current is None:
            return
        if current.state is MemberState.SUSPECT and msg.incarnation == current.incarnation:
            suspicion = self._suspicions.get(msg.name)
            if suspicion is not None and suspicion.confirm(msg.accuser):
                self.stats["suspicion_confirmations"] += 1
                self._arm(TimerKind.SUSPICION, max(now, suspicion.deadline), msg.name)
                self._broadcast(("m", msg.name), encode_update(msg))
            return
        if not wins(MemberState.SUSPECT, msg.incarnation, current):
            return
        self._set(now, replace(current, state=MemberState.SUSPECT, incarnation=msg.incarnation))
        n = self.members.active_count
        wanted = self.config.suspicion_mult - 2
        if n - 2 < wanted:
            wanted = 0
        low = self.config.suspicion_min(n)
        high = low * self.config.suspicion_max_mult
        suspicion = Suspicion(now, msg.incarnation, msg.accuser, wanted, low, high)
        self._suspicions[msg.name] = suspicion
        self._arm(TimerKind.SUSPICION, suspicion.deadline, msg.name)
        self.stats["suspicions"] += 1
        self._broadcast(("m", msg.name), encode_update(msg))

    def _on_suspicion_timeout(self, now: float, name: str) -> None:
        suspicion = self._suspicions.pop(name, None)
        current = self.members.get(name)
        if suspicion is None or current is None or current.state is not MemberState.SUSPECT:
            return
        if len(suspicion.accusers) - 1 < suspicion.wanted:
            self.stats["suspicions_timed_out_unconfirmed"] += 1
        self._dead(now, Dead(name, current.incarnation, self.name))

    def _dead(self, now: float, msg: Dead) -> None:
        if not self._plausible(msg.name, msg.incarnation):
            return
        if msg.name == self.name:
            if msg.incarnation >= self.incarnation and not self.leaving:
                self._refute(now, msg.incarnation, MemberState.DEAD)
            return
        current = self.members.get(msg.name)
        if current is None or not wins(MemberState.DEAD, msg.incarnation, current):
            return
        self._set(now, replace(current, state=MemberState.DEAD, incarnation=msg.incarnation))
        self.stats["members_failed"] += 1
        self._broadcast(("m", msg.name), encode_update(msg))

    def _left(self, now: float, msg: Left) -> None:
        if not self._plausible(msg.name, msg.incarnation):
            return
        if msg.name == self.name:
            if msg.incarnation >= self.incarnation and not self.leaving:
                self._refute(now, msg.incarnation, MemberState.LEFT)
            return
        current = self.members.get(msg.name)
        if current is None or not wins(MemberState.LEFT, msg.incarnation, current):
            return
        self._set(now, replace(current, state=MemberState.LEFT, incarnation=msg.incarnation))
        self.stats["members_left"] += 1
        self._broadcast(("m", msg.name), encode_update(msg))

    def _refute(self, now: float, accused: int, accusation: MemberState) -> None:
        """Answer an accusation (or an older life's claim) with a higher incarnation.

        ``_plausible`` let ``accused`` in only up to ``INCARNATION_CEILING``, so the
        new incarnation is encodable; the ``min`` keeps it so whatever a caller did.
        """
        self.incarnation = min(max(self.incarnation, accused) + 1, MAX_INCARNATION)
        self.members.put(self._own_record(MemberState.ALIVE), now)
        if accusation is not MemberState.ALIVE:
            self.awareness.apply(1)
            self.stats["refutes"] += 1
        alive = Alive(self.name, self.addr, self.incarnation, self.meta)
        self._broadcast(("m", self.name), encode_update(alive))
        self._on_refuted(now, accusation)

    def _plausible(self, name: str, incarnation: int) -> bool:
        """Whether news about ``name`` at ``incarnation`` is within reach; a refusal is counted.

        Only a member raises its own incarnation, by one per refutation. News far
        above the incarnation we know of it (ours, for news about us; 0 for a
        member we never knew) is forged, or from a life we cannot catch up with
        anyway: believed, it would push a refutation off the encodable range and
        leave the member dead everywhere (issue 10, finding 1).
        """
        if name == self.name:
            known = self.incarnation
        else:
            current = self.members.get(name)
            known = 0 if current is None else current.incarnation
        if incarnation <= min(known + self.config.limits.max_incarnation_step, INCARNATION_CEILING):
            return True
        self.stats["incarnations_refused"] += 1
        return False

    def _room_for_member(self) -> bool:
        """Whether a member we never knew may be added; a refusal is counted.

        Fake names cost an attacker nothing, so without a cap a flood of them
        would grow the table (and every probe ring and push-pull) until the reap.
        """
        if len(self.members) < self.config.limits.max_members:
            return True
        self.stats["members_refused"] += 1
        return False

    def _set(self, now: float, record: MemberRecord) -> None:
        old = self.members.put(record, now)
        if record.state is not MemberState.SUSPECT:
            self._suspicions.pop(record.name, None)
            self._tokens.pop((TimerKind.SUSPICION, record.name), None)
        previous = old.state if old is not None else None
        change = MemberChanged(record.name, record.addr, record.state, record.incarnation, previous)
        self._out.append(Notify(change))
        self._on_member_changed(now, record, old)

    def merge_records(self, now: float, records: Sequence[MemberRecord]) -> None:
        """Merge a peer's member list (push-pull), memberlist's ``mergeState`` rules.

        A peer's suspect or dead verdict about someone else becomes only a
        suspicion here: we let that member refute instead of trusting the
        peer's old news. Verdicts about ourselves are taken as they are, so we
        refute them properly. Unlike memberlist we also adopt the tombstone of
        a failed member we never knew: registry fences depend on it, and
        member lists that differ forever would make every push-pull ship one.
        """
        for r in records:
            if r.name != self.name and self.members.get(r.name) is None:
                if r.state in (MemberState.DEAD, MemberState.LEFT):
                    if self._plausible(r.name, r.incarnation) and self._room_for_member():
                        self._set(now, r)
                    continue
                if r.state is MemberState.SUSPECT:
                    self._alive(now, Alive(r.name, r.addr, r.incarnation, r.meta))
            if r.state is MemberState.ALIVE:
                self._alive(now, Alive(r.name, r.addr, r.incarnation, r.meta))
            elif r.state is MemberState.LEFT:
                self._left(now, Left(r.name, r.incarnation))
            elif r.name == self.name and r.state is MemberState.DEAD:
                self._dead(now, Dead(r.name, r.incarnation, r.name))
            else:
                self._suspect(now, Suspect(r.name, r.incarnation, self.name))

    # ------------------------------------------------------------- gossip

    def _on_gossip_tick(self, now: float, _: str) -> None:
        self._gossip_armed = False
        recent_dead = [
            name
            for name in self.members.failed()
            if (r := self.members.get(name)) is not None
            and r.state is MemberState.DEAD
            and now - (self.members.since(name) or now) < self.config.gossip_to_dead
        ]
        targets = self.members.sample(self.config.gossip_nodes)
        if recent_dead and targets:
            # memberlist gossips to the recently dead as well, so they can refute.
            share = len(recent_dead) / (len(recent_dead) + self.members.active_count)
            if self.rng.random() < share * len(targets):
                targets[-1] = self.rng.choice(recent_dead)
        for name in targets:
            self._send(self.members.addr_of(name), None)

    def _on_fast_gossip(self, now: float, _: str) -> None:
        self._fast_armed = False
        self._last_fast = now
        for name in self.members.sample(self.config.fast_gossip_nodes):
            self._send(self.members.addr_of(name), None)

    def _broadcast(self, subject: Hashable, data: bytes) -> None:
        if len(data) > self._update_budget:
            # Could never ride in a packet; push-pull carries it instead.
            self.stats["broadcasts_too_large"] += 1
            return
        self.queue.push(subject, data)
        self._fresh = True

    # ------------------------------------------------------------- plumbing

    def _own_record(self, state: MemberState) -> MemberRecord:
        return MemberRecord(self.name, self.addr, self.incarnation, state, self.meta)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & _SEQ_MASK
        return self._seq

    def _member_at(self, name: str, addr: Address) -> bool:
        """Whether ``name`` is a member we know at ``addr`` (in any state).

        Packets to any other address carry no gossip: the address of a ping's
        sender or of a ping-req's target is the peer's word, and a spoofed one
        made us a 124x UDP amplifier that also spent our updates' transmit
        budget on strangers. A member behind NAT whose packets come from
        another address than it advertises only loses piggybacking on acks;
        probes and gossip rounds still reach it.
        """
        record = self.members.get(name)
        return record is not None and record.addr == addr

    def _send(
        self,
        addr: Address,
        primary: Primary | None,
        extra: Sequence[bytes] = (),
        *,
        gossip: bool = True,
    ) -> None:
        """One datagram: the primary message plus, if ``gossip``, as many queued updates as fit."""
        head = encode_primary(primary) if primary is not None else None
        updates = list(extra)
        if gossip:
            budget = (
                self.config.payload_size - packet_overhead(head, MAX_UPDATES) - sum(map(len, extra))
            )
            limit = self.config.retransmit_limit(self.members.active_count)
            updates += self.queue.take(budget, limit, MAX_UPDATES - len(extra))
        if head is None and not updates:
            return
        data = assemble_packet(head, updates)
        self.stats["udp_out"] += 1
        self.stats["udp_bytes_out"] += len(data)
        self._out.append(Send(addr, data))

    def _stream(
        self, addr: Address, data: bytes, callback: Callable[[float, StreamMessage | None], None]
    ) -> None:
        self._next_token += 1
        self._streams[self._next_token] = callback
        self.stats["stream_out"] += 1
        self._out.append(StreamRequest(addr, data, self._next_token))

    def _arm(self, kind: TimerKind, at: float, subject: str = "") -> None:
        self._next_token += 1
        self._tokens[(kind, subject)] = self._next_token
        self._out.append(SetTimer(at, Timer(kind, self._next_token, subject)))

    def _drain(self, now: float) -> list[Effect]:
        """Schedule gossip for anything newly queued, then hand over the effects."""
        if len(self.queue):
            if not self._gossip_armed:
                self._gossip_armed = True
                self._arm(TimerKind.GOSSIP, now + self.config.gossip_interval)
            if self._fresh and not self._fast_armed:
                self._fast_armed = True
                at = max(now, self._last_fast + self.config.fast_gossip_interval)
                self._arm(TimerKind.FAST_GOSSIP, at)
        self._fresh = False
        out, self._out = self._out, []
        return out

    # ---------------------------------------------------------------- hooks

    def _on_stream_message(self, now: float, src: Address, message: StreamMessage) -> bytes | None:
        if isinstance(message, Ping) and message.target == self.name:
            return encode_stream(Ack(message.seq))
        self.stats["unexpected_stream_messages"] += 1
        return None

    def _on_entry_update(self, now: float, update: EntryUpdate) -> None:
        """Registry news; the base class has no registry."""

    def _on_member_changed(
        self, now: float, record: MemberRecord, old: MemberRecord | None
    ) -> None:
        """A member's record changed (not ours); ``old`` is what we held before."""

    def _on_refuted(self, now: float, accusation: MemberState) -> None:
        """We just raised our incarnation to answer ``accusation``."""
