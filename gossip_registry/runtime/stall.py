"""How long the node's event loop was blocked: the longest task step, as a trio instrument.

A node that blocks its loop answers no probe meanwhile, and peers that wait
longer than their probe timeout suspect it (issue 15: a push-pull merge of
17,000 entries once blocked a node for 34 s, and the cluster declared it dead).
Every protocol step is meant to be short (merges are chunked, pages bounded),
and this meter checks that claim in production: trio calls it before and
after every task step, and the longest step is the longest time nothing else
could run. Its cost is four clock reads per step (about 1 us).

A long step is not always our code's doing. On a host with more busy
processes than cores (20 agents on 2, as the churn benchmark runs them) the
OS can run another process in the middle of a step, and the step lasts that
long though it computed for a millisecond. Peers see the same silence, so it
counts as a stall all the same; the meter also reads the thread's CPU time,
so a stall says whether the loop was blocked by work (a CPU stall: ours to
fix) or by waiting for a core (the host's capacity).

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
    """The longest task step so far (seconds), its task's name, and steps over the threshold,
    by the clock and by the CPU time the step used.

    Args:
        clock: monotonic seconds; ``time.perf_counter`` unless a test drives it.
        cpu_clock: this thread's CPU seconds; ``time.thread_time`` unless a test drives it.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._started: float | None = None
        self._cpu_started = 0.0
        self.longest = 0.0
        self.longest_task = ""
        self.stalls = 0
        self.longest_cpu = 0.0
        """The most CPU time one step used."""
        self.cpu_stalls = 0
        """Steps that used more CPU time than the threshold: the loop blocked by work."""
        self._recent: deque[tuple[float, float, float, str]] = deque(maxlen=RECENT_STALLS)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = self._clock()
        self._cpu_started = self._cpu_clock()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is None:  # installed during this step: its start is unknown
            return
        cpu = self._cpu_clock() - self._cpu_started
        end = self._clock()
        took = end - self._started
        self._started = None
        if took > STALL_THRESHOLD:
            self.stalls += 1
            self.cpu_stalls += cpu > STALL_THRESHOLD
            self._recent.append((end, took, cpu, task.name))
        if took > self.longest:
            self.longest = took
            self.longest_task = task.name
        self.longest_cpu = max(self.longest_cpu, cpu)

    def status(self) -> dict[str, object]:
        """For ``/v1/status``: milliseconds, rounded to the microsecond; ``recent_stalls``
        lists the last ones over the threshold, each with how long ago it ended and the
        CPU time it used."""
        now = self._clock()
        return {
            "longest_stall_ms": round(self.longest * 1000, 3),
            "longest_stall_task": self.longest_task,
            "stalls_over_threshold": self.stalls,
            "longest_cpu_step_ms": round(self.longest_cpu * 1000, 3),
            "cpu_stalls_over_threshold": self.cpu_stalls,
            "threshold_ms": STALL_THRESHOLD * 1000,
            "recent_stalls": [
                {
                    "ago_s": round(now - end, 3),
                    "ms": round(took * 1000, 3),
                    "cpu_ms": round(cpu * 1000, 3),
                    "task": name,
                }
                for end, took, cpu, name in self._recent
            ],
        }
