"""Which protocol profile each chaos scenario runs when none is asked for."""

from __future__ import annotations

from gossip_registry.chaos.scenarios import SCENARIOS


def test_loss_scenarios_run_the_lan_profile_and_the_rest_local() -> None:
    # local is memberlist's loopback profile: under 30 % loss it declares live nodes dead.
    profiles = {name: s.profile for name, s in SCENARIOS.items()}
    lan = {"loss-10", "loss-30", "crash-fast"}  # crash-fast times the lan profile's detection
    assert {n for n, p in profiles.items() if p == "lan"} == lan
    assert {p for n, p in profiles.items() if n not in lan} == {"local"}
