"""The HTTP API over a fake node: every endpoint, every validation error, and one real socket.

The fake implements exactly the public Node methods the API may use, with
the same signatures, and records what the API passed it; until the real
Node lands this pins the adapter's contract. Requests go through httpx's
ASGI transport (no socket) except in the serve_http test.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import pytest
import trio
import trio.testing

from gossip_registry.api.http import MAX_BODY_BYTES, build_app, serve_http
from gossip_registry.config.node import NodeConfig
from gossip_registry.core.messages import MemberState
from gossip_registry.registry.entry import Entry, EntryKey, Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.runtime.node import MemberView, Node
from gossip_registry.runtime.watch import CATALOG, MEMBERS, ChangeIndex

TIMEOUT = 5.0
"""Absolute bound on each test; an in-process request takes milliseconds."""


class FakeNode:
    """The Node API surface the HTTP layer uses, backed by a dict."""

    def __init__(self, name: str = "node1") -> None:
        self.name = name
        self.config = NodeConfig(name)  # serve_http reads tokens and TLS files from it
        self.entries: dict[tuple[str, str], Entry] = {}
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail_with: Exception | None = None
        self.changes = ChangeIndex(max_waiters=10)
        self.stale: set[EntryKey] = set()
        self.http_stats: dict[str, int] = {}  # serve_http counts refused connections here
        self.joining = False

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        if self.fail_with is not None:
            raise self.fail_with

    def members(self) -> list[MemberView]:
        self._record("members")
        return [
            MemberView(self.name, "127.0.0.1", 7946, MemberState.ALIVE, 3, {"zone": "a"}),
            MemberView("node2", "127.0.0.1", 7947, MemberState.SUSPECT, 1, {}),
            MemberView("node3", "::1", 7948, MemberState.DEAD, 0, {}),
            MemberView("node4", "127.0.0.1", 7949, MemberState.LEFT, 2, {}),
        ]

    def status(self) -> dict[str, Any]:
        self._record("status")
        return {"name": self.name, "incarnation": 3, "entries": len(self.entries), "index": 7}

    async def register(
        self,
        service: str,
        *,
        instance_id: str | None = None,
        address: str | None = None,
        port: int,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        weight: int = 1,
        status: Health = Health.PASSING,
        checks: Sequence[CheckSpec] = (),
    ) -> Entry:
        self._record(
            "register",
            service,
            instance_id=instance_id,
            address=address,
            port=port,
            tags=tags,
            meta=meta,
            weight=weight,
            **({"checks": list(checks)} if checks else {}),
        )
        if address == "not-resolvable.invalid":
            raise ValueError("address: cannot be resolved")
        entry = Entry(
            service=service,
            instance_id=instance_id or f"{service}-{uuid.uuid4().hex[:8]}",
            address=address or "127.0.0.1",
            port=port,
            tags=tuple(tags),
            meta=dict(meta or {}),
            weight=weight,
            status=status,
            output="",
            owner=self.name,
            owner_incarnation=3,
            stamp=1,
            deleted=False,
        )
        self.entries[entry.key] = entry
        return entry

    async def deregister(self, instance_id: str, *, service: str | None = None) -> Entry | None:
        self._record("deregister", instance_id, **({} if service is None else {"service": service}))
        matches = [
            e
            for e in self.entries.values()
            if e.instance_id == instance_id
            and service in (None, e.service)
            and e.owner == self.name  # only the owner deregisters, as the Node does
        ]
        if len(matches) > 1:
            raise ValueError(f"instance_id {instance_id!r} is in several services; pass service")
        return self.entries.pop(matches[0].key) if matches else None

    async def update_ttl(self, check_id: str, status: Health, output: str = "") -> None:
        self._record("update_ttl", check_id, status, output)
        if check_id == "web-ttl-is-http":
            raise ValueError("check 'web-ttl-is-http' is a http check, not ttl")
        if check_id != "service:web-1":
            raise KeyError(check_id)

    def services(self) -> dict[str, int]:
        self._record("services")
        counts: dict[str, int] = {}
        for e in self.entries.values():
            counts[e.service] = counts.get(e.service, 0) + 1
        return counts

    def health_counts(self) -> dict[str, dict[str, int]]:
        self._record("health_counts")
        counts: dict[str, dict[str, int]] = {}
        for e in self.entries.values():
            by_status = counts.setdefault(e.service, {str(h): 0 for h in Health})
            by_status[str(e.status)] += 1
        return counts

    def owners_of(self, instance_id: str, service: str | None = None) -> list[str]:
        return sorted(
            {
                e.owner
                for e in self.entries.values()
                if e.instance_id == instance_id and service in (None, e.service)
            }
        )

    def force_leave(self, name: str) -> None:
        self._record("force_leave", name)
        states = {m.name: m.state for m in self.members()}
        if name not in states:
            raise KeyError(name)
        if states[name] is not MemberState.DEAD:
            raise ValueError(f"member {name} is {states[name].label}: only a dead member ...")

    def discover(
        self,
        service: str,
        *,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        passing_only: bool = True,
    ) -> list[Entry]:
        self._record("discover", service, tags=list(tags), meta=meta, passing_only=passing_only)
        return [
            e
            for e in self.entries.values()
            if e.service == service
            and all(t in e.tags for t in tags)
            and all(e.meta.get(k) == v for k, v in (meta or {}).items())
            and (not passing_only or e.status is Health.PASSING)
        ]

    def put(self, service: str, instance_id: str, **fields: Any) -> Entry:
        """Add an entry directly, as if gossip had brought it (any owner, any health)."""
        values: dict[str, Any] = {
            "address": "10.0.0.1",
            "port": 80,
            "tags": (),
            "meta": {},
            "weight": 1,
            "status": Health.PASSING,
            "output": "",
            "owner": self.name,
            "owner_incarnation": 0,
            "stamp": 1,
            "deleted": False,
        }
        values.update(fields)
        entry = Entry(service=service, instance_id=instance_id, **values)
        self.entries[entry.key] = entry
        self.changes.changed((service, CATALOG))
        return entry

    # Watches: a real ChangeIndex, so blocking queries really block and wake.

    def index(self, service: str | None = None) -> int:
        return self.changes.of(CATALOG if service is None else service)

    def members_index(self) -> int:
        return self.changes.of(MEMBERS)

    async def wait_for_change(self, service: str | None, index: int, timeout: float) -> int:
        self._record("wait_for_change", service, index, timeout)
        return await self.changes.wait(CATALOG if service is None else service, index, timeout)

    async def wait_for_members_change(self, index: int, timeout: float) -> int:
        self._record("wait_for_members_change", index, timeout)
        return await self.changes.wait(MEMBERS, index, timeout)

    def is_stale(self, entry: Entry) -> bool:
        return entry.key in self.stale


def as_node(fake: FakeNode) -> Node:
    """The fake where the adapter takes a Node: it stands in structurally (for the parts these
    tests reach), since ``build_app`` and ``serve_http`` are typed with the concrete class."""
    return cast(Node, fake)


@asynccontextmanager
async def api(node: FakeNode) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``build_app(node)``, the whole test body under an absolute deadline."""
    with trio.fail_after(TIMEOUT):
        transport = httpx.ASGITransport(app=build_app(as_node(node)))
        async with httpx.AsyncClient(transport=transport, base_url="http://node1") as client:
            yield client


def valid_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "web", "port": 8080}
    body.update(changes)
    return body


# --- Reads ---------------------------------------------------------------------------


async def test_healthz_answers_ok_with_the_node_name() -> None:
    async with api(FakeNode("n7")) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "name": "n7"}


async def test_members_lists_every_member_with_its_state_label() -> None:
    async with api(FakeNode()) as client:
        response = await client.get("/v1/members")

    assert response.status_code == 200
    members = response.json()
    assert [m["state"] for m in members] == ["alive", "suspect", "dead", "left"]
    assert members[0] == {
        "name": "node1",
        "address": "127.0.0.1",
        "port": 7946,
        "state": "alive",
        "incarnation": 3,
        "meta": {"zone": "a"},
        "gone_for": None,
    }


async def test_status_is_the_nodes_status_as_json() -> None:
    async with api(FakeNode()) as client:
        response = await client.get("/v1/status")

    assert response.status_code == 200
    assert response.json() == {"name": "node1", "incarnation": 3, "entries": 0, "index": 7}
    assert response.headers["X-Registry-Index"] == "7"


async def test_services_counts_instances_per_name() -> None:
    node = FakeNode()
    node.put("web", "w1")
    node.put("web", "w2")
    node.put("db", "d1")
    async with api(node) as client:
        response = await client.get("/v1/services")

    assert response.json() == {"web": 2, "db": 1}


async def test_discover_lists_instances_with_their_owner() -> None:
    node = FakeNode()
    node.put("web", "w1", tags=("v1",), meta={"zone": "a"}, weight=5, owner="node2")
    async with api(node) as client:
        response = await client.get("/v1/services/web")

    assert response.status_code == 200
    assert response.json() == [
        {
            "id": "w1",
            "name": "web",
            "address": "10.0.0.1",
            "port": 80,
            "tags": ["v1"],
            "meta": {"zone": "a"},
            "weight": 5,
            "status": "passing",
            "node": "node2",
            "stale": False,
            "checks": [],
        }
    ]


async def test_discover_of_an_unknown_name_is_an_empty_list() -> None:
    async with api(FakeNode()) as client:
        response = await client.get("/v1/services/nothing")

    assert response.status_code == 200
    assert response.json() == []


async def test_discover_returns_passing_instances_unless_passing_false_is_asked_for() -> None:
    node = FakeNode()
    node.put("web", "ok")
    node.put("web", "bad", status=Health.CRITICAL)
    async with api(node) as client:
        default = await client.get("/v1/services/web")
        passing = await client.get("/v1/services/web", params={"passing": "true"})
        everything = await client.get("/v1/services/web", params={"passing": "False"})

    assert [i["id"] for i in default.json()] == ["ok"]
    assert [i["id"] for i in passing.json()] == ["ok"]
    assert sorted(i["id"] for i in everything.json()) == ["bad", "ok"]
    assert [c[2]["passing_only"] for c in node.calls] == [True, True, False]


async def test_discover_filters_need_every_tag_and_every_meta_pair() -> None:
    node = FakeNode()
    node.put("web", "both", tags=("v1", "eu"), meta={"zone": "a", "tier": "1"})
    node.put("web", "v1only", tags=("v1",), meta={"zone": "a", "tier": "1"})
    node.put("web", "zone-b", tags=("v1", "eu"), meta={"zone": "b", "tier": "1"})
    async with api(node) as client:
        response = await client.get(
            "/v1/services/web",
            params=[("tag", "v1"), ("tag", "eu"), ("meta", "zone:a"), ("meta", "tier:1")],
        )

    assert [i["id"] for i in response.json()] == ["both"]
    assert node.calls[-1] == (
        "discover",
        ("web",),
        {"tags": ["v1", "eu"], "meta": {"zone": "a", "tier": "1"}, "passing_only": True},
    )


async def test_discover_meta_value_may_contain_colons() -> None:
    node = FakeNode()
    node.put("web", "w1", meta={"url": "http://x:1"})
    async with api(node) as client:
        response = await client.get("/v1/services/web", params={"meta": "url:http://x:1"})

    assert [i["id"] for i in response.json()] == ["w1"]


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"tags": "v1"}, 400, "tags: unknown query parameter"),
        ({"meta": "zone"}, 400, "meta: expected key:value"),
        ({"meta": ":a"}, 400, "meta: expected key:value"),
        ([("meta", "zone:a"), ("meta", "zone:b")], 400, "meta: key 'zone' given twice"),
        ({"passing": "yes"}, 400, "passing: must be true or false"),
        ([("passing", "true"), ("passing", "true")], 400, "passing: given more than once"),
        ({"tag": ""}, 400, "tag: must be a non-empty string"),
        ({"tag": "x" * 129}, 400, "tag: must be a non-empty string of at most 128"),
    ],
)
async def test_discover_rejects_bad_query_parameters(
    params: Any, status: int, fragment: str
) -> None:
    async with api(FakeNode()) as client:
        response = await client.get("/v1/services/web", params=params)

    assert response.status_code == status
    assert fragment in response.json()["error"]


# --- Register and deregister ----------------------------------------------------------


async def test_register_returns_the_id_and_name_and_passes_every_field() -> None:
    node = FakeNode()
    body = {
        "name": "web",
        "id": "web-1",
        "address": "10.1.2.3",
        "port": 8080,
        "tags": ["v1", "eu"],
        "meta": {"zone": "a"},
        "weight": 10,
    }
    async with api(node) as client:
        response = await client.put("/v1/services", json=body)

    assert response.status_code == 200
    assert response.json() == {
        "id": "web-1",
        "name": "web",
        "address": "10.1.2.3",
        "port": 8080,
        "node": "node1",
        "checks": [],
    }
    assert node.calls == [
        (
            "register",
            ("web",),
            {
                "instance_id": "web-1",
                "address": "10.1.2.3",
                "port": 8080,
                "tags": ["v1", "eu"],
                "meta": {"zone": "a"},
                "weight": 10,
            },
        )
    ]


async def test_register_without_id_gets_a_generated_one() -> None:
    node = FakeNode()
    async with api(node) as client:
        response = await client.put("/v1/services", json=valid_body())
        listed = await client.get("/v1/services/web")

    generated = response.json()["id"]
    assert generated.startswith("web-")
    assert [i["id"] for i in listed.json()] == [generated]
    # Absent optional fields are left to the node's defaults, not sent as None.
    assert node.calls[0][2] == {
        "instance_id": None,
        "address": None,
        "port": 8080,
        "tags": (),
        "meta": None,
        "weight": 1,
    }


async def test_register_treats_null_optional_fields_as_absent() -> None:
    node = FakeNode()
    body = valid_body(id=None, address=None, tags=None, meta=None, weight=None)
    async with api(node) as client:
        response = await client.put("/v1/services", json=body)

    assert response.status_code == 200
    assert node.calls[0][2]["weight"] == 1


async def test_register_limits_at_the_boundary_are_accepted() -> None:
    body = valid_body(
        name="n" * 63,  # a DNS label
        id="i" * 127 + "\u00e9",  # printable, not only ASCII
        address=".".join(["a" * 63] * 3 + ["a" * 61]),  # 253 characters
        port=1,
        tags=["t" * 63] * 64,
        meta={f"k{i:03}".ljust(128, "k"): "v" * 512 for i in range(64)},
        weight=65535,
    )
    async with api(FakeNode()) as client:
        response = await client.put("/v1/services", json=body)

    assert response.status_code == 200, response.text


async def test_deregister_removes_this_nodes_instance() -> None:
    node = FakeNode()
    node.put("web", "web-1")
    async with api(node) as client:
        response = await client.delete("/v1/services/web-1")
        listed = await client.get("/v1/services")

    assert response.status_code == 200
    assert response.json() == {"id": "web-1", "deregistered": True}
    assert listed.json() == {}


async def test_deregister_of_an_unknown_id_is_404_naming_it() -> None:
    async with api(FakeNode()) as client:
        response = await client.delete("/v1/services/ghost")

    assert response.status_code == 404
    assert "'ghost'" in response.json()["error"]
    assert response.json()["error"].startswith("id:")


async def test_deregister_of_another_nodes_instance_is_409_naming_the_owner() -> None:
    node = FakeNode()
    node.put("web", "web-9", owner="node7")
    async with api(node) as client:
        response = await client.delete("/v1/services/web-9")

    assert response.status_code == 409
    assert response.json()["error"] == (
        "id: instance 'web-9' is owned by node node7, not node1: "
        "only its owner may deregister it; ask that node"
    )


async def test_services_with_health_true_counts_instances_by_status() -> None:
    node = FakeNode()
    node.put("web", "w1")
    node.put("web", "w2", status=Health.CRITICAL)
    async with api(node) as client:
        response = await client.get("/v1/services?health=true")
        bad = await client.get("/v1/services?health=yes")

    assert response.json() == {"web": {"passing": 1, "warning": 0, "critical": 1}}
    assert bad.status_code == 400
    assert bad.json()["error"] == "health: must be true or false, got 'yes'"


async def test_a_joining_nodes_discovery_answer_says_so() -> None:
    node = FakeNode()
    async with api(node) as client:
        synced = await client.get("/v1/services/web")
        node.joining = True
        joining = await client.get("/v1/services/web")

    assert "X-Registry-Joining" not in synced.headers
    assert joining.headers["X-Registry-Joining"] == "true"


async def test_force_leave_of_a_dead_member_is_done_and_of_a_live_one_is_409() -> None:
    node = FakeNode()
    async with api(node) as client:
        dead = await client.put("/v1/members/node3/force-leave")
        alive = await client.put("/v1/members/node2/force-leave")
        unknown = await client.put("/v1/members/ghost/force-leave")

    assert dead.json() == {"name": "node3", "state": "left"}
    assert alive.status_code == 409
    assert alive.json()["error"].startswith("name: member node2 is suspect")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "name: no member 'ghost' is known here"


async def test_an_id_containing_a_slash_from_an_older_node_can_be_deregistered() -> None:
    node = FakeNode()
    node.put("web", "rack/1")  # registration refuses '/' now; entries from before still route
    async with api(node) as client:
        response = await client.delete("/v1/services/rack%2F1")

    assert response.status_code == 200
    assert node.calls[-1] == ("deregister", ("rack/1",), {})
    assert not node.entries


async def test_deregister_of_an_id_in_several_services_is_409_until_service_is_given() -> None:
    node = FakeNode()
    node.put("web", "shared-1")
    node.put("db", "shared-1")
    async with api(node) as client:
        ambiguous = await client.delete("/v1/services/shared-1")
        chosen = await client.delete("/v1/services/shared-1", params={"service": "db"})
        listed = await client.get("/v1/services")

    assert ambiguous.status_code == 409
    assert "?service=" in ambiguous.json()["error"]
    assert chosen.status_code == 200
    assert node.calls[-2] == ("deregister", ("shared-1",), {"service": "db"})
    assert listed.json() == {"web": 1}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"svc": "db"}, "svc: unknown query parameter"),
        ({"service": ""}, "service: must be a non-empty string"),
    ],
)
async def test_deregister_rejects_bad_query_parameters(params: Any, fragment: str) -> None:
    node = FakeNode()
    node.put("web", "web-1")
    async with api(node) as client:
        response = await client.delete("/v1/services/web-1", params=params)

    assert response.status_code == 400
    assert response.json()["error"].startswith(fragment)
    assert len(node.entries) == 1


# --- Validation: each bad field is a 4xx naming it -------------------------------------

BAD_BODIES: list[tuple[str, Any, str]] = [
    # (case id, JSON body, start of the error message)
    ("unknown-field", valid_body(tgas=["v1"]), "tgas: unknown field"),
    ("status-is-not-settable", valid_body(status="passing"), "status: unknown field"),
    ("name-missing", {"port": 80}, "name: required"),
    ("name-null", {"name": None, "port": 80}, "name: required"),
    ("port-missing", {"name": "web"}, "port: required"),
    ("name-empty", valid_body(name=""), "name: must be a DNS label"),
    ("name-long", valid_body(name="n" * 64), "name: must be a DNS label"),
    ("name-number", valid_body(name=5), "name: must be a DNS label"),
    ("name-not-dns", valid_body(name="bad name!"), "name: must be a DNS label"),
    ("name-underscore", valid_body(name="my_svc"), "name: must be a DNS label"),
    ("id-empty", valid_body(id=""), "id: must be 1..128 printable characters"),
    ("id-long", valid_body(id="i" * 129), "id: must be 1..128 printable characters"),
    ("id-newline", valid_body(id="a\nb"), "id: must be 1..128 printable characters without '/'"),
    ("id-slash", valid_body(id="rack/1"), "id: must be 1..128 printable characters without '/'"),
    ("address-nul", valid_body(address="bad host\u0000name"), "address: must be an IP address"),
    ("address-space", valid_body(address="bad host"), "address: must be an IP address"),
    ("id-list", valid_body(id=["a"]), "id: must be"),
    ("address-long", valid_body(address="a" * 254), "address: must be"),
    ("address-empty", valid_body(address=""), "address: must be"),
    ("address-number", valid_body(address=10), "address: must be"),
    ("port-zero", valid_body(port=0), "port: must be an integer 1..65535, got 0"),
    ("port-negative", valid_body(port=-1), "port: must be an integer 1..65535"),
    ("port-big", valid_body(port=65536), "port: must be an integer 1..65535, got 65536"),
    ("port-bool", valid_body(port=True), "port: must be an integer 1..65535, got True"),
    ("port-string", valid_body(port="80"), "port: must be an integer"),
    ("port-float", valid_body(port=80.0), "port: must be an integer"),
    ("tags-string", valid_body(tags="v1"), "tags: must be a list"),
    ("tags-too-many", valid_body(tags=["t"] * 65), "tags: must be a list of at most 64"),
    ("tag-number", valid_body(tags=["ok", 5]), "tags[1]: must be a DNS label"),
    ("tag-empty", valid_body(tags=[""]), "tags[0]: must be a DNS label"),
    ("tag-long", valid_body(tags=["t" * 64]), "tags[0]: must be a DNS label"),
    ("tag-not-dns", valid_body(tags=["env=prod"]), "tags[0]: must be a DNS label"),
    ("meta-list", valid_body(meta=["a"]), "meta: must be a map of string keys"),
    (
        "meta-too-many",
        valid_body(meta={f"k{i}": "v" for i in range(65)}),
        "meta: at most 64 pairs, got 65",
    ),
    ("meta-value-number", valid_body(meta={"zone": 1}), "meta.zone: must be a string"),
    ("meta-value-long", valid_body(meta={"zone": "v" * 513}), "meta.zone: must be a string"),
    ("meta-key-long", valid_body(meta={"k" * 129: "v"}), "meta: keys must be 1..128 printable"),
    ("meta-key-empty", valid_body(meta={"": "v"}), "meta: keys must be 1..128 printable"),
    ("meta-key-control", valid_body(meta={"a\tb": "v"}), "meta: keys must be 1..128 printable"),
    ("weight-bool", valid_body(weight=False), "weight: must be an integer 0..65535"),
    ("weight-negative", valid_body(weight=-1), "weight: must be an integer 0..65535"),
    ("weight-big", valid_body(weight=65536), "weight: must be an integer 0..65535"),
    ("body-list", [valid_body()], "body must be a JSON object"),
    ("body-null", None, "body must be a JSON object"),
    ("body-string", "web", "body must be a JSON object"),
]


@pytest.mark.parametrize(
    ("body", "message"),
    [pytest.param(body, message, id=case) for case, body, message in BAD_BODIES],
)
async def test_register_rejects_bad_field_with_400_naming_it(body: Any, message: str) -> None:
    node = FakeNode()
    async with api(node) as client:
        response = await client.put("/v1/services", content=json.dumps(body))

    assert response.status_code == 400
    assert response.json()["error"].startswith(message), response.json()
    assert not node.entries


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "body must be a JSON object", id="empty"),
        pytest.param(b"   ", "body must be a JSON object", id="blank"),
        pytest.param(b'{"name": "web",', "invalid JSON", id="truncated"),
        pytest.param(b"{'name': 'web'}", "invalid JSON", id="single-quotes"),
        pytest.param(b'{"name": "\xff"}', "invalid JSON", id="not-utf8"),
        pytest.param(b"[" * 60_000, "invalid JSON", id="deeply-nested"),
        pytest.param(b'{"name": "web", "port": NaN}', "port: must be an integer", id="nan"),
    ],
)
async def test_register_rejects_malformed_json_with_400(content: bytes, message: str) -> None:
    async with api(FakeNode()) as client:
        response = await client.put("/v1/services", content=content)

    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


async def test_a_value_error_from_the_node_is_a_400_with_its_message() -> None:
    async with api(FakeNode()) as client:
        response = await client.put(
            "/v1/services", json=valid_body(address="not-resolvable.invalid")
        )

    assert response.status_code == 400
    assert response.json() == {"error": "address: cannot be resolved"}


async def test_a_body_of_exactly_64_kib_is_read() -> None:
    raw = json.dumps(valid_body()).encode()
    content = raw + b" " * (MAX_BODY_BYTES - len(raw))
    async with api(FakeNode()) as client:
        response = await client.put("/v1/services", content=content)

    assert len(content) == MAX_BODY_BYTES
    assert response.status_code == 200


async def test_a_body_over_64_kib_is_413() -> None:
    raw = json.dumps(valid_body()).encode()
    content = raw + b" " * (MAX_BODY_BYTES + 1 - len(raw))
    async with api(FakeNode()) as client:
        response = await client.put("/v1/services", content=content)

    assert response.status_code == 413
    assert "65536" in response.json()["error"]


class EndlessBody(httpx.AsyncByteStream):
    """A body with no Content-Length that would be 16 MiB if read to the end.

    A class, not an async generator: httpx's ASGI transport never closes
    the request stream when the app answers early, and trio reports an
    unclosed async generator as a ResourceWarning (an error here).
    """

    def __init__(self) -> None:
        self.sent = 0

    def __aiter__(self) -> EndlessBody:
        return self

    async def __anext__(self) -> bytes:
        if self.sent == 1000:
            raise StopAsyncIteration
        self.sent += 1
        return b" " * 16384


async def test_a_chunked_body_over_64_kib_is_413_without_reading_it_all() -> None:
    body = EndlessBody()
    async with api(FakeNode()) as client:
        request = httpx.Request("PUT", "http://node1/v1/services", stream=body)
        response = await client.send(request)

    assert "content-length" not in request.headers
    assert response.status_code == 413
    assert body.sent < 10


# --- Routing and failures ----------------------------------------------------------------


async def test_unknown_route_is_a_json_404() -> None:
    async with api(FakeNode()) as client:
        response = await client.get("/v2/members")
        empty_name = await client.get("/v1/services/")

    assert response.status_code == 404
    assert response.json() == {"error": "not found: /v2/members"}
    assert empty_name.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/services"),
        ("DELETE", "/v1/members"),
        ("PUT", "/v1/status"),
        ("POST", "/healthz"),
        ("PUT", "/v1/services/web"),
    ],
)
async def test_wrong_method_is_a_json_405_with_allow(method: str, path: str) -> None:
    async with api(FakeNode()) as client:
        response = await client.request(method, path)

    assert response.status_code == 405
    assert response.json() == {"error": f"method {method} not allowed on {path}"}
    assert "GET" in response.headers["allow"]


async def test_a_node_failure_is_a_logged_500_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = FakeNode()
    node.fail_with = RuntimeError("secret internals")
    with caplog.at_level(logging.ERROR, logger="gossip_registry.http"):
        async with api(node) as client:
            response = await client.get("/v1/members")

    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "secret" not in response.text
    assert "GET /v1/members failed" in caplog.text
    assert "secret internals" in caplog.text


# --- A real socket ----------------------------------------------------------------------


async def test_serve_http_answers_on_a_real_socket_and_closes_it_when_cancelled() -> None:
    node = FakeNode("real")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve_http, node, "127.0.0.1", 0)
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://{host}:{port}/healthz")
            nursery.cancel_scope.cancel()

        assert (host, port != 0) == ("127.0.0.1", True)
        assert response.json() == {"status": "ok", "name": "real"}
        with pytest.raises(OSError, match="failed"):  # the listener is closed
            await trio.open_tcp_stream(host, port)


async def test_serve_http_raises_a_plain_oserror_when_the_port_is_taken() -> None:
    with trio.fail_after(TIMEOUT), trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            await serve_http(as_node(FakeNode()), "127.0.0.1", port)


async def test_a_real_node_serves_the_api_end_to_end() -> None:
    """The same calls against the real Node (one process, loopback, port 0)."""
    config = NodeConfig(name="solo", http=("127.0.0.1", 0))
    with trio.fail_after(10):
        async with Node(config) as node:
            assert node.http_addr is not None
            host, port = node.http_addr
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                registered = await client.put("/v1/services", json=valid_body(tags=["v1"]))
                found = await client.get("/v1/services/web", params={"tag": "v1"})
                members = await client.get("/v1/members")
                removed = await client.delete(f"/v1/services/{registered.json()['id']}")
                after = await client.get("/v1/services/web")

    assert registered.status_code == 200
    assert [(i["id"], i["node"]) for i in found.json()] == [(registered.json()["id"], "solo")]
    assert [(m["name"], m["state"]) for m in members.json()] == [("solo", "alive")]
    assert removed.json() == {"id": registered.json()["id"], "deregistered": True}
    assert after.json() == []


# --- Blocking queries ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "view"),
    [("/v1/services/web", "web"), ("/v1/services", CATALOG), ("/v1/members", MEMBERS)],
)
async def test_every_read_returns_the_index_of_its_own_view(path: str, view: Any) -> None:
    node = FakeNode()
    node.changes.changed(["other"])
    node.changes.changed([view])
    async with api(node) as client:
        response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["X-Registry-Index"] == str(node.changes.of(view)) == "3"


async def test_a_blocking_query_is_held_until_its_service_changes() -> None:
    node = FakeNode()
    node.put("web", "w1")
    results: list[httpx.Response] = []
    async with api(node) as client:
        index = (await client.get("/v1/services/web")).headers["X-Registry-Index"]

        async def block() -> None:
            results.append(await client.get(f"/v1/services/web?index={index}&wait=4s"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(block)
            await trio.testing.wait_all_tasks_blocked()
            node.put("db", "d1")  # another service: the query stays held
            await trio.testing.wait_all_tasks_blocked()
            assert results == []
            node.put("web", "w2")

    (response,) = results
    assert [i["id"] for i in response.json()] == ["w1", "w2"]
    assert int(response.headers["X-Registry-Index"]) > int(index)


async def test_an_index_already_passed_is_answered_at_once() -> None:
    node = FakeNode()
    node.put("web", "w1")
    async with api(node) as client:
        response = await client.get("/v1/services/web?index=1&wait=10m")

    assert response.status_code == 200
    assert response.headers["X-Registry-Index"] == "2"


async def test_the_wait_is_capped_at_ten_minutes_plus_at_most_a_sixteenth() -> None:
    node = FakeNode()
    async with api(node) as client:
        with trio.move_on_after(0.05):  # the query would be held; its arguments are what counts
            await client.get("/v1/members?index=1&wait=2h")
        with trio.move_on_after(0.05):
            await client.get("/v1/services?index=1")

    waits = [call[1] for call in node.calls if call[0].startswith("wait_for")]
    assert waits[0][0] == 1
    assert 600 <= waits[0][1] <= 600 * (1 + 1 / 16)
    assert waits[1][:2] == (None, 1)
    assert 300 <= waits[1][2] <= 300 * (1 + 1 / 16)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("index=-1", "index: must be a non-negative integer"),
        ("index=abc", "index: must be a non-negative integer"),
        ("index=99999999999999999999", "index: must be a non-negative integer"),
        ("index=1&index=2", "index: given more than once"),
        ("index=1&wait=30", "wait: must be a duration"),
        ("index=1&wait=-1s", "wait: must be a duration"),
        ("wait=soon", "wait: must be a duration"),
        ("limit=3", "limit: unknown query parameter (allowed: index, wait)"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/members", "/v1/services", "/v1/services/web"])
async def test_blocking_parameters_are_checked(path: str, query: str, fragment: str) -> None:
    async with api(FakeNode()) as client:
        response = await client.get(f"{path}?{query}")

    assert response.status_code == 400
    if not (query == "limit=3" and path.startswith("/v1/services")):  # those list more allowed
        assert fragment in response.json()["error"]


async def test_too_many_blocking_queries_are_refused_with_429() -> None:
    node = FakeNode()
    node.changes = ChangeIndex(max_waiters=1)
    responses: list[httpx.Response] = []
    async with api(node) as client:

        async def block() -> None:
            responses.append(await client.get("/v1/services/web?index=1&wait=1m"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(block)
            await trio.testing.wait_all_tasks_blocked()
            refused = await client.get("/v1/services/db?index=1&wait=1m")
            node.put("web", "w1")

    assert refused.status_code == 429
    assert "max_waiters 1" in refused.json()["error"]
    assert refused.headers["Retry-After"] == "1"
    assert [r.status_code for r in responses] == [200]


async def test_a_stale_instance_is_flagged_in_its_json() -> None:
    node = FakeNode()
    node.put("web", "w1")
    kept = node.put("web", "w2", owner="dead-node")
    node.stale.add(kept.key)
    async with api(node) as client:
        response = await client.get("/v1/services/web")

    assert [(i["id"], i["stale"]) for i in response.json()] == [("w1", False), ("w2", True)]
