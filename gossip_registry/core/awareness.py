"""Lifeguard local health awareness (Dadgar et al. 2017, section IV-A).

A node that misses acks may be the slow one: its own CPU or network, not its
peers. The score rises on evidence of that (a failed probe with missing nacks,
having to refute a suspicion about ourselves) and falls on each successful
probe; the probe interval and probe timeout are stretched by (score + 1), so
an unhealthy node probes less often and waits longer before it accuses
anyone. Memberlist scales only the interval (``awareness.go``); the paper
scales both, and so do we.
"""

from __future__ import annotations


class Awareness:
    """Saturating health score in [0, max_multiplier - 1]; 0 is healthy."""

    def __init__(self, max_multiplier: int) -> None:
        self._max = max_multiplier
        self.score = 0

    def apply(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self._max - 1)

    def scale(self, duration: float) -> float:
        return duration * (self.score + 1)
