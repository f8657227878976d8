"""Consul's request bodies and JSON shapes (api/consul/bodies.py, shapes.py), table-driven."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from gossip_registry.api.consul import bodies
from gossip_registry.api.consul.shapes import (
    NodeInfo,
    catalog_service,
    datacenter,
    health_entry,
    member_json,
    node_id,
    service_checks,
)
from gossip_registry.api.prometheus_sd import label_name, target_group
from gossip_registry.core.messages import MemberState
from gossip_registry.registry.entry import CheckKind, CheckState, Entry, Health
from gossip_registry.runtime.maintenance import Maintenance
from tests.unit.test_codec import make_entry


def entry(**changes: Any) -> Entry:
    """``make_entry`` with the fields these tests read, and no checks unless given."""
    fields: dict[str, Any] = {"instance_id": "w1", "tags": ("a",), "meta": {"k": "v"}}
    return make_entry(**{**fields, "weight": 2, "owner": "n1", "checks": (), **changes})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # py-consul: lower-case keys, "checks" list, and "check": {} when no check was given.
        (
            {"name": "web", "port": 80, "checks": [{"ttl": "15s"}], "check": {}},
            {"name": "web", "id": "web", "port": 80, "checks": [{"ttl": "15s"}]},
        ),
        # Go's api package: CamelCase, a single Check, Weights.
        (
            {
                "Name": "web",
                "ID": "w-1",
                "Port": 80,
                "Address": "",
                "Weights": {"Passing": 5, "Warning": 1},
                "Check": {"HTTP": "http://x/", "Interval": "10s", "CheckID": "c1"},
            },
            {
                "name": "web",
                "id": "w-1",
                "port": 80,
                "weight": 5,
                "checks": [{"http": "http://x/", "interval": "10s", "id": "c1"}],
            },
        ),
        # snake_case and Consul's long deregister key.
        (
            {
                "Name": "web",
                "Port": 80,
                "check": {"tcp": "h:1", "deregister_critical_service_after": "1m"},
            },
            {
                "name": "web",
                "id": "web",
                "port": 80,
                "checks": [{"tcp": "h:1", "deregister_after": "1m"}],
            },
        ),
        # Harmless Consul defaults are accepted and dropped.
        (
            {
                "Name": "web",
                "Port": 80,
                "EnableTagOverride": False,
                "Namespace": "default",
                "Connect": None,
            },
            {"name": "web", "id": "web", "port": 80},
        ),
    ],
)
def test_a_consul_registration_becomes_our_registration_body(
    raw: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert bodies.registration(raw) == expected


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"Name": "web", "Port": 80, "Check": {"Args": ["true"], "Interval": "1s"}}, "args"),
        ({"Name": "web", "Port": 80, "Check": {"GRPC": "h:1", "Interval": "1s"}}, "grpc"),
        ({"Name": "web", "Port": 80, "Connect": {"SidecarService": {}}}, "connect"),
        ({"Name": "web", "Port": 80, "Bogus": 1}, "bogus"),
        ({"Name": "web", "name": "other"}, "name"),
        ({"Name": "web", "Check": {"TTL": "1s", "Status": "passing"}}, "Status"),
        ({"Name": "web", "Checks": {"TTL": "1s"}}, "Checks"),
        ({"Name": "web", "Weights": 3}, "Weights"),
    ],
)
def test_what_has_no_meaning_here_is_refused_naming_the_field(
    raw: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        bodies.registration(raw)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([""], True), (["1"], True), (["True"], True), (["false"], False), (["0"], False)],
)
def test_consul_flags_read_as_go_parses_them(values: list[str], expected: bool) -> None:
    assert bodies.flag("passing", values) is expected


@pytest.mark.parametrize("values", [["yes"], ["1", "1"], []])
def test_a_bad_repeated_or_missing_required_flag_is_refused(values: list[str]) -> None:
    with pytest.raises(ValueError, match="enable"):
        bodies.flag("enable", values)


def test_check_update_reads_status_and_output_in_any_case() -> None:
    assert bodies.check_update({"status": "warning", "OUTPUT": "slow"}) == (Health.WARNING, "slow")
    for bad in ({"Status": "up"}, {"Status": ["passing"]}, {"Status": "passing", "Note": ""}):
        with pytest.raises(ValueError, match=r"Status|note"):
            bodies.check_update(bad)


def test_node_ids_are_uuids_stable_per_node_and_distinct_between_nodes_and_clusters() -> None:
    assert node_id("c", "n1") == node_id("c", "n1")
    assert len({node_id("c", "n1"), node_id("c", "n2"), node_id("d", "n1")}) == 3
    uuid.UUID(node_id("c", "n1"))
    assert datacenter("default") == "dc1"
    assert datacenter("prod") == "prod"


def test_json_types_are_the_ones_go_clients_decode() -> None:
    node = NodeInfo("n1", node_id("c", "n1"), "10.0.0.9", "dc1", {"zone": "a"})
    item = json.loads(json.dumps(health_entry(entry(), node, "dc1", stale=False)))
    assert item["Service"]["Port"] == 8080
    assert item["Service"]["Weights"] == {"Passing": 2, "Warning": 1}
    assert item["Node"]["TaggedAddresses"] == {"lan": "10.0.0.9", "wan": "10.0.0.9"}
    assert item["Checks"][0]["CheckID"] == "serfHealth"
    flat = catalog_service(entry(), node)
    assert (flat["ServicePort"], flat["Address"], flat["ServiceAddress"]) == (
        8080,
        "10.0.0.9",
        "10.0.0.1",
    )
    member = member_json("n1", "10.0.0.9", 7946, MemberState.DEAD, {})
    assert member["Status"] == 4  # Serf's "failed"
    assert member_json("n1", "h", 1, MemberState.SUSPECT, {})["Status"] == 1


def test_a_status_without_checks_shows_as_one_check_so_clients_agree_with_passing() -> None:
    checks = service_checks(entry(status=Health.WARNING, output="degraded"))
    assert [(c["CheckID"], c["Status"], c["Output"]) for c in checks] == [
        ("service:w1", "warning", "degraded")
    ]
    assert service_checks(entry()) == []


def test_maintenance_adds_critical_checks_and_is_recovered_from_entries() -> None:
    maintenance = Maintenance()
    assert maintenance.states(("web", "w1")) == ()
    maintenance.set_instance(("web", "w1"), True, "")
    maintenance.set_node(True, "kernel")
    states = maintenance.states(("web", "w1"))
    assert [(s.check_id, s.status, s.output) for s in states] == [
        ("_node_maintenance", Health.CRITICAL, "kernel"),
        ("_service_maintenance:w1", Health.CRITICAL, "maintenance mode is on"),
    ]
    again = Maintenance()
    again.recover([entry(checks=states)])
    assert again.states(("web", "w1")) == states
    maintenance.forget(("web", "w1"))
    maintenance.set_node(False, "")
    assert maintenance.states(("web", "w1")) == ()
    kinds = {s.kind for s in states}
    assert kinds == {CheckKind.TTL}  # decodable by peers of any version
    assert isinstance(states[0], CheckState)


def test_prometheus_labels_follow_its_conventions() -> None:
    assert label_name("team-name.x") == "team_name_x"
    group = target_group(entry(tags=("a", "b"), meta={"a-b": "1"}))
    assert group["targets"] == ["10.0.0.1:8080"]
    assert group["labels"]["__meta_registry_tags"] == ",a,b,"
    assert group["labels"]["__meta_registry_service_meta_a_b"] == "1"
    assert all(isinstance(v, str) for v in group["labels"].values())
