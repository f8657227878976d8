"""A deregistered instance must not come back on a node that had stopped showing it.

Found by the chaos suite (``rolling-restart``, ``pause-long``): under the
``local`` profile a gossiped deletion can miss a node (2 transmissions per
update), which then holds a stale live copy until anti-entropy repairs it. A
node holding neither version, because it had just restarted or had been
paused, used to pick that copy up in push-pull, while the nodes that held the
tombstone sent it nothing: the bucket digests counted live entries only, so
"tombstone" and "nothing" looked the same. The instance reappeared there for
up to a push-pull interval.
"""

from __future__ import annotations

import random

import pytest

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.sim import SimCluster
from tests.simulation.churn import Churn, ReappearanceWatch

pytestmark = pytest.mark.simulation

NODES = 5


def churned_cluster(seed: int, length: float) -> tuple[SimCluster, Churn, ReappearanceWatch]:
    # The local profile, as the chaos suite ran: 2 transmissions per update, so a
    # deletion misses a node now and then and leaves it a stale live copy.
    cluster = SimCluster(NODES, seed=seed, config=ProtocolConfig.local())
    assert cluster.run_until(cluster.agree_on_membership, timeout=30)
    churn = Churn(cluster, random.Random(seed), period=0.3, until=cluster.now + length)
    churn.start()
    watch = ReappearanceWatch(churn)
    watch.start()
    return cluster, churn, watch


def settle(cluster: SimCluster, churn: Churn, length: float) -> None:
    cluster.run_for(length + 1)
    assert cluster.run_until(lambda: churn.everywhere() and cluster.digests_agree(), timeout=60)


@pytest.mark.parametrize("seed", range(6))
def test_rolling_restarts_bring_no_deregistered_instance_back(seed: int) -> None:
    cluster, churn, watch = churned_cluster(seed, 60)
    for round_ in range(3):
        for i, name in enumerate(cluster.names):
            at = (round_ * NODES + i) * 4.0

            def restart(name: str = name) -> None:
                cluster.leave(name)
                cluster.call_later(0.1 + cluster.leave_grace, lambda: cluster.restart(name))

            cluster.call_later(at, restart)
    settle(cluster, churn, 60)
    assert not watch.violations, (watch.violations, churn.history)
