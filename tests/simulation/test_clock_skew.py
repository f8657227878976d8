"""Versions stamped a year ahead, by a hostile node or a wrong clock, on the simulator.

The rule under test (``core/protocol.py``): an entry stamped more than
``max_clock_skew`` ahead of a node's wall clock is dropped there and counted,
and its HLC does not observe it; an owner whose own clock was that far ahead
restamps its entries once its clock is sane.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gossip_registry.registry.clock import make_stamp, stamp_wall
from gossip_registry.sim import SimCluster
from tests.simulation.nodes import core

pytestmark = pytest.mark.simulation

YEAR = 365 * 24 * 3600.0
SKEW = 60.0  # the default limit
HOSTILE, OWNER = "n00004", "n00001"


def formed(seed: int) -> SimCluster:
    cluster = SimCluster(8, seed=seed)
    assert cluster.run_until(cluster.agree_on_membership, timeout=30), f"seed {seed}"
    return cluster


def honest(cluster: SimCluster) -> list[str]:
    return [n for n in cluster.names if n != HOSTILE]


def clocks_sane(cluster: SimCluster, names: list[str]) -> bool:
    return all(
        stamp_wall(core(cluster, n).clock.last) <= cluster.now + core(cluster, n).wall_offset + SKEW
        for n in names
    )


def test_a_forged_version_a_year_ahead_is_refused_everywhere_and_the_owner_still_wins() -> None:
    cluster = formed(seed=61)
    original = cluster.register(OWNER, "web", "w1", port=80)
    assert cluster.run_until(
        lambda: all(core(cluster, n).table.get(original.key) == original for n in cluster.names),
        timeout=10,
    )
    # The hostile node forges the owner's entry, stamped a year ahead, and gossips it.
    hostile = core(cluster, HOSTILE)
    forged = replace(original, address="203.0.113.66", stamp=make_stamp(cluster.now + YEAR))
    hostile._store(cluster.now, forged)
    # Honest nodes do not pass on what they refuse; only the hostile node's own
    # gossip and push-pull carry it. Give that a push-pull period and more.
    cluster.run_until(lambda: False, timeout=45)
    assert sum(core(cluster, n).stats["entries_from_future"] for n in honest(cluster)) >= 3
    for name in honest(cluster):
        assert core(cluster, name).table.get(original.key) == original, name
    assert clocks_sane(cluster, honest(cluster))

    later = cluster.register(OWNER, "web", "w1", port=81)  # the owner's later write wins
    assert cluster.run_until(
        lambda: all(core(cluster, n).table.get(later.key) == later for n in honest(cluster)),
        timeout=10,
    ), "seed 61"
    assert clocks_sane(cluster, honest(cluster))


def test_an_owner_with_a_clock_a_year_ahead_is_refused_until_its_clock_is_fixed() -> None:
    cluster = formed(seed=62)
    wrong = core(cluster, HOSTILE)
    wrong.wall_offset += YEAR
    early = cluster.register(HOSTILE, "db", "d1", port=5432)
    cluster.register(HOSTILE, "db", "d2", port=5432)
    cluster.run_until(lambda: False, timeout=45)  # gossip and a push-pull period
    assert sum(core(cluster, n).stats["entries_from_future"] for n in honest(cluster)) >= 3
    assert all(core(cluster, n).table.get(early.key) is None for n in honest(cluster))
    assert clocks_sane(cluster, honest(cluster))

    wrong.wall_offset -= YEAR  # NTP steps the clock back
    fixed = cluster.register(HOSTILE, "db", "d1", port=5433)
    assert stamp_wall(fixed.stamp) <= cluster.now + SKEW
    assert wrong.stats["clock_resets"] == 1

    def converged() -> bool:
        return cluster.digests_agree() and all(
            core(cluster, n).table.get(fixed.key) == fixed
            and core(cluster, n).table.live_count_of(HOSTILE) == 2
            for n in cluster.names
        )

    assert cluster.run_until(converged, timeout=60), "seed 62: d1 and d2 did not come back"
    assert clocks_sane(cluster, cluster.names)
