"""Balancing strategies: statistical checks with fixed seeds and stated tolerances."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gossip_registry.client.balancers import Strategy, make_balancer
from gossip_registry.client.instance import Instance, InstanceKey

PICKS = 10_000


def instances(*weights: int) -> list[Instance]:
    return [
        Instance(id=f"i{n}", name="api", address="127.0.0.1", port=9000 + n, weight=w)
        for n, w in enumerate(weights)
    ]


def shares(strategy: Strategy, pool: list[Instance], seed: int = 7) -> dict[str, float]:
    balancer = make_balancer(strategy, random.Random(seed))
    counts = Counter(balancer.pick(pool, {}).id for _ in range(PICKS))
    return {i.id: counts[i.id] / PICKS for i in pool}


def test_round_robin_gives_each_instance_exactly_its_turn() -> None:
    pool = instances(1, 1, 1, 1)
    balancer = make_balancer("round_robin", random.Random(1))
    counts = Counter(balancer.pick(pool, {}).id for _ in range(400))
    assert set(counts.values()) == {100}


def test_random_spreads_evenly_within_two_points() -> None:
    for share in shares(Strategy.RANDOM, instances(1, 1, 1, 1)).values():
        assert share == pytest.approx(0.25, abs=0.02)


def test_weighted_three_to_one_gives_75_percent_within_three_points() -> None:
    got = shares(Strategy.WEIGHTED, instances(3, 1))
    assert got["i0"] == pytest.approx(0.75, abs=0.03)
    assert got["i1"] == pytest.approx(0.25, abs=0.03)


def test_weighted_never_picks_weight_zero_unless_all_are_zero() -> None:
    assert shares(Strategy.WEIGHTED, instances(0, 2, 0, 2))["i0"] == 0
    assert shares(Strategy.WEIGHTED, instances(0, 2, 0, 2))["i2"] == 0
    for share in shares(Strategy.WEIGHTED, instances(0, 0)).values():
        assert share == pytest.approx(0.5, abs=0.03)


def test_least_outstanding_picks_the_idlest_and_breaks_ties_at_random() -> None:
    pool = instances(1, 1, 1)
    balancer = make_balancer("least_outstanding", random.Random(3))
    load: dict[InstanceKey, int] = {pool[0].key: 4, pool[1].key: 1, pool[2].key: 1}
    picked = Counter(balancer.pick(pool, load).id for _ in range(1000))
    assert set(picked) == {"i1", "i2"}
    assert picked["i1"] / 1000 == pytest.approx(0.5, abs=0.06)


def max_load(strategy: Strategy, seed: int) -> int:
    """Balls into bins: every pick adds a request that never finishes."""
    pool = instances(*[1] * 100)
    balancer = make_balancer(strategy, random.Random(seed))
    load: Counter[InstanceKey] = Counter()
    for _ in range(PICKS):
        load[balancer.pick(pool, load).key] += 1
    return max(load.values())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_power_of_two_keeps_the_busiest_instance_far_below_random(seed: int) -> None:
    # 10,000 requests on 100 instances: 100 each on average.
    p2c, rand = max_load(Strategy.POWER_OF_TWO, seed), max_load(Strategy.RANDOM, seed)
    assert p2c <= 105  # theory: mean + ln ln n / ln 2, about 102
    assert rand >= 115  # theory: mean + about sqrt(2 mean ln n), about 130
    assert p2c < rand


def test_power_of_two_with_one_instance_returns_it() -> None:
    pool = instances(1)
    assert make_balancer("power_of_two", random.Random(0)).pick(pool, {}) is pool[0]


def test_the_same_seed_gives_the_same_choices() -> None:
    pool = instances(5, 1, 3)
    for strategy in Strategy:
        a, b = (make_balancer(strategy, random.Random(42)) for _ in range(2))
        assert [a.pick(pool, {}).id for _ in range(50)] == [b.pick(pool, {}).id for _ in range(50)]


def test_an_unknown_strategy_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="round_robin, random, weighted"):
        make_balancer("fastest", random.Random(0))
