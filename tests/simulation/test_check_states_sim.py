"""Check states travel with their entries: a status change reaches every node like any write."""

from __future__ import annotations

import pytest

from gossip_registry.registry.entry import CheckKind, CheckState, Health
from gossip_registry.sim import SimCluster
from tests.simulation.nodes import core

pytestmark = pytest.mark.simulation


def test_a_check_status_change_reaches_every_node_and_tables_agree() -> None:
    cluster = SimCluster(50, seed=41)
    assert cluster.run_until(cluster.agree_on_membership, timeout=30), "seed 41"
    down = (CheckState("service:w1", CheckKind.HTTP, Health.CRITICAL, "HTTP GET /: 503"),)
    up = (CheckState("service:w1", CheckKind.HTTP, Health.PASSING, "HTTP GET /: 200"),)
    first = cluster.register("n00007", "web", "w1", status=Health.CRITICAL, checks=down)
    assert cluster.run_until(
        lambda: all(core(cluster, n).table.get(first.key) == first for n in cluster.names),
        timeout=5,
    ), "seed 41"
    second = cluster.register("n00007", "web", "w1", status=Health.PASSING, checks=up)
    assert cluster.run_until(
        lambda: all(core(cluster, n).table.get(first.key) == second for n in cluster.names),
        timeout=5,
    ), "seed 41"
    assert len({cluster.node(n).table.digest for n in cluster.names}) == 1
