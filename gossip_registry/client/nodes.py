"""Which registry node to ask: stay on one that answers, move on when it does not.

Rules: pure; randomness from the caller's ``random.Random``.

Any node answers for the whole cluster, so the client sticks to the node
that answered last (its keep-alive connection stays warm, and load spreads
because clients start on different nodes) and only moves on after a
connection error or a 5xx. Moving on walks the list once from there, with
a short jittered backoff between nodes so that a fleet of clients losing
the same node does not hit the next one in the same millisecond.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

__all__ = ["NodeRotation", "jittered"]


def jittered(base: float, attempt: int, cap: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so it never hits zero."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


class NodeRotation:
    def __init__(self, urls: Sequence[str], rng: random.Random) -> None:
        if isinstance(urls, str):
            raise TypeError("nodes: expected a list of base URLs, got one string")
        cleaned = [u.rstrip("/") for u in urls]
        if not cleaned:
            raise ValueError("nodes: need at least one node base URL")
        for url in cleaned:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"nodes: {url!r} is not an http:// or https:// base URL")
        self.urls = cleaned
        # Each client starts on a random node, so a fleet spreads over the cluster.
        self._current = rng.randrange(len(cleaned))

    @property
    def current(self) -> str:
        return self.urls[self._current]

    def order(self) -> Iterator[str]:
        """Every node once, starting with the one that answered last."""
        start = self._current
        for step in range(len(self.urls)):
            yield self.urls[(start + step) % len(self.urls)]

    def answered(self, url: str) -> None:
        """Remember ``url`` as the node to ask first next time."""
        self._current = self.urls.index(url)
