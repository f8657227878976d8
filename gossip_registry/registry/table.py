"""The replicated registry table: last-writer-wins merge, fences, tombstone GC, digests.

Theory of operation: every node holds the whole registry, one stored version
per key (service, instance_id). Versions arrive by gossip in any order, late,
duplicated or not at all, and ``merge`` is the only way in. It keeps a version
iff it is strictly newer than the stored one under ``Entry.order`` (stamp,
owner, content digest): a total order, so the merge is commutative,
associative and idempotent and replicas that have seen the same versions hold
the same table whatever the delivery order (a state-based LWW-register map
CRDT; Shapiro et al., "Conflict-free Replicated Data Types", 2011). Deletion
is a version too (a tombstone) so that it beats older live copies still in
flight.

Two rules narrow the merge, both about versions that must not come back:

- Fences. When membership declares owner X dead or left at incarnation i,
  ``fence(X, i, now)`` drops every live version X wrote at incarnation <= i
  and rejects such live versions from then on; a live X re-asserts what it
  still holds under a higher incarnation. X's tombstones are kept and still
  accepted, so its deletions win if X turns out alive, and so every replica
  ends up holding the same deletions whenever it raised its fence (see the
  bucket digests below). ``fence`` only raises a fence; ``set_fence`` moves
  it either way.
- GC floors. Tombstones cannot be kept forever. ``collect(now, horizon)``
  drops tombstones older than ``horizon`` and remembers, per owner, the
  highest stamp it dropped. A version for a key the table no longer holds,
  from an owner with a floor, at or below that floor, can only be an old
  version the dropped tombstone used to beat, so it is rejected. Versions for
  keys the table does hold are judged by plain LWW.

Both are forgotten after ``horizon`` (fences ``horizon`` after fencing, floors
``horizon`` after they last rose), so memory stays bounded. The price: a
stale version that surfaces later than that (a node partitioned away for
longer than ``horizon`` rejoining with old state) is accepted again. The
horizon must therefore exceed the longest partition the cluster is meant to
heal from, and anti-entropy must deliver every live version everywhere well
within it.

Anti-entropy support: the table is split into ``buckets`` by a hash of the key
that is stable across processes (blake2b, never Python's salted ``hash``).
Each bucket keeps the XOR of the digests of every version it stores,
tombstones included; peers compare the bucket digests, then exchange only
the entries of buckets that differ. Tombstones must count there: a replica
that holds neither version of a deleted key (it restarted, was paused, or
the gossip missed it) would otherwise look the same as one holding the
tombstone, get nothing from it, and take the stale live copy of the one
peer that missed the deletion, showing the instance again (the chaos
suite's ``rolling-restart`` found this). The cost: a tombstone one replica
has collected and another not yet keeps their bucket different (re-sent,
refused by the GC floor) until the other collects it too, within one reap
interval plus clock skew. The whole-table ``digest`` covers live entries
only: it says whether two replicas answer queries the same.
XOR is order-independent, so two tables with the same versions have the
same digests however they got there, and each change updates them in O(1).

Rules: pure. No time, sockets, trio or global random; ``now`` is passed in.
Imports nothing from the package outside ``registry``. All indexes are
maintained on write so that merge, get, live and bucket reads never scan the
table (it is meant to stay cheap at 100,000 entries); ``collect`` scans only
the tombstones and ``fence`` only the fenced owner's entries.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator

from gossip_registry.registry.clock import stamp_wall
from gossip_registry.registry.entry import Entry, EntryKey


def _check_time(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative number of seconds: {value!r}")


class RegistryTable:
    """One replica of the registry.

    Entries are frozen and stored as given; every read returns the stored
    objects themselves.
    """

    def __init__(self, buckets: int = 256) -> None:
        """Create an empty table.

        Args:
            buckets: number of anti-entropy buckets. Every node of a cluster
                must use the same value, or bucket digests cannot be compared.
                More buckets make each repair exchange smaller and each digest
                message larger.

        Raises:
            ValueError: ``buckets`` is less than 1.
        """
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1: {buckets!r}")
        self._buckets = buckets
        self._entries: dict[EntryKey, Entry] = {}
        # Live entries only: service -> instance_id -> entry. A service is
        # present iff it has at least one live instance.
        self._live: dict[str, dict[str, Entry]] = {}
        # live()'s sorted answer per service, until the service's next change: reads
        # (discovery) far outnumber writes, and sorting on every read cost most of one.
        self._live_sorted: dict[str, list[Entry]] = {}
        # Live entries only: instance_id -> the service it is live in, or the services (an
        # insertion-ordered dict, rarely) if several: deregistration by id finds its key
        # without scanning. A plain string in the common case, so the index costs a dict
        # slot per instance; a dict, not a tuple, for several, so a peer that writes one id
        # into thousands of services costs O(1) per write, not a copy of all of them.
        self._services_by_id: dict[str, str | dict[str, None]] = {}
        # Stored entries (live and tombstones) per owner, for fence and owned_by.
        self._by_owner: dict[str, dict[EntryKey, Entry]] = {}
        # Stored entries per bucket, for entries_in.
        self._bucket_entries: list[dict[EntryKey, Entry]] = [{} for _ in range(buckets)]
        self._bucket_digests: list[int] = [0] * buckets
        self._tombstones: dict[EntryKey, Entry] = {}
        # owner -> number of its live entries (for the per-owner limit); absent when 0.
        self._live_per_owner: dict[str, int] = {}
        self._digest = 0
        self.versions_stored = 0
        """Versions stored since creation (new keys and replacements): the heap governor's clock."""
        # owner -> (highest fenced incarnation, time it was last fenced)
        self._fences: dict[str, tuple[int, float]] = {}
        # owner -> (highest collected tombstone stamp, time the floor last rose)
        self._floors: dict[str, tuple[int, float]] = {}

    # ------------------------------------------------------------------ reads

    @property
    def buckets(self) -> int:
        """Number of anti-entropy buckets (fixed at construction)."""
        return self._buckets

    def get(self, key: EntryKey) -> Entry | None:
        """The stored version of ``key``, tombstones included; None if none is held."""
        return self._entries.get(key)

    def live(self, service: str) -> list[Entry]:
        """Live instances of ``service``, sorted by instance_id (stable output for callers)."""
        ordered = self._live_sorted.get(service)
        if ordered is None:
            instances = self._live.get(service)
            if not instances:
                return []
            ordered = self._live_sorted[service] = [instances[i] for i in sorted(instances)]
        return list(ordered)  # a copy: the caller may change its list

    def has_live(self, service: str) -> bool:
        """Whether ``service`` has a live instance, in O(1)."""
        return service in self._live

    def services_with_id(self, instance_id: str) -> tuple[str, ...]:
        """The services with a live instance ``instance_id`` (any owner), in O(1)."""
        services = self._services_by_id.get(instance_id, ())
        return (services,) if isinstance(services, str) else tuple(services)

    def services(self) -> dict[str, int]:
        """Service name -> number of live instances, for services with at least one."""
        return {service: len(instances) for service, instances in self._live.items()}

    def entries(self) -> Iterator[Entry]:
        """Every stored version, tombstones included, in no particular order.

        This iterates the table itself: finish (or ``list()``) it before the
        next ``merge``, ``fence`` or ``collect``.
        """
        return iter(self._entries.values())

    def owned_by(self, owner: str) -> list[Entry]:
        """Stored versions (live and tombstones) written by ``owner``, sorted by key."""
        mine = self._by_owner.get(owner)
        if not mine:
            return []
        return [mine[key] for key in sorted(mine)]

    def owned_copy(self, owner: str) -> list[Entry]:
        """Stored versions written by ``owner``, unsorted: one C-speed copy of the index,
        so a snapshot of 50,000 entries costs the event loop about a millisecond (the
        entries are immutable; filtering and sorting can happen in a worker thread)."""
        return list(self._by_owner.get(owner, {}).values())

    def live_count_of(self, owner: str) -> int:
        """Live entries written by ``owner``, in O(1) (the per-owner limit asks per merge)."""
        return self._live_per_owner.get(owner, 0)

    def count_of(self, owner: str) -> int:
        """Stored versions (live and tombstones) written by ``owner``, in O(1)."""
        mine = self._by_owner.get(owner)
        return len(mine) if mine else 0

    def foreign_count(self, owner: str) -> int:
        """Stored versions written by anyone but ``owner``, in O(1)."""
        return len(self._entries) - self.count_of(owner)

    def is_fenced(self, owner: str) -> bool:
        """Whether ``owner`` has a fence (not yet forgotten by ``collect``)."""
        return owner in self._fences

    def owners(self) -> list[str]:
        """Every owner with at least one stored version (a copy: safe across writes)."""
        return list(self._by_owner)

    @property
    def live_count(self) -> int:
        return len(self._entries) - len(self._tombstones)

    @property
    def tombstone_count(self) -> int:
        return len(self._tombstones)

    def __len__(self) -> int:
        """Stored versions, tombstones included."""
        return len(self._entries)

    @property
    def digest(self) -> int:
        """XOR of ``Entry.digest`` over live entries.

        Tombstones are left out so that two replicas serving the same live
        view agree even if one has already collected tombstones the other
        still holds (``/v1/status`` shows it). Anti-entropy compares
        ``bucket_digests`` instead, which count tombstones.
        """
        return self._digest

    def bucket_of(self, key: EntryKey) -> int:
        """The anti-entropy bucket of ``key``.

        Defined as ``int.from_bytes(blake2b(service + "\\x00" + instance_id,
        digest_size=8), "big") % buckets`` over the UTF-8 bytes, so every
        process, run and platform agrees (Python's ``hash`` of a str is salted
        per process). Keys that differ only in where a NUL falls would share a
        bucket, which costs a little repair traffic and nothing else.
        """
        service, instance_id = key
        raw = (service + "\x00" + instance_id).encode("utf-8")
        value = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")
        return value % self._buckets

    def bucket_digests(self) -> tuple[int, ...]:
        """Per bucket, the XOR of the digests of every version it stores, tombstones included.

        Unlike ``digest``: these say whether two replicas hold the same
        versions, which is what anti-entropy repairs. A replica lacking a
        deletion differs from one holding it even when neither shows the key.
        """
        return tuple(self._bucket_digests)

    def bucket_size(self, bucket: int) -> int:
        """Stored versions (tombstones included) in ``bucket``, in O(1): push-pull pages by it."""
        return len(self._bucket_entries[bucket])

    def entries_in(self, buckets: Iterable[int]) -> list[Entry]:
        """Stored versions (tombstones included) in ``buckets``; each bucket once.

        Tombstones are included so that a repair also carries deletions.

        Raises:
            ValueError: a bucket number is out of range. Bucket numbers from a
                peer are remote input: validate them before calling.
        """
        result: list[Entry] = []
        seen: set[int] = set()
        for bucket in buckets:
            if not 0 <= bucket < self._buckets:
                raise ValueError(f"bucket out of range 0..{self._buckets - 1}: {bucket!r}")
            if bucket in seen:
                continue
            seen.add(bucket)
            result.extend(self._bucket_entries[bucket].values())
        return result

    # ----------------------------------------------------------------- writes

    def merge(self, entry: Entry) -> tuple[bool, Entry | None]:
        """Offer one version; keep it iff it is newer than what is stored and not stale.

        Accepted iff all hold:

        - it is strictly newer (``Entry.order``) than the stored version of its
          key, if any; equal or older is a no-op, which is what makes
          re-delivery harmless;
        - it is a tombstone, or its owner is not fenced at or above its
          ``owner_incarnation`` (a deletion can never bring anything back);
        - its key is held, or its stamp is above its owner's GC floor.

        Returns:
            ``(accepted, previous)``. If accepted, ``previous`` is the version
            it replaced (None if the key was new). If rejected, ``previous`` is
            the version still stored (None if none), which lets the caller
            answer a sender that is behind with the newer version.
        """
        key = entry.key
        stored = self._entries.get(key)
        fence = self._fences.get(entry.owner)
        if fence is not None and not entry.deleted and entry.owner_incarnation <= fence[0]:
            return False, stored
        if stored is None:
            floor = self._floors.get(entry.owner)
            if floor is not None and entry.stamp <= floor[0]:
                return False, None
        elif not entry.order > stored.order:
            return False, stored
        bucket = self.bucket_of(key)
        if stored is not None:
            self._unindex(stored, bucket)
        self._index(entry, bucket)
        return True, stored

    def discard(self, key: EntryKey) -> Entry | None:
        """Forget the stored version of ``key`` outright, bypassing the merge rule.

        For the owner only, when it finds its own versions stamped by a clock
        that was wrong (far in the future): no later write of its could beat
        them by the merge rule, and peers refused them anyway. Returns the
        version dropped, or None.
        """
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._unindex(entry, self.bucket_of(key))
        return entry

    def fence(
        self, owner: str, incarnation: int, now: float, *, remove: bool = True
    ) -> list[Entry]:
        """Drop and from now on reject every version ``owner`` wrote at ``incarnation`` or below.

        Called when membership declares ``owner`` dead or left at
        ``incarnation``. Its tombstones stay, and more are still accepted
        (invisible, collected at the horizon like any other): the verdict may
        rest on a stale incarnation, and when the owner turns out alive at
        one we fenced, its deletions must still beat the older live copies
        that peers send back. Accepting them also keeps the bucket digests of
        replicas that fenced at different moments equal.

        Args:
            owner: the member's name, as in ``Entry.owner``.
            incarnation: the incarnation it was declared dead or left at. A
                fence never goes down: a lower value than the current fence
                keeps the current one.
            now: current wall-clock time, seconds: the same clock as
                ``collect``'s ``now``. The fence is forgotten by ``collect``
                ``horizon`` after the last time it was set.

            remove: False to leave the live entries the fence covers in place:
                the caller removes them a few at a time with ``drop_fenced`` (an
                owner may hold tens of thousands). The fence itself holds at once.

        Returns:
            The live entries removed, sorted by key, so the caller can notify
            watchers that those instances are gone. With ``remove=False``
            every version ``owner`` has stored, unsorted (``owned_copy``), for
            ``drop_fenced`` to judge: this step does no per-entry work.

        Raises:
            ValueError: negative ``incarnation`` or bad ``now``.
        """
        if incarnation < 0:
            raise ValueError(f"incarnation must be non-negative: {incarnation!r}")
        _check_time("now", now)
        previous = self._fences.get(owner)
        if previous is not None:
            incarnation = max(incarnation, previous[0])
            now = max(now, previous[1])
        self._fences[owner] = (incarnation, now)
        mine = self._by_owner.get(owner)
        if not mine:
            return []
        if not remove:
            return self.owned_copy(owner)
        doomed = [e for e in mine.values() if e.owner_incarnation <= incarnation and not e.deleted]
        removed_live: list[Entry] = []
        for entry in doomed:
            key = entry.key
            del self._entries[key]
            self._unindex(entry, self.bucket_of(key))
            if not entry.deleted:
                removed_live.append(entry)
        removed_live.sort(key=lambda e: e.key)
        return removed_live

    def drop_fenced(self, entry: Entry) -> bool:
        """Remove ``entry`` if it is still stored and its owner's fence covers it.

        The second half of ``fence(..., remove=False)``; False if the entry has
        been replaced or removed meanwhile, or the fence has moved below it.
        """
        key = entry.key
        fence = self._fences.get(entry.owner)
        if self._entries.get(key) is not entry or fence is None or entry.deleted:
            return False
        if entry.owner_incarnation > fence[0]:
            return False
        del self._entries[key]
        self._unindex(entry, self.bucket_of(key))
        return True

    def set_fence(
        self, owner: str, incarnation: int, now: float, *, remove: bool = True
    ) -> list[Entry]:
        """Move ``owner``'s fence to exactly ``incarnation`` (down as well as up).

        A dead member is fenced completely (every incarnation), since it may
        have lived on at incarnations we never heard of. A member that comes
        back at incarnation j re-asserts everything it holds at j, so what it
        wrote below j is stale: the fence moves to j - 1 (-1 lifts it).

        Returns:
            As ``fence``: the live entries removed (with ``remove=False``, every
            version of ``owner``'s, for ``drop_fenced``).
        """
        _check_time("now", now)
        self._fences.pop(owner, None)
        if incarnation < 0:
            return []
        return self.fence(owner, incarnation, now, remove=remove)

    def collect(self, now: float, horizon: float) -> int:
        """Drop tombstones older than ``horizon``; expire fences and floors as old.

        A tombstone is collected when ``stamp_wall(stamp) < now - horizon``.
        For each owner the highest collected stamp becomes its GC floor (see
        ``merge``). Fences set, and floors last raised, before
        ``now - horizon`` are forgotten: after that long every stale version
        they guarded against is assumed to have died out everywhere, which is
        why ``horizon`` must exceed the longest partition the cluster should
        heal from.

        This scans the tombstones (not the live entries); call it
        periodically, not per message.

        Args:
            now: current wall-clock time, seconds (the clock stamps follow).
            horizon: how long to keep tombstones, fences and floors, seconds.

        Returns:
            The number of tombstones collected.

        Raises:
            ValueError: negative or non-finite ``now`` or ``horizon``.
        """
        _check_time("now", now)
        _check_time("horizon", horizon)
        cutoff = now - horizon
        old = [t for t in self._tombstones.values() if stamp_wall(t.stamp) < cutoff]
        for tombstone in old:
            key = tombstone.key
            del self._entries[key]
            self._unindex(tombstone, self.bucket_of(key))
            floor = self._floors.get(tombstone.owner)
            if floor is None or tombstone.stamp > floor[0]:
                self._floors[tombstone.owner] = (tombstone.stamp, now)
        self._fences = {o: f for o, f in self._fences.items() if f[1] >= cutoff}
        self._floors = {o: f for o, f in self._floors.items() if f[1] >= cutoff}
        return len(old)

    # -------------------------------------------------------------- internals

    def _index(self, entry: Entry, bucket: int) -> None:
        """Store ``entry`` (its key must be absent) in the table and every index."""
        key = entry.key
        self._entries[key] = entry
        self.versions_stored += 1
        self._by_owner.setdefault(entry.owner, {})[key] = entry
        self._bucket_entries[bucket][key] = entry
        self._bucket_digests[bucket] ^= entry.digest
        if entry.deleted:
            self._tombstones[key] = entry
        else:
            self._live.setdefault(entry.service, {})[entry.instance_id] = entry
            held = self._services_by_id.get(entry.instance_id)
            if held is None:
                self._services_by_id[entry.instance_id] = entry.service
            elif isinstance(held, str):
                self._services_by_id[entry.instance_id] = {held: None, entry.service: None}
            else:
                held[entry.service] = None
            self._live_per_owner[entry.owner] = self._live_per_owner.get(entry.owner, 0) + 1
            self._live_sorted.pop(entry.service, None)
            self._digest ^= entry.digest

    def _unindex(self, entry: Entry, bucket: int) -> None:
        """Remove ``entry`` from every index but the main map (the caller replaces or deletes)."""
        key = entry.key
        mine = self._by_owner[entry.owner]
        del mine[key]
        if not mine:
            del self._by_owner[entry.owner]
        del self._bucket_entries[bucket][key]
        self._bucket_digests[bucket] ^= entry.digest
        if entry.deleted:
            del self._tombstones[key]
        else:
            instances = self._live[entry.service]
            del instances[entry.instance_id]
            self._live_sorted.pop(entry.service, None)
            if not instances:
                del self._live[entry.service]
            held = self._services_by_id[entry.instance_id]
            if isinstance(held, str):
                del self._services_by_id[entry.instance_id]
            else:
                del held[entry.service]
                if len(held) == 1:
                    self._services_by_id[entry.instance_id] = next(iter(held))
            left = self._live_per_owner[entry.owner] - 1
            if left:
                self._live_per_owner[entry.owner] = left
            else:
                del self._live_per_owner[entry.owner]
            self._digest ^= entry.digest

    def __repr__(self) -> str:
        return (
            f"RegistryTable(live={self.live_count}, tombstones={self.tombstone_count}, "
            f"digest={self._digest:#018x})"
        )
