"""Registration churn for simulation tests, with a model of what must survive.

Every operation a node acknowledged is recorded; ``expected`` then says which
entries every live node must hold once the cluster has healed: the last
acknowledged write per key wins, and a crashed owner's entries must be gone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gossip_registry.core.effects import EntryChanged
from gossip_registry.registry.entry import EntryKey
from gossip_registry.sim import SimCluster
from tests.simulation.nodes import core

SERVICES = ("web", "api", "db")


@dataclass
class Churn:
    cluster: SimCluster
    rng: random.Random
    period: float = 1.0
    until: float = float("inf")
    live: dict[EntryKey, str] = field(default_factory=dict)
    """key -> owner, for every acknowledged registration not since deleted."""
    deleted: set[EntryKey] = field(default_factory=set)
    ops: int = 0
    history: list[str] = field(default_factory=list)
    _serial: int = 0

    def start(self) -> None:
        self.cluster.call_later(self.period, self._step)

    def _step(self) -> None:
        if self.cluster.now >= self.until:
            return
        runnable = [n for n in self.cluster.live_names() if not self.cluster.is_paused(n)]
        if runnable:
            node = self.rng.choice(runnable)
            mine = [k for k, owner in self.live.items() if owner == node]
            if mine and self.rng.random() < 0.4:
                key = self.rng.choice(mine)
                self.cluster.deregister(node, key)
                self.history.append(f"{self.cluster.now:.2f} {node} deregister {key}")
                del self.live[key]
                self.deleted.add(key)
            else:
                self._serial += 1
                key = (self.rng.choice(SERVICES), f"i{self._serial}")
                self.cluster.register(node, *key)
                self.history.append(f"{self.cluster.now:.2f} {node} register {key}")
                self.live[key] = node
            self.ops += 1
        self.cluster.call_later(self.period, self._step)

    def forget_owner(self, node: str) -> None:
        """``node`` crashed or left: its entries must disappear everywhere."""
        self.history.append(f"{self.cluster.now:.2f} {node} stopped")
        for key in [k for k, owner in self.live.items() if owner == node]:
            del self.live[key]
            self.deleted.add(key)

    def expected(self) -> set[EntryKey]:
        return set(self.live)

    def view(self, node: str) -> set[EntryKey]:
        table = core(self.cluster, node).table
        return {e.key for service in SERVICES for e in table.live(service)}

    def everywhere(self) -> bool:
        want = self.expected()
        return all(self.view(n) == want for n in self.cluster.live_names())


class ResurrectionWatch:
    """Flags any node that shows again a version a deregistration had removed there.

    After a node applied a tombstone for version v of a key, it may later show
    a *newer* version (the owner registered the key again), never v or an
    older one. (A dead owner's entries come back legitimately when the owner
    does; the end-state checks cover those.)
    """

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.removed: dict[tuple[str, EntryKey], tuple[int, str, int]] = {}
        self.violations: list[tuple[float, str, EntryKey]] = []
        cluster.on_notify(self._on_event)

    def forget(self, node: str) -> None:
        """``node`` restarted: its new life knows nothing of the old one's removals."""
        self.removed = {k: v for k, v in self.removed.items() if k[0] != node}

    def _on_event(self, node: str, now: float, event: object) -> None:
        if not isinstance(event, EntryChanged):
            return
        if event.new is not None:
            gone = self.removed.get((node, event.new.key))
            if gone is not None and event.new.order <= gone:
                self.violations.append((now, node, event.new.key))
        elif event.old is not None:
            stored = core(self.cluster, node).table.get(event.old.key)
            if stored is not None and stored.deleted:
                key = (node, event.old.key)
                self.removed[key] = max(self.removed.get(key, event.old.order), event.old.order)


class ReappearanceWatch:
    """What the chaos checker's invariant 3 judges, sampled in virtual time.

    Every ``interval`` s it looks at each running node's live view: once a
    node (by name, across restarts, as a client of that node sees it) has
    shown a deregistered key absent, it must never show it again. Unlike
    ``ResurrectionWatch`` this also catches a node that never held the
    tombstone (it restarted, was paused, or lost the gossip) picking up a
    stale live copy from a peer that missed the deletion.

    With ``after_shown`` it judges exactly as the chaos checker does: a key
    counts as seen gone on a node only after that node showed it, so a node
    that restarted empty and learns a deleted key late from a peer the
    deletion has not reached yet (its owner crashed right after it, before
    gossiping it) reads stale, which is not a resurrection.
    """

    def __init__(self, churn: Churn, interval: float = 0.5, *, after_shown: bool = False) -> None:
        self.churn = churn
        self.interval = interval
        self.after_shown = after_shown
        self.shown: set[tuple[str, EntryKey]] = set()
        self.seen_gone: set[tuple[str, EntryKey]] = set()
        self.violations: list[tuple[float, str, EntryKey]] = []

    def start(self) -> None:
        self.churn.cluster.call_later(self.interval, self._sample)

    def _sample(self) -> None:
        cluster = self.churn.cluster
        for node in cluster.live_names():
            if cluster.is_paused(node):
                continue
            view = self.churn.view(node)
            if self.after_shown:
                self.shown.update((node, key) for key in view)
            for key in self.churn.deleted:
                if key not in view:
                    if not self.after_shown or (node, key) in self.shown:
                        self.seen_gone.add((node, key))
                elif (node, key) in self.seen_gone:
                    self.violations.append((cluster.now, node, key))
                    self.seen_gone.discard((node, key))
        cluster.call_later(self.interval, self._sample)
