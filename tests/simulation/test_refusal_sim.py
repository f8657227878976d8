"""Crash detection by the host's refusal, on the simulator (issue 17).

A process crashed on a live host is refused (``crash(host_up=True)``); a
silent crash keeps Lifeguard's timing; a process restarted at once on the
same address is never declared dead by the refusals its crash drew.
"""

from __future__ import annotations

from functools import partial

import pytest

from gossip_registry.core.messages import MemberState
from tests.simulation.test_protocol_sim import DeathLog, all_dead, formed

pytestmark = pytest.mark.simulation


def test_a_refused_crash_is_detected_everywhere_in_seconds_a_silent_one_in_lifeguard_time() -> None:
    cluster = formed(100, seed=21)
    log = DeathLog(cluster)
    cluster.set_loss(0.10)
    cluster.run_for(5)
    detected = {}
    for victim, host_up in (("n00042", True), ("n00043", False)):
        cluster.crash(victim, host_up=host_up)
        start = cluster.now
        assert cluster.run_until(partial(all_dead, cluster, victim), timeout=60)
        detected[host_up] = cluster.now - start
    assert detected[True] < 3.0, detected
    lifeguard_min = cluster.config.suspicion_min(100)
    assert detected[False] > lifeguard_min, detected
    assert {d[2] for d in log.deaths} == {"n00042", "n00043"}, "no false positive at 10 % loss"
    refused = sum(cluster.node(n).stats["probes_refused"] for n in cluster.live_names())
    assert refused > 0


def test_a_process_restarted_at_once_on_its_address_is_not_declared_dead_by_its_refusals() -> None:
    cluster = formed(30, seed=38)
    log = DeathLog(cluster)
    cluster.run_for(2)
    cluster.crash("n00007", host_up=True)
    cluster.run_for(0.5)
    refused = sum(cluster.node(n).stats["probes_refused"] for n in cluster.live_names())
    assert refused > 0, "the race must happen: some probe was refused before the restart"
    cluster.restart("n00007", from_snapshot=True)
    cluster.run_for(30)
    assert log.of("n00007") == []
    assert all(cluster.states(n)["n00007"] is MemberState.ALIVE for n in cluster.live_names())


def test_refusals_of_a_crashed_member_do_not_multiply_into_a_storm() -> None:
    """A refusal not matched to a probe prompts a check ping; a refused check asks helpers,
    whose relays are refused too, and those refusals reach the helpers' own checks. Only
    the first refusal of a check acts, and one check per member per interval."""
    cluster = formed(30, seed=38)
    cluster.run_for(2)
    cluster.register("n00003", "web", "w3")  # gossip flows while n00007 dies
    cluster.crash("n00007", host_up=True)
    for _ in range(1500):  # steps of about one round trip: a storm grows per round trip
        cluster.run_for(0.002)
        stats = [cluster.node(n).stats for n in cluster.live_names()]
        relays = sum(s["relays_refused"] for s in stats)
        assert relays <= 300, f"t={cluster.now:.3f}: {relays} refused relays"
        assert sum(s["refusal_checks"] for s in stats) <= 29 * (cluster.now - 2 + 1)
    assert all_dead(cluster, "n00007")
