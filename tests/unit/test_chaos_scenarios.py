"""Which protocol profile each chaos scenario runs when none is asked for."""

from __future__ import annotations

from gossip_registry.chaos.scenarios import SCENARIOS


def test_loss_scenarios_run_the_lan_profile_and_the_rest_local() -> None:
    # local is memberlist's loopback profile: under 30 % loss it declares live nodes dead.
    profiles = {name: s.profile for name, s in SCENARIOS.items()}
    assert {n for n, p in profiles.items() if p == "lan"} == {"loss-10", "loss-30"}
    assert {p for n, p in profiles.items() if not n.startswith("loss-")} == {"local"}
