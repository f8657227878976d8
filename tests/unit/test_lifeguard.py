"""Lifeguard pieces: the suspicion timeout maths and the local health score."""

import math

import pytest

from gossip_registry.core.awareness import Awareness
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.suspicion import Suspicion, suspicion_timeout


@pytest.mark.parametrize(
    ("confirmations", "expected"),
    [
        # k = 3, min = 2 s, max = 30 s: memberlist's suspicion_test.go table.
        (0, 30.0),
        (1, 30.0 - (math.log(2) / math.log(4)) * 28.0),
        (2, 30.0 - (math.log(3) / math.log(4)) * 28.0),
        (3, 2.0),
        (4, 2.0),
    ],
)
def test_suspicion_timeout_shrinks_on_a_log_scale_with_confirmations(
    confirmations: int, expected: float
) -> None:
    assert suspicion_timeout(confirmations, 3, 2.0, 30.0) == pytest.approx(expected)


def test_suspicion_without_wanted_confirmations_takes_the_minimum() -> None:
    assert suspicion_timeout(0, 0, 2.0, 30.0) == 2.0


def test_accuser_and_repeated_confirmations_do_not_count() -> None:
    s = Suspicion(start=10.0, incarnation=1, accuser="a", wanted=2, min_s=8.0, max_s=48.0)
    assert s.deadline == pytest.approx(58.0)
    assert not s.confirm("a")
    assert s.confirm("b")
    assert not s.confirm("b")
    assert s.confirm("c")
    assert s.deadline == pytest.approx(18.0)
    assert not s.confirm("d"), "no more confirmations are needed once k have arrived"


@pytest.mark.parametrize(
    ("n", "low", "high"),
    # gossip-anchors.md table 1.3: 4/24 s at N=10, 8/48 at 100, 12/72 at 1,000, 16/96 at 10,000.
    [(1, 4.0, 24.0), (10, 4.0, 24.0), (100, 8.0, 48.0), (1000, 12.0, 72.0), (10000, 16.0, 96.0)],
)
def test_lan_suspicion_bounds_match_memberlist(n: int, low: float, high: float) -> None:
    config = ProtocolConfig.lan()
    assert config.suspicion_min(n) == pytest.approx(low)
    assert config.suspicion_min(n) * config.suspicion_max_mult == pytest.approx(high)


@pytest.mark.parametrize(("n", "limit"), [(10, 8), (100, 12), (1000, 16), (10000, 20)])
def test_retransmit_limit_matches_memberlist(n: int, limit: int) -> None:
    assert ProtocolConfig.lan().retransmit_limit(n) == limit


@pytest.mark.parametrize(("n", "period"), [(5, 30.0), (32, 30.0), (100, 90.0), (1000, 180.0)])
def test_push_pull_period_scales_like_memberlist(n: int, period: float) -> None:
    assert ProtocolConfig.lan().push_pull_period(n) == pytest.approx(period)


def test_awareness_saturates_and_scales_timeouts() -> None:
    health = Awareness(max_multiplier=8)
    assert health.scale(1.0) == 1.0
    health.apply(3)
    assert health.scale(0.5) == 2.0
    health.apply(100)
    assert health.score == 7
    assert health.scale(1.0) == 8.0
    health.apply(-100)
    assert health.score == 0


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="probe_interval"):
        ProtocolConfig(probe_interval=0)
    with pytest.raises(ValueError, match="probe_timeout"):
        ProtocolConfig(probe_timeout=2.0, probe_interval=1.0)
