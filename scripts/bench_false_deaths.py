#!/usr/bin/env python3
"""False deaths per agent-hour under steady packet loss, on the deterministic simulator.

Each seed forms a cluster of ``--nodes`` (lan profile), sets every link's
loss to ``--loss`` (datagrams and TCP segments) and runs ``--seconds`` of
virtual time with nobody crashing; every verdict "X is dead" that a node
reaches is a false death. The real chaos runs (``gossip-registry-chaos loss-30``)
take minutes of wall time each; this takes about a second per 8-node seed
at 600 s, so it can count the rare ones (issue 17: a node that missed a
suspect's refutation declared it dead; 1.6 per agent-hour at 8 nodes and
30 % loss before the last-chance probe).

Usage: scripts/bench_false_deaths.py [--nodes 8] [--loss 0.3] [--seconds 600]
       [--seeds 1-60] [--json PATH]
Prints each seed with false deaths, then the total, the agent-hours and
the rate, and writes them as JSON. Exits 1 if any false death was seen.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip_registry.core.effects import MemberChanged
from gossip_registry.core.messages import MemberState
from gossip_registry.sim import SimCluster

FORM_TIMEOUT = 60.0
"""Virtual seconds for a seed's cluster to agree on its membership before the loss starts."""
COUNTERS = ("suspicions", "suspicions_refuted", "last_chances", "last_chances_answered")


def parse_seeds(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


@dataclass
class SeedResult:
    seed: int
    deaths: list[tuple[float, str, str]]
    """(virtual time, observer, victim) of every false death."""
    counters: dict[str, int]


def one_seed(nodes: int, loss: float, seconds: float, seed: int) -> SeedResult:
    """The false deaths (time, observer, victim) of one seed, and the protocol's counters."""
    cluster = SimCluster(nodes, seed=seed)
    if not cluster.run_until(cluster.agree_on_membership, timeout=FORM_TIMEOUT):
        raise SystemExit(f"seed {seed}: the cluster did not form in {FORM_TIMEOUT} s")
    deaths: list[tuple[float, str, str]] = []

    def record(node: str, now: float, event: object) -> None:
        if isinstance(event, MemberChanged) and event.state is MemberState.DEAD:
            deaths.append((round(now, 2), node, event.name))

    cluster.on_notify(record)
    cluster.set_loss(loss)
    cluster.run_for(seconds)
    counters = {k: sum(cluster.node(n).stats[k] for n in cluster.live_names()) for k in COUNTERS}
    return SeedResult(seed, deaths, counters)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--loss", type=float, default=0.3)
    parser.add_argument("--seconds", type=float, default=600.0, help="virtual seconds of loss")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-60"), help="A-B")
    parser.add_argument("--json", type=Path, default=Path("bench-results/bench_false_deaths.json"))
    args = parser.parse_args()
    started = time.monotonic()
    rows = [one_seed(args.nodes, args.loss, args.seconds, s) for s in args.seeds]
    false_deaths = sum(len(r.deaths) for r in rows)
    agent_hours = args.nodes * args.seconds * len(rows) / 3600
    for row in rows:
        if row.deaths:
            print(f"seed {row.seed}: {row.deaths}")
    totals = {k: sum(r.counters[k] for r in rows) for k in COUNTERS}
    summary: dict[str, object] = {
        "nodes": args.nodes,
        "loss": args.loss,
        "seconds": args.seconds,
        "seeds": [args.seeds.start, args.seeds.stop - 1],
        "false_deaths": false_deaths,
        "agent_hours": round(agent_hours, 2),
        "per_agent_hour": round(false_deaths / agent_hours, 3),
        **totals,
    }
    print(
        f"{args.nodes} nodes, {args.loss:.0%} loss, {len(rows)} seeds x {args.seconds:.0f} s: "
        f"{false_deaths} false deaths in {agent_hours:.1f} agent-hours "
        f"({summary['per_agent_hour']} per agent-hour); {totals} "
        f"[{time.monotonic() - started:.0f} s wall]"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"summary": summary, "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
    )
    print(f"wrote {args.json}")
    return 1 if false_deaths else 0


if __name__ == "__main__":
    sys.exit(main())
