"""The member table and SWIM's precedence rules.

Theory of operation: each member is a ``MemberRecord`` (name, address,
incarnation, state, metadata). Records are immutable and replaced on every
change, so a simulator can share one set of records between thousands of
tables. Which message wins is decided here and only here (SWIM section 4.2,
memberlist ``state.go``):

- only a member raises its own incarnation; a higher incarnation always wins;
- at equal incarnation, suspect beats alive, dead beats suspect, and left
  (a graceful leave) beats everything: an accusation can only be answered by
  the accused with a higher incarnation (a refutation);
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
from collections.abc import Iterator, Mapping

from gossip_registry.core.messages import Address, MemberRecord, MemberState

_ACTIVE = (MemberState.ALIVE, MemberState.SUSPECT)


def record_digest(record: MemberRecord) -> int:
    blob = f"{record.name}\x00{record.incarnation}\x00{int(record.state)}".encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")


def wins(incoming: MemberState, incarnation: int, current: MemberRecord | None) -> bool:
    """Does news of ``incoming`` at ``incarnation`` change what we hold? (memberlist rules)

    Alive needs a higher incarnation than anything held. Suspect applies only to
    an alive member, dead only to an alive or suspect one, left to anything not
    already left, each at an incarnation at least the one held. News about an
    unknown member counts only if it is alive.
    """
    if current is None:
        return incoming is MemberState.ALIVE
    if incoming is MemberState.ALIVE:
        return incarnation > current.incarnation
    if incarnation < current.incarnation:
        return False
    if incoming is MemberState.SUSPECT:
        return current.state is MemberState.ALIVE
    if incoming is MemberState.DEAD:
        return current.state in _ACTIVE
    return current.state is not MemberState.LEFT


class MemberTable:
    __slots__ = ("_digest", "_members", "_ring", "_ring_pos", "_rng", "_since", "self_name")

    def __init__(self, self_record: MemberRecord, rng: random.Random) -> None:
        self.self_name = self_record.name
        self._rng = rng
        self._members: dict[str, MemberRecord] = {self_record.name: self_record}
        self._since: dict[str, float] = {}
        """When a member became dead or left; only those are kept here."""
        self._ring: list[str] = []
        self._ring_pos = 0
        self._digest = record_digest(self_record)

    # reads

    def get(self, name: str) -> MemberRecord | None:
        return self._members.get(name)

    def __iter__(self) -> Iterator[MemberRecord]:
        return iter(self._members.values())

    def __len__(self) -> int:
        return len(self._members)

    @property
    def me(self) -> MemberRecord:
        return self._members[self.self_name]

    @property
    def active_count(self) -> int:
        """Alive and suspect members, ourselves included: the N in the scaling formulas."""
        return len(self._ring) + 1

    @property
    def digest(self) -> int:
        """XOR of (name, incarnation, state) hashes: equal tables, equal digests."""
        return self._digest

    def since(self, name: str) -> float | None:
        return self._since.get(name)

    def failed(self) -> list[str]:
        return list(self._since)

    # writes

    def seed(self, records: Mapping[str, MemberRecord]) -> None:
        """Adopt a whole membership at once (simulator bootstrap); shares the records."""
        me = self.me
        self._members = dict(records)
        self._members[me.name] = me
        self._since = {}
        self._ring = [n for n, r in self._members.items() if r.state in _ACTIVE and n != me.name]
        self._ring_pos = self._rng.randrange(len(self._ring)) if self._ring else 0
        digest = 0
        for record in self._members.values():
            digest ^= record_digest(record)
        self._digest = digest

    def put(self, record: MemberRecord, now: float) -> MemberRecord | None:
        """Store ``record`` unconditionally (callers decided with ``wins``); returns the old one."""
        old = self._members.get(record.name)
        self._members[record.name] = record
        if old is not None:
            self._digest ^= record_digest(old)
        self._digest ^= record_digest(record)
        if record.name == self.self_name:
            return old
        was_active = old is not None and old.state in _ACTIVE
        is_active = record.state in _ACTIVE
        if is_active:
            self._since.pop(record.name, None)
            if not was_active:
                self._ring_insert(record.name)
        else:
            if old is None or old.state != record.state:
                self._since[record.name] = now
            if was_active:
                self._ring_remove(record.name)
        return old

    def remove(self, name: str) -> None:
        """Forget a dead or left member for good (past the horizon)."""
        old = self._members.pop(name, None)
        if old is None:
            return
        self._digest ^= record_digest(old)
        self._since.pop(name, None)
        if old.state in _ACTIVE:
            self._ring_remove(name)

    # probing and sampling

    def next_probe_target(self) -> str | None:
        """The next member in round-robin order; reshuffles when the order wraps."""
        ring = self._ring
        if not ring:
            return None
        if self._ring_pos >= len(ring):
            self._rng.shuffle(ring)
            self._ring_pos = 0
        name = ring[self._ring_pos]
        self._ring_pos += 1
        return name

    def sample(self, k: int, exclude: str | None = None) -> list[str]:
        """Up to ``k`` distinct random active members, never ourselves or ``exclude``."""
        ring = self._ring
        excluded = self._members.get(exclude) if exclude is not None else None
        in_ring = excluded is not None and excluded.state in _ACTIVE and exclude != self.self_name
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
        return self._members[name].addr

    def _ring_insert(self, name: str) -> None:
        # SWIM 4.3: a random position not yet passed in this round.
        at = self._rng.randint(min(self._ring_pos, len(self._ring)), len(self._ring))
        self._ring.insert(at, name)

    def _ring_remove(self, name: str) -> None:
        at = self._ring.index(name)
        del self._ring[at]
        if at < self._ring_pos:
            self._ring_pos -= 1
