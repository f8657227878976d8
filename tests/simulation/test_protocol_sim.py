"""The real protocol core on the simulator: membership, dissemination, faults.

Each test has a fixed seed and a bound on virtual time; a failure names the
seed (the simulator adds it to any exception raised inside a node).
"""

from __future__ import annotations

import random

import pytest

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import MemberChanged
from gossip_registry.core.messages import MemberState
from gossip_registry.sim import LinkModel, SimCluster
from tests.simulation.churn import Churn
from tests.simulation.nodes import core

pytestmark = pytest.mark.simulation

DEAD, LEFT, ALIVE = MemberState.DEAD, MemberState.LEFT, MemberState.ALIVE


class DeathLog:
    """Every moment a node saw another declared dead (for false-positive counts)."""

    def __init__(self, cluster: SimCluster) -> None:
        self.deaths: list[tuple[float, str, str]] = []
        cluster.on_notify(self._record)

    def _record(self, node: str, now: float, event: object) -> None:
        if isinstance(event, MemberChanged) and event.state is DEAD:
            self.deaths.append((now, node, event.name))

    def of(self, victim: str) -> list[tuple[float, str, str]]:
        return [d for d in self.deaths if d[2] == victim]


def formed(n: int, seed: int, **kw: object) -> SimCluster:
    cluster = SimCluster(n, seed=seed, **kw)  # type: ignore[arg-type]
    assert cluster.run_until(cluster.agree_on_membership, timeout=30), f"seed {seed}"
    return cluster


def all_dead(cluster: SimCluster, victim: str) -> bool:
    return all(cluster.states(n).get(victim) in (DEAD, None) for n in cluster.live_names())


def test_hundred_nodes_join_through_one_seed_and_agree_on_membership() -> None:
    cluster = SimCluster(100, seed=11)
    assert cluster.run_until(cluster.agree_on_membership, timeout=30)
    assert cluster.now < 10, "join should converge in seconds, not a push-pull period"


def test_a_registration_on_one_node_reaches_every_node_in_under_a_second() -> None:
    cluster = formed(100, seed=12)
    start = cluster.now
    entry = cluster.register("n00042", "web", "w1", port=9000)
    reached = cluster.run_until(
        lambda: all(core(cluster, n).table.get(entry.key) == entry for n in cluster.names),
        timeout=10,
        check_every=0.01,
    )
    assert reached
    assert cluster.now - start < 1.0
    assert cluster.digests_agree()


def test_a_crashed_node_is_declared_dead_everywhere_and_its_entries_removed() -> None:
    cluster = formed(100, seed=13)
    cluster.register("n00077", "web", "w77")
    cluster.run_for(2)
    log = DeathLog(cluster)
    cluster.crash("n00077")
    crashed_at = cluster.now
    assert cluster.run_until(lambda: all_dead(cluster, "n00077"), timeout=60)
    assert cluster.now - crashed_at < 20
    assert all(not core(cluster, n).table.live("web") for n in cluster.live_names())
    assert {node for _, node, _ in log.of("n00077")} == set(cluster.live_names())
    assert [d for d in log.deaths if d[2] != "n00077"] == []


def test_no_live_member_is_declared_dead_under_ten_percent_loss_for_ten_minutes() -> None:
    cluster = formed(100, seed=14)
    log = DeathLog(cluster)
    churn = Churn(cluster, random.Random(14), period=2.0, until=cluster.now + 600)
    churn.start()
    cluster.set_loss(0.10)
    cluster.run_for(600)
    cluster.set_loss(0.0)
    assert log.deaths == [], f"false positives: {log.deaths[:5]}"
    assert churn.ops > 250
    assert cluster.run_until(churn.everywhere, timeout=120)
    assert cluster.run_until(cluster.digests_agree, timeout=60)


def test_a_short_pause_is_survived_without_anyone_declaring_the_member_dead() -> None:
    cluster = formed(100, seed=15)
    log = DeathLog(cluster)
    cluster.pause("n00033", 5.0)
    cluster.run_for(60)
    assert log.deaths == []
    assert cluster.agree_on_membership()


def test_a_pause_longer_than_the_suspicion_timeout_is_declared_dead_then_rejoins() -> None:
    cluster = formed(100, seed=16)
    log = DeathLog(cluster)
    cluster.register("n00033", "web", "w33")
    cluster.run_for(2)
    max_suspicion = ProtocolConfig().suspicion_min(100) * ProtocolConfig().suspicion_max_mult
    cluster.pause("n00033", max_suspicion + 10)
    cluster.run_for(max_suspicion + 10)
    assert {d[2] for d in log.deaths} == {"n00033"}
    # It wakes, hears of its death, refutes, and re-asserts its registration.
    assert cluster.run_until(cluster.agree_on_membership, timeout=60)
    assert cluster.node("n00033").incarnation > 0
    assert cluster.run_until(
        lambda: all(core(cluster, n).table.live("web") for n in cluster.names), timeout=30
    )


def test_half_and_half_partition_heals_with_identical_digests_and_nothing_lost() -> None:
    cluster = formed(100, seed=17)
    left, right = cluster.names[:50], cluster.names[50:]
    churn = Churn(cluster, random.Random(17), period=1.0, until=cluster.now + 600)
    churn.start()
    cluster.partition(left, right)
    cluster.run_for(600)
    # each side has declared the other dead by now
    assert cluster.states(left[0])[right[0]] is DEAD
    cluster.heal()
    healed_at = cluster.now
    assert cluster.run_until(cluster.agree_on_membership, timeout=180)
    assert cluster.run_until(churn.everywhere, timeout=120)
    assert cluster.run_until(cluster.digests_agree, timeout=60)
    assert churn.ops > 500
    assert cluster.now - healed_at < 240


def test_a_leaving_node_is_marked_left_not_dead_and_its_entries_go() -> None:
    cluster = formed(20, seed=18)
    log = DeathLog(cluster)
    cluster.register("n00005", "web", "w5")
    cluster.run_for(1)
    cluster.leave("n00005")
    assert cluster.run_until(
        lambda: all(cluster.states(n)["n00005"] is LEFT for n in cluster.live_names()),
        timeout=5,
    )
    assert log.deaths == []
    others = [n for n in cluster.live_names() if n != "n00005"]
    assert all(not core(cluster, n).table.live("web") for n in others)


def not_left_within_a_second(cluster: SimCluster, leaver: str) -> list[str]:
    """Leave ``leaver`` now: the peers that do not show it left a second later."""
    cluster.leave(leaver)
    others = [name for name in cluster.names if name != leaver]

    def late() -> list[str]:
        return [o for o in others if cluster.states(o).get(leaver) is not LEFT]

    cluster.run_until(lambda: not late(), timeout=1.0, check_every=0.05)
    return late()


@pytest.mark.parametrize("n", [6, 8, 9])
def test_every_peer_of_a_small_cluster_hears_a_leave_within_a_second(n: int) -> None:
    # Clusters of 6-9 nodes retransmit an update only 4 times per node; sent
    # to random peers, a peer missed every copy in about 1 leave of 50 and saw
    # the node alive, then suspect and dead, until a push-pull (issue 12).
    late: dict[int, list[str]] = {}
    for seed in range(150):
        cluster = formed(n, seed=seed)
        late[seed] = not_left_within_a_second(cluster, cluster.names[-1])
    assert {seed: peers for seed, peers in late.items() if peers} == {}


@pytest.mark.parametrize("stay", [0.3, 1.0])
def test_a_node_that_joins_and_soon_leaves_is_seen_left_by_every_peer_within_a_second(
    stay: float,
) -> None:
    # The README's embedded node joins a running cluster through one seed and
    # is stopped a second later. A peer its join news had not reached yet
    # ignored its leave (news about a stranger), heard of it alive later and
    # kept it until a push-pull: 10 runs in 200 at 0.3 s, 1 in 200 at 1 s and
    # at 2 s, one peer 8-15 s late in test_readme now and then.
    late: dict[int, list[str]] = {}
    for seed in range(200):
        cluster = formed(5, seed=seed)
        newcomer = cluster.add_node("billing", join_via=cluster.names[0])
        cluster.run_for(stay)
        late[seed] = not_left_within_a_second(cluster, newcomer)
    assert {seed: peers for seed, peers in late.items() if peers} == {}


def test_a_restarted_node_comes_back_above_its_old_incarnation_with_its_entries() -> None:
    cluster = formed(30, seed=19)
    entry = cluster.register("n00009", "web", "w9")
    cluster.run_for(2)
    cluster.crash("n00009")
    assert cluster.run_until(lambda: all_dead(cluster, "n00009"), timeout=60)
    assert all(core(cluster, n).table.get(entry.key) is None for n in cluster.live_names())
    dead_at = cluster.states("n00000")["n00009"]
    assert dead_at is DEAD
    cluster.restart("n00009", from_snapshot=True)
    assert cluster.run_until(cluster.agree_on_membership, timeout=30)
    assert cluster.node("n00009").incarnation > 0
    assert cluster.run_until(
        lambda: all(core(cluster, n).table.live("web") for n in cluster.names), timeout=30
    )


def test_a_restarted_node_without_snapshot_drops_its_old_registrations() -> None:
    cluster = formed(20, seed=20)
    entry = cluster.register("n00004", "web", "w4")
    cluster.run_for(1)
    cluster.crash("n00004")
    cluster.restart("n00004", from_snapshot=False)  # before anyone noticed the crash
    assert cluster.run_until(
        lambda: all(core(cluster, n).table.live("web") == [] for n in cluster.names),
        timeout=60,
    )
    assert cluster.run_until(cluster.agree_on_membership, timeout=60)
    assert core(cluster, "n00004").table.get(entry.key) is not None


def test_the_same_seed_gives_the_same_run() -> None:
    def run(seed: int) -> tuple[object, ...]:
        cluster = SimCluster(30, seed=seed, link=LinkModel(loss=0.05))
        cluster.run_for(5)
        cluster.register("n00003", "web", "a")
        cluster.crash("n00010")
        cluster.run_for(30)
        states = tuple(sorted(cluster.states("n00000").items()))
        return states, cluster.digest("n00001"), cluster.total_traffic()

    assert run(21) == run(21)
    assert run(21) != run(22)
