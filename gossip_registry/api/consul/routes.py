"""The Consul-compatible endpoints: Consul's paths and shapes over the Node's public API.

Theory of operation: each handler is our own API's operation under Consul's
name. Reads call ``Node.discover`` / ``services`` / ``members`` /
``own_entries`` and render with ``shapes.py``; writes translate the body
(``bodies.py``) and call ``Node.register`` / ``deregister`` /
``update_ttl`` / ``set_maintenance``, through the same field checks as
our own API (``api/requests.py``). Nothing here keeps registry state.

Every read answers with ``X-Consul-Index`` (the node's index of the view
read: one service, every entry, or the member list; at least 1 and rising
whenever the view changes, see ``runtime/watch.py``), ``X-Consul-KnownLeader: true``
and ``X-Consul-LastContact: 0``: clients drop answers without a rising
index, and consul-template retries without ``stale`` when the last contact
looks old. ``?index=N&wait=D`` blocks as our own API does (Go durations,
capped at 10 minutes, jittered); an index above ours answers at once.

There is no leader and no server: every node answers every read from its
own full copy of the registry, so ``stale`` and ``consistent`` change
nothing, ``/v1/status/leader`` names the node itself, and ``dc`` must be
our own datacenter (the cluster's name; 404 otherwise). ``filter``
expressions and ``node-meta`` are refused with a 400 that says so; ``near``
is ignored (answers are sorted by instance id).

Consul answers writes with 200 and an empty body; py-consul treats
anything else, even 204, as failure. Errors are our one-line JSON
``{"error": ...}`` with Consul's status codes where clients look at them
(404 for an unknown service or check id). Features we do not have answer
501 naming the feature (``unsupported_routes``), never 500.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gossip_registry.api.checks import ttl_report
from gossip_registry.api.consul import bodies
from gossip_registry.api.consul.shapes import (
    NodeInfo,
    agent_service,
    catalog_service,
    datacenter,
    health_entry,
    member_json,
    node_id,
    node_json,
    service_checks,
)
from gossip_registry.api.requests import (
    Reject,
    blocking_query,
    guarded,
    optional_json_object,
    registration,
)
from gossip_registry.api.view_cache import IndexedCache, ViewCache
from gossip_registry.core.messages import ACTIVE_STATES
from gossip_registry.registry.entry import Entry
from gossip_registry.runtime.maintenance import NoRoom

if TYPE_CHECKING:
    from gossip_registry.runtime.node import MemberView, Node

__all__ = ["UNSUPPORTED", "consul_routes"]

UNSUPPORTED = {
    "kv": "the KV store",
    "session": "sessions",
    "acl": "ACLs (tokens are set in the node's configuration)",
    "connect": "Connect (service mesh)",
    "agent/connect": "Connect (service mesh)",
    "query": "prepared queries",
    "event": "user events",
    "txn": "transactions",
    "snapshot": "Raft snapshots",
    "operator": "operator (Raft, autopilot) endpoints",
    "coordinate": "network coordinates",
    "config": "configuration entries",
    "namespace": "namespaces",
    "namespaces": "namespaces",
    "partition": "admin partitions",
    "partitions": "admin partitions",
    "peering": "cluster peering",
    "peerings": "cluster peering",
    "discovery-chain": "discovery chains",
    "internal": "Consul's internal endpoints",
    "agent/token": "ACL tokens",
    "agent/check/register": "checks registered apart from a service",
    "agent/check/deregister": "checks registered apart from a service",
    "agent/join": "joining through the Consul API (use gossip-registry join)",
    "agent/leave": "leaving through the Consul API (stop the agent)",
    "agent/force-leave": "force-leave through the Consul API (use /v1/members/NAME/force-leave)",
    "agent/reload": "reloading configuration",
    "agent/monitor": "log streaming (use /v1/events)",
    "agent/metrics": "agent metrics in Consul's format (use /metrics)",
    "catalog/register": "catalog writes (register through the agent)",
    "catalog/deregister": "catalog writes (deregister through the agent)",
    "catalog/node": "a node's services (use /v1/catalog/service/NAME)",
    "catalog/node-services": "a node's services (use /v1/catalog/service/NAME)",
    "catalog/gateway-services": "gateways",
    "health/node": "a node's checks (use /v1/health/checks/SERVICE)",
    "health/connect": "Connect (service mesh)",
    "health/ingress": "ingress gateways",
}
"""Consul path prefixes (after ``/v1/``) we do not serve, and the feature each names."""

_HEADERS = {"X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0"}
_STATES = ("any", "passing", "warning", "critical")


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _answer(body: bytes, index: int) -> Response:
    headers = {**_HEADERS, "X-Consul-Index": str(index)}
    return Response(body, media_type="application/json", headers=headers)


def _written() -> Response:
    """Consul's success for a write: 200, empty body."""
    return Response(b"", status_code=200)


class _Nodes:
    """Member name -> ``NodeInfo``, rebuilt when the member list changes (its index moves)."""

    def __init__(self, node: Node, dc: str) -> None:
        self._node = node
        self._dc = dc
        self._index = -1
        self._known: dict[str, NodeInfo] = {}

    def get(self, name: str, fallback_address: str) -> NodeInfo:
        """``name``'s info; for a node no longer in the member list (its instances kept by
        self-preservation), one with ``fallback_address``."""
        if self._node.members_index() != self._index:
            self._index = self._node.members_index()
            cluster = self._node.config.cluster
            self._known = {
                m.name: NodeInfo(m.name, node_id(cluster, m.name), m.address, self._dc, m.meta)
                for m in self._node.members()
            }
        found = self._known.get(name)
        if found is not None:
            return found
        return NodeInfo(name, node_id(self._node.config.cluster, name), fallback_address, self._dc)


def consul_routes(node: Node, rng: random.Random) -> list[Route]:
    """The Consul-compatible routes over ``node`` (``rng`` jitters blocking waits)."""
    dc = datacenter(node.config.cluster)
    nodes = _Nodes(node, dc)
    # Renderings of the reads that visit every entry, per (path, query), while their index holds.
    cache: IndexedCache[bytes] = IndexedCache()
    health_views = ViewCache(
        lambda entries: _json([health_entry(e, info(e), dc, node.is_stale(e)) for e in entries])
    )

    def common(request: Request) -> None:
        """The query parameters every read takes: ``dc``, and the refused ``filter``."""
        params = request.query_params
        for asked in params.getlist("dc"):
            if asked and asked != dc:
                raise Reject(404, f"dc: no datacenter {asked[:60]!r} here (this one is {dc!r})")
        if any(params.getlist("filter")):
            raise Reject(400, "filter: filter expressions are not supported; use tag and passing")
        if any(params.getlist("node-meta")):
            raise Reject(400, "node-meta: filtering by node metadata is not supported")

    async def held(request: Request, wait: Callable[[int, float], Awaitable[int]]) -> None:
        """Check the common parameters, then hold a blocking query until its view changes."""
        common(request)
        query = blocking_query(request, rng)
        if query is not None:
            await wait(*query)

    async def read(
        request: Request,
        index: Callable[[], int],
        wait: Callable[[int, float], Awaitable[int]],
        body: Callable[[], Any],
        *,
        cached: bool = False,
    ) -> Response:
        """A read at the view's index; ``cached``: for a body that visits every entry,
        rendered once per index and query."""
        await held(request, wait)
        now = index()
        if not cached:
            return _answer(_json(body()), now)
        # Not keyed on index and wait: every watcher of the view shares one rendering.
        asked = request.query_params.multi_items()
        key = (request.url.path, tuple(item for item in asked if item[0] not in ("index", "wait")))
        return _answer(cache.get(key, now, lambda: _json(body())), now)

    def every_entry() -> list[Entry]:
        return [e for name in node.services() for e in node.discover(name, passing_only=False)]

    def instances(request: Request, name: str) -> list[Entry]:
        """``?passing`` (Consul's default: every instance) and ``?tag`` (all must match)."""
        passing = _flag(request, "passing", default=False)
        return node.discover(name, tags=request.query_params.getlist("tag"), passing_only=passing)

    def serf_member(m: MemberView) -> dict[str, Any]:
        return member_json(m.name, m.address, m.port, m.state, {**m.meta, "dc": dc})

    def info(entry: Entry) -> NodeInfo:
        return nodes.get(entry.owner, entry.address)

    # --- Agent and status.
    async def agent_self(request: Request) -> Response:
        me = nodes.get(node.name, node.advertise_addr[0])
        config = {"Datacenter": dc, "NodeName": node.name, "NodeID": me.id, "Server": False}
        member = [serf_member(m) for m in node.members() if m.name == node.name]
        body = {"Config": config, "Member": member[0] if member else None, "Meta": dict(me.meta)}
        return _answer(_json(body), node.members_index())

    async def leader(request: Request) -> Response:
        common(request)
        host, port = node.advertise_addr
        return _answer(_json(f"{host}:{port}"), node.members_index())

    async def peers(request: Request) -> Response:
        common(request)
        host, port = node.advertise_addr
        return _answer(_json([f"{host}:{port}"]), node.members_index())

    async def datacenters(request: Request) -> Response:
        return _answer(_json([dc]), 1)

    async def agent_members(request: Request) -> Response:
        return await read(
            request,
            node.members_index,
            node.wait_for_members_change,
            lambda: [serf_member(m) for m in node.members()],
        )

    async def agent_services(request: Request) -> Response:
        def body() -> dict[str, Any]:
            return {e.instance_id: agent_service(e, dc) for e in node.own_entries()}

        return await read(request, node.entries_index, node.wait_for_entries_change, body)

    async def agent_checks(request: Request) -> Response:
        def body() -> dict[str, Any]:
            return {c["CheckID"]: c for e in node.own_entries() for c in service_checks(e)}

        return await read(request, node.entries_index, node.wait_for_entries_change, body)

    # --- Catalog.
    async def catalog_services(request: Request) -> Response:
        def body() -> dict[str, list[str]]:
            tags: dict[str, set[str]] = {}
            for entry in every_entry():
                tags.setdefault(entry.service, set()).update(entry.tags)
            return {name: sorted(found) for name, found in sorted(tags.items())}

        return await read(
            request, node.entries_index, node.wait_for_entries_change, body, cached=True
        )

    def service_wait(name: str) -> Callable[[int, float], Awaitable[int]]:
        return lambda index, timeout: node.wait_for_change(name, index, timeout)

    async def service_read(request: Request, body: Callable[[str], Any]) -> Response:
        """A read of one service's view: ``body(name)`` at the service's index."""
        name: str = request.path_params["name"]
        return await read(request, lambda: node.index(name), service_wait(name), lambda: body(name))

    async def catalog_service_(request: Request) -> Response:
        return await service_read(
            request, lambda name: [catalog_service(e, info(e)) for e in instances(request, name)]
        )

    async def catalog_nodes(request: Request) -> Response:
        def body() -> list[dict[str, Any]]:
            active = [m for m in node.members() if m.state in ACTIVE_STATES]
            return [node_json(nodes.get(m.name, m.address)) for m in active]

        return await read(request, node.members_index, node.wait_for_members_change, body)

    # --- Health.
    async def health_service(request: Request) -> Response:
        """The hot read (every watcher of a service wakes on its change): one rendering per
        query while its entries, the service's index and the member list's are unchanged."""
        name: str = request.path_params["name"]
        await held(request, service_wait(name))
        passing = _flag(request, "passing", default=False)
        tags = request.query_params.getlist("tag")
        entries = node.discover(name, tags=tags, passing_only=passing)
        now = node.index(name)
        # Node addresses come from the member list: a change there renders again too.
        version = max(now, node.members_index())
        return _answer(health_views.get((name, passing, *tags), entries, version), now)

    async def health_checks(request: Request) -> Response:
        return await service_read(
            request,
            lambda name: [
                c for e in node.discover(name, passing_only=False) for c in service_checks(e)
            ],
        )

    async def health_state(request: Request) -> Response:
        state: str = request.path_params["state"]
        if state not in _STATES:
            raise Reject(400, f"state: must be one of {', '.join(_STATES)}, got {state[:40]!r}")

        def body() -> list[dict[str, Any]]:
            checks = (c for e in every_entry() for c in service_checks(e))
            return [c for c in checks if state == "any" or c["Status"] == state]

        return await read(
            request, node.entries_index, node.wait_for_entries_change, body, cached=True
        )

    # --- Writes.
    async def register(request: Request) -> Response:
        raw = await optional_json_object(request)
        if raw is None:
            raise Reject(400, "body must be a JSON object")
        try:
            name, kwargs = registration(bodies.registration(raw))
            await node.register(name, **kwargs)
        except ValueError as exc:
            raise Reject(400, str(exc)) from None
        return _written()

    async def deregister(request: Request) -> Response:
        instance_id: str = request.path_params["instance_id"]
        try:
            entry = await node.deregister(instance_id)
        except ValueError as exc:
            raise Reject(409, f"id: {exc}") from None
        if entry is None:
            raise Reject(404, f"Unknown service ID {instance_id[:100]!r}: not registered here")
        return _written()

    async def ttl(request: Request) -> Response:
        check_id: str = request.path_params["check_id"]
        try:
            if request.path_params["verb"] == "update":
                status, output = bodies.check_update(await optional_json_object(request))
            else:
                status, output = ttl_report(request.path_params["verb"], None, _note(request))
            await node.update_ttl(check_id, status, output)
        except KeyError:
            raise Reject(404, f"Unknown check ID {check_id[:100]!r}: no such check here") from None
        except ValueError as exc:
            raise Reject(400, str(exc)) from None
        return _written()

    async def service_maintenance(request: Request) -> Response:
        return await _maintenance(request, request.path_params["instance_id"])

    async def node_maintenance(request: Request) -> Response:
        return await _maintenance(request, None)

    async def _maintenance(request: Request, instance_id: str | None) -> Response:
        enable = _flag(request, "enable")
        reason = request.query_params.get("reason", "")
        try:
            await node.set_maintenance(enable, reason, instance_id=instance_id)
        except KeyError:
            raise Reject(404, f"Unknown service ID {instance_id!r}: not registered here") from None
        except NoRoom as exc:
            raise Reject(400, str(exc)) from None
        except ValueError as exc:
            raise Reject(409, f"id: {exc}") from None
        return _written()

    reads: list[tuple[str, Callable[[Request], Awaitable[Response]]]] = [
        ("/v1/agent/self", agent_self),
        ("/v1/agent/members", agent_members),
        ("/v1/agent/services", agent_services),
        ("/v1/agent/checks", agent_checks),
        ("/v1/status/leader", leader),
        ("/v1/status/peers", peers),
        ("/v1/catalog/datacenters", datacenters),
        ("/v1/catalog/services", catalog_services),
        ("/v1/catalog/service/{name:path}", catalog_service_),
        ("/v1/catalog/nodes", catalog_nodes),
        ("/v1/health/service/{name:path}", health_service),
        ("/v1/health/checks/{name:path}", health_checks),
        ("/v1/health/state/{state}", health_state),
    ]
    writes: list[tuple[str, Callable[[Request], Awaitable[Response]]]] = [
        ("/v1/agent/service/register", register),
        ("/v1/agent/service/deregister/{instance_id:path}", deregister),
        ("/v1/agent/check/{verb}/{check_id:path}", ttl),
        ("/v1/agent/service/maintenance/{instance_id:path}", service_maintenance),
        ("/v1/agent/maintenance", node_maintenance),
    ]
    # The refusals first: /v1/agent/check/deregister/ID must not reach the TTL route.
    return [
        *unsupported_routes(),
        *(Route(path, guarded(fn), methods=["GET"]) for path, fn in reads),
        *(Route(path, guarded(fn), methods=["PUT"]) for path, fn in writes),
    ]


def _flag(request: Request, name: str, *, default: bool | None = None) -> bool:
    try:
        return bodies.flag(name, request.query_params.getlist(name), default=default)
    except ValueError as exc:
        raise Reject(400, str(exc)) from None


def _note(request: Request) -> dict[str, str]:
    """``?note=`` only: other Consul parameters (``token``, ``dc``) say nothing about the report."""
    note = request.query_params.get("note")
    return {} if note is None else {"note": note}


def unsupported_routes() -> list[Route]:
    """A 501 naming the feature for each Consul path prefix in ``UNSUPPORTED``, any method."""
    routes = []
    for prefix, feature in UNSUPPORTED.items():

        async def refuse(request: Request, feature: str = feature) -> Response:
            return JSONResponse(
                {"error": f"not supported by gossip-registry's Consul API: {feature}"},
                status_code=501,
            )

        methods = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"]
        routes.append(Route(f"/v1/{prefix}", refuse, methods=methods))
        routes.append(Route(f"/v1/{prefix}/{{rest:path}}", refuse, methods=methods))
    return routes
