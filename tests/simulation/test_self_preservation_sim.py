"""Self-preservation runs in the simulator, as in the node: the core judges it.

A node cut off from the rest sees most of the cluster die within the window:
it doubts it and keeps serving their entries, stale, until they come back.
"""

from __future__ import annotations

import pytest

from gossip_registry.core.messages import MemberState
from gossip_registry.sim import SimCluster
from tests.simulation.nodes import core

pytestmark = pytest.mark.simulation

CUT = "n00000"


def test_a_node_cut_off_from_the_cluster_serves_the_dead_entries_stale_until_they_return() -> None:
    cluster = SimCluster(8, seed=71)
    assert cluster.run_until(cluster.agree_on_membership, timeout=30), "seed 71"
    others = [n for n in cluster.names if n != CUT]
    keys = {cluster.register(n, "web", f"w-{n}").key for n in others}
    assert cluster.run_until(lambda: len(core(cluster, CUT).table.live("web")) == 7, timeout=10)

    cluster.isolate(CUT)

    def all_dead() -> bool:
        states = cluster.states(CUT)
        return all(states[n] is MemberState.DEAD for n in others)

    assert cluster.run_until(all_dead, timeout=120), "seed 71"
    assert core(cluster, CUT).table.live("web") == []  # fenced with their owners ...
    assert cluster.stale_keys(CUT) == keys  # ... but served stale
    assert cluster.notify_counts["stale changed"] >= 1
    assert all(cluster.stale_keys(n) == set() for n in others)  # one death at a time there

    cluster.unisolate(CUT)
    assert cluster.run_until(lambda: cluster.stale_keys(CUT) == set(), timeout=120), "seed 71"
    assert cluster.run_until(lambda: len(core(cluster, CUT).table.live("web")) == 7, timeout=60)
