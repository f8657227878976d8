"""The history of a chaos run: one JSON object per line, appended as things happen.

Everything the checker judges is in here and nothing else is consulted, so a
saved file can be checked again later. Times ``t`` (and ``start``/``end``) are
seconds since the run started (monotonic clock). Events, by ``type``:

- ``meta``: scenario, seed, mode, node names, the profile's timings, the bounds.
- ``op``: a client operation: ``op`` (register/deregister), ``node``, ``id``,
  ``start``, ``end``, ``status`` (HTTP status or null when unanswered),
  ``ok`` (acknowledged).
- ``fault_start`` / ``fault_end``: ``id``, ``kind`` (down, pause, loss,
  partition), ``nodes``, ``params``; a fault never ended lasts to the end.
- ``obs``: one node's view in sweep ``round``: ``members`` (name -> state),
  ``digest``, ``ids`` (instances of the churn service); null when it did not
  answer.
- ``heal``: every fault has stopped; convergence is timed from here.
- ``end``: the run stopped observing.

A line cut short by a crash is skipped when reading: the rest still counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Event", "History", "load_history"]

Event = dict[str, Any]


class History:
    """Appends events to ``path``, flushed at once so a crash loses at most one line."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._t0 = clock()
        self._file = path.open("a", encoding="utf-8")
        self._fault_ids = 0
        self.events: list[Event] = []
        """Everything written, also kept here: the runner watches for convergence with it."""

    def now(self) -> float:
        return round(self._clock() - self._t0, 4)

    def write(self, event: Event) -> None:
        event.setdefault("t", self.now())
        self.events.append(event)
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()

    def fault_start(self, kind: str, nodes: list[str], **params: Any) -> int:
        self._fault_ids += 1
        self.write(
            {"type": "fault_start", "id": self._fault_ids, "kind": kind, "nodes": nodes}
            | {"params": params}
        )
        return self._fault_ids

    def fault_end(self, fault_id: int) -> None:
        self.write({"type": "fault_end", "id": fault_id})

    def close(self) -> None:
        self._file.close()


def load_history(path: Path) -> list[Event]:
    """Every complete event of the file, in order."""
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "type" in event:
            events.append(event)
    return events
