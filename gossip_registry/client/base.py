"""What the trio and the blocking client share beyond the plans: setup and introspection."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Generic, TypeVar

from gossip_registry.client.balancers import Strategy
from gossip_registry.client.core import ClientCore, ClientSettings
from gossip_registry.client.instance import InstanceKey, ServiceQuery
from gossip_registry.client.plans import Flight

__all__ = ["ClientBase"]

TransportT = TypeVar("TransportT")


class ClientBase(Generic[TransportT]):
    """Builds the shared ``ClientCore`` from the public constructor arguments.

    Args:
        nodes: base URLs of registry nodes' HTTP APIs (``http://127.0.0.1:8501``);
            any node answers for the whole cluster.
        token: sent to the nodes as ``Authorization: Bearer TOKEN`` (never to instances).
        strategy: balancing strategy for every service (overrides ``settings``).
        strategies: per-service strategies, e.g. ``{"search": "power_of_two"}``.
        settings: the rest of the tuning.
        rng: the random generator for every choice (seed it to reproduce a run).
        transport: replaces httpx's network transport (``httpx.MockTransport`` in tests).

    Raises:
        ValueError: no node, a node that is not an http(s) URL, an unknown
            strategy, or an out-of-range setting.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        token: str | None = None,
        strategy: Strategy | str | None = None,
        strategies: Mapping[str, Strategy | str] | None = None,
        settings: ClientSettings | None = None,
        rng: random.Random | None = None,
        transport: TransportT | None = None,
    ) -> None:
        settings = settings or ClientSettings()
        if strategy is not None:
            settings = replace(settings, strategy=strategy)
        if strategies is not None:
            settings = replace(settings, strategies={**settings.strategies, **strategies})
        self._core = ClientCore(
            nodes,
            settings,
            token=token,
            rng=rng if rng is not None else random.Random(os.urandom(16)),
            clock=self._now,
        )
        self._flights: dict[ServiceQuery, Flight] = {}
        self._connect(transport)

    def _connect(self, transport: TransportT | None) -> None:
        """Open the subclass's httpx client."""
        raise NotImplementedError

    def _now(self) -> float:
        """The subclass's clock: trio's (mockable in tests), or the monotonic clock."""
        raise NotImplementedError

    @property
    def stats(self) -> dict[str, int]:
        """Counters: fetches, shared_fetches (callers that waited for another's fetch),
        node_requests, node_failures, retries, instance_failures, ejections, quick_returns
        (blocking queries that did not block)."""
        return dict(self._core.stats)

    @property
    def node(self) -> str:
        """The node asked first: the last one that answered."""
        return self._core.nodes.current

    def ejected(self) -> set[InstanceKey]:
        """(service, instance id) of the instances sitting out an ejection now."""
        return self._core.ejected()

    def outstanding(self) -> dict[InstanceKey, int]:
        """Requests in flight from this client, per instance."""
        return dict(self._core.load)
