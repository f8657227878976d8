"""Check scheduling: which of a node's health checks runs when, and what the results decide.

Theory of operation: the owning node's checks are plain data here, and time
is the caller's ``now``; the trio runner (``runtime/checks.py``) and the simulator
(``sim/checks.py``) drive the same ``CheckScheduler`` and only carry out what
it asks (``RunProbe``, ``CancelProbe``) and what it decides (``ChecksChanged``,
``DeregisterCritical``). The rules of a single check's status (thresholds,
TTL, deregister_after) are ``CheckTracker``'s (``registry/health.py``); this
module owns *when*:

- An HTTP or TCP check first runs at a random offset within its interval
  (from the injected rng), so a node's checks are spread in time rather than
  fired together, then every interval counted from when its run was due
  (the time it waited for a slot and its probe time included).
- At most ``max_concurrent`` probes are in flight at once; a due check
  beyond that waits its turn, first come first served, so hundreds of checks
  cannot open hundreds of sockets together. A probe is bounded by the check's
  ``effective_timeout``; the driver reports a timeout, which is critical.
- A TTL check wakes when its TTL runs out (critical, ``TTL expired``); a
  report applies at once and moves the expiry.
- ``deregister_after``: a TTL check is looked at when the critical time is
  up; an HTTP or TCP check after each of its results. Either way, once the
  instance has been critical that long all its checks stop and the instance
  is to be deregistered (once).

Cost: one heap of due times. A check has one live heap item; moving its due
time (a TTL report) pushes a new one and leaves the old one stale, skipped
when it pops, and the heap is rebuilt once stale items outnumber live ones.
Every call is O(log n) amortised in the number of checks.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from random import Random

from gossip_registry.registry.entry import CheckKind, CheckState, Entry, EntryKey, Health
from gossip_registry.registry.health import CheckSpec, CheckTracker, initial_states
from gossip_registry.registry.schema import MAX_OUTPUT_LEN

__all__ = [
    "MAX_CONCURRENT_PROBES",
    "CancelProbe",
    "CheckEffect",
    "CheckScheduler",
    "ChecksChanged",
    "DeregisterCritical",
    "RunProbe",
    "clip_output",
]

MAX_CONCURRENT_PROBES = 64
"""Probes in flight at once on one node; the rest wait their turn."""


@dataclass(frozen=True, slots=True)
class RunProbe:
    """Run ``spec``'s HTTP or TCP probe once, for at most ``timeout`` seconds, and report
    to ``probe_done`` (or ``probe_timed_out``) with ``token``."""

    key: EntryKey
    spec: CheckSpec
    token: int
    timeout: float


@dataclass(frozen=True, slots=True)
class CancelProbe:
    """The probe ``token`` is no longer wanted (its check was removed): stop it."""

    token: int


@dataclass(frozen=True, slots=True)
class ChecksChanged:
    """The instance's checks have new states: write it again with them (it gossips)."""

    key: EntryKey
    states: tuple[CheckState, ...]


@dataclass(frozen=True, slots=True)
class DeregisterCritical:
    """The instance was critical past a check's ``deregister_after``; its checks are
    stopped, deregister it."""

    key: EntryKey


CheckEffect = RunProbe | CancelProbe | ChecksChanged | DeregisterCritical


def clip_output(output: str) -> str:
    """An output the wire carries: longer ones are cut, with "..." saying so."""
    return output if len(output) <= MAX_OUTPUT_LEN else output[: MAX_OUTPUT_LEN - 3] + "..."


class _Check:
    """One running check: its tracker and where it is in the schedule."""

    __slots__ = ("heap_seq", "key", "removed", "started", "token", "tracker")

    def __init__(self, key: EntryKey, tracker: CheckTracker) -> None:
        self.key = key
        self.tracker = tracker
        self.heap_seq = -1
        """The seq of its live heap item (-1: none)."""
        self.token = -1
        """Its probe in flight (-1: none)."""
        self.started = 0.0
        """When its current run was due: the next is an interval later."""
        self.removed = False

    @property
    def wake_at(self) -> float:
        """When a TTL check must be looked at: its expiry or its deregistration."""
        return min(self.tracker.expires_at, self.tracker.deregister_at)


class CheckScheduler:
    """The checks of one node's instances; see the module docstring.

    Args:
        rng: spreads first runs (seed it for a reproducible schedule).
        max_concurrent: probes in flight at once.
    """

    def __init__(self, rng: Random, max_concurrent: int = MAX_CONCURRENT_PROBES) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self._rng = rng
        self._max_concurrent = max_concurrent
        self._instances: dict[EntryKey, dict[str, _Check]] = {}
        self._specs: dict[EntryKey, tuple[CheckSpec, ...]] = {}
        """Each instance's specs, kept with ``_instances``: a snapshot copies them in one C call."""
        self._by_id: dict[str, EntryKey] = {}
        self._heap: list[tuple[float, int, _Check]] = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._in_flight: dict[int, _Check] = {}
        self._waiting: deque[_Check] = deque()
        """Due probe checks waiting for a slot, in the order they fell due."""

    # ----------------------------------------------------------- bookkeeping

    def __len__(self) -> int:
        return len(self._by_id)

    def owner_of(self, check_id: str) -> EntryKey | None:
        return self._by_id.get(check_id)

    def states(self, key: EntryKey) -> tuple[CheckState, ...]:
        return tuple(c.tracker.state for c in self._instances.get(key, {}).values())

    def specs(self) -> dict[EntryKey, tuple[CheckSpec, ...]]:
        """Every instance's checks, as a snapshot stores them."""
        return dict(self._specs)  # at every compaction: no Python work per instance

    def specs_of(self, key: EntryKey) -> tuple[CheckSpec, ...]:
        """One instance's checks (none if it has none)."""
        return self._specs.get(key, ())

    def counts(self) -> dict[str, int]:
        """Checks by status."""
        counts = {str(h): 0 for h in Health}
        for checks in self._instances.values():
            for check in checks.values():
                counts[str(check.tracker.state.status)] += 1
        return counts

    @property
    def next_due(self) -> float:
        """When ``advance`` has something to do next (inf: nothing scheduled)."""
        heap = self._heap
        while heap and heap[0][2].heap_seq != heap[0][1]:
            heapq.heappop(heap)  # stale: its check moved or went away
        return heap[0][0] if heap else math.inf

    # ------------------------------------------------------------- changes

    def replace(
        self,
        now: float,
        key: EntryKey,
        specs: Sequence[CheckSpec],
        states: Sequence[CheckState],
    ) -> list[CheckEffect]:
        """Stop the instance's checks and start ``specs`` (ids assigned) from ``states``."""
        effects = self.remove(key)
        checks: dict[str, _Check] = {}
        for spec, state in zip(specs, states, strict=True):
            assert spec.check_id is not None, "assign_check_ids first"
            check = checks[spec.check_id] = _Check(key, CheckTracker(spec, state, now))
            self._by_id[spec.check_id] = key
            if spec.kind is CheckKind.TTL:
                self._push(check, check.wake_at)
            else:
                self._push(check, now + self._rng.uniform(0, spec.interval))
        if checks:
            self._instances[key] = checks
            self._specs[key] = tuple(specs)
        return effects

    def restore(
        self,
        now: float,
        own: Mapping[EntryKey, Entry],
        checks: Iterable[tuple[EntryKey, Sequence[CheckSpec]]],
    ) -> list[CheckEffect]:
        """Run again the checks a snapshot kept for the instances still in ``own`` (our
        live entries), each from the states its entry last recorded."""
        effects: list[CheckEffect] = []
        for key, specs in checks:
            entry = own.get(key)
            if entry is not None:
                effects += self.replace(now, key, specs, initial_states(specs, entry.checks))
        return effects

    def remove(self, key: EntryKey) -> list[CheckEffect]:
        """Stop the instance's checks (nothing without any); a freed probe slot goes to
        the next check waiting."""
        effects: list[CheckEffect] = []
        self._specs.pop(key, None)
        for check_id, check in self._instances.pop(key, {}).items():
            check.removed = True
            check.heap_seq = -1
            del self._by_id[check_id]
            if check.token in self._in_flight:
                del self._in_flight[check.token]
                effects.append(CancelProbe(check.token))
        self._start_waiting(effects)
        return effects

    def report_ttl(
        self, now: float, check_id: str, status: Health, output: str = ""
    ) -> list[CheckEffect]:
        """A TTL check's report from its service.

        Raises:
            KeyError: no check ``check_id`` runs here.
            ValueError: it is not a TTL check.
        """
        key = self._by_id[check_id]
        check = self._instances[key][check_id]
        if check.tracker.spec.kind is not CheckKind.TTL:
            raise ValueError(f"check {check_id!r} is a {check.tracker.spec.kind} check, not ttl")
        changed = check.tracker.report(now, Health(status), clip_output(output))
        self._push(check, check.wake_at)
        return [ChecksChanged(key, self.states(key))] if changed else []

    def probe_done(self, now: float, token: int, status: Health, output: str) -> list[CheckEffect]:
        """What the probe ``token`` found; nothing if its check was removed meanwhile."""
        check = self._in_flight.pop(token, None)
        if check is None:
            return []
        check.token = -1
        effects: list[CheckEffect] = []
        changed = check.tracker.record(now, status, clip_output(output))
        if self._settle(now, check, changed, effects):
            self._push(check, check.started + check.tracker.spec.interval)
        self._start_waiting(effects)
        return effects

    def probe_timed_out(self, now: float, token: int) -> list[CheckEffect]:
        """The probe ``token`` did not answer within its timeout: critical."""
        check = self._in_flight.get(token)
        timeout = 0.0 if check is None else check.tracker.spec.effective_timeout
        return self.probe_done(now, token, Health.CRITICAL, f"timed out after {timeout:g}s")

    def advance(self, now: float) -> list[CheckEffect]:
        """Everything due at ``now``: probes to run, expired TTLs, deregistrations."""
        effects: list[CheckEffect] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, check = heapq.heappop(heap)
            if check.heap_seq != seq:
                continue
            check.heap_seq = -1
            if check.tracker.spec.kind is CheckKind.TTL:
                self._wake_ttl(now, check, effects)
            else:
                check.started = now
                self._waiting.append(check)
        self._start_waiting(effects)
        return effects

    # -------------------------------------------------------------- inside

    def _wake_ttl(self, now: float, check: _Check, effects: list[CheckEffect]) -> None:
        tracker = check.tracker
        changed = now >= tracker.expires_at and tracker.expire(now)
        if self._settle(now, check, changed, effects):
            self._push(check, check.wake_at)

    def _settle(self, now: float, check: _Check, changed: bool, effects: list[CheckEffect]) -> bool:
        """Say what changed; False once the instance is to be deregistered (its checks stop)."""
        key = check.key
        if changed:
            effects.append(ChecksChanged(key, self.states(key)))
        if now >= check.tracker.deregister_at:
            effects += self.remove(key)
            effects.append(DeregisterCritical(key))
            return False
        return True

    def _start_waiting(self, effects: list[CheckEffect]) -> None:
        waiting = self._waiting
        while waiting and len(self._in_flight) < self._max_concurrent:
            check = waiting.popleft()
            if check.removed:
                continue
            check.token = next(self._tokens)
            self._in_flight[check.token] = check
            spec = check.tracker.spec
            effects.append(RunProbe(check.key, spec, check.token, spec.effective_timeout))

    def _push(self, check: _Check, when: float) -> None:
        """Make ``when`` the check's next due time (inf: none); its older item goes stale."""
        if when == math.inf:
            check.heap_seq = -1
            return
        seq = next(self._seq)
        check.heap_seq = seq
        heapq.heappush(self._heap, (when, seq, check))
        if len(self._heap) > 2 * len(self._by_id) + 64:
            self._compact()

    def _compact(self) -> None:
        """Drop stale items: a TTL reported far more often than it runs out leaves many."""
        self._heap = [item for item in self._heap if item[2].heap_seq == item[1]]
        heapq.heapify(self._heap)
