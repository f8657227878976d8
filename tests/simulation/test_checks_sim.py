"""Health checks in the simulator run on the node's own check scheduler, on virtual time.

A probe-outcome model stands in for HTTP and TCP; everything else (when a
check runs, thresholds, TTL expiry, deregister_after, the write-back that
gossips) is the code the real node runs. The bounds below follow from the
check's settings plus a dissemination allowance.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gossip_registry.registry.entry import EntryKey, Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.sim import ProbeOutcome, SimCluster

pytestmark = pytest.mark.simulation

P, C = Health.PASSING, Health.CRITICAL
KEY: EntryKey = ("web", "w1")
OWNER = "n00003"
SPREAD = 2.0
"""Virtual seconds a write takes to reach every node of these clusters, with room."""


def formed(n: int, seed: int) -> SimCluster:
    cluster = SimCluster(n, seed=seed)
    assert cluster.run_until(cluster.agree_on_membership, timeout=30), f"seed {seed}"
    return cluster


def everywhere(cluster: SimCluster, holds: Callable[[str], bool]) -> Callable[[], bool]:
    return lambda: all(holds(n) for n in cluster.live_names())


def status_is(cluster: SimCluster, status: Health) -> Callable[[str], bool]:
    def holds(name: str) -> bool:
        entry = cluster.node(name).table.get(KEY)
        return entry is not None and not entry.deleted and entry.status is status

    return holds


def deleted(cluster: SimCluster) -> Callable[[str], bool]:
    def holds(name: str) -> bool:
        entry = cluster.node(name).table.get(KEY)
        return entry is not None and entry.deleted

    return holds


@pytest.mark.parametrize("seed", [1, 2])
def test_a_failing_check_is_seen_critical_everywhere_then_deregistered_everywhere(
    seed: int,
) -> None:
    cluster = formed(20, seed)
    spec = CheckSpec(
        http="http://198.18.0.4:8080/health",
        interval=1.0,
        timeout=0.5,
        failures_before_critical=2,
        deregister_after=10.0,
    )
    entry = cluster.register(OWNER, *KEY, check_specs=[spec])
    assert entry.status is C  # critical until its first probe passes, as on a real node
    assert cluster.run_until(everywhere(cluster, status_is(cluster, P)), timeout=1.0 + SPREAD)

    failing_at = cluster.now
    cluster.script_probes(KEY, ProbeOutcome(C, "HTTP GET /health: 503"))
    # Two failed runs, the first within an interval: critical within 2 intervals, then gossip.
    assert cluster.run_until(
        everywhere(cluster, status_is(cluster, C)), timeout=2 * 1.0 + SPREAD
    ), f"seed {seed}"
    seen_critical = cluster.now
    assert seen_critical - failing_at >= 1.0  # not before the second failure
    [state] = cluster.check_states(OWNER, KEY)
    assert state.output == "HTTP GET /health: 503"

    # Deregistered once critical for 10 s, at the first result after that: not before.
    assert not cluster.run_until(
        lambda: any(deleted(cluster)(n) for n in cluster.live_names()),
        timeout=(failing_at + 10.0) - cluster.now,
    ), f"seed {seed}"
    assert cluster.run_until(
        everywhere(cluster, deleted(cluster)), timeout=2 * 1.0 + 1.0 + SPREAD
    ), f"seed {seed}"
    assert cluster.check_states(OWNER, KEY) == ()
    assert cluster.digests_agree(), f"seed {seed}"


def test_a_ttl_check_not_refreshed_goes_critical_everywhere_and_recovers_on_a_report() -> None:
    cluster = formed(10, 3)
    cluster.register(OWNER, *KEY, check_specs=[CheckSpec(ttl=5.0)])
    cluster.update_ttl(OWNER, "service:w1", P, "ready")
    reported = cluster.now
    assert cluster.run_until(everywhere(cluster, status_is(cluster, P)), timeout=SPREAD)
    assert not cluster.run_until(
        lambda: not status_is(cluster, P)(OWNER), timeout=reported + 4.9 - cluster.now
    )
    assert cluster.run_until(everywhere(cluster, status_is(cluster, C)), timeout=0.1 + SPREAD)
    [state] = cluster.check_states(OWNER, KEY)
    assert state.output == "TTL expired"
    cluster.update_ttl(OWNER, "service:w1", P)
    assert cluster.run_until(everywhere(cluster, status_is(cluster, P)), timeout=SPREAD)
    cluster.register(OWNER, "api", "a1", check_specs=[CheckSpec(tcp="198.18.0.4:1")])
    with pytest.raises(ValueError, match="not ttl"):
        cluster.update_ttl(OWNER, "service:a1", P)
    with pytest.raises(KeyError):
        cluster.update_ttl(OWNER, "service:nope", P)


def test_a_probe_that_does_not_answer_times_out_critical() -> None:
    cluster = formed(5, 4)
    cluster.register(OWNER, *KEY, check_specs=[CheckSpec(tcp="198.18.0.4:1", interval=2.0)])
    cluster.script_probes(KEY, ProbeOutcome(P, "late", duration=60.0))
    timed_out = (C, "timed out after 2s")  # the timeout (5 s) is capped at the interval

    def seen(name: str) -> bool:
        entry = cluster.node(name).table.get(KEY)
        return entry is not None and (entry.status, entry.checks[0].output) == timed_out

    # The first run within an interval, its timeout an interval later, then gossip.
    assert cluster.run_until(everywhere(cluster, seen), timeout=2 * 2.0 + SPREAD)


def test_a_node_restarted_from_its_snapshot_runs_its_checks_again() -> None:
    cluster = formed(8, 5)
    spec = CheckSpec(tcp="198.18.0.4:1", interval=1.0)
    cluster.register(OWNER, *KEY, check_specs=[spec])
    ttl_key: EntryKey = ("worker", "k1")
    cluster.register(OWNER, *ttl_key, check_specs=[CheckSpec(ttl=30.0)])
    assert cluster.run_until(everywhere(cluster, status_is(cluster, P)), timeout=1.0 + SPREAD)
    cluster.crash(OWNER)
    assert cluster.check_states(OWNER, KEY) == ()  # its checks died with it
    cluster.run_for(0.5)
    cluster.restart(OWNER)
    assert [s.check_id for s in cluster.check_states(OWNER, KEY)] == ["service:w1"]
    assert [s.check_id for s in cluster.check_states(OWNER, ttl_key)] == ["service:k1"]
    cluster.script_probes(KEY, ProbeOutcome(C, "refused"))
    assert cluster.run_until(everywhere(cluster, status_is(cluster, C)), timeout=1.0 + SPREAD)
    cluster.update_ttl(OWNER, "service:k1", P)  # its TTL check runs again too


def test_a_paused_node_runs_its_overdue_checks_when_it_resumes() -> None:
    cluster = formed(5, 6)
    cluster.register(OWNER, *KEY, check_specs=[CheckSpec(ttl=2.0)])
    cluster.update_ttl(OWNER, "service:w1", P)
    cluster.pause(OWNER, 4.0)
    resumes = cluster.now + 4.0
    cluster.run_for(3.9)
    assert status_is(cluster, P)(OWNER)  # frozen: its TTL cannot run out meanwhile
    assert cluster.run_until(lambda: status_is(cluster, C)(OWNER), timeout=0.2)
    assert cluster.now >= resumes
