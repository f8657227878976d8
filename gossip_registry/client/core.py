"""The state both clients share: settings, nodes, cache, balancers, ejection, load.

Rules: pure. No I/O, no clock of its own (``clock`` is passed in: trio's
for the async client, so tests can run it on a mock clock; the monotonic
clock for the blocking one), randomness from one ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field

from gossip_registry.client.balancers import Balancer, Strategy, make_balancer, parse_strategy
from gossip_registry.client.cache import ServiceCache
from gossip_registry.client.ejection import Ejector
from gossip_registry.client.errors import NoInstanceAvailable
from gossip_registry.client.instance import Instance, InstanceKey
from gossip_registry.client.nodes import NodeRotation

__all__ = ["ClientCore", "ClientSettings"]


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Tuning; every duration in seconds. The defaults suit a LAN cluster."""

    strategy: Strategy | str = Strategy.ROUND_ROBIN
    """Default balancing strategy; ``strategies`` overrides it per service."""
    strategies: Mapping[str, Strategy | str] = field(default_factory=dict)
    watch: bool = True
    """Keep cached lists fresh with one blocking query per query (async client)."""
    wait: float = 30.0
    """Blocking-query wait asked of the node (the node caps it and adds jitter)."""
    ttl: float = 10.0
    """Lifetime of a cached list when not watching, or when the node cannot block."""
    ttl_jitter: float = 0.2
    """Up to this fraction of ``ttl`` added at random to each expiry."""
    min_block: float = 0.5
    """A blocking answer with an unchanged index faster than this counts as not blocking."""
    node_timeout: float = 5.0
    """Whole-request timeout for a plain query to a node (blocking ones get ``wait`` on top)."""
    node_backoff: float = 0.05
    """First pause before trying the next node; doubles per node, capped by node_backoff_max."""
    node_backoff_max: float = 1.0
    attempts: int = 2
    """Instances tried per ``request`` (first try included)."""
    retry_backoff: float = 0.02
    """Pause before a retry on another instance (jittered, doubling per attempt)."""
    request_timeout: float = 10.0
    """Default timeout of a request to an instance."""
    eject_after: int = 3
    eject_cooldown: float = 30.0
    eject_cooldown_max: float = 300.0
    scheme: str = "http"
    """How instances are called (``https`` when they serve TLS)."""

    def __post_init__(self) -> None:
        for name in ("wait", "ttl", "node_timeout", "request_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")
        if self.attempts < 1:
            raise ValueError(f"attempts: must be >= 1, got {self.attempts}")


class ClientCore:
    def __init__(
        self,
        nodes: Sequence[str],
        settings: ClientSettings,
        *,
        token: str | None,
        rng: random.Random,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.rng = rng
        self.clock = clock
        self.nodes = NodeRotation(nodes, rng)
        self.cache = ServiceCache(settings.ttl, settings.ttl_jitter, rng)
        self.ejector = Ejector(
            settings.eject_after, settings.eject_cooldown, settings.eject_cooldown_max
        )
        self.node_headers: dict[str, str] = {"Accept": "application/json"}
        if token is not None:
            self.node_headers["Authorization"] = f"Bearer {token}"
        self.load: Counter[InstanceKey] = Counter()
        """Requests in flight from this client, per instance."""
        self.stats: Counter[str] = Counter()
        """fetches, node_failures, retries, instance_failures, ejections: for tests and metrics."""
        for strategy in (settings.strategy, *settings.strategies.values()):
            parse_strategy(strategy)  # an unknown name fails here, not on the first call
        self._balancers: dict[str, Balancer] = {}

    def balancer(self, service: str) -> Balancer:
        balancer = self._balancers.get(service)
        if balancer is None:
            strategy = self.settings.strategies.get(service, self.settings.strategy)
            balancer = self._balancers[service] = make_balancer(strategy, self.rng)
        return balancer

    def pick(
        self,
        service: str,
        instances: Sequence[Instance],
        exclude: Set[InstanceKey] = frozenset(),
    ) -> Instance:
        """The balancer's choice among the instances neither ejected nor excluded.

        Instances flagged stale (their owner was declared dead while the node
        doubted it: self-preservation) are used only when no fresh one is
        left. The panic rule is applied to that list first: if every
        instance is ejected, all are candidates again. ``exclude`` (instances
        a retry already tried) then wins over ejection: a retry would rather
        try an ejected instance than none.

        Raises:
            NoInstanceAvailable: the list is empty, or every instance is excluded.
        """
        instances = [i for i in instances if not i.stale] or instances
        usable = self.ejector.usable(instances, self.clock())
        candidates = [i for i in usable if i.key not in exclude] or [
            i for i in instances if i.key not in exclude
        ]
        if not candidates:
            raise NoInstanceAvailable(f"{service}: no instance registered (or none passing)")
        return self.balancer(service).pick(candidates, self.load)

    def ejected(self) -> set[InstanceKey]:
        """Instances sitting out a cool-down now."""
        return self.ejector.ejected_keys(self.clock())
