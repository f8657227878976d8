"""The registry table: LWW merge, tombstones, fences, GC floors, digests and buckets."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

import pytest

from gossip_registry.registry.clock import make_stamp, stamp_wall
from gossip_registry.registry.entry import Entry, EntryKey, Health
from gossip_registry.registry.table import RegistryTable

T0 = 1_700_000_000.0
HOUR = 3600.0


def entry(
    service: str = "web",
    instance_id: str = "web-1",
    *,
    at: float = T0,
    logical: int = 0,
    owner: str = "node-a",
    incarnation: int = 0,
    deleted: bool = False,
    **fields: Any,
) -> Entry:
    values: dict[str, Any] = {
        "address": "10.0.0.1",
        "port": 8080,
        "tags": ("v1",),
        "meta": {"zone": "a"},
        "weight": 1,
        "status": Health.PASSING,
        "output": "",
    }
    values.update(fields)
    return Entry(
        service=service,
        instance_id=instance_id,
        owner=owner,
        owner_incarnation=incarnation,
        stamp=make_stamp(at, logical),
        deleted=deleted,
        **values,
    )


def snapshot(table: RegistryTable) -> tuple[list[Entry], int, tuple[int, ...]]:
    return sorted(table.entries(), key=lambda e: e.key), table.digest, table.bucket_digests()


def expected_bucket(key: EntryKey, buckets: int) -> int:
    """The bucket definition, written out independently of the table."""
    raw = f"{key[0]}\x00{key[1]}".encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), byteorder="big") % buckets


def assert_indexes_match_a_full_scan(table: RegistryTable) -> None:
    """Recompute everything the table maintains incrementally by scanning its entries."""
    stored = list(table.entries())
    live = [e for e in stored if not e.deleted]
    digest = 0
    per_bucket = [0] * table.buckets
    for e in live:
        digest ^= e.digest
    for e in stored:  # the bucket digests cover tombstones as well
        per_bucket[expected_bucket(e.key, table.buckets)] ^= e.digest
    assert table.digest == digest
    assert table.bucket_digests() == tuple(per_bucket)
    assert len(table) == len(stored)
    assert table.live_count == len(live)
    assert table.tombstone_count == len(stored) - len(live)
    assert table.services() == dict(Counter(e.service for e in live))
    for service in {e.service for e in stored}:
        expected = sorted((e for e in live if e.service == service), key=lambda e: e.instance_id)
        assert table.live(service) == expected
        assert table.has_live(service) == bool(expected)
    for instance_id in {e.instance_id for e in stored}:
        services = {e.service for e in live if e.instance_id == instance_id}
        assert sorted(table.services_with_id(instance_id)) == sorted(services)
    for owner in {e.owner for e in stored}:
        expected = sorted((e for e in stored if e.owner == owner), key=lambda e: e.key)
        assert table.owned_by(owner) == expected
    for bucket in range(table.buckets):
        in_bucket = [e for e in stored if expected_bucket(e.key, table.buckets) == bucket]
        assert sorted(table.entries_in([bucket]), key=lambda e: e.key) == sorted(
            in_bucket, key=lambda e: e.key
        )
    for e in stored:
        assert table.get(e.key) is e


# ------------------------------------------------------------------ LWW merge


def test_a_newer_version_replaces_the_stored_one() -> None:
    table = RegistryTable()
    old = entry(at=T0, port=1)
    new = entry(at=T0 + 1, port=2)
    assert table.merge(old) == (True, None)
    assert table.merge(new) == (True, old)
    assert table.get(old.key) is new
    assert table.live("web") == [new]


def test_an_older_version_is_ignored_and_the_stored_one_reported() -> None:
    table = RegistryTable()
    new = entry(at=T0 + 1, port=2)
    table.merge(new)
    before = snapshot(table)
    assert table.merge(entry(at=T0, port=1)) == (False, new)
    assert snapshot(table) == before


def test_merging_the_same_version_again_changes_nothing() -> None:
    table = RegistryTable()
    version = entry()
    table.merge(version)
    before = snapshot(table)
    assert table.merge(version) == (False, version)
    assert table.merge(entry()) == (False, version)
    assert snapshot(table) == before


def test_equal_stamps_are_broken_by_owner_name() -> None:
    table = RegistryTable()
    by_a = entry(owner="node-a", port=1)
    by_b = entry(owner="node-b", port=2)
    table.merge(by_b)
    assert table.merge(by_a) == (False, by_b)
    other = RegistryTable()
    other.merge(by_a)
    assert other.merge(by_b) == (True, by_a)


def test_equal_stamp_and_owner_with_different_payloads_is_broken_by_content() -> None:
    one, two = entry(port=1), entry(port=2)
    winner, loser = (one, two) if one.digest > two.digest else (two, one)
    left, right = RegistryTable(), RegistryTable()
    for table, order in ((left, (one, two)), (right, (two, one))):
        for version in order:
            table.merge(version)
    assert left.get(one.key) is winner
    assert right.get(one.key) is winner
    assert loser.digest != winner.digest


def test_a_tombstone_beats_an_older_live_version_and_is_not_visible() -> None:
    table = RegistryTable()
    live = entry(at=T0)
    tombstone = entry(at=T0 + 1, deleted=True)
    table.merge(live)
    assert table.merge(tombstone) == (True, live)
    assert table.get(live.key) is tombstone
    assert table.live("web") == []
    assert table.services() == {}
    assert table.digest == 0
    assert (len(table), table.live_count, table.tombstone_count) == (1, 0, 1)
    assert table.merge(entry(at=T0 + 0.5)) == (False, tombstone)


def test_a_tombstone_arriving_first_still_beats_the_older_live_version() -> None:
    table = RegistryTable()
    tombstone = entry(at=T0 + 1, deleted=True)
    table.merge(tombstone)
    assert table.merge(entry(at=T0)) == (False, tombstone)
    assert table.live("web") == []


def test_a_newer_live_version_revives_a_deleted_key() -> None:
    table = RegistryTable()
    table.merge(entry(at=T0, deleted=True))
    revived = entry(at=T0 + 1)
    assert table.merge(revived)[0]
    assert table.live("web") == [revived]


# -------------------------------------------------------------------- digests


def test_digest_is_the_same_for_tables_built_in_different_orders() -> None:
    versions = [
        entry("web", f"web-{i}", at=T0 + j, port=j, deleted=(i + j) % 4 == 0)
        for i in range(20)
        for j in range(3)
    ]
    shuffled = versions[:]
    random.Random(7).shuffle(shuffled)
    left, right = RegistryTable(), RegistryTable()
    for version in versions:
        left.merge(version)
    for version in shuffled + shuffled[:10]:
        right.merge(version)
    assert left.digest == right.digest != 0
    assert left.bucket_digests() == right.bucket_digests()
    assert snapshot(left) == snapshot(right)


def test_digests_match_a_full_recomputation_after_random_merges() -> None:
    rng = random.Random(2024)
    table = RegistryTable(buckets=16)
    owners = ["node-a", "node-b", "node-c"]
    for step in range(2000):
        table.merge(
            entry(
                rng.choice(["web", "db", "cache"]),
                f"i-{rng.randrange(12)}",
                at=T0 + rng.randrange(50),
                logical=rng.randrange(3),
                owner=rng.choice(owners),
                deleted=rng.random() < 0.3,
                port=rng.randrange(4),
            )
        )
        if step % 250 == 0:
            assert_indexes_match_a_full_scan(table)
    assert_indexes_match_a_full_scan(table)
    table.fence("node-b", 0, T0 + 50)
    assert_indexes_match_a_full_scan(table)
    table.collect(T0 + 100, horizon=70)
    assert_indexes_match_a_full_scan(table)


# --------------------------------------------------------------------- fences


def test_fence_removes_the_owners_live_versions_at_or_below_the_incarnation() -> None:
    table = RegistryTable()
    old_live = entry("web", "w1", owner="node-x", incarnation=2)
    old_tomb = entry("web", "w2", owner="node-x", incarnation=1, deleted=True)
    newer = entry("web", "w3", owner="node-x", incarnation=3)
    others = entry("web", "w4", owner="node-y", incarnation=0)
    for version in (old_live, old_tomb, newer, others):
        table.merge(version)
    assert table.fence("node-x", 2, T0) == [old_live]
    assert table.get(old_live.key) is None
    # Its deletions stay: if the verdict was stale they must still beat older live copies.
    assert table.get(old_tomb.key) == old_tomb
    assert table.live("web") == [newer, others]
    assert_indexes_match_a_full_scan(table)


def test_fence_rejects_the_owners_fenced_versions_later_but_accepts_higher_incarnations() -> None:
    table = RegistryTable()
    table.fence("node-x", 2, T0)
    fenced = entry(owner="node-x", incarnation=2, at=T0 + 10)
    assert table.merge(fenced) == (False, None)
    assert table.merge(entry(owner="node-x", incarnation=0, at=T0 + 10)) == (False, None)
    reasserted = entry(owner="node-x", incarnation=3, at=T0 + 10)
    assert table.merge(reasserted) == (True, None)
    assert table.merge(entry(owner="node-y", incarnation=0, at=T0 + 20))[0]


def test_a_fenced_owners_deletions_are_still_accepted() -> None:
    # Replicas that fenced at different moments must still end up with the same
    # deletions, or their bucket digests would differ until the horizon.
    table = RegistryTable()
    table.fence("node-x", 2, T0)
    deletion = entry(owner="node-x", incarnation=2, at=T0 + 10, deleted=True)
    assert table.merge(deletion) == (True, None)
    assert table.merge(entry(owner="node-x", incarnation=2, at=T0 + 20)) == (False, deletion)
    assert table.live("web") == []
    assert_indexes_match_a_full_scan(table)


def test_bucket_digests_tell_a_deletion_from_nothing_but_the_digest_does_not() -> None:
    # A replica that never heard of a deletion must see a difference in that
    # bucket, or anti-entropy never sends it the tombstone (the chaos suite's
    # rolling-restart: the stale live copy of a peer that missed it came back).
    knows, empty = RegistryTable(), RegistryTable()
    tombstone = entry(at=T0 + 1, deleted=True)
    knows.merge(tombstone)
    assert knows.digest == empty.digest
    bucket = knows.bucket_of(tombstone.key)
    assert knows.bucket_digests()[bucket] != empty.bucket_digests()[bucket]
    assert knows.entries_in([bucket]) == [tombstone]


def test_a_fence_never_goes_down() -> None:
    table = RegistryTable()
    table.fence("node-x", 5, T0)
    table.fence("node-x", 1, T0 + 1)
    assert not table.merge(entry(owner="node-x", incarnation=4))[0]
    assert table.merge(entry(owner="node-x", incarnation=6))[0]


def test_a_fence_is_forgotten_after_the_horizon() -> None:
    table = RegistryTable()
    table.fence("node-x", 2, T0)
    table.collect(T0 + HOUR - 1, horizon=HOUR)
    assert not table.merge(entry(owner="node-x", incarnation=2))[0]
    table.collect(T0 + HOUR + 1, horizon=HOUR)
    assert table.merge(entry(owner="node-x", incarnation=2))[0]


def test_fence_rejects_bad_arguments() -> None:
    table = RegistryTable()
    with pytest.raises(ValueError, match="incarnation"):
        table.fence("node-x", -1, T0)
    with pytest.raises(ValueError, match="now"):
        table.fence("node-x", 0, -1.0)


# ------------------------------------------------------------ tombstone GC


def test_collect_removes_old_tombstones_only() -> None:
    table = RegistryTable()
    old_tomb = entry("web", "w1", at=T0, deleted=True)
    young_tomb = entry("web", "w2", at=T0 + 2 * HOUR, deleted=True)
    old_live = entry("web", "w3", at=T0)
    for version in (old_tomb, young_tomb, old_live):
        table.merge(version)
    assert table.collect(T0 + 2 * HOUR + 1, horizon=HOUR) == 1
    assert table.get(old_tomb.key) is None
    assert table.get(young_tomb.key) is young_tomb
    assert table.get(old_live.key) is old_live
    assert table.collect(T0 + 2 * HOUR + 1, horizon=HOUR) == 0
    assert_indexes_match_a_full_scan(table)


def test_after_collect_an_older_live_version_of_a_collected_key_is_rejected() -> None:
    table = RegistryTable()
    table.merge(entry("web", "w1", at=T0 + 1, deleted=True))
    table.collect(T0 + HOUR + 2, horizon=HOUR)
    assert table.get(("web", "w1")) is None
    assert table.merge(entry("web", "w1", at=T0)) == (False, None)
    assert table.merge(entry("web", "w1", at=T0 + 1, deleted=True)) == (False, None)
    assert table.get(("web", "w1")) is None


def test_after_collect_a_new_key_from_the_same_owner_is_accepted() -> None:
    table = RegistryTable()
    table.merge(entry("web", "w1", at=T0 + 1, deleted=True))
    table.collect(T0 + HOUR + 2, horizon=HOUR)
    fresh = entry("web", "w9", at=T0 + HOUR + 2)
    assert table.merge(fresh) == (True, None)
    rewritten = entry("web", "w1", at=T0 + HOUR + 3)
    assert table.merge(rewritten) == (True, None)


def test_a_held_key_is_judged_by_lww_even_below_the_owners_floor() -> None:
    table = RegistryTable()
    held = entry("web", "w2", at=T0)
    table.merge(held)
    table.merge(entry("web", "w1", at=T0 + 10, deleted=True))
    table.collect(T0 + HOUR + 11, horizon=HOUR)
    update = entry("web", "w2", at=T0 + 5, port=9)
    assert table.merge(update) == (True, held)


def test_another_owners_old_version_is_not_blocked_by_a_floor() -> None:
    table = RegistryTable()
    table.merge(entry("web", "w1", at=T0 + 10, deleted=True, owner="node-a"))
    table.collect(T0 + HOUR + 11, horizon=HOUR)
    assert table.merge(entry("web", "w2", at=T0, owner="node-b"))[0]


def test_a_floor_is_forgotten_a_horizon_after_it_last_rose() -> None:
    table = RegistryTable()
    table.merge(entry("web", "w1", at=T0, deleted=True))
    table.collect(T0 + HOUR + 1, horizon=HOUR)
    table.collect(T0 + 2 * HOUR, horizon=HOUR)
    assert not table.merge(entry("web", "w1", at=T0 - 1))[0]
    table.collect(T0 + 2 * HOUR + 2, horizon=HOUR)
    assert table.merge(entry("web", "w1", at=T0 - 1))[0]


def test_collect_uses_the_physical_part_of_the_stamp() -> None:
    table = RegistryTable()
    tombstone = entry(at=T0, logical=500, deleted=True)
    table.merge(tombstone)
    assert stamp_wall(tombstone.stamp) == T0
    assert table.collect(T0 + HOUR, horizon=HOUR) == 0
    assert table.collect(T0 + HOUR + 0.002, horizon=HOUR) == 1


def test_collect_rejects_bad_arguments() -> None:
    table = RegistryTable()
    with pytest.raises(ValueError, match="horizon"):
        table.collect(T0, horizon=-1.0)
    with pytest.raises(ValueError, match="now"):
        table.collect(float("nan"), horizon=HOUR)


# ----------------------------------------------------------- buckets and reads


def test_bucket_of_follows_the_blake2b_definition_and_is_stable() -> None:
    table = RegistryTable()
    key = ("web", "web-1")
    # Computed once from the definition; must never change (peers compare buckets).
    assert table.bucket_of(key) == 227
    assert expected_bucket(key, 256) == 227
    for i in range(200):
        other = (f"svc-{i % 7}", f"инстанс-{i}")
        assert table.bucket_of(other) == expected_bucket(other, 256)
    small = RegistryTable(buckets=7)
    assert small.bucket_of(key) == expected_bucket(key, 7)


def test_entries_in_returns_stored_versions_of_those_buckets_once() -> None:
    table = RegistryTable(buckets=8)
    versions = [entry("web", f"w{i}", deleted=i % 3 == 0) for i in range(40)]
    for version in versions:
        table.merge(version)
    wanted = {1, 5}
    got = table.entries_in([5, 1, 5])
    assert len(got) == len({e.key for e in got})
    assert sorted(got, key=lambda e: e.key) == sorted(
        (v for v in versions if table.bucket_of(v.key) in wanted), key=lambda e: e.key
    )
    assert any(e.deleted for e in table.entries_in(range(8)))
    assert table.entries_in([]) == []
    with pytest.raises(ValueError, match="bucket"):
        table.entries_in([8])


def test_services_counts_live_instances_only() -> None:
    table = RegistryTable()
    for version in (
        entry("web", "w1"),
        entry("web", "w2"),
        entry("web", "w3", deleted=True),
        entry("db", "d1"),
        entry("gone", "g1", deleted=True),
    ):
        table.merge(version)
    assert table.services() == {"web": 2, "db": 1}
    table.merge(entry("db", "d1", at=T0 + 1, deleted=True))
    assert table.services() == {"web": 2}
    assert table.live("db") == []
    assert table.live("nothing") == []


def test_live_is_sorted_by_instance_id() -> None:
    table = RegistryTable()
    for name in ("c", "a", "b"):
        table.merge(entry("web", name))
    assert [e.instance_id for e in table.live("web")] == ["a", "b", "c"]


def test_owned_by_lists_live_versions_and_tombstones_of_that_owner() -> None:
    table = RegistryTable()
    mine = [entry("web", "w1", owner="node-a"), entry("web", "w2", owner="node-a", deleted=True)]
    for version in [*mine, entry("web", "w3", owner="node-b")]:
        table.merge(version)
    assert table.owned_by("node-a") == mine
    assert table.owned_by("node-z") == []


def test_ownership_moves_with_the_winning_version() -> None:
    table = RegistryTable()
    table.merge(entry(owner="node-a", at=T0))
    table.merge(entry(owner="node-b", at=T0 + 1))
    assert table.owned_by("node-a") == []
    assert [e.owner for e in table.owned_by("node-b")] == ["node-b"]


def test_buckets_must_be_positive() -> None:
    with pytest.raises(ValueError, match="buckets"):
        RegistryTable(buckets=0)


def test_a_fence_without_removal_holds_at_once_and_its_entries_go_one_by_one() -> None:
    table = RegistryTable()
    old, kept, newer = entry(instance_id="a"), entry(instance_id="b"), entry(instance_id="c")
    for e in (old, kept, newer):
        table.merge(e)
    doomed = table.set_fence("node-a", 0, T0, remove=False)
    assert sorted(doomed, key=lambda e: e.key) == [old, kept, newer]
    assert table.live_count == 3, "nothing removed yet"
    assert table.merge(entry(instance_id="d"))[0] is False, "the fence already refuses"
    assert table.drop_fenced(old)
    assert not table.drop_fenced(old), "already gone"
    replacement = entry(instance_id="c", at=T0 + 1, incarnation=1)
    table.merge(replacement)
    assert not table.drop_fenced(newer), "replaced meanwhile by a version above the fence"
    table.set_fence("node-a", -1, T0)
    assert not table.drop_fenced(kept), "the fence was lifted"
    assert {e.instance_id for e in table.live("web")} == {"b", "c"}


def test_the_table_counts_every_version_it_stores() -> None:
    """What the heap governor (``heap.py``) freezes by: replaced versions count, not just growth."""
    table = RegistryTable()
    first = entry(logical=1)
    assert table.merge(first)[0]
    assert not table.merge(first)[0]
    assert table.merge(entry(logical=2))[0]
    assert len(table) == 1
    assert table.versions_stored == 2
