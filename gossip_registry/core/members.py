"""The member table and SWIM's precedence rules.

Theory of operation: each member is a ``MemberRecord`` (name, address,
incarnation, state, metadata). Records are immutable and replaced on every
change, so a simulator can share one set of records between thousands of
tables. Which message wins is decided here and only here (SWIM section 4.2,
memberlist ``state.go``):

- only a member raises its own incarnation; a higher incarnation always wins;
- at equal incarnation, suspect beats alive, dead beats suspect, and left
  (a graceful leave) beats everything: an accusation can only be answered by
  the accused with a higher incarnation (a refutation); news about a member
  we do not know counts only if it is alive;
- dead and left members stay as tombstones until the horizon, so a restarted
  node under the same name must come back above the incarnation it died at.

The table also keeps a "ring": the names of members worth probing (alive or
suspect, never ourselves) in a shuffled order. It is the SWIM round-robin
probe order (section 4.3: reshuffled on each wrap, newcomers inserted at a
random position ahead of the cursor) and the pool peers are sampled from.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from gossip_registry.core.messages import ACTIVE_STATES, Address, MemberRecord, MemberState


def record_digest(record: MemberRecord) -> int:
    blob = f"{record.name}\x00{record.incarnation}\x00{int(record.state)}".encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")


def wins(incoming: MemberState, incarnation: int, current: MemberRecord | None) -> bool:
    """Does news of ``incoming`` at ``incarnation`` change what we hold?

    A higher incarnation always wins; at equal incarnation the later state
    does (suspect over alive, dead over suspect, left over all). News about an
    unknown member counts only if it is alive.

    Unlike memberlist, a dead member's record still moves to a higher
    incarnation (suspect or dead): registry fences are keyed by the
    incarnation a member died at, so every node must end up agreeing on it.
    """
    if current is None:
        return incoming is MemberState.ALIVE
    if incarnation != current.incarnation:
        return incarnation > current.incarnation
    return incoming > current.state


@dataclass(frozen=True, slots=True)
class MemberSeed:
    """A whole membership prepared once and shared by many tables (simulator bootstrap).

    Tables read it copy-on-write, so ten thousand simulated nodes that all know
    ten thousand members hold one copy of the records, not ten thousand.
    """

    records: Mapping[str, MemberRecord]
    digest: int
    active: tuple[str, ...]
    by_addr: Mapping[Address, str]
    """Active members by address (``MemberTable.name_at``)."""

    @classmethod
    def build(cls, records: Iterable[MemberRecord]) -> MemberSeed:
        by_name = {r.name: r for r in records}
        digest = 0
        for record in by_name.values():
            digest ^= record_digest(record)
        active = tuple(n for n, r in by_name.items() if r.state in ACTIVE_STATES)
        return cls(by_name, digest, active, {by_name[n].addr: n for n in active})


class _Round:
    """Names walked in a shuffled order, reshuffled on each wrap (SWIM section 4.3).

    A newcomer goes in at a random position not yet passed in this round, so
    it is reached within the round; a removed name leaves the cursor on the
    same next name.
    """

    __slots__ = ("names", "pos", "rng")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names: list[str] = []
        self.pos = 0

    def reset(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.pos = self.rng.randrange(len(self.names)) if self.names else 0

    def next(self) -> str | None:
        names = self.names
        if not names:
            return None
        if self.pos >= len(names):
            self.rng.shuffle(names)
            self.pos = 0
        name = names[self.pos]
        self.pos += 1
        return name

    def insert(self, name: str) -> None:
        at = self.rng.randint(min(self.pos, len(self.names)), len(self.names))
        self.names.insert(at, name)

    def remove(self, name: str) -> None:
        at = self.names.index(name)
        del self.names[at]
        if at < self.pos:
            self.pos -= 1


class MemberTable:
    """Members by name: a shared read-only base (possibly empty) plus our own changes."""

    __slots__ = (
        "_base",
        "_base_by_addr",
        "_by_addr",
        "_digest",
        "_gone",
        "_gossip",
        "_len",
        "_own",
        "_probes",
        "_rng",
        "_since",
        "self_name",
    )

    def __init__(self, self_record: MemberRecord, rng: random.Random) -> None:
        self.self_name = self_record.name
        self._rng = rng
        self._base: Mapping[str, MemberRecord] = {}
        self._base_by_addr: Mapping[Address, str] = {}
        self._by_addr: dict[Address, str] = {}
        """Where our own changes put active members; checked against the record on lookup."""
        self._own: dict[str, MemberRecord] = {self_record.name: self_record}
        self._gone: set[str] = set()
        """Names in ``_base`` that we removed."""
        self._len = 1
        self._since: dict[str, float] = {}
        """When a member became dead or left; only those are kept here."""
        self._probes = _Round(rng)
        """The ring: active members but ourselves, in probe order."""
        self._gossip = _Round(rng)
        """The same members in a walk of their own, for gossip targets."""
        self._digest = record_digest(self_record)

    # reads

    def get(self, name: str) -> MemberRecord | None:
        record = self._own.get(name)
        if record is not None or name in self._gone:
            return record
        return self._base.get(name)

    def __iter__(self) -> Iterator[MemberRecord]:
        own, gone = self._own, self._gone
        yield from own.values()
        for name, record in self._base.items():
            if name not in own and name not in gone:
                yield record

    def __len__(self) -> int:
        return self._len

    @property
    def me(self) -> MemberRecord:
        return self._own[self.self_name]

    @property
    def active_count(self) -> int:
        """Alive and suspect members, ourselves included: the N in the scaling formulas."""
        return len(self._probes.names) + 1

    @property
    def digest(self) -> int:
        """XOR of (name, incarnation, state) hashes: equal tables, equal digests."""
        return self._digest

    def name_at(self, addr: Address) -> str | None:
        """The active member (not ourselves) at ``addr``, if we know one; O(1).

        Two members on one address (a node restarted under a new name) are
        told apart by their records: only an active one is returned.
        """
        for name in (self._by_addr.get(addr), self._base_by_addr.get(addr)):
            if name is not None and name != self.self_name:
                record = self.get(name)
                if record is not None and record.addr == addr and record.state in ACTIVE_STATES:
                    return name
        return None

    def since(self, name: str) -> float | None:
        return self._since.get(name)

    def failed(self) -> list[str]:
        return list(self._since)

    # writes

    def seed(self, seed: MemberSeed) -> None:
        """Adopt a prepared membership at once; our own record stays ours."""
        me = self.me
        self._base = seed.records
        self._base_by_addr = seed.by_addr
        self._by_addr = {}
        self._own = {me.name: me}
        self._gone = set()
        self._since = {}
        self._digest = seed.digest ^ record_digest(me)
        shared_me = seed.records.get(me.name)
        self._len = len(seed.records) + (0 if shared_me is not None else 1)
        if shared_me is not None:
            self._digest ^= record_digest(shared_me)
        active = list(seed.active)
        if shared_me is not None and shared_me.state in ACTIVE_STATES:
            active.remove(me.name)
        self._probes.reset(active)
        self._gossip.reset(active)

    def put(self, record: MemberRecord, now: float) -> MemberRecord | None:
        """Store ``record`` unconditionally (callers decided with ``wins``); returns the old one."""
        old = self.get(record.name)
        self._own[record.name] = record
        self._gone.discard(record.name)
        if old is None:
            self._len += 1
        else:
            self._digest ^= record_digest(old)
        self._digest ^= record_digest(record)
        if record.name == self.self_name:
            return old
        self._index_addr(old, record)
        was_active = old is not None and old.state in ACTIVE_STATES
        is_active = record.state in ACTIVE_STATES
        if is_active:
            self._since.pop(record.name, None)
            if not was_active:
                self._gossip.insert(record.name)
                self._probes.insert(record.name)
        else:
            if old is None or old.state != record.state:
                self._since[record.name] = now
            if was_active:
                self._gossip.remove(record.name)
                self._probes.remove(record.name)
        return old

    def remove(self, name: str) -> None:
        """Forget a dead or left member for good (past the horizon)."""
        old = self.get(name)
        if old is None or name == self.self_name:
            return
        self._own.pop(name, None)
        if name in self._base:
            self._gone.add(name)
        self._len -= 1
        self._digest ^= record_digest(old)
        self._index_addr(old, None)
        self._since.pop(name, None)
        if old.state in ACTIVE_STATES:
            self._gossip.remove(name)
            self._probes.remove(name)

    # probing and sampling

    def next_probe_target(self) -> str | None:
        """The next member in round-robin order; reshuffles when the order wraps."""
        return self._probes.next()

    def gossip_targets(self, k: int) -> list[str]:
        """The next ``k`` distinct members of a round-robin walk of their own.

        A node sends each update only ``retransmit_limit(n)`` times. Drawn at
        random, those sends can all miss one member: with 8 nodes (4 sends
        each to 6 peers) about 1 leave in 50 was heard by a peer only at the
        next push-pull, 30 s later (issue 12). Walked in turn, consecutive
        packets go to distinct members, so a node's sends of one update reach
        min(limit, n - 1) of them, and a cluster of up to limit + 1 nodes
        hears every update from each node that holds it.
        """
        walk = self._gossip
        picked: list[str] = []
        # A wrap reshuffles, and may bring back a name this call already
        # took: skip it. One more lap than k always finds k distinct names.
        for _ in range(min(k, len(walk.names)) + len(walk.names)):
            if len(picked) == k:
                break
            name = walk.next()
            if name is not None and name not in picked:
                picked.append(name)
        return picked

    def sample(self, k: int, exclude: str | None = None) -> list[str]:
        """Up to ``k`` distinct random active members, never ourselves or ``exclude``."""
        ring = self._probes.names
        excluded = self.get(exclude) if exclude is not None else None
        in_ring = (
            excluded is not None and excluded.state in ACTIVE_STATES and exclude != self.self_name
        )
        pool = len(ring) - (1 if in_ring else 0)
        if pool <= 0 or k <= 0:
            return []
        if pool <= 2 * k:
            names = [n for n in ring if n != exclude]
            self._rng.shuffle(names)
            return names[:k]
        picked: list[str] = []
        while len(picked) < k:
            name = ring[self._rng.randrange(len(ring))]
            if name != exclude and name not in picked:
                picked.append(name)
        return picked

    def addr_of(self, name: str) -> Address:
        record = self.get(name)
        assert record is not None, name
        return record.addr

    def _index_addr(self, old: MemberRecord | None, new: MemberRecord | None) -> None:
        """Keep ``_by_addr`` to one entry per member we changed, so it never outgrows the table."""
        if old is not None and self._by_addr.get(old.addr) == old.name:
            del self._by_addr[old.addr]
        if new is not None and new.state in ACTIVE_STATES:
            self._by_addr[new.addr] = new.name
