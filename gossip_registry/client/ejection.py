"""Outlier ejection: an instance that keeps failing sits out for a while.

Rules: pure; time comes in as ``now`` (seconds, any monotonic origin).

Modelled on Envoy's consecutive-failure outlier detection: ``threshold``
failures in a row (connection failures, and 5xx answers) eject an instance
for ``cooldown`` seconds; if it fails again right after coming back, before
any success, the next ejection lasts twice as long, up to ``max_cooldown``.
One success clears its record. This is what lets a dead instance cost
callers a few retries instead of one per call until the registry notices
(gossip needs seconds to declare a process dead; a health check longer).

Panic threshold: if every candidate is ejected, all are used. Ejecting the
whole service would turn a client-side guess into an outage, and when every
instance fails the caller gets the real error anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gossip_registry.client.instance import Instance, InstanceKey

__all__ = ["Ejector"]


@dataclass(slots=True)
class _Record:
    failures: int = 0
    """Consecutive failures since the last success or ejection."""
    ejections: int = 0
    """Ejections since the last success: the doubling exponent."""
    until: float = float("-inf")


class Ejector:
    def __init__(self, threshold: int = 3, cooldown: float = 30.0, max_cooldown: float = 300.0):
        if threshold < 1:
            raise ValueError(f"eject_after: must be >= 1, got {threshold}")
        if not 0 <= cooldown <= max_cooldown:
            raise ValueError("eject cooldown: need 0 <= cooldown <= max_cooldown")
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._records: dict[InstanceKey, _Record] = {}

    def failure(self, key: InstanceKey, now: float) -> bool:
        """Count a failure; True if this one ejected the instance."""
        record = self._records.setdefault(key, _Record())
        record.failures += 1
        if record.failures < self.threshold:
            return False
        record.failures = 0
        record.ejections += 1
        record.until = now + min(self.max_cooldown, self.cooldown * 2.0 ** (record.ejections - 1))
        return True

    def success(self, key: InstanceKey) -> None:
        self._records.pop(key, None)

    def ejected(self, key: InstanceKey, now: float) -> bool:
        record = self._records.get(key)
        return record is not None and record.until > now

    def ejected_keys(self, now: float) -> set[InstanceKey]:
        return {key for key, record in self._records.items() if record.until > now}

    def usable(self, instances: Sequence[Instance], now: float) -> list[Instance]:
        """The instances not ejected, or all of them if that would leave none."""
        kept = [i for i in instances if not self.ejected(i.key, now)]
        return kept or list(instances)
