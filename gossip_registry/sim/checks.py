"""Health checks in the simulator: the node's own check scheduler, on virtual time.

Theory of operation. A simulated node runs its instances' checks with the
same ``CheckScheduler`` (``registry/check_schedule.py``) as the trio runner:
first-run stagger, interval, the probe limiter, TTL expiry and
``deregister_after`` are its decisions, not this module's. This module is the
simulator's driver of it, as ``runtime/checks.py`` is the node's:

- the scheduler's next due time is one callback in the event heap (armed
  again only when that time comes closer), and a paused process finds its
  overdue checks when it resumes, like its other timers;
- a ``RunProbe`` asks the probe-outcome model (``ProbeOutcome``: status,
  output and how long the probe takes) and reports the result that much
  later, or a timeout at the probe's timeout if it takes that long;
- ``ChecksChanged`` and ``DeregisterCritical`` go to the core exactly as the
  node sends them (``Protocol.update_checks``, ``Protocol.deregister``), so
  the status change or the deletion gossips like any write.

A crash loses the scheduler with the process (events of an old life are
dropped); a restart from snapshot runs the checks its snapshot kept again,
from the states its entries recorded (``CheckScheduler.restore``), as the
node does. Status changes are not durable writes in the node (they are
re-derived by running the checks), so they do not change ``Process.durable``
here either; a deregistration after ``deregister_after`` leaves it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gossip_registry.registry.check_schedule import (
    CheckEffect,
    ChecksChanged,
    CheckScheduler,
    DeregisterCritical,
    RunProbe,
)
from gossip_registry.registry.entry import CheckState, EntryKey, Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.sim.engine import Engine
from gossip_registry.sim.process import NodeStatus, Process, Snapshot


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """What an instance's HTTP or TCP probe finds, in the simulator's probe-outcome model."""

    status: Health = Health.PASSING
    output: str = ""
    duration: float = 0.001
    """Virtual seconds the probe takes; at or past the probe's timeout it times out."""


ProbeModel = Callable[[float, str, EntryKey, CheckSpec], ProbeOutcome]
"""(now, node name, instance, check) -> what the probe run now finds."""


class SimChecks:
    """Every simulated node's checks; see the module docstring.

    Args:
        engine: the event loop (virtual time, callbacks, the core's effects).
        model: the probe-outcome model; default: ``scripted``, whatever
            ``script`` last set for the instance, passing until then.
    """

    def __init__(self, engine: Engine, model: ProbeModel | None = None) -> None:
        self._engine = engine
        self._model = model or self.scripted
        self._scripts: dict[EntryKey, ProbeOutcome] = {}

    # The probe-outcome model.

    def script(self, key: EntryKey, outcome: ProbeOutcome) -> None:
        """From now on, probes of instance ``key`` find ``outcome`` (for ``scripted``)."""
        self._scripts[key] = outcome

    def scripted(self, now: float, name: str, key: EntryKey, spec: CheckSpec) -> ProbeOutcome:
        return self._scripts.get(key, _PASSING)

    # What the cluster asks.

    def schedule(self, proc: Process) -> CheckScheduler:
        """The process's scheduler, made on first use (10,000 nodes without checks need none)."""
        if proc.checks is None:
            proc.checks = CheckScheduler(random.Random(self._engine.rng.getrandbits(64)))
        return proc.checks

    def replace(
        self,
        proc: Process,
        key: EntryKey,
        specs: Sequence[CheckSpec],
        states: Sequence[CheckState],
    ) -> None:
        """Run ``specs`` for ``key`` from ``states`` (none: stop its checks), durably."""
        if specs:
            proc.check_specs[key] = tuple(specs)
        else:
            proc.check_specs.pop(key, None)
        if specs or proc.checks is not None:
            now = self._engine.now
            self.apply(proc, self.schedule(proc).replace(now, key, specs, states))

    def report_ttl(self, proc: Process, check_id: str, status: Health, output: str) -> None:
        """A TTL report, as ``Node.update_ttl`` gives it.

        Raises:
            KeyError: no check ``check_id`` runs on that node.
            ValueError: it is not a TTL check.
        """
        if proc.checks is None:
            raise KeyError(check_id)
        self.apply(proc, proc.checks.report_ttl(self._engine.now, check_id, status, output))

    def restore(self, proc: Process, snapshot: Snapshot) -> None:
        """Run again the checks the snapshot kept, as a restarted node does."""
        proc.check_specs = dict(snapshot.checks)
        if snapshot.checks:
            own = {e.key: e for e in proc.node.own_entries()}
            self.apply(proc, self.schedule(proc).restore(self._engine.now, own, snapshot.checks))

    # Carrying out the scheduler's word.

    def apply(self, proc: Process, effects: list[CheckEffect]) -> None:
        engine, now = self._engine, self._engine.now
        for effect in effects:
            if isinstance(effect, RunProbe):
                self._probe(proc, effect)
            elif isinstance(effect, ChecksChanged):
                entry, core = proc.node.update_checks(now, effect.key, effect.states)
                engine.apply(proc, core)
                if entry is None:  # its instance went away meanwhile
                    self.apply(proc, self.schedule(proc).remove(effect.key))
            elif isinstance(effect, DeregisterCritical):
                proc.durable.pop(effect.key, None)
                proc.check_specs.pop(effect.key, None)
                _, core = proc.node.deregister(now, effect.key)
                engine.apply(proc, core)
            # CancelProbe: nothing to stop; the scheduler ignores a cancelled probe's result.
        self._arm(proc)

    def _probe(self, proc: Process, run: RunProbe) -> None:
        """Ask the model, and report what it found when the probe would have finished."""
        now = self._engine.now
        found = self._model(now, proc.name, run.key, run.spec)
        if found.duration >= run.timeout:
            self._later(proc, now + run.timeout, lambda s, t: s.probe_timed_out(t, run.token))
        else:
            self._later(
                proc,
                now + found.duration,
                lambda s, t: s.probe_done(t, run.token, found.status, found.output),
            )

    def _arm(self, proc: Process) -> None:
        """Wake the scheduler at its next due time, if that is sooner than the wake armed."""
        due = math.inf if proc.checks is None else proc.checks.next_due
        if due < proc.checks_wake:
            proc.checks_wake = due

            def wake(checks: CheckScheduler, now: float) -> list[CheckEffect]:
                if proc.checks_wake != due:
                    return []  # a sooner wake was armed since, and has run
                proc.checks_wake = math.inf
                return checks.advance(now)

            self._later(proc, due, wake)

    def _later(self, proc: Process, when: float, run: _Step) -> None:
        """``run`` on this life's scheduler at ``when``, or when the process resumes."""
        life = proc.life

        def deliver() -> None:
            checks = proc.checks
            if proc.life != life or not proc.live or checks is None:
                return  # the process it was for crashed or left
            if proc.status is NodeStatus.PAUSED:
                self._engine.call_at(proc.paused_until, deliver)
                return
            self.apply(proc, run(checks, self._engine.now))

        self._engine.call_at(when, deliver)


_Step = Callable[[CheckScheduler, float], list[CheckEffect]]
"""Something to hand the scheduler at a later virtual time: (scheduler, now) -> effects."""
_PASSING = ProbeOutcome()
