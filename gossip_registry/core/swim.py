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
  When the timer runs out we probe the suspect one last time (direct,
  indirect and TCP, one probe window) before declaring it dead: see
  "last chance".
- Our own health (``awareness.py``) stretches our probe interval and timeout
  when our probes fail with missing nacks or we have to refute.
- Updates are piggybacked on every packet from a transmit-limited queue
  (``broadcast.py``), gossiped every gossip interval while any are queued,
  and pushed at once (rate-limited) to a few peers when they are fresh. With
  nothing queued a node sends only its probes and acks.

The state machine is sans-I/O: entry points take ``now`` and return effects
(``effects.py``); randomness comes from the ``rng`` passed in. The layer
above (the registry, ``protocol.py``) is a ``SwimDelegate``: told what
happened, asked about its streams, and calling back only through the public
services at the end of the class; it never subclasses or reaches in.
"""

from __future__ import annotations

import random
import typing
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
    decode_stream,
    encode_primary,
    encode_stream,
    encode_update,
    packet_overhead,
    split_packet,
)
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import (
    Effect,
    IncarnationChanged,
    LeaveDrained,
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
from gossip_registry.core.recent import RecentUpdates
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

LEAVE_FANOUT = 32
"""Members a graceful leave is sent to at once, directly: all of them in a cluster up to
this size, this many distinct ones at random in a larger one (where the epidemic from
them is reliable: the retransmit limit grows with log N). The gossip queue carries the
leave as well. Counting transmissions alone was not enough in small clusters: with a
limit of 4 among 6 nodes, fast gossip to 3 random peers and each peer's re-gossip to 3
of 4 now and then all passed one member by, which then served the leaver's instances
until its next push-pull, 16 s later (issue 12). A join's announcement of the joiner
goes the same way, for the same reason: a peer gossip had missed ignored the leave of
a member it had never heard of."""

RECENT_UPDATES = 4096
RECENT_BYTES = 1 << 20
"""Bounds of the entry updates remembered by their bytes (``core/recent.py``): each
arrives about ``retransmit_limit(N)`` + 1 times within seconds, so 4,096 cover about
20 s of news at 200 writes per second. Bytes bound the worst case (updates of
several kilobytes) to 1 MiB; a 20-node churn update is about 55 bytes."""

MEMBERSHIP, REGISTRY = 0, 1
"""Piggyback ranks: membership news rides before registry news (``BroadcastQueue``)."""


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    incarnation: int
    """The target's incarnation when probed: a refusal counts against this life only."""
    acked: bool = False
    indirect: bool = False
    refused: bool = False
    nacks_expected: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Aimed:
    """A ping aimed at one member outside the round-robin (a last chance or a refusal check)."""

    target: str
    addr: Address
    incarnation: int
    sent: float
    refused: bool = False


@dataclass(frozen=True, slots=True)
class _Relay:
    """A ping-req we are carrying out for ``requester``."""

    requester: Address
    seq: int
    want_nack: bool
    target: str
    target_addr: Address
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
        delegate: SwimDelegate | None = None,
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
        self._recent: RecentUpdates[EntryUpdate] = RecentUpdates(RECENT_UPDATES, RECENT_BYTES)
        self.delegate: SwimDelegate = delegate or Standalone(self.stats)
        """The layer above (the registry): told what happened, asked about its streams."""
        self.leaving = False
        self._leave_pending = False
        self._out: list[Effect] = []
        self._tokens: dict[tuple[TimerKind, str], int] = {}
        self._next_token = 0
        self._seq = rng.randrange(_SEQ_MASK)
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._streams: dict[int, Callable[[float, StreamMessage | None], None]] = {}
        self._suspicions: dict[str, Suspicion] = {}
        self._last_chances: dict[int, _Aimed] = {}
        self._checks: dict[int, _Aimed] = {}
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
            TimerKind.LAST_CHANCE: self._on_last_chance_retry,
            TimerKind.GOSSIP: self._on_gossip_tick,
            TimerKind.FAST_GOSSIP: self._on_fast_gossip,
            TimerKind.LEAVE: self._on_leave_timeout,
        }

    # ----------------------------------------------------------- entry points

    def start(self, now: float) -> list[Effect]:
        """Arm the periodic timers, staggered so nodes started together do not beat in step."""
        self.arm(TimerKind.PROBE, now + self.rng.uniform(0, self.config.probe_interval))
        self._out.append(Notify(IncarnationChanged(self.incarnation, None)))
        return self.drain(now)

    def seed_members(self, seed: MemberSeed) -> None:
        """Start from a known membership (simulator bootstrap); shares the records."""
        self.members.seed(seed)

    def member_states(self) -> dict[str, MemberState]:
        return {r.name: r.state for r in self.members}

    def handle_packet(self, now: float, src: Address, data: bytes) -> list[Effect]:
        """A UDP datagram arrived. Garbage is counted in ``stats`` and dropped."""
        self.stats["udp_in"] += 1
        self.stats["udp_bytes_in"] += len(data)
        recent = self._recent.get
        try:
            # Every update is decoded (or recognised) before any is applied: a
            # packet with one bad update is dropped whole.
            packet = split_packet(data, self.config.limits.max_packet_bytes)
            updates: list[tuple[bytes, Update, bool]] = []
            for i, raw in enumerate(packet.updates):
                known = recent(raw)
                updates.append(
                    (raw, packet.decode(i), False) if known is None else (raw, known, True)
                )
        except CodecError:
            self.stats["malformed_packets"] += 1
            return self.drain(now)
        accused = False
        for raw, update, repeat in updates:
            accused |= isinstance(update, Suspect | Dead) and update.name == self.name
            if not isinstance(update, EntryUpdate):
                self._apply_update(now, update)
            elif self.delegate.entry_update(now, update, repeat) and not repeat:
                # Remembered by its bytes: its repeats (about ``retransmit_limit(N)``)
                # are not decoded again. Membership news never is: it is a small
                # share of the traffic and its effect depends on the state it meets.
                self._recent.add(raw, update)
        primary = packet.primary
        if isinstance(primary, Ping):
            self._on_ping(now, src, primary, accused)
        elif isinstance(primary, Ack):
            self._on_ack(now, primary.seq)
        elif isinstance(primary, PingReq):
            self._on_ping_req(now, src, primary)
        elif isinstance(primary, Nack):
            self._on_nack(primary.seq)
        return self.drain(now)

    def handle_timer(self, now: float, timer: Timer) -> list[Effect]:
        key = (timer.kind, timer.subject)
        if self._tokens.get(key) == timer.token:
            del self._tokens[key]
            self._timer_handlers[timer.kind](now, timer.subject)
        return self.drain(now)

    def handle_stream(
        self, now: float, src: Address, data: bytes
    ) -> tuple[bytes | None, list[Effect]]:
        """One TCP frame arrived; returns the reply frame to write back (or None)."""
        self.stats["stream_in"] += 1
        try:
            message = decode_stream(data, self.config.max_stream_bytes)
        except CodecError:
            self.stats["malformed_streams"] += 1
            return None, self.drain(now)
        reply = self._stream_message(now, src, message)
        return reply, self.drain(now)

    def handle_stream_reply(self, now: float, token: int, reply: bytes | None) -> list[Effect]:
        """The outcome of a StreamRequest: the reply frame, or None if it failed."""
        callback = self._streams.pop(token, None)
        if callback is None:
            return self.drain(now)
        message: StreamMessage | None = None
        if reply is not None:
            try:
                message = decode_stream(reply, self.config.max_stream_bytes)
            except CodecError:
                self.stats["malformed_streams"] += 1
        callback(now, message)
        return self.drain(now)

    def handle_refused(self, now: float, addr: Address) -> list[Effect]:
        """The host at ``addr`` said nothing listens there (ICMP port unreachable, TCP refused).

        Evidence only against the probe or relayed ping in flight to ``addr``;
        any other refusal (gossip to a member already dead) is counted and
        ignored. See "refusals" below.
        """
        self.stats["refusals"] += 1
        self._on_refused(now, addr)
        return self.drain(now)

    def leave(self, now: float, timeout: float) -> list[Effect]:
        """Announce a graceful leave at once; ``LeaveDrained`` tells the driver when to stop.

        The leave goes at once, one datagram each, to every active member
        (``LEAVE_FANOUT`` distinct ones at random in a larger cluster), and
        into the gossip queue. It is drained once the queue has also sent it
        (and anything queued before it) its full retransmit count, or nobody
        is left to tell, and at the latest ``timeout`` seconds from now.
        Calling it again changes nothing.
        """
        if not self.leaving:
            self.leaving = True
            self._leave_pending = True
            self.members.put(self._own_record(MemberState.LEFT), now)
            left = encode_update(Left(self.name, self.incarnation))
            self.tell_directly((left,), LEAVE_FANOUT)
            self.broadcast(("m", self.name), left)
            self.arm(TimerKind.LEAVE, now + timeout)
        return self.drain(now)

    def _on_leave_timeout(self, now: float, _: str) -> None:
        if self._leave_pending:
            self._leave_pending = False
            self._out.append(Notify(LeaveDrained(drained=False)))

    def force_leave(self, now: float, name: str) -> list[Effect]:
        """Mark a failed member left on its behalf (Consul's force-leave), and spread it.

        For a member that will not come back: peers drop it from their
        views at once instead of keeping it dead until the reap. Should it
        still live, it refutes (a Left about itself at its incarnation) and
        comes back alive.

        Raises:
            KeyError: no member ``name``.
            ValueError: ``name`` is this node, or a member that is not dead.
        """
        current = self.members.get(name)
        if current is None:
            raise KeyError(name)
        if name == self.name:
            raise ValueError("a node cannot force itself to leave: use leave")
        if current.state is MemberState.DEAD:
            self._left(now, Left(name, current.incarnation))
        elif current.state is not MemberState.LEFT:
            raise ValueError(
                f"member {name} is {current.state.label}: only a dead member can be forced to leave"
            )
        return self.drain(now)

    # ------------------------------------------------------------- probing

    def _on_probe_tick(self, now: float, _: str) -> None:
        self.delegate.probe_tick(now)
        if self._probe is not None:
            self._finish_probe(now)
        self.arm(TimerKind.PROBE, now + self.awareness.scale(self.config.probe_interval))
        name = self.members.next_probe_target()
        if name is None:
            return
        target = self.members.get(name)
        assert target is not None
        probe = self._probe = _Probe(self._next_seq(), name, target.incarnation)
        buddy = []
        if target.state is MemberState.SUSPECT:
            # Lifeguard buddy system: tell the suspect so it can refute at once.
            buddy.append(encode_update(Suspect(name, target.incarnation, self.name)))
        self._send(target.addr, Ping(probe.seq, name, self.name), buddy)
        self.stats["probes"] += 1
        self.arm(TimerKind.PROBE_TIMEOUT, now + self.awareness.scale(self.config.probe_timeout))

    def _on_probe_timeout(self, now: float, _: str) -> None:
        probe = self._probe
        if probe is None or probe.acked or probe.indirect:
            return
        target = self.members.get(probe.target)
        if target is None or target.state not in ACTIVE_STATES:
            return
        probe.indirect = True
        probe.nacks_expected = self._ask_helpers(target, probe.seq, want_nack=True)
        if self.config.tcp_fallback:
            self.stats["tcp_pings"] += 1
            ping = encode_stream(Ping(probe.seq, probe.target, self.name))
            self.stream(target.addr, ping, self._on_tcp_ack)

    def _ask_helpers(self, target: MemberRecord, seq: int, *, want_nack: bool) -> int:
        """Send ``indirect_checks`` random members a ping-req for ``target``; returns how many."""
        helpers = self.members.sample(self.config.indirect_checks, exclude=target.name)
        request = PingReq(seq, target.name, target.addr, self.name, want_nack=want_nack)
        for helper in helpers:
            self._send(self.members.addr_of(helper), request)
        self.stats["indirect_probes"] += len(helpers)
        return len(helpers)

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

    def _on_ping(self, now: float, src: Address, ping: Ping, accused: bool) -> None:
        if ping.target != self.name:
            self.stats["misdirected_pings"] += 1
            return
        # A prober that suspects us says so in its ping (buddy system). If it
        # accuses an incarnation we refuted long ago, our refutation never
        # reached it and has since left our broadcast queue: answer on the ack
        # itself, or its suspicion of a live member runs out (issue 17, a false
        # death after the network healed). Only to a member at its address, as
        # any gossip (``_member_at``).
        member = self._member_at(ping.source, src)
        answer: tuple[bytes, ...] = ()
        if accused and member and not self.leaving:
            answer = (encode_update(Alive(self.name, self.addr, self.incarnation, self.meta)),)
            self.stats["accusations_answered_on_ack"] += 1
        self._send(src, Ack(ping.seq), answer, gossip=member)

    def _on_ack(self, now: float, seq: int) -> None:
        probe = self._probe
        if probe is not None and seq == probe.seq:
            if not probe.acked:
                probe.acked = True
                self.awareness.apply(-1)
                target = self.members.get(probe.target)
                if target is not None and target.state is MemberState.SUSPECT:
                    # It answers yet we still suspect it: its refutation never
                    # reached us (an ack relayed by a helper or over TCP carries
                    # none). Ask it for its own record (issue 17).
                    self.stats["suspects_answering"] += 1
                    self.delegate.suspect_answered(now, target)
            return
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._send(relay.requester, Ack(relay.seq), gossip=relay.gossip)
            return
        chance = self._last_chances.pop(seq, None)
        if chance is not None:
            self._on_last_chance_answered(now, chance)
            return
        check = self._checks.pop(seq, None)
        target = self.members.get(check.target) if check is not None else None
        if target is not None and target.state is MemberState.SUSPECT:
            self.stats["suspects_answering"] += 1
            self.delegate.suspect_answered(now, target)

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
        self._relays[seq] = _Relay(
            src, request.seq, request.want_nack, request.target, request.target_addr, requester
        )
        target = self._member_at(request.target, request.target_addr)
        self._send(request.target_addr, Ping(seq, request.target, self.name), gossip=target)
        self.arm(TimerKind.RELAY_TIMEOUT, now + self.config.probe_timeout, str(seq))

    def _on_relay_timeout(self, now: float, subject: str) -> None:
        relay = self._relays.pop(int(subject), None)
        if relay is not None and relay.want_nack:
            self._send(relay.requester, Nack(relay.seq), gossip=relay.gossip)

    # ------------------------------------------------------------- refusals
    #
    # A crashed process on a live host is refused at once: the probe draws an
    # ICMP port-unreachable, the TCP fallback a reset. Loss, a partition, a
    # paused process or a dead host never produce that answer, so a refusal
    # may shorten the suspicion where silence may not (issue 17). The prober
    # suspects at once, sends its ping-reqs without waiting out the probe
    # timeout, and shrinks its own suspicion towards ``refused_suspicion``;
    # helpers whose relayed ping is refused too suspect as independent
    # accusers (Lifeguard confirmations) and nack at once with their Suspect.
    #
    # A restarted process on the same address is safe from a refusal that
    # raced its start: the refusal counts only against the incarnation that
    # was probed, the new process starts at a higher incarnation (restored
    # + 1) and announces it on joining, any ack ends the probe, and an ack to
    # a ping that accuses it carries its Alive (``_on_ping``), which ends the
    # suspicion; the shortest refusal wait is a probe interval, time to refute;
    # and the death needs the last-chance ping at its end to go unanswered:
    # a process back on the address by then answers it with its new life.
    #
    # A refusal of any other packet (gossip, an ack, a push-pull) to an active
    # member is no evidence against it by itself (we cannot tell which life it
    # refused), but it prompts a ping to that member at once, out of the
    # round-robin order: a refusal of that ping at the incarnation pinged is
    # treated like a refused probe. It saves the wait for the first probe of a
    # crashed member (about a probe interval) whenever traffic flows to it.
    # At most one check per member per probe interval; a refusal from its
    # address meanwhile counts as the check's, and only the first one acts
    # (each refused check asks helpers, so a check per refusal would multiply
    # refusals: the relays of a dead member's helpers are refused too).

    def _on_refused(self, now: float, addr: Address) -> None:
        evidence = False
        window = self.config.probe_interval
        self._checks = {s: c for s, c in self._checks.items() if now - c.sent < window}
        probe = self._probe
        if probe is not None and not probe.acked and not probe.refused:
            target = self.members.get(probe.target)
            if (
                target is not None
                and target.addr == addr
                and target.incarnation == probe.incarnation
                and target.state in ACTIVE_STATES
            ):
                probe.refused = evidence = True
                self.stats["probes_refused"] += 1
                self._suspect_refused(now, target)
                self._tokens.pop((TimerKind.PROBE_TIMEOUT, ""), None)
                self._on_probe_timeout(now, "")
        # Relays, checks and last chances live one probe window, so there are few;
        # a scan is cheap.
        for chance in [c for c in self._last_chances.values() if c.addr == addr]:
            target = self._aimed_at(chance)
            if target is not None:
                evidence = True
                self.stats["last_chances_refused"] += 1
                self._declare_dead(now, target)
        for seq, check in [(s, c) for s, c in self._checks.items() if c.addr == addr]:
            target = self._aimed_at(check)
            if target is not None:
                evidence = True
                if check.refused:
                    continue
                check.refused = True
                self.stats["checks_refused"] += 1
                self._suspect_refused(now, target)
                self._ask_helpers(target, seq, want_nack=True)
        for seq in [s for s, r in self._relays.items() if r.target_addr == addr]:
            relay = self._relays.pop(seq)
            self._tokens.pop((TimerKind.RELAY_TIMEOUT, str(seq)), None)
            target = self.members.get(relay.target)
            extra: tuple[bytes, ...] = ()
            if target is not None and target.addr == addr and target.state in ACTIVE_STATES:
                evidence = True
                self.stats["relays_refused"] += 1
                self._suspect_refused(now, target)
                extra = (encode_update(Suspect(target.name, target.incarnation, self.name)),)
            if relay.want_nack:
                self._send(relay.requester, Nack(relay.seq), extra, gossip=relay.gossip)
        if not evidence:
            self._check_refused(now, addr)

    def _aimed_at(self, aimed: _Aimed) -> MemberRecord | None:
        """The member ``aimed`` was sent to, if still active at that address and life."""
        target = self.members.get(aimed.target)
        if (
            target is None
            or target.addr != aimed.addr
            or target.incarnation != aimed.incarnation
            or target.state not in ACTIVE_STATES
        ):
            return None
        return target

    def _check_refused(self, now: float, addr: Address) -> None:
        """Ping the active member at ``addr`` at once, unless a ping to it is already out."""
        name = self.members.name_at(addr)
        target = self.members.get(name) if name is not None else None
        if target is None:
            return
        probe = self._probe
        if probe is not None and probe.target == target.name and not probe.acked:
            return
        pending = (*self._checks.values(), *self._last_chances.values())
        if any(c.target == target.name for c in pending):
            return
        seq = self._next_seq()
        self._checks[seq] = _Aimed(target.name, target.addr, target.incarnation, now)
        self.stats["refusal_checks"] += 1
        if target.state is MemberState.SUSPECT:
            self._ping_accused(target, seq)
        else:
            self._send(target.addr, Ping(seq, target.name, self.name))

    def _suspect_refused(self, now: float, target: MemberRecord) -> None:
        """Suspect ``target`` on our own evidence of a refusal, with the shorter wait."""
        self._suspect(now, Suspect(target.name, target.incarnation, self.name))
        suspicion = self._suspicions.get(target.name)
        low = self.config.refused_suspicion
        if suspicion is None or suspicion.incarnation != target.incarnation:
            return
        if suspicion.min_s > low:
            suspicion.max_s, suspicion.min_s = suspicion.min_s, low
            self.arm(TimerKind.SUSPICION, max(now, suspicion.deadline), target.name)

    # ------------------------------------------------------- membership news

    def _apply_update(self, now: float, update: Alive | Suspect | Dead | Left) -> None:
        if isinstance(update, Alive):
            self._alive(now, update)
        elif isinstance(update, Suspect):
            self._suspect(now, update)
        elif isinstance(update, Dead):
            self._dead(now, update)
        else:
            self._left(now, update)

    def _alive(self, now: float, msg: Alive) -> None:
        if not self.plausible(msg.name, msg.incarnation):
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
        self.broadcast(("m", msg.name), encode_update(msg))

    def _suspect(self, now: float, msg: Suspect) -> None:
        if not self.plausible(msg.name, msg.incarnation):
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
                if suspicion.last_chance is None:
                    self.arm(TimerKind.SUSPICION, max(now, suspicion.deadline), msg.name)
                self.broadcast(("m", msg.name), encode_update(msg))
            return
        if not wins(MemberState.SUSPECT, msg.incarnation, current):
            return
        self._set(now, replace(current, state=MemberState.SUSPECT, incarnation=msg.incarnation))
        self._start_suspicion(now, msg.name, msg.incarnation, msg.accuser)
        self.stats["suspicions"] += 1
        self.broadcast(("m", msg.name), encode_update(msg))

    def _start_suspicion(self, now: float, name: str, incarnation: int, accuser: str) -> None:
        """Lifeguard's timer for ``name``, from ``now``, replacing any earlier one."""
        self._drop_last_chance(name)
        n = self.members.active_count
        wanted = self.config.suspicion_mult - 2
        if n - 2 < wanted:
            wanted = 0
        low = self.config.suspicion_min(n)
        high = low * self.config.suspicion_max_mult
        suspicion = Suspicion(now, incarnation, accuser, wanted, low, high)
        self._suspicions[name] = suspicion
        self.arm(TimerKind.SUSPICION, suspicion.deadline, name)

    def _on_suspicion_timeout(self, now: float, name: str) -> None:
        suspicion = self._suspicions.get(name)
        current = self.members.get(name)
        if suspicion is None or current is None or current.state is not MemberState.SUSPECT:
            self._suspicions.pop(name, None)
            return
        if suspicion.last_chance is None:
            self._start_last_chance(now, current, suspicion)
            return
        if len(suspicion.accusers) - 1 < suspicion.wanted:
            self.stats["suspicions_timed_out_unconfirmed"] += 1
        self._declare_dead(now, current)

    def _declare_dead(self, now: float, target: MemberRecord) -> None:
        self._dead(now, Dead(target.name, target.incarnation, self.name))

    # ---------------------------------------------------------- last chance
    #
    # Lifeguard lets a suspicion run out into a death with no further look at
    # the suspect (memberlist ``suspicion.go`` calls ``deadNode`` from the
    # timer). Under heavy loss that kills live members: the suspect refuted,
    # every node but one heard it, and that one had no direct exchange with
    # the suspect (its only way to learn the refutation once the broadcast
    # has run out of retransmits) before its timer ran out (issue 17: about 2
    # false deaths per agent-hour at 30 % loss, 8 nodes). So when the timer
    # runs out we probe the suspect one last time, for one probe window: a
    # direct ping carrying our accusation (the buddy system, so its ack carries
    # its refutation, ``_on_ping``), repeated after a probe timeout, ping-reqs
    # through ``indirect_checks`` helpers and the TCP ping, all at once. Then:
    # - a refutation ends the suspicion as usual;
    # - any other ack (relayed, TCP) proves it alive now without telling us
    #   its incarnation: the suspicion starts over (Lifeguard's full timer)
    #   and we ask for its record by push-pull (``SwimDelegate.suspect_answered``);
    # - a refusal of any of these probes at the incarnation suspected is the
    #   host's word that nothing listens there: dead at once;
    # - silence: dead at the end of the window.
    # A real silent crash is declared one probe window later than before; a
    # crash whose host refuses, one round trip later. Confirmations that
    # arrive during the window no longer shorten it.

    def _start_last_chance(self, now: float, target: MemberRecord, suspicion: Suspicion) -> None:
        seq = suspicion.last_chance = self._next_seq()
        self._last_chances[seq] = _Aimed(target.name, target.addr, target.incarnation, now)
        self.stats["last_chances"] += 1
        self._ping_accused(target, seq)
        self._ask_helpers(target, seq, want_nack=False)
        if self.config.tcp_fallback:
            ping = encode_stream(Ping(seq, target.name, self.name))
            self.stream(target.addr, ping, self._on_last_chance_tcp)
        scale = self.awareness.scale
        self.arm(TimerKind.LAST_CHANCE, now + scale(self.config.probe_timeout), target.name)
        self.arm(TimerKind.SUSPICION, now + scale(self.config.probe_interval), target.name)

    def _ping_accused(self, target: MemberRecord, seq: int) -> None:
        """Ping a suspect with our accusation in the same packet (Lifeguard's buddy system)."""
        accusation = encode_update(Suspect(target.name, target.incarnation, self.name))
        self._send(target.addr, Ping(seq, target.name, self.name), (accusation,))

    def _on_last_chance_retry(self, now: float, name: str) -> None:
        suspicion = self._suspicions.get(name)
        target = self.members.get(name)
        if suspicion is None or suspicion.last_chance not in self._last_chances:
            return
        if target is not None and target.state is MemberState.SUSPECT:
            self._ping_accused(target, suspicion.last_chance)

    def _on_last_chance_tcp(self, now: float, message: StreamMessage | None) -> None:
        if isinstance(message, Ack):
            chance = self._last_chances.pop(message.seq, None)
            if chance is not None:
                self._on_last_chance_answered(now, chance)

    def _on_last_chance_answered(self, now: float, chance: _Aimed) -> None:
        target = self.members.get(chance.target)
        if target is None or target.state is not MemberState.SUSPECT:
            return
        self.stats["last_chances_answered"] += 1
        self._start_suspicion(now, target.name, target.incarnation, self.name)
        self.delegate.suspect_answered(now, target)

    def _drop_last_chance(self, name: str) -> None:
        """Forget the suspicion of ``name`` and its last-chance probe, if any."""
        suspicion = self._suspicions.pop(name, None)
        if suspicion is not None and suspicion.last_chance is not None:
            self._last_chances.pop(suspicion.last_chance, None)
            self._tokens.pop((TimerKind.LAST_CHANCE, name), None)

    def _dead(self, now: float, msg: Dead) -> None:
        if not self.plausible(msg.name, msg.incarnation):
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
        self.broadcast(("m", msg.name), encode_update(msg))

    def _left(self, now: float, msg: Left) -> None:
        if not self.plausible(msg.name, msg.incarnation):
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
        self.broadcast(("m", msg.name), encode_update(msg))

    def _refute(self, now: float, accused: int, accusation: MemberState) -> None:
        """Answer an accusation (or an older life's claim) with a higher incarnation.

        ``plausible`` let ``accused`` in only up to ``INCARNATION_CEILING``, so the
        new incarnation is encodable; the ``min`` keeps it so whatever a caller did.
        """
        previous = self.incarnation
        self.incarnation = min(max(previous, accused) + 1, MAX_INCARNATION)
        if self.incarnation != previous:
            self._out.append(Notify(IncarnationChanged(self.incarnation, previous)))
        self.members.put(self._own_record(MemberState.ALIVE), now)
        if accusation is not MemberState.ALIVE:
            self.awareness.apply(1)
            self.stats["refutes"] += 1
        alive = Alive(self.name, self.addr, self.incarnation, self.meta)
        self.broadcast(("m", self.name), encode_update(alive))
        self.delegate.refuted(now, accusation)

    def plausible(self, name: str, incarnation: int) -> bool:
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
            self._drop_last_chance(record.name)
            self._tokens.pop((TimerKind.SUSPICION, record.name), None)
        previous = old.state if old is not None else None
        change = MemberChanged(record.name, record.addr, record.state, record.incarnation, previous)
        self._out.append(Notify(change))
        self.delegate.member_changed(now, record, old)

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
                    if self.plausible(r.name, r.incarnation) and self._room_for_member():
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
        targets = self.members.gossip_targets(self.config.gossip_nodes)
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
        for name in self.members.gossip_targets(self.config.fast_gossip_nodes):
            self._send(self.members.addr_of(name), None)

    def broadcast(self, subject: Hashable, data: bytes, *, rank: int = MEMBERSHIP) -> None:
        if len(data) > self._update_budget:
            # Could never ride in a packet; push-pull carries it instead.
            self.stats["broadcasts_too_large"] += 1
            return
        self.queue.limit = self.config.queue_limit(self.members.active_count)
        self.stats["broadcasts_dropped"] += self.queue.push(subject, data, rank=rank)
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

    def tell_directly(self, updates: Sequence[bytes], most: int) -> None:
        """One datagram of ``updates``, and nothing queued beside them, to each of up to
        ``most`` members (all of them if there are no more): news that should not wait
        for gossip's random walk, our leave and the registry's fan-out of our writes."""
        for name in self.members.sample(most):
            self._send(self.members.addr_of(name), None, updates, gossip=False)

    def stream(
        self, addr: Address, data: bytes, callback: Callable[[float, StreamMessage | None], None]
    ) -> None:
        self._next_token += 1
        self._streams[self._next_token] = callback
        self.stats["stream_out"] += 1
        self._out.append(StreamRequest(addr, data, self._next_token))

    def arm(self, kind: TimerKind, at: float, subject: str = "") -> None:
        self._next_token += 1
        self._tokens[(kind, subject)] = self._next_token
        self._out.append(SetTimer(at, Timer(kind, self._next_token, subject)))

    def drain(self, now: float) -> list[Effect]:
        """Schedule gossip for anything newly queued, then hand over the effects."""
        self.delegate.before_drain(now)
        if len(self.queue):
            if not self._gossip_armed:
                self._gossip_armed = True
                self.arm(TimerKind.GOSSIP, now + self.config.gossip_interval)
            if self._fresh and not self._fast_armed:
                self._fast_armed = True
                at = max(now, self._last_fast + self.config.fast_gossip_interval)
                self.arm(TimerKind.FAST_GOSSIP, at)
        self._fresh = False
        if self._leave_pending and (not len(self.queue) or self.members.active_count <= 1):
            self._leave_pending = False
            self._out.append(Notify(LeaveDrained(drained=True)))
        out, self._out = self._out, []
        return out

    # ---------------------------------------------------- the delegate's seam

    def _stream_message(self, now: float, src: Address, message: StreamMessage) -> bytes | None:
        if isinstance(message, Ping) and message.target == self.name:
            return encode_stream(Ack(message.seq))
        return self.delegate.stream_message(now, src, message)

    def emit(self, effect: Effect) -> None:
        """Hand ``effect`` to the driver with the effects of the call under way, in order."""
        self._out.append(effect)

    def on_timer(self, kind: TimerKind, handler: Callable[[float, str], None]) -> None:
        """Run ``handler(now, subject)`` when a timer of ``kind`` armed by ``arm`` fires."""
        self._timer_handlers[kind] = handler

    def disarm(self, kind: TimerKind, subject: str = "") -> None:
        """Forget the timer of ``kind`` about ``subject``: it is ignored when it fires."""
        self._tokens.pop((kind, subject), None)


class SwimDelegate(typing.Protocol):
    """What the layer above membership (the registry, ``protocol.py``) hears and answers.

    The failure detector calls it; it calls back only through ``Swim``'s public
    services (``emit``, ``arm``, ``disarm``, ``on_timer``, ``stream``,
    ``broadcast``, ``merge_records``, ``plausible``), never into private state.
    memberlist's ``Delegate``/``EventDelegate`` and foca's ``BroadcastHandler``
    are the models.
    """

    def entry_update(self, now: float, update: EntryUpdate, repeat: bool) -> bool:
        """Registry news arrived by gossip.

        Returns whether its bytes may be remembered: an identical copy then
        comes back undecoded, as this same object, with ``repeat`` set. Only an
        update that this call fully processed may be remembered; the delegate
        skips a repeat only where it can tell that merging it again would change
        nothing now, and otherwise handles it like any other.
        """

    def member_changed(self, now: float, record: MemberRecord, old: MemberRecord | None) -> None:
        """A member's record changed (not ours); ``old`` is what we held before."""

    def refuted(self, now: float, accusation: MemberState) -> None:
        """We just raised our incarnation to answer ``accusation``."""

    def suspect_answered(self, now: float, target: MemberRecord) -> None:
        """A member we suspect acked a probe without refuting: ask it for more."""

    def stream_message(self, now: float, src: Address, message: StreamMessage) -> bytes | None:
        """A stream message that is not a ping for us: the reply, or None (counted if
        unexpected, in ``Swim.stats``)."""

    def probe_tick(self, now: float) -> None:
        """A probe period starts (before its probe): periodic upkeep of the layer above."""

    def before_drain(self, now: float) -> None:
        """The effects of a call are about to be handed out: emit what was batched."""


class Standalone:
    """The delegate of a failure detector with nothing above it (tests, tools)."""

    def __init__(self, stats: Counter[str]) -> None:
        self._stats = stats

    def entry_update(self, now: float, update: EntryUpdate, repeat: bool) -> bool:
        """No registry: registry news is dropped (and never remembered)."""
        return False

    def member_changed(self, now: float, record: MemberRecord, old: MemberRecord | None) -> None:
        """Nothing to follow membership."""

    def refuted(self, now: float, accusation: MemberState) -> None:
        """Nothing to re-assert."""

    def suspect_answered(self, now: float, target: MemberRecord) -> None:
        """No push-pull to ask a suspect for its record."""

    def stream_message(self, now: float, src: Address, message: StreamMessage) -> bytes | None:
        self._stats["unexpected_stream_messages"] += 1
        return None

    def probe_tick(self, now: float) -> None:
        """No upkeep."""

    def before_drain(self, now: float) -> None:
        """Nothing batched."""
