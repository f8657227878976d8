"""Lifeguard dynamic suspicion timeout (Dadgar et al. 2017, section IV-B).

A suspicion starts with a long timeout (``max``) and shrinks towards
``min`` as independent peers confirm it, on a log scale, so a member that a
single slow node accuses gets a long time to refute, while a member that many
peers find unreachable is declared dead quickly. The formula is memberlist's
``remainingSuspicionTime`` (hashicorp/memberlist ``suspicion.go``):

    timeout = max - (log(n + 1) / log(k + 1)) * (max - min), never below min

where n is the number of confirmations and k the number wanted. The accuser
that raised the suspicion does not count as a confirmation.
"""

from __future__ import annotations

import math


def suspicion_timeout(confirmations: int, wanted: int, min_s: float, max_s: float) -> float:
    """Seconds from the start of a suspicion until the member is declared dead."""
    if wanted < 1:
        return min_s
    fraction = math.log(confirmations + 1) / math.log(wanted + 1)
    return max(min_s, max_s - fraction * (max_s - min_s))


class Suspicion:
    """One suspected member: when it started, who accused, and the deadline now."""

    __slots__ = ("accusers", "incarnation", "last_chance", "max_s", "min_s", "start", "wanted")

    def __init__(
        self, start: float, incarnation: int, accuser: str, wanted: int, min_s: float, max_s: float
    ) -> None:
        self.start = start
        self.incarnation = incarnation
        self.accusers = {accuser}
        self.wanted = wanted
        self.min_s = min_s
        self.max_s = max_s
        self.last_chance: int | None = None
        """Sequence number of the last-chance probe once the timer has run out (``swim.py``)."""

    def confirm(self, accuser: str) -> bool:
        """Count an independent accuser; False if already counted or no more are needed."""
        if accuser in self.accusers or len(self.accusers) - 1 >= self.wanted:
            return False
        self.accusers.add(accuser)
        return True

    @property
    def deadline(self) -> float:
        confirmations = len(self.accusers) - 1
        return self.start + suspicion_timeout(confirmations, self.wanted, self.min_s, self.max_s)
