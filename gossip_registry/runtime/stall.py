"""How long the node's event loop was blocked: the longest task step, as a trio instrument.

A node that blocks its loop answers no probe meanwhile, and peers that wait
longer than their probe timeout suspect it (issue 15: a push-pull merge of
17,000 entries once blocked a node for 34 s, and the cluster declared it dead).
Every protocol step is meant to be short (merges are chunked, pages bounded),
and this meter checks that claim in production: trio calls it before and
after every task step, and the longest step is the longest time nothing else
could run. Its cost is two clock reads per step.

The meter measures the whole trio run it is installed in: with several nodes
in one process (tests, an embedding application) each node's meter sees the
steps of all of them, since they share that one loop and so block each other.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import trio

RECENT_STALLS = 16
"""Stalls over the threshold kept with their time and task, newest last (``status``)."""

STALL_THRESHOLD = 0.05
"""Steps longer than this (seconds) are counted as stalls: issue 15's bound, well under
the default probe timeout (0.5 s), so a stall this long cannot cost a probe by itself."""


class StallMeter(trio.abc.Instrument):
    """The longest task step so far (seconds), its task's name, and steps over the threshold.

    Args:
        clock: monotonic seconds; ``time.perf_counter`` unless a test drives it.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started: float | None = None
        self.longest = 0.0
        self.longest_task = ""
        self.stalls = 0
        self._recent: deque[tuple[float, float, str]] = deque(maxlen=RECENT_STALLS)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = self._clock()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is None:  # installed during this step: its start is unknown
            return
        end = self._clock()
        took = end - self._started
        self._started = None
        if took > STALL_THRESHOLD:
            self.stalls += 1
            self._recent.append((end, took, task.name))
        if took > self.longest:
            self.longest = took
            self.longest_task = task.name

    def status(self) -> dict[str, object]:
        """For ``/v1/status``: milliseconds, rounded to the microsecond; ``recent_stalls``
        lists the last ones over the threshold, each with how long ago it ended."""
        now = self._clock()
        return {
            "longest_stall_ms": round(self.longest * 1000, 3),
            "longest_stall_task": self.longest_task,
            "stalls_over_threshold": self.stalls,
            "threshold_ms": STALL_THRESHOLD * 1000,
            "recent_stalls": [
                {"ago_s": round(now - end, 3), "ms": round(took * 1000, 3), "task": name}
                for end, took, name in self._recent
            ],
        }
