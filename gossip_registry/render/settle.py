"""``--wait MIN:MAX``: let the registry settle before rendering, but not forever.

Rules: pure; ``now`` comes from the caller.

A deploy changes many instances within seconds; rendering (and reloading
nginx) on each change would reload it dozens of times. As consul-template's
``wait``: after a change, render once nothing has changed for ``min``
seconds, and at the latest ``max`` seconds after the first change of the
burst, so a registry that never goes quiet still gets rendered.
"""

from __future__ import annotations

from gossip_registry.config.values import parse_duration

__all__ = ["Quiescence", "parse_wait"]

MAX_PER_MIN = 4
"""``--wait MIN`` alone means a maximum of 4 x MIN (consul-template's default)."""


def parse_wait(text: str) -> tuple[float, float]:
    """``"2s"`` -> (2, 8); ``"2s:10s"`` -> (2, 10); ``"0s"`` -> no wait.

    Raises:
        ValueError: a bad duration, or MAX below MIN.
    """
    low_text, sep, high_text = text.partition(":")
    low = parse_duration(low_text)
    high = parse_duration(high_text) if sep else low * MAX_PER_MIN
    if high < low:
        raise ValueError(f"MAX ({high_text}) must not be below MIN ({low_text})")
    return low, high


class Quiescence:
    """When a burst of changes is due for rendering."""

    def __init__(self, min_wait: float, max_wait: float) -> None:
        if not 0 <= min_wait <= max_wait:
            raise ValueError("wait: need 0 <= MIN <= MAX")
        self.min_wait, self.max_wait = min_wait, max_wait
        self._first: float | None = None
        self._last = 0.0

    def changed(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def due(self) -> float | None:
        """The time to render at; None when nothing changed since the last ``rendered``."""
        if self._first is None:
            return None
        return min(self._last + self.min_wait, self._first + self.max_wait)

    def rendered(self) -> None:
        self._first = None
