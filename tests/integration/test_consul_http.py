"""The Consul-compatible API and Prometheus HTTP SD over a real in-process node.

Requests go through httpx's ASGI transport into ``build_app(node)`` of a
running node (real gossip sockets, no HTTP socket): the JSON types Go
clients decode, the index headers and blocking, the refusals, the writes
and maintenance mode, and the Prometheus target groups. py-consul and
Prometheus themselves, against agent processes, are in
``test_consul_api.py`` and ``test_prometheus_sd.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gossip_registry.api.consul import UNSUPPORTED
from gossip_registry.api.http import build_app
from gossip_registry.registry.entry import Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.runtime.node import Node
from tests.integration import fast_config, start_cluster, start_node

TIMEOUT = 20.0
"""Absolute bound on each test: a few in-process requests and one or two gossip rounds."""


@asynccontextmanager
async def consul_client(node: Node, **tokens: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(node, **tokens))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        yield client


@asynccontextmanager
async def one_node(**overrides: Any) -> AsyncIterator[tuple[Node, httpx.AsyncClient]]:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("n0", **overrides))
            async with consul_client(node) as client:
                yield node, client
            nursery.cancel_scope.cancel()


def index_of(response: httpx.Response) -> int:
    return int(response.headers["X-Consul-Index"])


def is_string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


async def test_every_consul_read_carries_an_index_of_at_least_1_and_the_leader_headers() -> None:
    async with one_node() as (node, client):
        await node.register("web", instance_id="web-1", port=8080)
        for path in (
            "/v1/agent/self",
            "/v1/agent/members",
            "/v1/agent/services",
            "/v1/agent/checks",
            "/v1/status/leader",
            "/v1/catalog/services",
            "/v1/catalog/service/web",
            "/v1/catalog/nodes",
            "/v1/catalog/datacenters",
            "/v1/health/service/web",
            "/v1/health/checks/web",
            "/v1/health/state/any",
            "/v1/health/service/nothing-here",
        ):
            response = await client.get(path, params={"stale": "", "near": "_agent"})
            assert response.status_code == 200, (path, response.text)
            assert index_of(response) >= 1, path
            assert response.headers["X-Consul-KnownLeader"] == "true", path
            assert response.headers["X-Consul-LastContact"] == "0", path
            assert response.headers["content-type"] == "application/json", path


async def test_health_service_has_consuls_field_names_and_json_types() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            (n0, _), (n1, _) = await start_cluster(nursery, 2)
            await n0.register("web", instance_id="a", port=8080, tags=["v1"], meta={"k": "v"})
            await n1.register("web", instance_id="b", port=8081, weight=7)
            async with consul_client(n0) as client:
                while len((await client.get("/v1/health/service/web")).json()) < 2:
                    await trio.sleep(0.02)
                body = (await client.get("/v1/health/service/web")).json()
                dc = (await client.get("/v1/agent/self")).json()["Config"]["Datacenter"]
            nursery.cancel_scope.cancel()
    assert dc == "dc1"  # an unnamed cluster is Consul's default datacenter
    node_ids = set()
    for item in body:
        assert set(item) == {"Node", "Service", "Checks"}
        node, service = item["Node"], item["Service"]
        uuid.UUID(node["ID"])
        node_ids.add(node["ID"])
        assert node["Datacenter"] == "dc1"
        assert node["Address"] == "127.0.0.1"
        assert is_string_map(node["Meta"])
        assert is_string_map(node["TaggedAddresses"])
        assert type(service["Port"]) is int
        assert isinstance(service["Tags"], list)
        assert is_string_map(service["Meta"])
        assert isinstance(service["TaggedAddresses"], dict)
        assert all(type(v) is int for v in service["Weights"].values())
        assert set(service["Weights"]) == {"Passing", "Warning"}
        assert service["Address"] == "127.0.0.1"
        for check in item["Checks"]:
            assert check["Status"] in ("passing", "warning", "critical")
            assert isinstance(check["CheckID"], str)
    assert len(node_ids) == 2  # one ID per node
    by_id = {item["Service"]["ID"]: item for item in body}
    assert by_id["a"]["Service"]["Tags"] == ["v1"]
    assert by_id["a"]["Service"]["Meta"] == {"k": "v"}
    assert by_id["b"]["Service"]["Weights"] == {"Passing": 7, "Warning": 1}
    assert by_id["b"]["Node"]["Node"] == "n1"


async def test_a_blocking_query_holds_until_its_view_changes_and_the_index_rises() -> None:
    async with one_node() as (node, client):
        await node.register("web", instance_id="web-1", port=8080)
        first = await client.get("/v1/health/service/web")
        index = index_of(first)
        woken: list[httpx.Response] = []

        async def block() -> None:
            params = {"index": str(index), "wait": "10000ms"}
            woken.append(await client.get("/v1/health/service/web", params=params))

        async with trio.open_nursery() as waiters:
            waiters.start_soon(block)
            await trio.sleep(0.2)  # the blocking query has had time to start waiting
            await node.register("other", instance_id="o-1", port=1)  # another view
            await trio.sleep(0.2)
            assert not woken, "a change to another service woke the query"
            await node.register("web", instance_id="web-2", port=8081)
        assert index_of(woken[0]) > index
        assert len(woken[0].json()) == 2


async def test_a_blocking_query_with_a_short_wait_returns_the_same_index_unchanged() -> None:
    async with one_node() as (node, client):
        await node.register("web", instance_id="web-1", port=8080)
        index = index_of(await client.get("/v1/catalog/services"))
        start = trio.current_time()
        again = await client.get("/v1/catalog/services", params={"index": index, "wait": "300ms"})
        assert trio.current_time() - start >= 0.3
        assert index_of(again) == index


async def test_an_index_above_ours_answers_at_once() -> None:
    async with one_node() as (node, client):
        await node.register("web", instance_id="web-1", port=8080)
        with trio.fail_after(2):  # far below the 2-minute wait asked for
            response = await client.get(
                "/v1/health/service/web", params={"index": 10**12, "wait": "2m"}
            )
        assert response.status_code == 200
        assert index_of(response) < 10**12


async def test_catalog_services_index_rises_when_only_a_tag_changes() -> None:
    async with one_node() as (node, client):
        await node.register("web", instance_id="web-1", port=8080, tags=["a"])
        before = await client.get("/v1/catalog/services")
        await node.register("web", instance_id="web-1", port=8080, tags=["b"])
        after = await client.get("/v1/catalog/services")
        assert before.json() == {"web": ["a"]}
        assert after.json() == {"web": ["b"]}
        assert index_of(after) > index_of(before)


async def test_passing_excludes_warning_and_critical_and_every_tag_must_match() -> None:
    async with one_node() as (node, client):
        await node.register("web", instance_id="ok", port=1, tags=["a", "b"])
        await node.register("web", instance_id="warn", port=2, tags=["a", "b"])
        await node.register("web", instance_id="down", port=3, tags=["a"])
        await node.register("web", instance_id="ttl", port=4, checks=[CheckSpec(ttl=30.0)])
        await node.update_ttl("service:ttl", Health.WARNING, "slow")
        await node.set_maintenance(True, "bye", instance_id="down")

        async def ids(**params: Any) -> list[str]:
            response = await client.get("/v1/health/service/web", params=params)
            return sorted(item["Service"]["ID"] for item in response.json())

        assert await ids() == ["down", "ok", "ttl", "warn"]
        assert await ids(passing="1") == ["ok", "warn"]
        assert await ids(passing="") == ["ok", "warn"]
        assert await ids(tag=["a", "b"]) == ["ok", "warn"]
        assert await ids(tag="a", passing="true") == ["ok", "warn"]
        warning = await client.get("/v1/health/state/warning")
        assert [c["CheckID"] for c in warning.json()] == ["service:ttl"]


@pytest.mark.parametrize("prefix", ["kv", "session", "acl", "query", "connect", "txn"])
async def test_unsupported_consul_endpoints_answer_501_naming_the_feature(prefix: str) -> None:
    async with one_node() as (_, client):
        for method in ("GET", "PUT", "DELETE"):
            response = await client.request(method, f"/v1/{prefix}/anything/at/all")
            assert response.status_code == 501
            assert UNSUPPORTED[prefix] in response.json()["error"]


async def test_another_datacenter_is_404_and_a_filter_expression_is_a_clear_400() -> None:
    async with one_node(cluster="prod") as (_, client):
        assert (await client.get("/v1/catalog/services", params={"dc": "prod"})).status_code == 200
        other = await client.get("/v1/catalog/services", params={"dc": "dc2"})
        assert other.status_code == 404
        assert "dc2" in other.json()["error"]
        filtered = await client.get("/v1/health/service/web", params={"filter": "Service.Port>1"})
        assert filtered.status_code == 400
        assert filtered.json()["error"].startswith("filter:")
        bad_wait = await client.get("/v1/health/service/web", params={"index": 1, "wait": "x"})
        assert bad_wait.status_code == 400


async def test_register_reads_consul_bodies_loosely_and_answers_200_with_no_body() -> None:
    async with one_node() as (node, client):
        go_style = {
            "Name": "web",
            "ID": "web-1",
            "Port": 8080,
            "Tags": ["v1"],
            "Weights": {"Passing": 3, "Warning": 1},
            "EnableTagOverride": False,
            "Check": {"TTL": "15s", "DeregisterCriticalServiceAfter": "1m"},
        }
        response = await client.put("/v1/agent/service/register", json=go_style)
        assert (response.status_code, response.content) == (200, b"")
        snake = {"name": "api", "port": 9000, "checks": [{"ttl": "10s"}, {"tcp": "127.0.0.1:1"}]}
        response = await client.put(
            "/v1/agent/service/register",
            content=json.dumps(snake),  # py-consul sends no Content-Type
            params={"replace-existing-checks": "true"},
        )
        assert response.status_code == 200, response.text
        entries = {e.instance_id: e for e in node.own_entries()}
        assert entries["web-1"].weight == 3
        assert [c.check_id for c in entries["web-1"].checks] == ["service:web-1"]
        assert "api" in entries  # Consul's id defaults to the name
        assert [c.check_id for c in entries["api"].checks] == ["service:api:1", "service:api:2"]
        script = {"Name": "x", "Port": 1, "Check": {"Args": ["true"], "Interval": "10s"}}
        refused = await client.put("/v1/agent/service/register", json=script)
        assert refused.status_code == 400
        assert "args" in refused.json()["error"]
        assert (await client.put("/v1/agent/service/deregister/web-1")).status_code == 200
        assert (await client.put("/v1/agent/service/deregister/web-1")).status_code == 404
        missing = await client.put("/v1/agent/check/pass/service:nothing")
        assert missing.status_code == 404


async def test_check_update_and_ttl_reports_reach_the_ttl_check() -> None:
    async with one_node() as (node, client):
        await node.register("web", instance_id="w", port=1, checks=[CheckSpec(ttl=30.0)])
        response = await client.put("/v1/agent/check/warn/service:w", params={"note": "slow"})
        assert response.status_code == 200
        assert [(str(c.status), c.output) for c in node.own_entries()[0].checks] == [
            ("warning", "slow")
        ]
        update = {"Status": "passing", "Output": "fine"}
        assert (
            await client.put("/v1/agent/check/update/service:w", json=update)
        ).status_code == 200
        assert str(node.own_entries()[0].status) == "passing"
        bad = await client.put("/v1/agent/check/update/service:w", json={"Status": "dead"})
        assert bad.status_code == 400


async def test_maintenance_makes_instances_critical_with_the_reason_until_turned_off() -> None:
    async with one_node() as (node, client):
        await node.register("web", instance_id="w1", port=1)
        await node.register("web", instance_id="w2", port=2)
        put = client.put
        assert (await put("/v1/agent/service/maintenance/w1", params={"enable": "true"})).is_success
        passing = await client.get("/v1/health/service/web", params={"passing": "1"})
        assert [i["Service"]["ID"] for i in passing.json()] == ["w2"]
        # Ours: the node-wide switch, with a reason, read back through both APIs.
        response = await put("/v1/maintenance", json={"enable": True, "reason": "kernel"})
        assert response.json()["node"] == "kernel"
        assert sorted(response.json()["changed"]) == ["web/w1", "web/w2"]
        state = (await client.get("/v1/health/state/critical")).json()
        assert {(c["ServiceID"], c["Output"]) for c in state} >= {
            ("w1", "kernel"),
            ("w2", "kernel"),
        }
        assert (await client.get("/v1/maintenance")).json()["instances"] == {
            "web/w1": "maintenance mode is on"
        }
        assert (await put("/v1/agent/maintenance", params={"enable": "False"})).is_success
        assert (await put("/v1/maintenance/w1", json={"enable": False})).is_success
        passing = await client.get("/v1/health/service/web", params={"passing": "1"})
        assert sorted(i["Service"]["ID"] for i in passing.json()) == ["w1", "w2"]
        assert (await put("/v1/agent/maintenance")).status_code == 400  # enable is required
        assert (await put("/v1/maintenance/nope", json={"enable": True})).status_code == 404


async def test_x_consul_token_carries_the_read_and_write_tokens() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("n0"))
            tokens = {"read_token": "reader", "write_token": "writer"}
            async with consul_client(node, **tokens) as client:
                assert (await client.get("/v1/catalog/services")).status_code == 401
                read = {"X-Consul-Token": "reader"}
                assert (await client.get("/v1/catalog/services", headers=read)).status_code == 200
                body = {"Name": "web", "Port": 80}
                path = "/v1/agent/service/register"
                assert (await client.put(path, json=body, headers=read)).status_code == 403
                write = {"X-Consul-Token": "writer"}
                assert (await client.put(path, json=body, headers=write)).status_code == 200
            nursery.cancel_scope.cancel()


async def test_prometheus_targets_are_http_sd_groups_with_the_registry_labels() -> None:
    async with one_node() as (node, client):
        await node.register(
            "web", instance_id="w1", port=8080, tags=["a", "b"], meta={"team-name": "x"}
        )
        await node.register("web", instance_id="w2", port=8081, checks=[CheckSpec(ttl=30.0)])
        await node.register("db", instance_id="d1", address="::1", port=5432)
        response = await client.get("/v1/prometheus/targets")
        assert response.headers["content-type"] == "application/json"
        groups = {g["labels"]["__meta_registry_service_id"]: g for g in response.json()}
        assert groups["w1"]["targets"] == ["127.0.0.1:8080"]
        assert groups["d1"]["targets"] == ["[::1]:5432"]
        labels = groups["w1"]["labels"]
        assert labels["__meta_registry_service"] == "web"
        assert labels["__meta_registry_node"] == "n0"
        assert labels["__meta_registry_tags"] == ",a,b,"
        assert labels["__meta_registry_health"] == "passing"
        assert labels["__meta_registry_service_meta_team_name"] == "x"
        assert groups["w2"]["labels"]["__meta_registry_health"] == "critical"
        assert groups["d1"]["labels"]["__meta_registry_tags"] == ",,"
        only = await client.get(
            "/v1/prometheus/targets", params={"service": "web", "passing": "true"}
        )
        assert [g["labels"]["__meta_registry_service_id"] for g in only.json()] == ["w1"]
        tagged = await client.get("/v1/prometheus/targets", params={"tag": "b"})
        assert [g["labels"]["__meta_registry_service_id"] for g in tagged.json()] == ["w1"]
        assert (await client.get("/v1/prometheus/targets", params={"x": "1"})).status_code == 400


async def test_node_maintenance_covers_instances_registered_while_it_is_on() -> None:
    async with one_node() as (node, client):
        await node.set_maintenance(True, "rack move")
        body = {"Name": "web", "ID": "w1", "Port": 80, "Check": {"TTL": "30s"}}
        assert (await client.put("/v1/agent/service/register", json=body)).status_code == 200
        await node.register("web", instance_id="w2", port=81)
        assert (await client.put("/v1/agent/check/pass/service:w1")).status_code == 200
        checks = (await client.get("/v1/health/checks/web")).json()
        assert {(c["ServiceID"], c["CheckID"], c["Status"]) for c in checks} == {
            ("w1", "service:w1", "passing"),
            ("w1", "_node_maintenance", "critical"),
            ("w2", "_node_maintenance", "critical"),
        }
        assert node.discover("web") == []
        await node.set_maintenance(False)
        assert sorted(e.instance_id for e in node.discover("web")) == ["w1", "w2"]


async def test_maintenance_survives_a_restart_from_the_snapshot(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with Node(fast_config("n1", data_dir=tmp_path)) as node:
            await node.register("web", instance_id="w1", port=80, checks=[CheckSpec(ttl=60.0)])
            await node.update_ttl("service:w1", Health.PASSING)
            await node.set_maintenance(True, "upgrade", instance_id="w1")
            await node.set_maintenance(True, "rack move")
        async with Node(fast_config("n1", data_dir=tmp_path)) as node:
            assert node.maintenance() == {"node": "rack move", "instances": {"web/w1": "upgrade"}}
            assert node.discover("web") == []
            await node.update_ttl("service:w1", Health.PASSING, "still here")  # a check change
            assert node.discover("web") == []  # keeps the maintenance checks
            await node.set_maintenance(False)
            await node.set_maintenance(False, instance_id="w1")
            assert [e.instance_id for e in node.discover("web")] == ["w1"]


async def test_maintenance_of_an_instance_with_no_room_for_its_check_is_refused() -> None:
    async with one_node() as (node, client):
        full = [CheckSpec(ttl=30.0)] * 32  # the most checks an entry carries on the wire
        await node.register("web", instance_id="w1", port=80, checks=full)
        ours = await client.put("/v1/maintenance/w1", json={"enable": True, "reason": "x"})
        assert ours.status_code == 400
        assert "no room" in ours.json()["error"]
        consuls = await client.put("/v1/agent/service/maintenance/w1", params={"enable": "true"})
        assert consuls.status_code == 400
        assert node.maintenance() == {"node": None, "instances": {}}
        await node.register("web", instance_id="w2", port=81)
        both = await client.put("/v1/maintenance", json={"enable": True})
        assert both.json()["changed"] == ["web/w2"]  # w1 could not take it; the node log says so
