"""The client's pure state: ejection, node rotation, the cache, blocking-query rules, parsing."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from gossip_registry.client.cache import ServiceCache, WatchState
from gossip_registry.client.core import ClientCore, ClientSettings
from gossip_registry.client.ejection import Ejector
from gossip_registry.client.errors import BadResponse
from gossip_registry.client.instance import Instance, ServiceQuery, parse_instances
from gossip_registry.client.nodes import NodeRotation, jittered

A, B = ("api", "a"), ("api", "b")


def inst(instance_id: str) -> Instance:
    return Instance(id=instance_id, name="api", address="127.0.0.1", port=1)


# Ejection.


def test_an_instance_is_ejected_on_its_third_failure_in_a_row_only() -> None:
    ejector = Ejector(threshold=3, cooldown=30, max_cooldown=300)
    assert not ejector.failure(A, now=0)
    ejector.success(A)  # a success in between resets the run
    assert not ejector.failure(A, now=1)
    assert not ejector.failure(A, now=2)
    assert ejector.failure(A, now=3)
    assert ejector.ejected(A, now=32.9)
    assert not ejector.ejected(A, now=33.1)
    assert ejector.ejected_keys(10) == {A}


def test_repeated_ejection_doubles_the_cooldown_up_to_the_cap() -> None:
    ejector = Ejector(threshold=1, cooldown=30, max_cooldown=100)
    lengths = []
    now = 0.0
    for _ in range(4):
        assert ejector.failure(A, now)
        start = now
        while ejector.ejected(A, now):
            now += 1
        lengths.append(now - start)
    assert lengths == [30, 60, 100, 100]
    ejector.success(A)
    assert ejector.failure(A, now)
    assert ejector.ejected(A, now + 29)
    assert not ejector.ejected(A, now + 30)


def test_ejected_instances_are_skipped_unless_all_are_ejected() -> None:
    ejector = Ejector(threshold=1)
    pool = [inst("a"), inst("b")]
    ejector.failure(A, now=0)
    assert ejector.usable(pool, now=1) == [pool[1]]
    ejector.failure(B, now=0)
    assert ejector.usable(pool, now=1) == pool  # panic: all ejected means use all


def test_ejector_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="eject_after"):
        Ejector(threshold=0)
    with pytest.raises(ValueError, match="cooldown"):
        Ejector(cooldown=10, max_cooldown=5)


# Node rotation.


def test_rotation_starts_after_the_last_node_that_answered_and_visits_each_once() -> None:
    nodes = NodeRotation(["http://a/", "http://b", "http://c"], random.Random(0))
    nodes.answered("http://b")
    assert list(nodes.order()) == ["http://b", "http://c", "http://a"]
    assert nodes.current == "http://b"


def test_fleets_of_clients_start_on_different_nodes() -> None:
    urls = [f"http://n{i}" for i in range(5)]
    starts = {NodeRotation(urls, random.Random(seed)).current for seed in range(50)}
    assert len(starts) == 5


@pytest.mark.parametrize(
    ("urls", "message"),
    [([], "at least one"), (["127.0.0.1:8501"], "not an http"), ("http://a", "one string")],
)
def test_bad_node_lists_are_refused(urls: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        NodeRotation(urls, random.Random(0))


def test_backoff_doubles_to_its_cap_and_keeps_half_fixed() -> None:
    rng = random.Random(5)
    for attempt, full in [(1, 0.1), (2, 0.2), (3, 0.4), (9, 1.0)]:
        delays = [jittered(0.1, attempt, 1.0, rng) for _ in range(200)]
        assert full / 2 <= min(delays)
        assert max(delays) <= full
        assert max(delays) - min(delays) > full / 4  # really jittered


# Cache.


def test_cached_lists_expire_after_ttl_plus_jitter_spread_over_clients() -> None:
    cache = ServiceCache(ttl=10, jitter=0.2, rng=random.Random(1))
    query = ServiceQuery.of("api")
    expiries = [cache.store(query, [], None, now=0).expires for _ in range(200)]
    assert min(expiries) >= 10
    assert max(expiries) <= 12
    assert max(expiries) - min(expiries) > 1
    assert cache.fresh(query, 9.9)
    assert not cache.fresh(query, 12.1)
    cache.hold(query, now=20, delay=1)
    assert cache.fresh(query, 20.5)
    assert not cache.fresh(query, 21.5)


def test_the_version_moves_only_when_the_list_changes() -> None:
    cache = ServiceCache(ttl=1, jitter=0, rng=random.Random(1))
    query = ServiceQuery.of("api")
    cached = cache.store(query, [inst("a")], 1, now=0)
    assert cache.store(query, [inst("a")], 2, now=1).version == 0
    assert cache.store(query, [inst("a"), inst("b")], 3, now=2).version == 1
    assert cache.get(query) is cached
    assert cached.index == 3


# Blocking-query rules.


def test_an_index_going_backwards_resets_to_zero() -> None:
    state = WatchState(index=50, node="http://a")
    assert state.observe(12, "http://a", elapsed=0.01, min_block=0.5) == 0
    assert state.index == 0


def test_quick_unchanged_answers_count_up_and_a_real_block_resets_the_count() -> None:
    state = WatchState(index=7, node="http://a")
    assert [state.observe(7, "http://a", 0.01, 0.5) for _ in range(3)] == [1, 2, 3]
    assert state.observe(7, "http://a", 30.0, 0.5) == 0  # held for the whole wait: a real block
    assert state.observe(8, "http://a", 0.01, 0.5) == 0  # a change, however fast, is no spin
    assert state.index == 8


def test_a_node_without_an_index_switches_the_watch_to_polling() -> None:
    state = WatchState(index=7, node="http://a")
    assert state.observe(None, "http://a", 0.01, 0.5) == 0
    assert state.index is None


def test_another_nodes_index_starts_afresh_whatever_its_value() -> None:
    state = WatchState(index=50, node="http://a")
    assert state.observe(3, "http://b", elapsed=0.01, min_block=0.5) == 0
    assert (state.index, state.node) == (3, "http://b")
    assert state.observe(3, "http://b", elapsed=0.01, min_block=0.5) == 1


# Parsing answers.


def good(**changes: Any) -> dict[str, Any]:
    item = {
        "id": "api-1",
        "name": "api",
        "address": "::1",
        "port": 80,
        "tags": ["v1"],
        "meta": {"zone": "a"},
        "weight": 3,
        "status": "passing",
        "node": "n1",
        "checks": [{"ignored": True}],
    }
    item.update(changes)
    return item


def test_instances_parse_with_unknown_fields_ignored() -> None:
    [instance] = parse_instances([good(stale=True)])
    assert instance.key == ("api", "api-1")
    assert instance.tags == ("v1",)
    assert instance.weight == 3
    assert instance.stale
    assert instance.url("/x") == "http://[::1]:80/x"


@pytest.mark.parametrize(
    "body",
    [
        {"error": "nope"},
        [good(port="80")],
        [good(port=True)],
        [good(port=70000)],
        [good(weight=-1)],
        [good(tags="v1")],
        [good(tags=[1])],
        [good(meta={"k": 1})],
        [good(id=None)],
        ["api-1"],
    ],
)
def test_malformed_answers_raise_bad_response(body: Any) -> None:
    with pytest.raises(BadResponse):
        parse_instances(body)


def test_a_query_names_its_path_and_parameters() -> None:
    query = ServiceQuery.of("a/b", tag="v1", passing=False)
    assert query.path == "/v1/services/a%2Fb"
    assert query.params() == [("tag", "v1"), ("passing", "false")]
    with pytest.raises(ValueError, match="empty"):
        ServiceQuery.of("")


def test_stale_instances_are_picked_only_when_no_fresh_one_is_left() -> None:
    core = ClientCore(
        ["http://n1"], ClientSettings(), token=None, rng=random.Random(1), clock=lambda: 0.0
    )
    fresh, stale = inst("a"), replace(inst("b"), stale=True)
    assert {core.pick("api", [fresh, stale]).id for _ in range(50)} == {"a"}
    assert core.pick("api", [stale]).id == "b"  # better a doubted instance than none
