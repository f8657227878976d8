"""Crash-restart in the simulator: what a node acknowledged survives a crash in the same instant.

The simulated node writes its durable state in the same step as it
acknowledges (``SimCluster.register`` / ``deregister``), as the real node
awaits its journal's fsync before answering; a crash is an event of its own,
so it can come right after an acknowledgement but never between the
acknowledgement and the write. These runs crash owners in the very instant
after a write they acknowledged and restart them after a delay shorter or
longer than detection: every acknowledged registration not deregistered
since must be on every node at the end, and no deregistered one may come
back (invariants 2 and 3 of the chaos suite).
"""

from __future__ import annotations

import random
from functools import partial

import pytest

from gossip_registry.sim import SimCluster
from tests.simulation.churn import SERVICES, Churn, ReappearanceWatch

pytestmark = pytest.mark.simulation

SHORT_DOWN = 1.0
"""Seconds down: back before anyone declares the node dead."""
LONG_DOWN = 60.0
"""Seconds down: declared dead everywhere, its entries fenced, long before it is back."""


def crash_right_after_a_write(
    cluster: SimCluster, churn: Churn, rng: random.Random, down: float
) -> None:
    """One acknowledged write on a random live node, then its crash in the same instant."""
    node = rng.choice(cluster.live_names())
    mine = [k for k, owner in churn.live.items() if owner == node]
    if mine and rng.random() < 0.5:
        key = rng.choice(mine)
        assert cluster.deregister(node, key) is not None
        del churn.live[key]
        churn.deleted.add(key)
        churn.history.append(f"{cluster.now:.2f} {node} deregister {key}, then crash")
    else:
        key = (rng.choice(SERVICES), f"k{len(churn.history)}")
        cluster.register(node, *key)
        churn.live[key] = node
        churn.deleted.discard(key)
        churn.history.append(f"{cluster.now:.2f} {node} register {key}, then crash")
    cluster.crash(node)
    cluster.call_later(down, lambda: cluster.restart(node))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_writes_acknowledged_right_before_a_crash_survive_the_restart(seed: int) -> None:
    rng = random.Random(seed)
    cluster = SimCluster(5, seed=seed)
    assert cluster.run_until(cluster.agree_on_membership, timeout=30)
    churn = Churn(cluster, random.Random(seed), period=0.3, until=cluster.now + 150)
    churn.start()
    watch = ReappearanceWatch(churn, after_shown=True)
    watch.start()
    start = cluster.now
    for i in range(12):
        down = LONG_DOWN if i % 4 == 1 else SHORT_DOWN * (1 + rng.random())
        cluster.call_at(
            start + 5 + 10 * i, partial(crash_right_after_a_write, cluster, churn, rng, down)
        )
    cluster.run_for(160 + LONG_DOWN)
    assert sorted(cluster.live_names()) == sorted(cluster.names), "every node restarted"

    def settled() -> bool:
        return cluster.agree_on_membership() and churn.everywhere() and cluster.digests_agree()

    assert cluster.run_until(settled, timeout=120, check_every=1.0), "\n".join(
        [f"seed {seed}: expected {sorted(churn.expected())}"]
        + [f"{n}: {sorted(churn.view(n))}" for n in cluster.live_names()]
        + churn.history[-30:]
    )
    assert watch.violations == [], f"seed {seed}: came back {watch.violations[:3]}"
