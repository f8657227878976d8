"""Health checks in the HTTP API: registration bodies, TTL reports, checks in discovery."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gossip_registry.registry.entry import CheckKind, CheckState, Health
from gossip_registry.registry.health import CheckSpec
from tests.integration.test_http_api import FakeNode, api, valid_body


async def test_register_passes_checks_with_durations_parsed() -> None:
    node = FakeNode()
    checks = [
        {
            "http": "http://127.0.0.1:8080/health",
            "interval": "500ms",
            "timeout": "1s",
            "success_before_passing": 2,
            "failures_before_critical": 3,
            "deregister_after": "1m",
            "name": "web health",
        },
        {"tcp": "127.0.0.1:8080", "id": "web-tcp"},
        {"ttl": "30s", "interval": None},
    ]
    async with api(node) as client:
        response = await client.put("/v1/services", json=valid_body(checks=checks))

    assert response.status_code == 200, response.json()
    assert node.calls[-1][2]["checks"] == [
        CheckSpec(
            http="http://127.0.0.1:8080/health",
            interval=0.5,
            timeout=1.0,
            success_before_passing=2,
            failures_before_critical=3,
            deregister_after=60.0,
            name="web health",
        ),
        CheckSpec(tcp="127.0.0.1:8080", check_id="web-tcp"),
        CheckSpec(ttl=30.0),
    ]


BAD_CHECKS: list[tuple[str, Any, str]] = [
    ("not-a-list", {"http": "http://x/"}, "checks: must be a list"),
    ("not-an-object", ["http://x/"], "checks[0]: must be an object"),
    ("none-of-the-kinds", [{"interval": "1s"}], "checks[0].check: needs exactly one of"),
    ("two-kinds", [{"http": "http://x/", "ttl": "1s"}], "checks[0].check: needs exactly one"),
    ("unknown-field", [{"ttl": "1s", "intervall": "1s"}], "checks[0].intervall: unknown field"),
    ("bare-number-duration", [{"ttl": 30}], "checks[0].ttl: must be a duration string"),
    ("no-unit", [{"ttl": "30"}], "checks[0].ttl: must be a duration such as"),
    ("zero-interval", [{"tcp": "h:1", "interval": "0s"}], "checks[0].interval: must be a du"),
    ("tcp-without-port", [{"tcp": "localhost"}], "checks[0].tcp: must be host:port"),
    ("http-not-a-url", [{"http": "localhost:80"}], "checks[0].http: must be an http://"),
    ("negative-threshold", [{"ttl": "1s", "success_before_passing": -1}], "checks[0].success_"),
    ("bool-threshold", [{"ttl": "1s", "failures_before_critical": True}], "checks[0].failures"),
    ("empty-id", [{"ttl": "1s", "id": ""}], "checks[0].id: must be a non-empty string"),
    ("second-bad", [{"ttl": "1s"}, {"tcp": 5}], "checks[1].tcp: must be a non-empty string"),
]


@pytest.mark.parametrize(
    ("checks", "message"),
    [pytest.param(checks, message, id=case) for case, checks, message in BAD_CHECKS],
)
async def test_register_rejects_a_bad_check_with_400_naming_it(checks: Any, message: str) -> None:
    node = FakeNode()
    async with api(node) as client:
        response = await client.put("/v1/services", content=json.dumps(valid_body(checks=checks)))

    assert response.status_code == 400
    assert response.json()["error"].startswith(message), response.json()
    assert not node.calls


async def test_discover_shows_each_check_of_an_instance() -> None:
    node = FakeNode()
    check = CheckState("service:w1", CheckKind.HTTP, Health.WARNING, "HTTP GET /: 429")
    node.put("web", "w1", status=Health.WARNING, checks=(check,))
    async with api(node) as client:
        response = await client.get("/v1/services/web", params={"passing": "false"})

    [instance] = response.json()
    assert instance["status"] == "warning"
    assert instance["checks"] == [
        {"id": "service:w1", "kind": "http", "status": "warning", "output": "HTTP GET /: 429"}
    ]


@pytest.mark.parametrize(
    ("verb", "status"),
    [("pass", Health.PASSING), ("warn", Health.WARNING), ("fail", Health.CRITICAL)],
)
async def test_ttl_report_reaches_the_node_with_its_output(verb: str, status: Health) -> None:
    node = FakeNode()
    async with api(node) as client:
        with_body = await client.put(f"/v1/checks/service:web-1/{verb}", json={"output": "ok"})
        with_note = await client.put(f"/v1/checks/service:web-1/{verb}?note=fine")
        bare = await client.put(f"/v1/checks/service:web-1/{verb}")

    assert [r.status_code for r in (with_body, with_note, bare)] == [200, 200, 200]
    assert with_body.json() == {"id": "service:web-1", "status": str(status)}
    assert [c[1] for c in node.calls] == [
        ("service:web-1", status, "ok"),
        ("service:web-1", status, "fine"),
        ("service:web-1", status, ""),
    ]


@pytest.mark.parametrize(
    ("path", "body", "code", "message"),
    [
        ("/v1/checks/nope/pass", None, 404, "id: no check 'nope'"),
        ("/v1/checks/service:web-1/ok", None, 400, "status: must be one of pass, warn, fail"),
        ("/v1/checks/web-ttl-is-http/pass", None, 400, "check 'web-ttl-is-http' is a http"),
        ("/v1/checks/service:web-1/pass", {"note": "x"}, 400, "note: unknown field"),
        ("/v1/checks/service:web-1/pass", {"output": 5}, 400, "output: must be a string"),
        ("/v1/checks/service:web-1/pass?notes=x", None, 400, "notes: unknown field"),
        ("/v1/checks/service:web-1/pass", [1], 400, "body must be a JSON object"),
    ],
)
async def test_ttl_report_rejects_bad_input(path: str, body: Any, code: int, message: str) -> None:
    async with api(FakeNode()) as client:
        response = await client.put(path, content=b"" if body is None else json.dumps(body))

    assert response.status_code == code
    assert response.json()["error"].startswith(message), response.json()
