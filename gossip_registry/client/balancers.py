"""Load-balancing strategies: which instance of a service gets the next call.

Rules: pure. A balancer sees the candidate list (already filtered of
ejected instances) and the number of requests each instance has in flight
from this client; randomness comes only from the ``random.Random`` it was
built with, so a seed reproduces every choice.

The strategies are Ribbon's and Envoy's usual set:

- ``round_robin``: even spread when instances are alike; Spring Cloud
  LoadBalancer's default.
- ``random``: no shared counter, so many clients do not march in step.
- ``weighted``: random in proportion to the registered ``weight`` (canaries
  at weight 1 beside weight 9). Weight 0 takes no traffic unless every
  instance has weight 0.
- ``least_outstanding``: fewest requests in flight (Ribbon's
  BestAvailableRule); ties broken at random so a fleet of fresh clients
  does not pile onto the first instance.
- ``power_of_two``: two distinct instances at random, the less loaded one
  wins (Mitzenmacher's "power of two choices"): nearly the balance of
  least-outstanding at the cost of two lookups, and no herding on a single
  "best" instance when load information is stale.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Protocol

from gossip_registry.client.instance import Instance, InstanceKey

__all__ = [
    "Balancer",
    "LeastOutstanding",
    "PowerOfTwo",
    "RandomChoice",
    "RoundRobin",
    "Strategy",
    "Weighted",
    "make_balancer",
    "parse_strategy",
]

Load = Mapping[InstanceKey, int]
"""Requests in flight per instance; missing means none."""


class Strategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    WEIGHTED = "weighted"
    LEAST_OUTSTANDING = "least_outstanding"
    POWER_OF_TWO = "power_of_two"


class Balancer(Protocol):
    def pick(self, instances: Sequence[Instance], load: Load) -> Instance:
        """One of ``instances``, which is never empty."""
        ...


class RoundRobin:
    def __init__(self, rng: random.Random) -> None:
        # Start at a random offset: clients started together should not all hit instance 0 first.
        self._counter = itertools.count(rng.randrange(1 << 16))

    def pick(self, instances: Sequence[Instance], load: Load) -> Instance:
        return instances[next(self._counter) % len(instances)]


class RandomChoice:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, instances: Sequence[Instance], load: Load) -> Instance:
        return instances[self._rng.randrange(len(instances))]


class Weighted:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, instances: Sequence[Instance], load: Load) -> Instance:
        bounds = list(itertools.accumulate(i.weight for i in instances))
        if bounds[-1] == 0:
            return instances[self._rng.randrange(len(instances))]
        # bisect_right skips zero-weight instances: their bound equals the previous one.
        return instances[bisect.bisect_right(bounds, self._rng.randrange(bounds[-1]))]


class LeastOutstanding:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, instances: Sequence[Instance], load: Load) -> Instance:
        fewest = min(load.get(i.key, 0) for i in instances)
        idle = [i for i in instances if load.get(i.key, 0) == fewest]
        return idle[self._rng.randrange(len(idle))]


class PowerOfTwo:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, instances: Sequence[Instance], load: Load) -> Instance:
        if len(instances) == 1:
            return instances[0]
        first, second = self._rng.sample(range(len(instances)), 2)
        a, b = instances[first], instances[second]
        return b if load.get(b.key, 0) < load.get(a.key, 0) else a


_STRATEGIES: dict[Strategy, Callable[[random.Random], Balancer]] = {
    Strategy.ROUND_ROBIN: RoundRobin,
    Strategy.RANDOM: RandomChoice,
    Strategy.WEIGHTED: Weighted,
    Strategy.LEAST_OUTSTANDING: LeastOutstanding,
    Strategy.POWER_OF_TWO: PowerOfTwo,
}


def parse_strategy(strategy: Strategy | str) -> Strategy:
    """Raises ValueError for an unknown strategy name, listing the known ones."""
    try:
        return Strategy(strategy)
    except ValueError:
        known = ", ".join(s.value for s in Strategy)
        raise ValueError(f"strategy: unknown {strategy!r} (known: {known})") from None


def make_balancer(strategy: Strategy | str, rng: random.Random) -> Balancer:
    """A fresh balancer for one service.

    Raises:
        ValueError: unknown strategy name (the message lists the known ones).
    """
    return _STRATEGIES[parse_strategy(strategy)](rng)
