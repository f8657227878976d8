"""No live member declared dead under heavy loss: the last-chance probe on the simulator (issue 17).

At 30 % loss on 8 nodes a suspect refutes and every node but one hears it; that
one's suspicion runs out with no direct exchange with the suspect. Without
the last-chance probe seeds 3, 5 and 6 each declared a live member dead (1.6
false deaths per agent-hour over 60 seeds); with it, none. Since gossip walks
its targets in turn (issue 12) a refutation misses a node less often, so the
seeds below are ones where a suspicion still runs out and is answered (chosen
again when a join began to announce the joiner directly, which shifts the
draws: over seeds 1-12, none had a false death, and seed 5 no longer had a
suspicion run out).
"""

from __future__ import annotations

import pytest

from tests.simulation.test_protocol_sim import DeathLog, all_dead, formed

pytestmark = pytest.mark.simulation


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_a_node_that_missed_a_refutation_at_thirty_percent_loss_does_not_kill_the_suspect(
    seed: int,
) -> None:
    cluster = formed(8, seed=seed)
    log = DeathLog(cluster)
    cluster.set_loss(0.30)
    cluster.run_for(600)
    assert log.deaths == [], f"seed {seed}: false positives {log.deaths[:5]}"
    stats = [cluster.node(n).stats for n in cluster.live_names()]
    assert sum(s["last_chances"] for s in stats) > 0, "the pattern must occur: a suspicion ran out"
    assert sum(s["last_chances_answered"] for s in stats) > 0


def test_a_silent_crash_under_loss_is_still_declared_dead_everywhere_after_the_last_chance() -> (
    None
):
    cluster = formed(8, seed=4)
    log = DeathLog(cluster)
    cluster.set_loss(0.30)
    cluster.run_for(30)
    cluster.crash("n00003")
    start = cluster.now
    assert cluster.run_until(lambda: all_dead(cluster, "n00003"), timeout=60)
    limit = cluster.config.suspicion_min(8) * cluster.config.suspicion_max_mult
    assert cluster.now - start < limit + 2 * cluster.config.probe_interval
    assert {d[2] for d in log.deaths} == {"n00003"}
