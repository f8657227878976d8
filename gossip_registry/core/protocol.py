"""The whole protocol of one node: SWIM membership plus the replicated registry.

Theory of operation: ``Swim`` (``swim.py``) runs failure detection and
dissemination; this class holds one and is its delegate (``SwimDelegate``):
it hears member changes, registry news and refutations from it, answers its
push-pull streams, and uses only its public services (``emit``, ``arm``,
``stream``, ``broadcast`` ...), never its private state. On top of it:

- Local writes (register, deregister) are stamped by our hybrid logical
  clock, stored, queued for piggybacking and pushed at once (fast path).
  They are also sent straight to every member (up to ``fanout_nodes``,
  batched: one burst of up to ``FANOUT_PACKETS`` packets per member per
  ``fanout_interval``). Gossip
  alone carries a bounded number of updates per second: each node sends
  each one ``retransmit_limit(N)`` times, about 26 to a packet at 3 packets
  per round, so about 100 updates per second for a whole 20-node cluster.
  Beyond that the queues back up and fresh news goes first, so older
  updates wait, and one deregistered soon after its registration replaces
  it in the queues of nodes that never saw it. The originator's direct
  packets take its write to every node in one hop whatever that backlog:
  N - 1 sends per write against N x ``retransmit_limit(N)`` for gossip,
  which keeps spreading it too, in case a direct packet is lost. Only our
  own writes are fanned out, never news from peers, so no peer can make us
  send more than that bound (``FANOUT_BUFFER``).
- Registry entries that arrive by gossip are merged with the table's
  last-writer-wins rule (``registry/table.py``); news is re-gossiped.
- Entries belong to the node that registered them. When a member is declared
  dead or leaves, every node fences its entries: removes them (a chunk at a
  time) and refuses them, at any incarnation, while it stays dead; when it
  comes back at a new incarnation the fence moves just below that one.
  Whenever a member raises its incarnation (a refutation, a restart) it
  re-asserts its live entries under the new one: a death it never heard of
  may have fenced them somewhere. A rise alone fences nothing: a live owner
  that refuted a suspicion keeps every instance served on every node while
  its re-asserted versions replace the old ones key by key (last writer
  wins); dropping them all at the rise left an owner of tens of thousands
  missing for minutes (issue 15). The owner is the authority on its entries:
  a version of one of our keys that we did not write in this life is
  superseded (re-stamped, or deleted), so the keys a restarted owner forgot
  are deleted everywhere once a push-pull shows them to it (its join's
  first).
- Push-pull anti-entropy (memberlist's TCP state exchange, made cheap for
  large tables): hello carries our member-list digest and one digest per
  registry bucket; the reply carries the peer's member list only if the
  digests differ, and its entries only in differing buckets; our finish
  sends back what the peer lacks. An idle cluster with 100,000 entries
  exchanges a few kilobytes per sync. Push-pull also runs with a random
  failed member every reconnect interval (Serf), which heals partitions.
- Large differences (a node joining a cluster of 100,000 entries) are paged
  and merged in chunks, so no single step blocks the node for long: a reply
  carries whole differing buckets up to ``SYNC_PAGE_ENTRIES`` entries (one
  bucket more only if a single bucket is larger) and says where it stopped;
  once that page is merged the initiator asks for the rest (``SyncMore``).
  Each page gets its own finish. A message's entries are merged
  ``MERGE_CHUNK`` at a time, continuing on a ``MERGE`` timer armed at
  ``now``, so the driver answers probes between chunks.
- Self-preservation (``registry/preservation.py``): the core feeds it its
  own member and entry changes, judges each batch once, ends it at its
  deadline by a timer, and says what is served stale (``StaleChanged``).
- Joining (``join``, ``join_at_start``): push-pull with each seed. At start
  or restart a node asks every seed plus at most ``rejoin_limit`` members its
  snapshot knew, and retries with doubling backoff while nobody answers, until
  ``retry_join_timeout``; seeds given as names are resolved again by the
  driver before each retry (``ResolveSeeds``, answered by ``join_resolved``:
  resolving is I/O). Each attempt ends in a ``JoinResult`` notification.
  This is the one join policy: the trio node and the simulator both run it.

Sans-I/O like the rest of the core: ``now`` is monotonic seconds from the
driver; wall-clock time for HLC stamps is ``now + wall_offset``. The driver
reads the real clock before every call (``observe_wall``), so a clock that
NTP steps while the node runs is followed at once; the offset given at
construction is only the first reading.

Clock skew (``Limits.max_clock_skew``): an entry stamped further ahead of our
wall clock than the limit is dropped and counted, and our HLC does not
observe it. Otherwise one node with a clock a year ahead would pin its
entries for a year (no honest write could beat them) and drag every HLC
that saw them a year forward. Such an owner's writes are refused everywhere
until its clock is sane; it then notices that its HLC runs beyond the limit
(at its next write or probe tick, whichever comes first), resets it, and
restamps its own entries at the corrected time, and those versions win. The
reset HLC starts above every own version it keeps, so no later write of ours
can lose to one of them.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from operator import attrgetter

from gossip_registry.core.awareness import Awareness
from gossip_registry.core.broadcast import BroadcastQueue
from gossip_registry.core.codec import (
    MAX_INCARNATION,
    MAX_UPDATES,
    CodecError,
    check_update,
    encode_stream,
    encode_update,
    packet_overhead,
    record_size,
)
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import (
    Effect,
    EntryChanged,
    JoinResult,
    Notify,
    ResolveSeeds,
    StaleChanged,
    StreamSend,
    Synced,
    Timer,
    TimerKind,
)
from gossip_registry.core.members import MemberSeed
from gossip_registry.core.messages import (
    ACTIVE_STATES,
    Address,
    Alive,
    EntryUpdate,
    MemberRecord,
    MemberState,
    StreamMessage,
    SyncFinish,
    SyncHello,
    SyncMore,
    SyncReply,
)
from gossip_registry.core.swim import INCARNATION_CEILING, LEAVE_FANOUT, REGISTRY, Swim
from gossip_registry.registry.clock import HybridClock, stamp_wall
from gossip_registry.registry.entry import CheckState, Entry, EntryKey, Health
from gossip_registry.registry.health import worst
from gossip_registry.registry.preservation import Preservation, PreservationConfig
from gossip_registry.registry.table import RegistryTable

_GONE = (MemberState.DEAD, MemberState.LEFT)

REGOSSIP_PER_SYNC = 64
"""Entries one push-pull message repairs that are also queued for piggybacking.

A few repairs (a deletion some nodes missed) spread faster by gossip than by
everyone's next push-pull. A bulk transfer (a node joining a cluster of
100,000 entries, or returning from a partition) is the opposite: its sender
already holds every entry, the others hold them or get them from their own
anti-entropy, and piggybacking them all would crowd real news out of the
queue for minutes. So the first this many go on, the rest are counted
(``repairs_not_regossiped``).
"""

SYNC_PAGE_ENTRIES = 256
"""Entries in one push-pull page (whole buckets; more only if one bucket alone holds more).

Bounds the frame and the work of one step on both sides: the responder
encodes a page and the initiator decodes it in one go, 15-25 ms each for
256 entries on the benchmark machine under load (issue 15 allows 50 ms of
stall in all). At the typical 200 bytes an entry a page is about 50 KiB;
entries that fit a gossip packet keep it under 400 KiB, far below
``max_stream_bytes``. A page costs a round trip: 100,000 entries take about
400 exchanges, a fraction of a second on a LAN. With the default 256
buckets a bucket outgrows a page beyond about 65,000 entries, so larger
tables send one bucket per page (about 400 entries at 100,000; raise
``registry_buckets`` with the table).
"""

FANOUT_BUFFER = 1024
"""Own writes waiting for their direct fan-out; more go by gossip alone (``fanout_overflow``).

At up to ``FANOUT_PACKETS`` packets (about 26 plain writes each) per member per
``fanout_interval`` (1 s) the fan-out sends 130 writes a second; the buffer
holds about 8 s of that. A bulk load or a re-assertion of a large table
spreads by gossip and push-pull, as it did before.
"""
FANOUT_PACKETS = 5
"""Packets per member in one fan-out burst at most: a busy node's writes need more than one.

What a burst costs is mostly the packets, not their size: each wakes the
receiving process, and on a shared host (20 agents on 2 cores) the wake-ups
were two thirds of the whole cluster's CPU under churn when every write went
to every member within ``fast_gossip_interval``. Gossip still brings most
writes everywhere in a few hundred milliseconds; the burst is what makes sure.
"""
MEMBER_PAGE_SHARE = 8
"""A push-pull message carries member records up to ``max_stream_bytes`` / this, encoded
(1 MiB at the default 8 MiB), and the rest of the list in further pages.

10,000 members with 1 KiB of meta each are 9.1 MiB and ``max_members`` allows 50,000:
a whole list in one frame would pass the frame limit, which is also what a plaintext
peer may make us buffer (issue 10, finding 2). The other seven eighths are for the
entry page that shares the frame (whole buckets: about 1,000 entries of at most a
packet each at the 250,000 the table is measured at, under 1.5 MiB).
"""

MERGE_CHUNK = 64
"""Entries merged per step before the driver gets the event loop back (10-20 ms under load)."""


_MERGE, _REASSERT, _FENCE, _RESTORE = 0, 1, 2, 3


@dataclass(slots=True)
class _MergeJob:
    """Entries of one push-pull message still to merge; ``then`` runs once all are.

    ``kind``: ``_MERGE`` the entries, ``_REASSERT`` (our own entries, to restamp
    under a new incarnation), ``_FENCE`` (a member's entries its fence now
    covers, to remove) or ``_RESTORE`` (a snapshot's entries, to restamp at start
    unless something restored them first).
    """

    entries: Sequence[Entry]
    then: Callable[[float], None] | None
    kind: int = 0
    done: int = 0
    repaired: int = 0


@dataclass(slots=True)
class _Pages:
    """Where a paged push-pull stands, on the side that started it.

    ``bucket``: the first bucket the last request asked about (the bucket count
    when it asked for no entries). ``theirs``: the position in the peer's member
    list it asked from (0: all of it, the hello). ``ours``: the position in our
    member list the next finish sends from; None once the peer has had it all,
    or never wanted it.
    """

    bucket: int = 0
    theirs: int = 0
    ours: int | None = None
    differed: bool = False
    """Whether a page so far named a bucket whose digest differed from ours."""


@dataclass(slots=True)
class _Join:
    """One join in progress: its seeds, attempts so far and the current attempt's replies.

    ``seeds`` come from the configuration (resolved again before each retry when
    ``resolve``: they are names), ``known`` from a snapshot; both are asked at
    every attempt. ``resolving``: a retry waits for the driver's ``join_resolved``.
    """

    tag: int
    seeds: tuple[Address, ...]
    attempts: int
    delay: float
    deadline: float = math.inf
    known: tuple[Address, ...] = ()
    resolve: bool = False
    resolving: bool = False
    attempt: int = 0
    asked: int = 0
    pending: int = 0
    answered: int = 0


class Protocol:
    """One node's whole protocol: membership (SWIM + Lifeguard), dissemination, registry.

    Args:
        config: protocol settings.
        name: this node's unique name.
        addr: the address peers reach us at (advertised, not necessarily bound).
        rng: the only source of randomness.
        now: monotonic seconds at creation.
        wall_offset: add to ``now`` to get wall-clock seconds (for HLC stamps).
        incarnation: the last incarnation a snapshot recorded, if any; the node
            then starts one above it, so its old life's news cannot beat it.
        meta: node metadata (small string map).
        entries: our own live registrations from a snapshot; re-asserted from
            ``start`` on, a chunk per step (``restoring`` until all are).
        preservation: when a mass death is doubted (self-preservation).
        versions: every version stored so far by any core sharing this map, each
            its own key: one node per process has no use for it, but the
            simulator's thousand cores would each hold a copy of every entry
            (entries are immutable). It grows with every version any of them
            stores, so it suits bounded runs.
    """

    def __init__(
        self,
        config: ProtocolConfig,
        name: str,
        addr: Address,
        *,
        rng: random.Random,
        now: float,
        wall_offset: float = 0.0,
        incarnation: int | None = None,
        meta: Mapping[str, str] | None = None,
        entries: Sequence[Entry] = (),
        preservation: PreservationConfig | None = None,
        versions: dict[Entry, Entry] | None = None,
    ) -> None:
        # A snapshot above the ceiling was written by a node that believed forged
        # news (issue 10, finding 1): one above it would not encode, so start afresh
        # and let peers' records of our old life lift us back, within the step.
        extreme = incarnation is not None and incarnation >= INCARNATION_CEILING
        start = 0 if incarnation is None or extreme else incarnation + 1
        self.swim = Swim(config, name, addr, rng=rng, incarnation=start, meta=meta, delegate=self)
        """Membership and failure detection; we are its delegate (``SwimDelegate``)."""
        self.config = config
        self.name = name
        self.addr = addr
        self.rng = rng
        self.stats = self.swim.stats
        """One set of counters for the node's whole protocol (``/v1/status``, metrics)."""
        self.members = self.swim.members
        if extreme:
            self.stats["snapshot_incarnation_reset"] += 1
        self.wall_offset = wall_offset
        self.clock = HybridClock()
        self.table = RegistryTable(config.registry_buckets)
        # No per-entry call (``Entry.key`` is a property): 50,000 at most (the per-owner
        # limit) take about 10 ms here, and their restamps go a chunk per step.
        self._restoring = {
            (e.service, e.instance_id): e for e in entries if e.owner == name and not e.deleted
        }
        """Snapshot entries not yet restamped, by key: ours, though not yet in the table."""
        self.swim.on_timer(TimerKind.SYNC, self._on_sync_tick)
        self.swim.on_timer(TimerKind.RECONNECT, self._on_reconnect_tick)
        self.swim.on_timer(TimerKind.REAP, self._on_reap_tick)
        self.swim.on_timer(TimerKind.MERGE, lambda now, _: self._merge_some(now))
        self._merges: deque[_MergeJob] = deque()
        self._queued_for_merge = 0
        self._versions = versions
        self.swim.on_timer(TimerKind.JOIN, self._on_join_retry)
        self.swim.on_timer(TimerKind.PRESERVATION, self._on_preservation_deadline)
        self.swim.on_timer(TimerKind.FANOUT, self._on_fanout)
        self._fanout: dict[EntryKey, bytes] = {}
        """Our fresh writes not yet fanned out, oldest first (a newer one of a key replaces it)."""
        self._fanout_armed = False
        self._last_fanout = float("-inf")
        self._joins: dict[int, _Join] = {}
        self.preservation = Preservation(preservation or PreservationConfig())
        """Read it to serve stale entries; the core alone feeds it."""
        self._preservation_due = False
        self._stale_changed: list[Entry] = []
        self._entry_budget = config.payload_size - packet_overhead(None, MAX_UPDATES)
        self._orphans: dict[str, float] = {}
        """Owners of stored entries that are not members, and when a reap first saw them."""

    # ------------------------------------------- membership, from the failure detector

    @property
    def incarnation(self) -> int:
        return self.swim.incarnation

    @property
    def meta(self) -> dict[str, str]:
        return self.swim.meta

    @property
    def leaving(self) -> bool:
        return self.swim.leaving

    @property
    def queue(self) -> BroadcastQueue:
        """Updates waiting to be piggybacked (membership and registry news alike)."""
        return self.swim.queue

    @property
    def awareness(self) -> Awareness:
        return self.swim.awareness

    def member_states(self) -> dict[str, MemberState]:
        return self.swim.member_states()

    def seed_members(self, seed: MemberSeed) -> None:
        """Start from a known membership (simulator bootstrap); shares the records."""
        self.swim.seed_members(seed)

    def merge_records(self, now: float, records: Sequence[MemberRecord]) -> None:
        """Merge a peer's member list (``Swim.merge_records``)."""
        self.swim.merge_records(now, records)

    def handle_packet(self, now: float, src: Address, data: bytes) -> list[Effect]:
        return self.swim.handle_packet(now, src, data)

    def handle_timer(self, now: float, timer: Timer) -> list[Effect]:
        return self.swim.handle_timer(now, timer)

    def handle_stream(
        self, now: float, src: Address, data: bytes
    ) -> tuple[bytes | None, list[Effect]]:
        return self.swim.handle_stream(now, src, data)

    def handle_stream_reply(self, now: float, token: int, reply: bytes | None) -> list[Effect]:
        return self.swim.handle_stream_reply(now, token, reply)

    def handle_refused(self, now: float, addr: Address) -> list[Effect]:
        return self.swim.handle_refused(now, addr)

    def leave(self, now: float, timeout: float) -> list[Effect]:
        """Graceful leave (``Swim.leave``): ``LeaveDrained`` says when to stop."""
        return self.swim.leave(now, timeout)

    def force_leave(self, now: float, name: str) -> list[Effect]:
        """Mark a dead member left on its behalf (``Swim.force_leave``, its errors)."""
        return self.swim.force_leave(now, name)

    # ----------------------------------------------------------- entry points

    def start(self, now: float) -> list[Effect]:
        if self._restoring:
            # Every restamp must beat the version peers may still hold.
            self.clock.observe(max(map(attrgetter("stamp"), self._restoring.values())))
            restore = list(self._restoring.values())
            self._queued_for_merge += len(restore)  # long-lived from now: freeze them first
            self._merges.appendleft(_MergeJob(restore, None, kind=_RESTORE))
            self._merge_some(now)
        self.swim.arm(TimerKind.SYNC, now + self.rng.uniform(0, self._sync_period()))
        self.swim.arm(
            TimerKind.RECONNECT, now + self.rng.uniform(0.5, 1.5) * self.config.reconnect_interval
        )
        self.swim.arm(TimerKind.REAP, now + self.config.reap_interval)
        return self.swim.start(now)

    def join(self, now: float, seeds: Iterable[Address], *, tag: int = 0) -> list[Effect]:
        """Push-pull with each seed (once) and announce ourselves.

        A ``JoinResult`` carrying ``tag`` says how many answered, once every
        exchange has ended.
        """
        self._attempt_join(now, _Join(tag, tuple(seeds), attempts=1, delay=0.0))
        return self.swim.drain(now)

    def join_at_start(
        self,
        now: float,
        seeds: Iterable[Address],
        known: Iterable[Address] = (),
        *,
        tag: int = 0,
        resolve: bool = False,
    ) -> list[Effect]:
        """Join at start or restart: through every seed and some members we knew.

        ``known`` is where a snapshot saw the cluster; at most ``rejoin_limit``
        of them (chosen at random) are asked besides the seeds, since each is
        a full push-pull. While nobody answers and nobody has found us, the
        join is tried again with doubling backoff from ``join_backoff`` to
        ``join_backoff_max`` seconds (peers may start later), as long as
        ``retry_join_timeout`` has not passed since now and at most
        ``join_attempts`` times. Each attempt ends in a ``JoinResult``.

        ``resolve``: the seeds are the addresses of names, resolved by the
        driver just now. Before each retry a ``ResolveSeeds`` asks for them
        again, and the retry waits for ``join_resolved``; it is made even if
        the names resolved to nothing (their hosts may not be listed yet).
        """
        first = tuple(dict.fromkeys(seeds))
        others = [a for a in dict.fromkeys(known) if a not in first and a != self.addr]
        if len(others) > self.config.rejoin_limit:
            others = self.rng.sample(others, self.config.rejoin_limit)
        config = self.config
        join = _Join(
            tag,
            first,
            config.join_attempts,
            config.join_backoff,
            deadline=now + config.retry_join_timeout,
            known=tuple(others),
            resolve=resolve,
        )
        self._joins[tag] = join
        self._attempt_join(now, join)
        return self.swim.drain(now)

    def join_resolved(self, now: float, tag: int, seeds: Iterable[Address]) -> list[Effect]:
        """The addresses the seeds of join ``tag`` resolved to, for its next attempt.

        The answer to ``ResolveSeeds``; ignored unless that join waits for it.
        If someone found us while the names were resolved, the join ends there.
        """
        join = self._joins.get(tag)
        if join is None or not join.resolving:
            return []
        join.resolving = False
        join.seeds = tuple(dict.fromkeys(seeds))
        if not self._found_meanwhile(join):
            self._attempt_join(now, join)
        return self.swim.drain(now)

    def _attempt_join(self, now: float, join: _Join) -> None:
        join.attempt += 1
        known = (a for a in join.known if a not in join.seeds)
        targets = [s for s in (*join.seeds, *known) if s != self.addr]
        join.asked = join.pending = len(targets)
        join.answered = 0
        for seed in targets:
            self._sync_with(seed, lambda at, answered: self._join_reply(at, join, answered))
        self._refresh_alive()
        if not targets:
            self._join_attempt_over(now, join)

    def _join_reply(self, now: float, join: _Join, answered: bool) -> None:
        join.pending -= 1
        join.answered += answered
        if join.pending == 0:
            self._join_attempt_over(now, join)

    def _join_attempt_over(self, now: float, join: _Join) -> None:
        if join.answered:
            # Say we are here to every member the seeds told us of, at once, as a
            # leave is said: gossip alone missed a peer now and then, which then
            # ignored our leave (news of a stranger) and kept us until a push-pull.
            self.swim.tell_directly((self._alive_update(),), LEAVE_FANOUT)
        retry_in = None
        alone = self.members.active_count <= 1
        more = join.attempt < join.attempts and now + join.delay <= join.deadline
        if join.answered == 0 and (join.asked or join.resolve) and alone and more:
            retry_in = join.delay
            join.delay = min(2 * join.delay, self.config.join_backoff_max)
            self.swim.arm(TimerKind.JOIN, now + retry_in, str(join.tag))
        elif self._joins.get(join.tag) is join:
            del self._joins[join.tag]
        event = JoinResult(join.tag, join.attempt, join.answered, join.asked, retry_in)
        self.swim.emit(Notify(event))

    def _on_join_retry(self, now: float, subject: str) -> None:
        join = self._joins.get(int(subject))
        if join is None or self._found_meanwhile(join):
            return
        if join.resolve:
            join.resolving = True
            self.swim.emit(Notify(ResolveSeeds(join.tag)))
        else:
            self._attempt_join(now, join)

    def _found_meanwhile(self, join: _Join) -> bool:
        """Whether someone found us since the last attempt: then ``join`` ends, unmade."""
        if self.members.active_count <= 1:
            return False
        del self._joins[join.tag]
        self.swim.emit(Notify(JoinResult(join.tag, join.attempt + 1, 0, 0, None)))
        return True

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
        """Write (or overwrite) one instance owned by this node.

        Check outputs are shortened, evenly, as far as needed for the entry to
        fit one packet: a status change must always gossip, and the outputs
        are the only part that grows after registration.

        Raises:
            ValueError: the entry is invalid or too large to gossip in one
                packet even with empty check outputs.
        """
        self._restore((service, instance_id), now)
        entry = Entry(
            service=service,
            instance_id=instance_id,
            address=address,
            port=port,
            tags=tuple(tags),
            meta=dict(meta or {}),
            weight=weight,
            status=Health(status),
            output=output,
            owner=self.name,
            owner_incarnation=self.incarnation,
            stamp=self._stamp(now),
            deleted=False,
            checks=tuple(checks),
        )
        if self._over_owner_limit(entry):
            raise ValueError(
                f"this node already holds {self.table.count_of(self.name)} entries, live ones "
                "and deletions kept for the tombstone horizon: the limit "
                "(limits.max_entries_per_owner)"
            )
        try:
            check_update(EntryUpdate(entry))
        except CodecError as exc:
            raise ValueError(f"invalid registration: {exc}") from exc
        entry = self._fit_outputs(entry)
        self._write(now, entry)
        return entry, self.swim.drain(now)

    def _fit_outputs(self, entry: Entry) -> Entry:
        """``entry`` with check outputs cut to the longest common length that fits a packet.

        Raises:
            ValueError: it does not fit even with every check output empty.
        """

        def capped(limit: int) -> Entry:
            cut = tuple(replace(c, output=c.output[:limit]) for c in entry.checks)
            return replace(entry, checks=cut)

        def fits(candidate: Entry) -> bool:
            return len(encode_update(EntryUpdate(candidate))) <= self._entry_budget

        if fits(entry):
            return entry
        if not fits(capped(0)):
            size = len(encode_update(EntryUpdate(capped(0))))
            raise ValueError(f"entry is {size} bytes encoded; at most {self._entry_budget} fit")
        low, high = 0, max(len(c.output) for c in entry.checks)  # capped(low) fits, high does not
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(capped(middle)) else (low, middle)
        return capped(low)

    def deregister(self, now: float, key: EntryKey) -> tuple[Entry | None, list[Effect]]:
        """Delete one of our instances (a tombstone); None if there was nothing live.

        Raises:
            ValueError: the instance belongs to another node, which alone may delete it.
        """
        self._restore(key, now)
        current = self.table.get(key)
        if current is None or current.deleted:
            return None, self.swim.drain(now)
        if current.owner != self.name:
            raise ValueError(f"{key[0]}/{key[1]} is owned by node {current.owner!r}")
        self._write(now, self._restamp(now, current, deleted=True))
        return current, self.swim.drain(now)

    def rewrite(
        self, now: float, entry: Entry, *, status: Health, checks: Sequence[CheckState]
    ) -> tuple[Entry, list[Effect]]:
        """``entry``'s content written again as a new version, with this status and these
        checks (``register``'s rules and errors)."""
        return self.register(
            now,
            entry.service,
            entry.instance_id,
            entry.address,
            entry.port,
            tags=entry.tags,
            meta=entry.meta,
            weight=entry.weight,
            status=status,
            output=entry.output,
            checks=checks,
        )

    def update_checks(
        self, now: float, key: EntryKey, checks: Sequence[CheckState]
    ) -> tuple[Entry | None, list[Effect]]:
        """Our instance ``key`` written again with its checks' new states; its status is
        the worst of theirs. None if it is no longer ours and live: its checks should stop.

        Raises:
            ValueError: as ``register`` (it fitted at registration, so a bug).
        """
        self._restore(key, now)
        current = self.table.get(key)
        if current is None or current.deleted or current.owner != self.name:
            return None, []
        return self.rewrite(now, current, status=worst(c.status for c in checks), checks=checks)

    def own_entries(self) -> list[Entry]:
        """Our live registrations, as a snapshot keeps them (those still to restore too)."""
        live = [e for e in self.table.owned_by(self.name) if not e.deleted]
        return [*live, *self._restoring.values()]

    def own_keys(self, instance_id: str, service: str | None = None) -> list[EntryKey]:
        """The keys of our live instances ``instance_id`` (in ``service`` if given), restored
        or still to restore: deregistration by id asks it per request, so it looks the id
        up instead of walking what we own (tombstones pile up under churn)."""
        services = self.table.services_with_id(instance_id) if service is None else (service,)
        keys = [key for s in services if self.own_entry(key := (s, instance_id)) is not None]
        if self._restoring:  # only while a restart restores its snapshot, a chunk per step
            keys += [
                key
                for key in self._restoring
                if key[1] == instance_id and key not in keys and (service in (None, key[0]))
            ]
        return keys

    def owned_copy(self) -> list[Entry]:
        """Every version we own, unsorted, those still to restore too: a snapshot taken
        while a restart restores must keep them."""
        return [*self.table.owned_copy(self.name), *self._restoring.values()]

    def own_entry(self, key: EntryKey) -> Entry | None:
        """Our live instance ``key``, restored or still to restore; None if there is none."""
        entry = self._restoring.get(key)
        if entry is None:
            entry = self.table.get(key)
        if entry is None or entry.deleted or entry.owner != self.name:
            return None
        return entry

    @property
    def versions_taken_in(self) -> int:
        """Versions stored plus entries push-pull or a restart queued for merging (counted
        again if stored): the heap governor's clock. A queued entry is as long-lived as a
        stored one until its chunk's turn, and one that loses the merge is never stored."""
        return self.table.versions_stored + self._queued_for_merge

    @property
    def restoring(self) -> bool:
        """Whether snapshot entries still wait to be restamped (MERGE steps restore them)."""
        return bool(self._restoring)

    def _restore(self, key: EntryKey, now: float) -> None:
        """Restamp the snapshot's version of ``key`` now if its turn has not come yet, so
        whatever reads or writes our key next finds it where it would be after the restore."""
        entry = self._restoring.pop(key, None)
        if entry is not None:
            self._store(now, self._restamp(now, entry, deleted=False))

    def observe_wall(self, now: float, wall: float) -> None:
        """The driver's wall-clock reading ``wall`` (seconds) taken at monotonic ``now``.

        Stamps and the skew limit follow it from this call on. Drivers call it
        before every entry point: reading the clock once at start-up would keep
        a node stepped by NTP stamping with the old clock until it restarts.
        """
        self.wall_offset = wall - now

    # ---------------------------------------------------------- registry news

    def _restamp(self, now: float, entry: Entry, *, deleted: bool) -> Entry:
        return replace(
            entry,
            owner=self.name,
            owner_incarnation=self.incarnation,
            stamp=self._stamp(now),
            deleted=deleted,
        )

    def _stamp(self, now: float) -> int:
        """The HLC stamp for a local write; first recovers from a clock that was wrong.

        We never observe a peer's stamp beyond the skew limit, so an HLC that
        far ahead of our wall clock means our own wall clock was ahead and has
        been corrected. Peers refused what we stamped meanwhile.
        """
        wall = now + self.wall_offset
        self._check_clock(now)
        return self.clock.tick(wall)

    def _check_clock(self, now: float) -> None:
        wall = now + self.wall_offset
        if stamp_wall(self.clock.last) > wall + self.config.limits.max_clock_skew:
            self._recover_clock(now, wall)

    def _recover_clock(self, now: float, wall: float) -> None:
        """Restart the HLC at ``wall`` and restamp our versions stamped beyond the limit.

        Dropped first: by the merge rule no later write could beat them. The
        versions kept (ahead of ``wall`` but within the limit) are observed
        first, so every stamp issued afterwards still beats them.
        """
        self.stats["clock_resets"] += 1
        self.clock = HybridClock()
        limit = wall + self.config.limits.max_clock_skew
        beyond = []
        for entry in self.table.owned_by(self.name):
            if stamp_wall(entry.stamp) > limit:
                beyond.append(entry)
            else:
                self.clock.observe(entry.stamp)
        for entry in self._restoring.values():  # restamped later: beat those within the limit
            if stamp_wall(entry.stamp) <= limit:
                self.clock.observe(entry.stamp)
        for entry in beyond:
            self.table.discard(entry.key)
            self._store(now, self._restamp(now, entry, deleted=entry.deleted))

    def probe_tick(self, now: float) -> None:
        # Recover a corrected clock within one probe period even if nothing is
        # written: until then peers keep refusing our future-stamped versions.
        self._check_clock(now)

    def _from_future(self, now: float, entry: Entry) -> bool:
        """Whether ``entry`` is stamped beyond the skew limit (counted if so)."""
        if stamp_wall(entry.stamp) <= now + self.wall_offset + self.config.limits.max_clock_skew:
            return False
        self.stats["entries_from_future"] += 1
        return True

    def _over_owner_limit(self, entry: Entry) -> bool:
        """Whether ``entry`` would take its owner past ``max_entries_per_owner``, or other
        owners past ``max_foreign_entries`` (counted).

        Deletions count as much as live entries (issue 10, finding 8). A version
        of a key the same owner already holds never grows anything.
        """
        stored = self.table.get(entry.key)
        if stored is not None and stored.owner == entry.owner:
            return False
        limits = self.config.limits
        if self.table.count_of(entry.owner) >= limits.max_entries_per_owner:
            self.stats["entries_over_limit"] += 1
            return True
        if (
            entry.owner != self.name
            and stored is None
            and self.table.foreign_count(self.name) >= limits.max_foreign_entries
        ):
            self.stats["entries_over_total"] += 1
            return True
        return False

    def entry_update(self, now: float, update: EntryUpdate, repeat: bool) -> bool:
        """Merge registry news; remembered once it passed the checks (accepted, or lost
        to the version we hold).

        A repeat of another owner's version is skipped while the table holds
        that version or a newer one: merging it again would change nothing (its
        stamp was observed the first time). One that has left the table since
        (fenced, discarded, a tombstone reaped) is merged again, checks and all,
        and so is any repeat of one of our own keys, whose merge may restore or
        supersede. What was refused (from the future, an owner out of reach,
        over a limit) is not remembered: its next copy is decoded and checked
        afresh.
        """
        entry = update.entry
        if repeat and entry.owner != self.name:
            stored = self.table.get(entry.key)
            if stored is not None and not entry.newer_than(stored):
                self.stats["entry_updates_repeated"] += 1
                return True
        if self._refuses(now, entry):
            return False
        self._merge_admitted(now, entry)
        return True

    def _refuses(self, now: float, entry: Entry) -> bool:
        """Whether a version from another node is refused for now (counted if so)."""
        return (
            self._from_future(now, entry)
            or not self.swim.plausible(entry.owner, entry.owner_incarnation)
            or self._over_owner_limit(entry)
        )

    def _merge_entry(self, now: float, entry: Entry, *, gossip: bool = True) -> bool:
        """Merge a version that came from another node; ``gossip``: queue it if news."""
        return not self._refuses(now, entry) and self._merge_admitted(now, entry, gossip=gossip)

    def _merge_admitted(self, now: float, entry: Entry, *, gossip: bool = True) -> bool:
        """Merge a version that passed ``_refuses``; ``gossip``: queue it if news."""
        self.clock.observe(entry.stamp)
        if entry.owner == self.name:
            self._restore(entry.key, now)
        if entry.owner == self.name and not entry.deleted:
            current = self.table.get(entry.key)
            if entry.newer_than(current):
                # A version from an earlier life of ours: we are the authority on our keys.
                self.stats["entries_superseded"] += 1
                if current is not None and not current.deleted:
                    entry = self._restamp(now, current, deleted=False)
                else:
                    entry = self._restamp(now, entry, deleted=True)
                return self._store(now, entry)  # a write of ours: always gossiped
        return self._store(now, entry, gossip=gossip)

    def _write(self, now: float, entry: Entry) -> None:
        """Store a write the local client asked for, gossip it, and queue its direct fan-out."""
        if not self._store(now, entry):
            return
        self._fanout.pop(entry.key, None)
        if len(self._fanout) >= FANOUT_BUFFER:
            self.stats["fanout_overflow"] += 1
            return
        self._fanout[entry.key] = encode_update(EntryUpdate(entry))

    def _on_fanout(self, now: float, _: str) -> None:
        """Up to ``FANOUT_PACKETS`` packets of our oldest fresh writes to each of up to
        ``fanout_nodes`` members."""
        self._fanout_armed = False
        self._last_fanout = now
        for _packet in range(FANOUT_PACKETS):
            batch: list[bytes] = []
            taken: list[EntryKey] = []
            room = self._entry_budget
            for key, data in self._fanout.items():
                if len(data) > room:
                    break
                batch.append(data)
                taken.append(key)
                room -= len(data)
            if not batch:
                return
            for key in taken:
                del self._fanout[key]
            self.swim.tell_directly(batch, self.config.fanout_nodes)
            self.stats["fanout_writes"] += len(batch)

    def _store(self, now: float, entry: Entry, *, gossip: bool = True) -> bool:
        """Keep ``entry`` if it wins, tell observers, and queue it for gossip if asked."""
        if self._versions is not None:
            entry = self._versions.setdefault(entry, entry)  # hashed by its digest: O(1)
        accepted, previous = self.table.merge(entry)
        if not accepted:
            return False
        old = previous if previous is not None and not previous.deleted else None
        new = None if entry.deleted else entry
        if new is not None:
            self.preservation.entry_replaced(new)
        elif old is not None:
            self.preservation.entry_removed(old)
        if old is not None or new is not None:
            self.swim.emit(Notify(EntryChanged(old, new)))
        if gossip:
            self.swim.broadcast(("e", *entry.key), encode_update(EntryUpdate(entry)), rank=REGISTRY)
        return True

    def member_changed(self, now: float, record: MemberRecord, old: MemberRecord | None) -> None:
        self._preservation_member(now, record, old)
        if record.state in _GONE:
            # It may have lived on at incarnations we never heard of: fence them all.
            level = MAX_INCARNATION
        elif old is not None and old.state in _GONE:
            # Back from the dead at a new incarnation: it re-asserts all it holds
            # under it, and what it wrote below stays out.
            level = record.incarnation - 1
        elif old is None and self.table.is_fenced(record.name):
            # A stranger whose entries we expired (or a reaped member) joined:
            # what it writes from now on counts.
            level = record.incarnation - 1
        else:
            return
        # The fence holds at once; the entries it covers go a chunk at a time.
        doomed = self.table.set_fence(record.name, level, now + self.wall_offset, remove=False)
        if doomed:
            self._merges.appendleft(_MergeJob(doomed, None, kind=_FENCE))
            self._merge_some(now)

    # ------------------------------------------------------ self-preservation

    def _preservation_member(
        self, now: float, record: MemberRecord, old: MemberRecord | None
    ) -> None:
        """Deaths (of alive or suspect members: not leaves, not old news) and returns."""
        previous = None if old is None else old.state
        if record.state is MemberState.DEAD:
            if previous in ACTIVE_STATES:
                self.preservation.member_died(now, record.name)
                self._preservation_due = True
        elif previous is MemberState.DEAD:
            self._stale_changed += self.preservation.member_returned(record.name)
            self._preservation_due = True

    def _judge_preservation(self, now: float) -> None:
        """Start or end a preservation; a burst of deaths in one batch is judged as one."""
        was = self.preservation.active
        self._stale_changed += self.preservation.evaluate(now, self.members.active_count)
        if self.preservation.active and not was:
            self.swim.arm(TimerKind.PRESERVATION, self.preservation.deadline)
        elif was and not self.preservation.active:
            self.swim.disarm(TimerKind.PRESERVATION)

    def _on_preservation_deadline(self, now: float, _: str) -> None:
        self._judge_preservation(now)

    def before_drain(self, now: float) -> None:
        if self._preservation_due:
            self._preservation_due = False
            self._judge_preservation(now)
        if self._stale_changed:
            changed, self._stale_changed = self._stale_changed, []
            self.swim.emit(Notify(StaleChanged(tuple(changed), self.preservation.active)))
        if self._fanout and not self._fanout_armed:
            self._fanout_armed = True
            at = max(now, self._last_fanout + self.config.fanout_interval)
            self.swim.arm(TimerKind.FANOUT, at)

    def refuted(self, now: float, accusation: MemberState) -> None:
        # Peers fence a dead member's entries at the incarnation they saw die.
        # A suspicion we refuted may still turn into a death at the old
        # incarnation elsewhere, and we may never hear of it: so every time our
        # incarnation rises, our entries move up with it. A chunk at a time (a
        # node may own tens of thousands), and ahead of any merge under way:
        # a peer that had us dead refuses what we wrote below it.
        mine = self.table.owned_copy(self.name)
        self._merges.appendleft(_MergeJob(mine, None, kind=_REASSERT))
        self._merge_some(now)

    def _refresh_alive(self) -> None:
        self.swim.broadcast(("m", self.name), self._alive_update())

    def _alive_update(self) -> bytes:
        """Our ``Alive`` at our current incarnation, encoded for a packet."""
        return encode_update(Alive(self.name, self.addr, self.incarnation, self.meta))

    # ------------------------------------------------------- anti-entropy

    def _sync_period(self) -> float:
        return self.config.push_pull_period(self.members.active_count)

    def _on_sync_tick(self, now: float, _: str) -> None:
        self.swim.arm(TimerKind.SYNC, now + self._sync_period())
        peers = self.members.sample(1)
        if peers:
            self._sync_with(self.members.addr_of(peers[0]))

    def _on_reconnect_tick(self, now: float, _: str) -> None:
        self.swim.arm(TimerKind.RECONNECT, now + self.config.reconnect_interval)
        dead = [
            r
            for name in self.members.failed()
            if (r := self.members.get(name)) is not None and r.state is MemberState.DEAD
        ]
        if dead:
            self.stats["reconnect_attempts"] += 1
            self._sync_with(self.rng.choice(dead).addr)

    def _on_reap_tick(self, now: float, _: str) -> None:
        self.swim.arm(TimerKind.REAP, now + self.config.reap_interval)
        horizon = self.config.tombstone_horizon
        self.stats["tombstones_collected"] += self.table.collect(now + self.wall_offset, horizon)
        for name in self.members.failed():
            since = self.members.since(name)
            if since is not None and now - since > horizon:
                self.members.remove(name)
                self.stats["members_reaped"] += 1
        self._expire_orphans(now)

    def _expire_orphans(self, now: float) -> None:
        """Fence the entries of owners that are not members once the grace has passed.

        Nothing else would ever remove them: fences follow membership, and the
        API lets only the owner delete (issue 10, finding 8). The fence is
        renewed on every reap while the owner stays a stranger, and lifted when
        it becomes a member (``member_changed``). Scans the owners, once a
        reap interval, like ``collect`` scans the tombstones.
        """
        grace = self.config.limits.orphan_entry_grace
        seen, self._orphans = self._orphans, {}
        for owner in self.table.owners():
            if owner == self.name or self.members.get(owner) is not None:
                continue
            since = self._orphans[owner] = seen.get(owner, now)
            if now - since >= grace:
                removed = self.table.fence(owner, MAX_INCARNATION, now + self.wall_offset)
                for entry in removed:
                    self.swim.emit(Notify(EntryChanged(entry, None, fenced=True)))
                self.stats["orphan_entries_expired"] += len(removed)

    def suspect_answered(self, now: float, target: MemberRecord) -> None:
        """Push-pull with it: its reply carries its own record at its current incarnation."""
        self._sync_with(target.addr)

    def _sync_with(self, addr: Address, done: Callable[[float, bool], None] | None = None) -> None:
        """Start a push-pull with ``addr``; ``done(now, answered)`` once it has ended."""
        self.stats["syncs_started"] += 1
        hello = SyncHello(self.members.me, self.members.digest, self.table.bucket_digests())

        def on_reply(now: float, message: StreamMessage | None) -> None:
            answered = self._on_sync_reply(now, addr, message)
            if done is not None:
                done(now, answered)

        self.swim.stream(addr, encode_stream(hello), on_reply)

    def stream_message(self, now: float, src: Address, message: StreamMessage) -> bytes | None:
        if isinstance(message, SyncHello):
            return self._on_sync_hello(now, message)
        if isinstance(message, SyncMore):
            return self._on_sync_more(message)
        if isinstance(message, SyncFinish):
            self._merge_state(now, message.members, message.entries)
            return None
        self.stats["unexpected_stream_messages"] += 1
        return None

    def _on_sync_hello(self, now: float, hello: SyncHello) -> bytes:
        self.stats["syncs_answered"] += 1
        self.swim.merge_records(now, [hello.sender])
        differs = hello.members_digest != self.members.digest
        members = self._member_page(0) if differs else (None, 0)
        ours = self.table.bucket_digests()
        if len(hello.buckets) != len(ours):
            # Configured with other ``registry_buckets`` (or forged): the buckets
            # cannot be compared, and the whole table in one frame would block
            # both sides for seconds at 100,000 entries. Members only.
            self.stats["sync_bucket_count_mismatch"] += 1
            return encode_stream(SyncReply(members[0], differs, (), (), 0, members[1]))
        return self._sync_page(members, differs, 0, hello.buckets, ours)

    def _on_sync_more(self, more: SyncMore) -> bytes | None:
        ours = self.table.bucket_digests()
        if more.buckets and more.start + len(more.buckets) != len(ours):
            self.stats["sync_pages_refused"] += 1
            return None
        self.stats["sync_pages_answered"] += 1
        members = self._member_page(more.members_from) if more.members_from else (None, 0)
        start = more.start if more.buckets else len(ours)  # no buckets: no entries
        return self._sync_page(members, False, start, more.buckets, ours)

    def _member_page(self, start: int) -> tuple[tuple[MemberRecord, ...], int]:
        """Our member records from position ``start``, a page of them (``MEMBER_PAGE_SHARE``);
        the position of the first one left out, 0 if none was.

        Positions are in the member table's order, which only a reap or a
        ``max_members`` eviction reorders: a record skipped meanwhile is in
        the next sync's list. The first record always goes, so a page moves on.
        """
        budget = self.config.max_stream_bytes // MEMBER_PAGE_SHARE
        page: list[MemberRecord] = []
        used = 0
        for position, record in enumerate(islice(self.members, start, None), start):
            used += record_size(record)
            if page and used > budget:
                return tuple(page), position
            page.append(record)
        return tuple(page), 0

    def _sync_page(
        self,
        members: tuple[tuple[MemberRecord, ...] | None, int],
        want_members: bool,
        start: int,
        theirs: Sequence[int],
        ours: Sequence[int],
    ) -> bytes:
        """A reply with ``members`` (a page and where it stopped) and our entries in the
        differing buckets from ``start``, one page of them."""
        page: list[int] = []
        count = resume = 0
        for bucket in range(start, len(ours)):
            if theirs[bucket - start] == ours[bucket]:
                continue
            size = self.table.bucket_size(bucket)
            if page and count + size > SYNC_PAGE_ENTRIES:
                resume = bucket
                break
            page.append(bucket)
            count += size
        entries = tuple(self.table.entries_in(page))
        records, members_resume = members
        reply = SyncReply(records, want_members, tuple(page), entries, resume, members_resume)
        return encode_stream(reply)

    def _on_sync_reply(
        self, now: float, addr: Address, message: StreamMessage | None, at: _Pages | None = None
    ) -> bool:
        """Take a reply (page) from ``addr`` to a hello (``at`` None) or to a ``SyncMore``.

        Merges it (in chunks), sends back what the peer lacks (and a page of
        our members if it wants them) and asks for the next page; returns
        whether the peer answered.
        """
        if not isinstance(message, SyncReply):
            self.stats["syncs_failed"] += 1
            return False
        first, at = at is None, at or _Pages()
        count = self.table.buckets
        theirs = message.members_resume
        if (
            message.resume >= count
            or any(b >= count for b in message.buckets)
            or (theirs and not at.theirs < theirs <= self.config.limits.max_members)
        ):
            # Valid on the wire but not ours, or a member page that does not move
            # on: a peer's bug or a forgery.
            self.stats["syncs_failed"] += 1
            self.stats["sync_replies_out_of_range"] += 1
            return False
        self.stats["syncs_completed" if first else "sync_pages"] += 1
        if message.members is not None:
            self.swim.merge_records(now, message.members)
        lacking, cut = self._lacking(message)
        if first and message.want_members:
            at.ours = 0
        members = None
        if at.ours is not None:
            members, ours = self._member_page(at.ours)
            at.ours = ours or None
        if members is not None or lacking:
            finish = encode_stream(SyncFinish(members, lacking))
            self.stats["stream_out"] += 1
            self.swim.emit(StreamSend(addr, finish))
        resume = message.resume if cut is None else cut
        entries = resume > at.bucket  # strictly onwards, so a sync ends within ``buckets`` pages
        if entries or theirs or at.ours is not None:
            # Each page moves a position on: a bucket, the peer's members (checked
            # above, up to ``max_members``) or ours (a page holds at least one).
            differed = at.differed or bool(message.buckets)
            following = _Pages(resume if entries else count, theirs, at.ours, differed)

            def on_page(now: float, page: StreamMessage | None) -> None:
                self._on_sync_reply(now, addr, page, following)

            def then(now: float) -> None:
                digests = self.table.bucket_digests()[resume:] if entries else ()
                more = SyncMore(resume if entries else 0, tuple(digests), theirs)
                self.swim.stream(addr, encode_stream(more), on_page)

        else:
            # No page named a bucket: every bucket digest matched ours.
            agreed = not (at.differed or message.buckets)

            def then(now: float) -> None:  # the last page is merged: we hold their state
                self.swim.emit(Notify(Synced(addr, agreed)))

        self._merge_state(now, None, message.entries, then)
        return True

    def _lacking(self, page: SyncReply) -> tuple[tuple[Entry, ...], int | None]:
        """What the peer lacks in ``page``'s buckets, at most a page of it; where we stopped.

        The responder bounds a page by its own buckets, so a peer that holds
        little (a fresh or restarted node) sends every bucket at once, and all
        we hold would go back in one finish: 0.8 s to encode and as long to
        decode at 100,000 entries. So whole buckets up to ``SYNC_PAGE_ENTRIES``
        (one bucket if it alone holds more); the bucket we stopped at is where
        the next page starts, None if we sent all the page asks for.
        """
        theirs = {e.key: e for e in page.entries}
        lacking: list[Entry] = []
        for bucket in page.buckets:
            news = [
                e
                for e in self.table.entries_in((bucket,))
                if (t := theirs.get(e.key)) is None or e.newer_than(t)
            ]
            if lacking and len(lacking) + len(news) > SYNC_PAGE_ENTRIES:
                return tuple(lacking), bucket
            lacking += news
        return tuple(lacking), None

    def _merge_state(
        self,
        now: float,
        members: Sequence[MemberRecord] | None,
        entries: Sequence[Entry],
        then: Callable[[float], None] | None = None,
    ) -> None:
        """Merge ``members`` now and queue ``entries``, merged a chunk at a time."""
        if members is not None:
            self.swim.merge_records(now, members)
        self._merges.append(_MergeJob(entries, then))
        self._queued_for_merge += len(entries)
        self._merge_some(now)

    def _merge_some(self, now: float) -> None:
        """Merge up to ``MERGE_CHUNK`` queued entries; arm ``MERGE`` at ``now`` if more wait.

        Per entry O(1) (plus the table's index upkeep), so a step stays short
        whatever the table size.
        """
        budget = MERGE_CHUNK
        while self._merges and budget:
            job = self._merges[0]
            end = min(len(job.entries), job.done + budget)
            for entry in job.entries[job.done : end]:
                if job.kind == _RESTORE:
                    self._restore(entry.key, now)
                    continue
                if job.kind == _REASSERT:
                    if not entry.deleted and self.table.get(entry.key) is entry:  # unchanged
                        self._store(now, self._restamp(now, entry, deleted=False))
                    continue
                if job.kind == _FENCE:
                    if self.table.drop_fenced(entry):
                        self.preservation.entry_removed(entry)
                        self.swim.emit(Notify(EntryChanged(entry, None, fenced=True)))
                        self.stats["entries_fenced"] += 1
                    continue
                gossip = job.repaired < REGOSSIP_PER_SYNC
                if self._merge_entry(now, entry, gossip=gossip):
                    job.repaired += 1
                    self.stats["entries_repaired"] += 1
                    self.stats["repairs_not_regossiped"] += not gossip
            budget -= end - job.done
            job.done = end
            if job.done == len(job.entries):
                self._merges.popleft()
                if job.then is not None:
                    job.then(now)
        if self._merges:
            self.swim.arm(TimerKind.MERGE, now)
