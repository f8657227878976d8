"""Merge laws of the registry table, and replicas converging under a lossy, reordering network.

The merge is a join: commutative, associative, idempotent. Those laws hold
only because versions are totally ordered and one version always carries one
payload, so that is checked too. Stamps are drawn from a tiny range so that
equal (stamp, owner) pairs with different payloads come up often.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from gossip_registry.registry.clock import HybridClock
from gossip_registry.registry.entry import Entry, EntryKey, Health
from gossip_registry.registry.table import RegistryTable

KEYS: list[EntryKey] = [("web", "w1"), ("web", "w2"), ("db", "d1"), ("cache", "c1")]
OWNERS = ["n0", "n1", "n2"]
BUCKETS = 4
T0 = 1_700_000_000.0

State = tuple[list[Entry], int, tuple[int, ...]]


@st.composite
def entries(draw: st.DrawFn, keys: st.SearchStrategy[EntryKey] | None = None) -> Entry:
    service, instance_id = draw(st.sampled_from(KEYS) if keys is None else keys)
    return Entry(
        service=service,
        instance_id=instance_id,
        address=draw(st.sampled_from(["10.0.0.1", "10.0.0.2"])),
        port=draw(st.integers(1, 3)),
        tags=draw(st.sampled_from([(), ("a",), ("a", "b")])),
        meta=draw(st.sampled_from([{}, {"zone": "x"}])),
        weight=draw(st.integers(0, 1)),
        status=draw(st.sampled_from(Health)),
        output="",
        owner=draw(st.sampled_from(OWNERS)),
        owner_incarnation=draw(st.integers(0, 2)),
        stamp=draw(st.integers(0, 3)),
        deleted=draw(st.booleans()),
    )


histories = st.lists(entries(), max_size=25)
laws = settings(max_examples=200, deadline=None)


def build(versions: Iterable[Entry]) -> RegistryTable:
    table = RegistryTable(buckets=BUCKETS)
    for version in versions:
        table.merge(version)
    return table


def merge_into(target: RegistryTable, source: RegistryTable) -> RegistryTable:
    """Merge replica ``source`` into ``target``: offer target every version source stores."""
    for version in list(source.entries()):
        target.merge(version)
    return target


def state(table: RegistryTable) -> State:
    return sorted(table.entries(), key=lambda e: e.key), table.digest, table.bucket_digests()


def lww(versions: Iterable[Entry]) -> list[Entry]:
    """The model: per key, the greatest version under Entry.order, found without the table."""
    winners: dict[EntryKey, Entry] = {}
    for version in versions:
        best = winners.get(version.key)
        if best is None or version.order > best.order:
            winners[version.key] = version
    return sorted(winners.values(), key=lambda e: e.key)


def recomputed_digests(table: RegistryTable) -> tuple[int, tuple[int, ...]]:
    total, per_bucket = 0, [0] * table.buckets
    for version in table.entries():
        per_bucket[table.bucket_of(version.key)] ^= version.digest  # tombstones too
        if not version.deleted:
            total ^= version.digest
    return total, tuple(per_bucket)


# ---------------------------------------------------------------- the laws


@laws
@given(history=histories, data=st.data())
def test_any_delivery_order_with_duplicates_gives_the_same_table(
    history: list[Entry], data: st.DataObject
) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(history), max_size=10)) if history else []
    reordered = data.draw(st.permutations(history + duplicates))
    in_order, shuffled = build(history), build(reordered)
    assert state(in_order) == state(shuffled)
    assert state(in_order)[0] == lww(history)


@laws
@given(a=histories, b=histories)
def test_merge_is_commutative(a: list[Entry], b: list[Entry]) -> None:
    assert state(merge_into(build(a), build(b))) == state(merge_into(build(b), build(a)))


@laws
@given(a=histories, b=histories, c=histories)
def test_merge_is_associative(a: list[Entry], b: list[Entry], c: list[Entry]) -> None:
    left = merge_into(merge_into(build(a), build(b)), build(c))
    right = merge_into(build(a), merge_into(build(b), build(c)))
    assert state(left) == state(right)
    assert state(left)[0] == lww(a + b + c)


@laws
@given(history=histories)
def test_merge_is_idempotent(history: list[Entry]) -> None:
    once = build(history)
    before = state(once)
    assert state(merge_into(once, build(history))) == before
    for version in history:
        accepted, _ = once.merge(version)
        assert not accepted
    assert state(once) == before
    assert state(merge_into(build(history), build(history))) == before


@laws
@given(data=st.data(), key=st.sampled_from(KEYS))
def test_two_distinct_versions_of_a_key_are_strictly_ordered(
    data: st.DataObject, key: EntryKey
) -> None:
    same_key = entries(st.just(key))
    a = data.draw(same_key)
    # Half the time, the same (stamp, owner) with another payload: the hard tie.
    if data.draw(st.booleans()):
        b = dataclasses.replace(
            a, port=data.draw(st.integers(1, 3)), deleted=data.draw(st.booleans())
        )
    else:
        b = data.draw(same_key)
    if a == b:
        assert not a.newer_than(b)
        assert not b.newer_than(a)
    else:
        assert a.newer_than(b) != b.newer_than(a)
        assert a.order != b.order


# ---------------------------------------------- replicas over a bad network


class ReplicatedRegistry(RuleBasedStateMachine):
    """Three nodes, each owning what it writes, gossiping over a network that loses,
    duplicates and reorders; full syncs now and then. The model is the LWW
    winner per key over every version ever written."""

    NODES = 3

    def __init__(self) -> None:
        super().__init__()
        self.tables = [RegistryTable(buckets=BUCKETS) for _ in range(self.NODES)]
        self.clocks = [HybridClock() for _ in range(self.NODES)]
        self.walls = [T0] * self.NODES
        self.in_flight: list[list[Entry]] = [[] for _ in range(self.NODES)]
        self.written: list[Entry] = []

    # -- helpers

    def _receive(self, node: int, version: Entry) -> None:
        self.clocks[node].observe(version.stamp)
        self.tables[node].merge(version)

    def _write(self, node: int, key: EntryKey, *, port: int, deleted: bool) -> None:
        version = Entry(
            service=key[0],
            instance_id=key[1],
            address=f"10.0.0.{node}",
            port=port,
            tags=(),
            meta={},
            weight=1,
            status=Health.PASSING,
            output="",
            owner=f"n{node}",
            owner_incarnation=0,
            stamp=self.clocks[node].tick(self.walls[node]),
            deleted=deleted,
        )
        self.written.append(version)
        accepted, _ = self.tables[node].merge(version)
        # The writer's clock has observed every stamp its table holds, so its
        # own fresh write always wins locally.
        assert accepted

    def _sync(self, a: int, b: int) -> None:
        a_versions, b_versions = list(self.tables[a].entries()), list(self.tables[b].entries())
        for version in a_versions:
            self._receive(b, version)
        for version in b_versions:
            self._receive(a, version)

    def _sync_everything_and_check(self) -> None:
        for _ in range(2):
            for a in range(self.NODES):
                for b in range(a + 1, self.NODES):
                    self._sync(a, b)
        expected = lww(self.written)
        first = state(self.tables[0])
        for table in self.tables:
            assert state(table) == first
        assert first[0] == expected
        live = {(e.service, e.instance_id) for e in expected if not e.deleted}
        for table in self.tables:
            visible = {e.key for service in table.services() for e in table.live(service)}
            assert visible == live

    # -- rules

    @rule(node=st.integers(0, NODES - 1), step=st.sampled_from([-5.0, -0.001, 0.0, 0.001, 1.0]))
    def wall_clock_moves(self, node: int, step: float) -> None:
        self.walls[node] = max(0.0, self.walls[node] + step)

    @rule(node=st.integers(0, NODES - 1), key=st.sampled_from(KEYS), port=st.integers(1, 3))
    def put(self, node: int, key: EntryKey, port: int) -> None:
        self._write(node, key, port=port, deleted=False)

    @rule(node=st.integers(0, NODES - 1), key=st.sampled_from(KEYS))
    def delete(self, node: int, key: EntryKey) -> None:
        self._write(node, key, port=0, deleted=True)

    @rule(
        src=st.integers(0, NODES - 1),
        dst=st.integers(0, NODES - 1),
        key=st.sampled_from(KEYS),
        copies=st.sampled_from([0, 1, 1, 2]),
    )
    def gossip(self, src: int, dst: int, key: EntryKey, copies: int) -> None:
        """Send src's version of key to dst: dropped (0), once, or duplicated (2)."""
        version = self.tables[src].get(key)
        if version is not None and src != dst:
            self.in_flight[dst].extend([version] * copies)

    @precondition(lambda self: any(self.in_flight))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """Deliver one in-flight message, chosen at random: late and reordered."""
        node = data.draw(st.sampled_from([n for n in range(self.NODES) if self.in_flight[n]]))
        index = data.draw(st.integers(0, len(self.in_flight[node]) - 1))
        self._receive(node, self.in_flight[node].pop(index))

    @precondition(lambda self: any(self.in_flight))
    @rule(data=st.data())
    def lose_in_flight(self, data: st.DataObject) -> None:
        node = data.draw(st.sampled_from([n for n in range(self.NODES) if self.in_flight[n]]))
        index = data.draw(st.integers(0, len(self.in_flight[node]) - 1))
        del self.in_flight[node][index]

    @rule(a=st.integers(0, NODES - 1), b=st.integers(0, NODES - 1))
    def full_sync(self, a: int, b: int) -> None:
        if a != b:
            self._sync(a, b)

    @rule()
    def sync_everything(self) -> None:
        self._sync_everything_and_check()

    # -- invariants

    @invariant()
    def all_replicas_together_hold_exactly_the_model(self) -> None:
        union = RegistryTable(buckets=BUCKETS)
        for table in self.tables:
            merge_into(union, table)
        assert state(union)[0] == lww(self.written)

    @invariant()
    def no_replica_holds_a_version_newer_than_the_winner(self) -> None:
        winners = {e.key: e for e in lww(self.written)}
        for table in self.tables:
            for version in table.entries():
                assert version.order <= winners[version.key].order

    @invariant()
    def incremental_digests_match_a_recomputation(self) -> None:
        for table in self.tables:
            assert (table.digest, table.bucket_digests()) == recomputed_digests(table)

    def teardown(self) -> None:
        """Heal the network: everything in flight arrives late, then all sync; all must agree."""
        for node in range(self.NODES):
            for version in self.in_flight[node]:
                self._receive(node, version)
        self._sync_everything_and_check()
        for node in range(self.NODES):
            for version in reversed(self.in_flight[node]):
                self._receive(node, version)
        first = state(self.tables[0])
        assert all(state(table) == first for table in self.tables)


ReplicatedRegistry.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
TestReplicatedRegistry = ReplicatedRegistry.TestCase
