"""The pure health-check rules: specs, ids, thresholds, TTL, worst status, deregistration time."""

from __future__ import annotations

import math

import pytest

from gossip_registry.registry.entry import CheckKind, CheckState, Health
from gossip_registry.registry.health import (
    CheckSpec,
    CheckTracker,
    assign_check_ids,
    initial_states,
    split_host_port,
    worst,
)

P, W, C = Health.PASSING, Health.WARNING, Health.CRITICAL


def tracker(spec: CheckSpec, status: Health = C, now: float = 0.0) -> CheckTracker:
    [named] = assign_check_ids("web-1", [spec])
    [state] = initial_states([named])
    return CheckTracker(named, CheckState(state.check_id, state.kind, status, ""), now)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [([], P), ([P, P], P), ([P, W], W), ([W, C, P], C), ([C], C)],
)
def test_worst_status_orders_critical_over_warning_over_passing(
    statuses: list[Health], expected: Health
) -> None:
    assert worst(statuses) is expected


def test_worst_of_nothing_is_the_default_given() -> None:
    assert worst([], default=W) is W


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "check: needs exactly one of http, tcp, ttl"),
        ({"http": "http://a/", "tcp": "a:1"}, "check: needs exactly one"),
        ({"http": "ftp://a/"}, "http: must be an http:// or https:// URL"),
        ({"http": "http:///path"}, "http: must be an http:// or https:// URL"),
        ({"http": "http://[::1/"}, "http: must be an http:// or https:// URL"),
        ({"tcp": "a"}, "tcp: must be host:port"),
        ({"tcp": "a:0"}, "tcp: must be host:port"),
        ({"tcp": "a:70000"}, "tcp: must be host:port"),
        ({"tcp": ":80"}, "tcp: must be host:port"),
        ({"ttl": 0.0}, "ttl: must be a duration of at least 0.1s"),
        ({"ttl": math.inf}, "ttl: must be a duration of at least 0.1s"),
        ({"ttl": 1.0, "interval": -1.0}, "interval: must be a duration of at least 0.1s"),
        ({"ttl": 1.0, "timeout": math.nan}, "timeout: must be a duration of at least 0.01s"),
        # registry/schema.py's floors (issue 10, finding 5): 1 ms checks were a busy loop.
        ({"http": "http://a/", "interval": 0.001}, "interval: must be a duration of at least 0.1s"),
        ({"ttl": 0.05}, "ttl: must be a duration of at least 0.1s"),
        ({"tcp": "a:1", "timeout": 0.001}, "timeout: must be a duration of at least 0.01s"),
        ({"ttl": 1.0, "deregister_after": 0}, "deregister_after: must be a duration > 0"),
        ({"ttl": 1.0, "success_before_passing": -1}, "success_before_passing: must be an"),
        ({"ttl": 1.0, "failures_before_critical": 1001}, "failures_before_critical: must be"),
        ({"ttl": 1.0, "failures_before_critical": 1.0}, "failures_before_critical: must be"),
    ],
)
def test_spec_rejects_invalid_fields_naming_them(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        CheckSpec(**kwargs)  # type: ignore[arg-type]


def test_spec_kind_and_timeout_capped_at_interval() -> None:
    assert CheckSpec(http="https://a/health").kind is CheckKind.HTTP
    assert CheckSpec(tcp="[::1]:80").kind is CheckKind.TCP
    assert CheckSpec(ttl=3.0).kind is CheckKind.TTL
    assert CheckSpec(tcp="a:1", interval=1.0, timeout=5.0).effective_timeout == 1.0


def test_split_host_port_handles_names_ipv4_and_bracketed_ipv6() -> None:
    assert split_host_port("db.internal:5432") == ("db.internal", 5432)
    assert split_host_port("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_host_port("[::1]:443") == ("::1", 443)


def test_check_ids_follow_consul_one_check_plain_several_numbered() -> None:
    [one] = assign_check_ids("web-1", [CheckSpec(ttl=1.0)])
    assert one.check_id == "service:web-1"
    several = assign_check_ids(
        "web-1", [CheckSpec(ttl=1.0), CheckSpec(tcp="a:1", check_id="db"), CheckSpec(ttl=2.0)]
    )
    assert [s.check_id for s in several] == ["service:web-1:1", "db", "service:web-1:3"]


def test_duplicate_check_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="checks: id 'x' used twice"):
        assign_check_ids("w", [CheckSpec(ttl=1.0, check_id="x"), CheckSpec(ttl=2.0, check_id="x")])


def test_checks_start_critical_unless_a_snapshot_recorded_their_state() -> None:
    specs = assign_check_ids("w", [CheckSpec(ttl=1.0), CheckSpec(tcp="a:1")])
    restored = [
        CheckState("service:w:1", CheckKind.TTL, P, "fine"),
        CheckState("service:w:2", CheckKind.HTTP, P, "kind changed since"),
    ]
    assert initial_states(specs, restored) == (
        CheckState("service:w:1", CheckKind.TTL, P, "fine"),
        CheckState("service:w:2", CheckKind.TCP, C, ""),
    )


def test_flapping_results_below_the_thresholds_change_nothing() -> None:
    t = tracker(CheckSpec(tcp="a:1", success_before_passing=3, failures_before_critical=3))
    changes = [t.record(i, s, f"out {i}") for i, s in enumerate([P, C, P, P, C, P, C, C, P])]
    assert changes == [False] * 9
    assert t.state.status is C
    assert t.state.output == ""  # below the threshold not even the output moves


def test_thresholds_count_consecutive_results_and_warning_counts_as_success() -> None:
    t = tracker(CheckSpec(tcp="a:1", success_before_passing=2, failures_before_critical=2))
    assert [t.record(0, P, "ok"), t.record(1, W, "slow")] == [False, True]
    assert t.state.status is W
    assert [t.record(2, C, "down"), t.record(3, P, "ok"), t.record(4, C, "down")] == [False] * 3
    assert t.record(5, C, "down") is True
    assert (t.state.status, t.state.output) == (C, "down")


def test_zero_threshold_acts_at_once_like_one() -> None:
    t = tracker(CheckSpec(tcp="a:1", success_before_passing=0, failures_before_critical=0))
    assert t.record(0, P, "ok")
    assert t.record(1, C, "no")


def test_same_status_and_output_is_not_a_change_but_new_output_is() -> None:
    t = tracker(CheckSpec(http="http://a/"))
    assert t.record(0, P, "HTTP 200") is True
    assert t.record(1, P, "HTTP 200") is False
    assert t.record(2, P, "HTTP 204") is True


def test_ttl_expires_to_critical_and_a_report_applies_at_once() -> None:
    t = tracker(CheckSpec(ttl=30.0), now=100.0)
    assert t.expires_at == 130.0
    assert t.report(110.0, P, "alive") is True
    assert (t.state.status, t.expires_at) == (P, 140.0)
    assert t.expire(140.0) is True
    assert (t.state.status, t.state.output, t.expires_at) == (C, "TTL expired", math.inf)
    assert t.report(150.0, W, "degraded") is True
    assert t.state.status is W


def test_deregistration_time_counts_from_entering_critical() -> None:
    t = tracker(CheckSpec(tcp="a:1", deregister_after=60.0), status=P, now=0.0)
    assert t.deregister_at == math.inf
    t.record(10.0, C, "down")
    assert t.deregister_at == 70.0
    t.record(20.0, C, "still down")
    assert t.deregister_at == 70.0  # the clock does not restart while it stays critical
    t.record(30.0, P, "up")
    assert t.deregister_at == math.inf


def test_a_check_starting_critical_counts_from_its_start() -> None:
    assert tracker(CheckSpec(ttl=5.0, deregister_after=60.0), now=7.0).deregister_at == 67.0
    assert tracker(CheckSpec(ttl=5.0), now=7.0).deregister_at == math.inf
