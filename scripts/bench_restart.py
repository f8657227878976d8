#!/usr/bin/env python3
"""Restart of one node from its snapshot, on the simulator, with and without the rejoin cap.

The simulator now runs the node's own restart policy (``Protocol.join_at_start``):
a restarted node asks every seed plus at most ``rejoin_limit`` (8) members its
snapshot remembers. Before, the real node asked every remembered member; that
is ``rejoin_limit`` = N here. For each (nodes, limit) and seed: the cluster
starts formed, one node crashes, is declared dead everywhere, and restarts
from its snapshot. Reported (medians over seeds): push-pulls the restarted
node started in its first join, the bytes it sent over TCP until every node
saw it alive again, and the virtual seconds that took.

Usage: scripts/bench_restart.py [--nodes 100,1000] [--seeds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.messages import MemberState
from gossip_registry.sim import SimCluster

VICTIM = "n00001"


def restart_once(nodes: int, limit: int, seed: int) -> dict[str, float]:
    """One restart; raises if a phase does not finish within its bound (a bug, not a figure)."""
    cluster = SimCluster(
        nodes, seed=seed, config=ProtocolConfig(rejoin_limit=limit), bootstrap=True
    )
    cluster.seed_names = []  # only the snapshot knows where the cluster is
    cluster.run_for(5.0)
    cluster.crash(VICTIM)
    others = [n for n in cluster.names if n != VICTIM]
    probe = others[:: max(1, len(others) // 20)]  # a sample: every node at 10,000 is slow to ask

    def seen(state: MemberState) -> bool:
        return all(cluster.states(n).get(VICTIM) is state for n in probe)

    if not cluster.run_until(lambda: seen(MemberState.DEAD), timeout=120, check_every=1.0):
        raise RuntimeError(f"seed {seed}: {VICTIM} not declared dead")
    cluster.reset_traffic()
    started = cluster.now
    cluster.restart(VICTIM)
    asked = cluster.traffic(VICTIM).stream_sent
    if not cluster.run_until(lambda: seen(MemberState.ALIVE), timeout=120, check_every=0.1):
        raise RuntimeError(f"seed {seed}: {VICTIM} not seen alive again")
    return {
        "push_pulls": asked,
        "tcp_bytes_sent": cluster.traffic(VICTIM).stream_bytes_sent,
        "rejoin_s": cluster.now - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,1000")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("bench-results/bench_restart.json"))
    args = parser.parse_args()
    rows = []
    header = ("nodes", "rejoin_limit", "push_pulls", "tcp_bytes_sent", "rejoin_s")
    print(" ".join(f"{h:>14}" for h in header))
    for nodes in [int(n) for n in args.nodes.split(",")]:
        for limit in (ProtocolConfig().rejoin_limit, nodes):
            runs = [restart_once(nodes, limit, seed) for seed in range(1, args.seeds + 1)]
            row = {"nodes": nodes, "rejoin_limit": limit, "seeds": args.seeds}
            for key in header[2:]:
                row[key] = statistics.median(r[key] for r in runs)
            rows.append(row)
            print(" ".join(f"{row[h]:>14.4g}" for h in header))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
