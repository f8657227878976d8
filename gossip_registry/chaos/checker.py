"""The invariants of a chaos run, judged from its history file alone.

Judging only the history (``history.py``) means a run can be re-checked
later, and the checker can be tested on hand-written histories. Sampling is
what the history holds: a state that came and went between two sweeps is not
seen (the protocol's own counters are the complement; the report shows them).

1. No false positive: no node holds a member dead unless that member or the
   observer was down or paused longer than the minimum suspicion timeout, or
   a partition cut the member off from some node whose verdict can reach the
   observer (while the fault lasted, plus ``linger`` seconds for the verdict
   to be refuted afterwards). Loss and a short pause excuse nothing.
2. Nothing acknowledged is lost: every acknowledged registration, not
   acknowledged as deregistered since, whose owner is up at the end, is on
   every up node within ``converge_bound`` of the heal and still there at the
   end. Unanswered operations are uncertain and judged neither way.
3. No resurrection: once a node has shown an entry and then, after it was
   deregistered (or its node went down for good), shown it gone, it never
   shows it again; and no up node holds one at the end, unless it was
   registered again. A node that never showed the entry and learns it late
   (the deletion could not reach it yet: a partition, a pause) reads stale,
   which is eventual consistency, not a resurrection; the end check still
   requires the deletion to arrive. Answers flagged stale (self-preservation
   keeps the entries of members it doubts are dead, and says so) are not
   counted: the flag is the registry telling the client the owner may be
   gone. The history keeps them (``stale_ids``) and the figures count them.
4. Convergence: within ``converge_bound`` of the heal one sweep finds every
   up node answering, seeing every up node alive and holding the same digest;
   the last sweep too.
5. Detection: every survivor declares each node killed for good dead, within
   ``detect_bound`` (first and all times are reported).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check", "Verdict", "check_history", "settled"]

Event = dict[str, Any]
INF = math.inf


@dataclass(frozen=True)
class Window:
    kind: str
    nodes: tuple[str, ...]
    params: dict[str, Any]
    start: float
    end: float


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    checks: list[Check]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class _Run:
    """The history, indexed for the checks."""

    def __init__(self, events: list[Event]) -> None:
        metas = [e for e in events if e["type"] == "meta"]
        if not metas:
            raise ValueError("history has no meta event: not a chaos history")
        self.meta = metas[0]
        self.nodes: list[str] = list(self.meta["nodes"])
        self.end = max((e.get("t", 0.0) for e in events), default=0.0)
        starts = {e["id"]: e for e in events if e["type"] == "fault_start"}
        ends = {e["id"]: e["t"] for e in events if e["type"] == "fault_end"}
        self.windows = [
            Window(s["kind"], tuple(s["nodes"]), s.get("params", {}), s["t"], ends.get(i, INF))
            for i, s in starts.items()
        ]
        heals = [e["t"] for e in events if e["type"] == "heal"]
        self.heal = heals[-1] if heals else max((w.end for w in self.windows), default=0.0)
        self.ops = [e for e in events if e["type"] == "op"]
        self.obs = [e for e in events if e["type"] == "obs"]
        self.gone_for_good = {
            n for w in self.windows if w.kind == "down" and w.end == INF for n in w.nodes
        }
        self.up_at_end = [n for n in self.nodes if n not in self.gone_for_good]
        self.linger = float(self.meta["linger"])

    def excused(self, observer: str, member: str, t: float) -> bool:
        """Whether a fault explains ``observer`` holding ``member`` dead at time t."""
        for w in self.windows:
            if not w.start <= t <= w.end + self.linger:
                continue
            involved = observer in w.nodes or member in w.nodes
            if w.kind == "down" and involved:
                return True
            long_pause = w.params.get("seconds", 0) > self.meta["suspicion_min"]
            if w.kind == "pause" and long_pause and involved:
                return True
            if w.kind == "partition" and _verdict_can_reach(w, member, observer):
                return True
        return False

    def rounds(self) -> dict[int, list[Event]]:
        out: dict[int, list[Event]] = defaultdict(list)
        for o in self.obs:
            out[o["round"]].append(o)
        return out


def _verdict_can_reach(w: Window, member: str, observer: str) -> bool:
    """Whether some node cut off from ``member`` by partition ``w`` can tell ``observer``.

    SWIM's verdicts are the cluster's: a node that cannot reach the member
    declares it dead and gossips that to everyone it can still reach (in a
    one-way partition, the side that can still send tells the other). So a
    death is excused for an observer the verdict can reach, directly or via
    other groups, from a node the member is cut off from.
    """
    groups: list[set[str]] = [set(g) for g in w.params["groups"]]
    one_way = bool(w.params.get("one_way"))

    def cut(i: int, j: int) -> bool:
        return i != j and (not one_way or i == 0)

    def group_of(name: str) -> int | None:
        return next((i for i, g in enumerate(groups) if name in g), None)

    gm, go = group_of(member), group_of(observer)
    if gm is None:
        return False
    for gy in range(len(groups)):
        if not (cut(gm, gy) or cut(gy, gm)):
            continue
        reached, frontier = {gy}, [gy]  # groups gy's verdict can travel to
        while frontier:
            g = frontier.pop()
            for nxt in range(len(groups)):
                if nxt not in reached and not cut(g, nxt):
                    reached.add(nxt)
                    frontier.append(nxt)
        if go is None or go in reached:
            return True
    return False


def check_history(events: list[Event]) -> Verdict:
    """Every invariant's verdict, and the figures (detection, convergence, false positives)."""
    run = _Run(events)
    figures: dict[str, Any] = {"heal_s": run.heal}
    figures["stale_answers"] = sum(len(o.get("stale_ids") or ()) for o in run.obs)
    checks = [
        _false_positives(run, figures),
        _nothing_lost(run),
        _no_resurrection(run),
        _convergence(run, figures),
        _detection(run, figures),
    ]
    return Verdict(checks, figures)


def _false_positives(run: _Run, figures: dict[str, Any]) -> Check:
    wrong: set[tuple[str, str]] = set()
    for o in run.obs:
        for member, state in (o.get("members") or {}).items():
            if state == "dead" and not run.excused(o["node"], member, o["t"]):
                wrong.add((o["node"], member))
    figures["false_positives"] = len({m for _, m in wrong})
    detail = ", ".join(f"{obs} saw {m} dead" for obs, m in sorted(wrong)) or "none"
    return Check("1 no false positives", not wrong, detail)


def _acked(run: _Run) -> tuple[set[str], dict[str, float], set[str]]:
    """Registered-and-kept ids, gone ids with the time they went, and uncertain ids."""
    registered: dict[str, tuple[str, float]] = {}
    gone: dict[str, float] = {}
    uncertain: set[str] = set()
    for op in sorted(run.ops, key=lambda o: o["start"]):
        entry = op["id"]
        if op["op"] == "register":
            gone.pop(entry, None)
            if op["ok"]:
                registered[entry] = (op["node"], op["start"])
                uncertain.discard(entry)
            else:
                uncertain.add(entry)
        elif op["ok"]:
            registered.pop(entry, None)
            gone[entry] = op["end"]
        else:
            uncertain.add(entry)
    for w in run.windows:
        if w.kind == "down" and w.end == INF:
            for entry, (owner, at) in list(registered.items()):
                if owner in w.nodes:
                    del registered[entry]
                    gone[entry] = max(w.start, at)
    kept = {e for e, (owner, _) in registered.items() if e not in uncertain}
    return kept, gone, uncertain


def _last_obs(run: _Run, node: str) -> Event | None:
    answered = [o for o in run.obs if o["node"] == node and o.get("ids") is not None]
    return answered[-1] if answered else None


def _nothing_lost(run: _Run) -> Check:
    kept, _, _ = _acked(run)
    bound = run.heal + float(run.meta["converge_bound"])
    problems = []
    for node in run.up_at_end:
        mine = [o for o in run.obs if o["node"] == node and o.get("ids") is not None]
        complete = [o["t"] for o in mine if o["t"] >= run.heal and kept <= set(o["ids"])]
        last = mine[-1] if mine else None
        missing = sorted(kept - set(last["ids"])) if last is not None else sorted(kept)
        if missing:
            problems.append(f"{node} lacks {len(missing)} at the end ({', '.join(missing[:5])})")
        elif not complete or complete[0] > bound:
            problems.append(f"{node} complete only after the bound")
    detail = "; ".join(problems) or f"{len(kept)} acknowledged entries on every up node"
    return Check("2 nothing acknowledged lost", not problems, detail)


def _no_resurrection(run: _Run) -> Check:
    _, gone, _ = _acked(run)
    problems = []
    for node in run.nodes:
        shown: set[str] = set()
        seen_gone: set[str] = set()
        for o in run.obs:
            if o["node"] != node or o.get("ids") is None:
                continue
            present = set(o["ids"])
            for entry, since in gone.items():
                if o["t"] < since:
                    continue
                if entry not in present:
                    if entry in shown:
                        seen_gone.add(entry)
                elif entry in seen_gone:
                    problems.append(f"{entry} back on {node} at {o['t']:.1f}s (gone {since:.1f}s)")
                    seen_gone.discard(entry)
            shown |= present
    for node in run.up_at_end:
        last = _last_obs(run, node)
        lingering = sorted(set(gone) & set(last["ids"])) if last is not None else []
        if lingering:
            problems.append(f"{node} still holds {', '.join(lingering[:5])} at the end")
    detail = "; ".join(problems) or f"{len(gone)} removed entries stayed removed"
    return Check("3 no resurrection", not problems, detail)


def _converged(run: _Run, sweep: Iterable[Event]) -> bool:
    views = {o["node"]: o for o in sweep}
    up = run.up_at_end
    digests = set()
    for node in up:
        view = views.get(node)
        if view is None or view.get("members") is None or view.get("digest") is None:
            return False
        if any(view["members"].get(other) != "alive" for other in up):
            return False
        digests.add(view["digest"])
    return len(digests) == 1


def _convergence(run: _Run, figures: dict[str, Any]) -> Check:
    rounds = run.rounds()
    # A sweep the end of the run cut short has no view of some nodes at all
    # (a node that did not answer still has one, with null fields): skip it.
    complete = {
        r for r, sweep in rounds.items() if set(run.up_at_end) <= {o["node"] for o in sweep}
    }
    after = sorted(r for r in complete if min(o["t"] for o in rounds[r]) >= run.heal)
    good = [r for r in after if _converged(run, rounds[r])]
    if not after:
        return Check("4 same digest after heal", False, "no sweep after the heal")
    at = max(o["t"] for o in rounds[good[0]]) - run.heal if good else INF
    figures["convergence_s"] = None if at == INF else round(at, 2)
    bound = float(run.meta["converge_bound"])
    last_ok = after[-1] in good
    ok = at <= bound and last_ok
    detail = (
        f"converged {at:.1f}s after heal (bound {bound:.0f}s)"
        if good
        else f"never converged (bound {bound:.0f}s)"
    )
    if good and not last_ok:
        detail += ", but diverged again by the last sweep"
    return Check("4 same digest after heal", ok, detail)


def _detection(run: _Run, figures: dict[str, Any]) -> Check:
    bound = float(run.meta["detect_bound"])
    results = {}
    problems = []
    for w in run.windows:
        if w.kind != "down" or w.end != INF or w.params.get("how") != "sigkill":
            continue
        for victim in w.nodes:
            firsts: dict[str, float] = {}
            for o in run.obs:
                seen = o.get("members") or {}
                if o["node"] in run.up_at_end and o["t"] >= w.start and seen.get(victim) == "dead":
                    firsts.setdefault(o["node"], o["t"] - w.start)
            first = min(firsts.values(), default=INF)
            every = max(firsts.values()) if len(firsts) == len(run.up_at_end) else INF
            results[victim] = {
                "first_s": None if first == INF else round(first, 2),
                "all_s": None if every == INF else round(every, 2),
            }
            if every > bound:
                problems.append(f"{victim} not seen dead by every survivor within {bound:.0f}s")
    figures["detection"] = results
    detail = "; ".join(problems) or (
        ", ".join(f"{v}: first {r['first_s']}s all {r['all_s']}s" for v, r in results.items())
        or "no node killed"
    )
    return Check("5 detection of killed nodes", not problems, detail)


def settled(events: list[Event]) -> bool:
    """Whether the last complete sweep after the heal already satisfies invariants 2-4.

    The runner stops waiting at this point instead of always waiting out the bound.
    """
    run = _Run(events)
    rounds = run.rounds()
    complete = [r for r, sweep in rounds.items() if len(sweep) == len(run.nodes)]
    if not complete:
        return False
    last = rounds[max(complete)]
    if min(o["t"] for o in last) < run.heal or not _converged(run, last):
        return False
    kept, gone, _ = _acked(run)
    for o in last:
        if o["node"] not in run.up_at_end:
            continue
        if o["ids"] is None or not kept <= set(o["ids"]) or set(o["ids"]) & set(gone):
            return False
    return True
