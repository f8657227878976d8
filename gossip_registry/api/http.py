"""The HTTP API: a JSON adapter over the Node's public API, served by hypercorn on trio.

Theory of operation: each handler checks its input, calls one public Node
method (``members``, ``status``, ``register``, ``deregister``, ``services``,
``discover``; reads may first block in ``wait_for_change``) and renders the
result; it knows nothing of the protocol, so
the API cannot change the protocol's behaviour and the node can change its
internals without touching this file. The introspection endpoints are the
exception, each in a module of its own: ``GET /metrics`` (``api/metrics.py``
reads the node's counters at scrape time) and ``GET /v1/events``
(``api/events.py`` streams the node's event bus as NDJSON). Two more
faces of the same operations live in modules of their own and are mounted
here: a subset of Consul's HTTP API (``api/consul/``) and Prometheus'
HTTP service discovery (``GET /v1/prometheus/targets``, ``prometheus_sd.py``).

Input is untrusted. Bodies are read with a 64 KiB cap and every field is
typed and ranged with the codec's limits by ``api/requests.py``, the checks
this API shares with Consul's (it says why). Bad input is a 4xx with
``{"error": "<field>: <problem>"}``; a write the node could not make
durable (its disk failed; the write was undone) is a 503 naming the cause;
a failure inside the node is a 500 with a generic message, logged with its
traceback to ``gossip_registry.http`` (never sent to the client).

``serve_http`` runs the app in the caller's trio nursery:
``addr = await nursery.start(serve_http, node, host, port)``; cancelling
stops it. hypercorn logs through the same logger, without an access log.
"""

from __future__ import annotations

import json
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import ASGIFramework
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gossip_registry.api.auth import TokenAuth
from gossip_registry.api.checks import ttl_report
from gossip_registry.api.consul import consul_routes
from gossip_registry.api.events import event_stream
from gossip_registry.api.http_limits import BodyDeadline, serve_connections
from gossip_registry.api.prometheus_sd import sd_targets
from gossip_registry.api.requests import (
    BLOCKING_PARAMS,
    MAX_BODY_BYTES,
    Reject,
    blocking_query,
    error_response,
    guarded,
    json_object,
    optional_json_object,
    registration,
    show,
    string_field,
)
from gossip_registry.api.ui import overview, redirect_to_page, static_file
from gossip_registry.api.view_cache import IndexedCache, ViewCache
from gossip_registry.core.messages import Address
from gossip_registry.registry.clock import stamp_wall
from gossip_registry.registry.entry import Entry
from gossip_registry.registry.schema import MAX_META_VALUE_LEN, MAX_NAME_LEN
from gossip_registry.runtime.events import parse_kinds
from gossip_registry.runtime.fdlimit import connection_budget
from gossip_registry.runtime.maintenance import NoRoom

if TYPE_CHECKING:  # node.py starts the HTTP API, so importing it here would be circular
    from gossip_registry.runtime.node import Node
if TYPE_CHECKING:  # prometheus-client is imported at the first scrape (see ``metrics``)
    from prometheus_client import CollectorRegistry

__all__ = ["MAX_BODY_BYTES", "build_app", "serve_http"]

HTTP_FD_SHARE = 0.75
"""Share of the descriptors outside gossip's reserve that HTTP connections may use (DNS over
TCP may use the rest: ``api/dns.py``)."""
GRACEFUL_TIMEOUT = 1.0
"""Seconds hypercorn lets open requests finish after a graceful shutdown is triggered."""

_DISCOVER_PARAMS = ("tag", "meta", "passing", *BLOCKING_PARAMS)
INDEX_HEADER = "X-Registry-Index"
"""The index of the view a read returned; send it back as ``?index=`` to block (see watch.py)."""
JOINING_HEADER = "X-Registry-Joining"
"""On a discovery answer of a node that has not yet synced with any seed: its table may
lack what the cluster holds, so a client asks another node before trusting it."""


def _filters(request: Request) -> dict[str, Any]:
    """``Node.discover`` keyword arguments from ``?tag=&meta=k:v&passing=``."""
    params = request.query_params
    _only(request, _DISCOVER_PARAMS)
    tags = [string_field("tag", tag, MAX_NAME_LEN) for tag in params.getlist("tag")]
    meta: dict[str, str] = {}
    for item in params.getlist("meta"):
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise Reject(400, f"meta: expected key:value, got {show(item)}")
        if key in meta and meta[key] != value:
            raise Reject(400, f"meta: key {key!r} given twice with different values")
        meta[key] = value
    passing = params.getlist("passing")
    if len(passing) > 1:
        raise Reject(400, "passing: given more than once")
    passing_only = True  # like node.discover: only instances whose checks pass
    if passing:
        flag = passing[0].lower()
        if flag not in ("true", "false"):
            raise Reject(400, f"passing: must be true or false, got {show(passing[0])}")
        passing_only = flag == "true"
    return {"tags": tags, "meta": meta, "passing_only": passing_only}


def _only(request: Request, allowed: tuple[str, ...]) -> None:
    unknown = [key for key in request.query_params if key not in allowed]
    if unknown:
        raise Reject(400, f"{unknown[0]}: unknown query parameter (allowed: {', '.join(allowed)})")


def _indexed(response: Response, index: int) -> Response:
    response.headers[INDEX_HEADER] = str(index)
    return response


def _instance(entry: Entry, stale: bool = False) -> dict[str, Any]:
    return {
        "id": entry.instance_id,
        "name": entry.service,
        "address": entry.address,
        "port": entry.port,
        "tags": list(entry.tags),
        "meta": dict(entry.meta),
        "weight": entry.weight,
        "status": str(entry.status),
        "node": entry.owner,
        "checks": [
            {"id": c.check_id, "kind": str(c.kind), "status": str(c.status), "output": c.output}
            for c in entry.checks
        ],
        "stale": stale,
    }


async def _keyring(node: Node, op: str, key: str | None) -> Response:
    """``{"op", "nodes": {name: {ok, error, primary, keys}}, "failed": n}``; 200 even if
    some node failed (each node's result says so), 400 if nothing could be tried."""
    try:
        nodes = await node.keyring_operation(op, key)
    except ValueError as exc:
        raise Reject(400, str(exc)) from None
    failed = sum(not result["ok"] for result in nodes.values())
    return JSONResponse({"op": op, "nodes": nodes, "failed": failed})


# --- The app ----------------------------------------------------------------------


def build_app(
    node: Node, *, read_token: str | None = None, write_token: str | None = None
) -> Starlette:
    """The ASGI app for ``node``; it holds no state of its own beyond the node (and a random
    generator for the jitter of blocking queries).

    The tokens (``api/auth.py``; None: open) are arguments rather than read
    off ``node.config`` so the app can front anything with the Node API.
    """
    rng = random.Random()
    # Rendered /v1/services/{name} bodies per (name, filters), while the entries and the
    # service's index are unchanged (view_cache.py): the index also moves when a stale flag
    # does (self-preservation), which the entry objects alone would not show.
    rendered = ViewCache(
        lambda entries: JSONResponse([_instance(e, node.is_stale(e)) for e in entries]).body
    )

    async def healthz(request: Request) -> Response:
        """Liveness: answers as long as the node's trio loop runs."""
        return JSONResponse({"status": "ok", "name": node.name})

    async def members(request: Request) -> Response:
        _only(request, BLOCKING_PARAMS)
        query = blocking_query(request, rng)
        if query is not None:
            await node.wait_for_members_change(*query)
        return _indexed(JSONResponse([m.as_json() for m in node.members()]), node.members_index())

    async def force_leave(request: Request) -> Response:
        name: str = request.path_params["name"]
        _only(request, ())
        try:
            node.force_leave(name)
        except KeyError:
            raise Reject(404, f"name: no member {name!r} is known here") from None
        except ValueError as exc:
            raise Reject(409, f"name: {exc}") from None
        return JSONResponse({"name": name, "state": "left"})

    async def status(request: Request) -> Response:
        state = node.status()
        return _indexed(JSONResponse(state), state["index"])  # node-wide, not blockable

    async def services(request: Request) -> Response:
        _only(request, (*BLOCKING_PARAMS, "health"))
        health = request.query_params.get("health")
        if health not in (None, "true", "false"):
            raise Reject(400, f"health: must be true or false, got {health!r}")
        query = blocking_query(request, rng)
        if query is not None:
            await node.wait_for_change(None, *query)
        # ?health=true: instances by status per service, for a table that tells why none pass.
        body = node.health_counts() if health == "true" else node.services()
        return _indexed(JSONResponse(body), node.index())

    async def register(request: Request) -> Response:
        body = await json_object(request)
        name, kwargs = registration(body)
        try:
            entry = await node.register(name, **kwargs)
        except ValueError as exc:  # the node's own checks; its message names the field
            raise Reject(400, str(exc)) from None
        checks = [c.check_id for c in entry.checks]  # the ids TTL reports must name
        return JSONResponse(
            {
                "id": entry.instance_id,
                "name": entry.service,
                "address": entry.address,
                "port": entry.port,
                "node": entry.owner,
                "checks": checks,
            }
        )

    async def deregister(request: Request) -> Response:
        instance_id: str = request.path_params["instance_id"]
        if not instance_id:
            raise Reject(404, f"not found: {request.url.path}")
        unknown = [key for key in request.query_params if key != "service"]
        if unknown:
            raise Reject(400, f"{unknown[0]}: unknown query parameter (allowed: service)")
        service = request.query_params.get("service")
        try:
            # service= only when given: it disambiguates an id used in several services.
            if service is None:
                entry = await node.deregister(instance_id)
            else:
                entry = await node.deregister(
                    instance_id, service=string_field("service", service, MAX_NAME_LEN)
                )
        except ValueError as exc:  # the id is ambiguous here: say so, and how to resolve it
            raise Reject(
                409,
                f"id: {instance_id!r} is registered under several services here; "
                f"add ?service=<name> to choose one ({exc})",
            ) from None
        if entry is None:
            owners = node.owners_of(instance_id, service)
            if owners:  # registered, but elsewhere: only its owner may deregister it
                raise Reject(
                    409,
                    f"id: instance {instance_id!r} is owned by node {', '.join(owners)}, "
                    f"not {node.name}: only its owner may deregister it; ask that node",
                )
            raise Reject(404, f"id: no instance {instance_id!r} is registered on this node")
        return JSONResponse({"id": instance_id, "deregistered": True})

    async def discover(request: Request) -> Response:
        name: str = request.path_params["name"]
        if not name:
            raise Reject(404, f"not found: {request.url.path}")
        filters = _filters(request)
        query = blocking_query(request, rng)
        if query is not None:
            await node.wait_for_change(name, *query)
        try:
            entries = node.discover(name, **filters)
        except ValueError as exc:
            raise Reject(400, str(exc)) from None
        index = node.index(name)
        key = (name, *filters["tags"], *sorted(filters["meta"].items()), filters["passing_only"])
        body = rendered.get(key, entries, index)
        response = _indexed(Response(body, media_type="application/json"), index)
        if node.joining:
            response.headers[JOINING_HEADER] = "true"
        return response

    async def maintenance_status(request: Request) -> Response:
        _only(request, ())
        return JSONResponse(node.maintenance())

    async def maintenance(request: Request) -> Response:
        """Maintenance of the node (no id) or of one instance: ``{"enable": bool, "reason"}``."""
        instance_id: str | None = request.path_params.get("instance_id")
        _only(request, ("service",) if instance_id is not None else ())
        body = await json_object(request)
        unknown = [key for key in body if key not in ("enable", "reason")]
        if unknown:
            raise Reject(400, f"{unknown[0]}: unknown field (allowed: enable, reason)")
        enable = body.get("enable")
        if type(enable) is not bool:
            raise Reject(400, f"enable: must be true or false, got {show(enable)}")
        reason = body.get("reason")
        if reason is not None and reason != "":
            string_field("reason", reason, MAX_META_VALUE_LEN)
        service = request.query_params.get("service")
        try:
            entries = await node.set_maintenance(
                enable,
                reason or "",
                instance_id=instance_id,
                service=service,
            )
        except KeyError:
            raise Reject(
                404, f"id: no instance {instance_id!r} is registered on this node"
            ) from None
        except NoRoom as exc:
            raise Reject(400, f"id: {exc}") from None
        except ValueError as exc:
            raise Reject(409, f"id: {exc}; add ?service=<name> to choose one") from None
        return JSONResponse(
            {**node.maintenance(), "changed": [f"{e.service}/{e.instance_id}" for e in entries]}
        )

    async def check_update(request: Request) -> Response:
        """A TTL check's report: PUT /v1/checks/{id}/pass|warn|fail, reason in body or ?note=."""
        check_id: str = request.path_params["check_id"]
        body = await optional_json_object(request)
        try:
            status, output = ttl_report(request.path_params["verb"], body, request.query_params)
            await node.update_ttl(check_id, status, output)
        except KeyError:
            raise Reject(404, f"id: no check {check_id!r} runs on this node") from None
        except ValueError as exc:
            raise Reject(400, str(exc)) from None
        return JSONResponse({"id": check_id, "status": str(status)})

    # --- Prometheus HTTP service discovery (prometheus_sd.py), rendered once per index.
    targets = IndexedCache[bytes]()

    async def prometheus_targets(request: Request) -> Response:
        _only(request, ("service", "tag", "passing"))
        params = request.query_params
        if len(params.getlist("service")) > 1 or len(params.getlist("passing")) > 1:
            raise Reject(400, "service, passing: each at most once")
        service = params.get("service")
        tags = [string_field("tag", tag, MAX_NAME_LEN) for tag in params.getlist("tag")]
        passing = params.get("passing", "false").lower()
        if passing not in ("true", "false"):
            raise Reject(400, f"passing: must be true or false, got {show(passing)}")
        if service is not None:
            string_field("service", service, MAX_NAME_LEN)
        index = node.entries_index()

        def render() -> bytes:
            return json.dumps(sd_targets(node, service, tags, passing == "true")).encode()

        body = targets.get(str(params), index, render)
        return _indexed(Response(body, media_type="application/json"), index)

    # --- Introspection: Prometheus metrics and the event stream (metrics.py, events.py).
    registry: list[CollectorRegistry] = []

    async def metrics(request: Request) -> Response:
        # Imported on the first scrape: prometheus-client costs an unscraped agent 2 MiB.
        from gossip_registry.api.metrics import exposition, node_registry

        if not registry:
            registry.append(node_registry(node))
        body, content_type = exposition(registry[0], request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    async def events(request: Request) -> Response:
        """NDJSON, one event per line, until the client disconnects or the node stops."""
        unknown = [key for key in request.query_params if key != "kind"]
        if unknown:
            raise Reject(400, f"{unknown[0]}: unknown query parameter (allowed: kind)")
        try:
            kinds = parse_kinds(request.query_params.get("kind"))
        except ValueError as exc:
            raise Reject(400, str(exc)) from None
        return event_stream(node.events, kinds)

    # --- gossip keyring (key_management.py): one operation here, fanned out to every member.
    async def keyring_list(request: Request) -> Response:
        return await _keyring(node, "list", None)

    async def keyring_change(request: Request) -> Response:
        op: str = request.path_params["op"]
        if op not in ("install", "use", "remove"):
            raise Reject(404, f"not found: {request.url.path}")
        body = await json_object(request)
        unknown = [k for k in body if k != "key"]
        if unknown:
            raise Reject(400, f"{unknown[0]}: unknown field (allowed: key)")
        return await _keyring(node, op, string_field("key", body.get("key"), 256))

    # --- The web view (api/ui): its static page, and the two reads only it makes.
    async def ui_redirect(request: Request) -> Response:
        return redirect_to_page()

    async def ui_file(request: Request) -> Response:
        response = static_file(request.path_params.get("file", ""))
        if response is None:
            raise Reject(404, f"not found: {request.url.path}")
        return response

    async def ui_overview(request: Request) -> Response:
        _only(request, ())
        return JSONResponse(await overview(node))

    async def ui_service(request: Request) -> Response:
        """Every instance of one service whatever its health, with when it was last written."""
        _only(request, ())
        entries = node.discover(request.path_params["name"], passing_only=False)
        return JSONResponse(
            [
                _instance(e, node.is_stale(e)) | {"written": round(stamp_wall(e.stamp), 3)}
                for e in entries
            ]
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own 404 and 405, in our JSON shape (405 keeps its Allow header)."""
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"not found: {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        else:
            message = exc.detail
        return error_response(exc.status_code, message, exc.headers)

    # {...:path} so an id or name containing '/' (sent as %2F) still routes.
    routes = [
        Route("/healthz", guarded(healthz), methods=["GET"]),
        Route("/v1/members", guarded(members), methods=["GET"]),
        Route("/v1/members/{name:path}/force-leave", guarded(force_leave), methods=["PUT"]),
        Route("/v1/status", guarded(status), methods=["GET"]),
        Route("/v1/services", guarded(services), methods=["GET"]),
        Route("/v1/services", guarded(register), methods=["PUT"]),
        Route("/v1/services/{name:path}", guarded(discover), methods=["GET"]),
        Route("/v1/services/{instance_id:path}", guarded(deregister), methods=["DELETE"]),
        Route("/v1/checks/{check_id:path}/{verb}", guarded(check_update), methods=["PUT"]),
        Route("/metrics", guarded(metrics), methods=["GET"]),
        Route("/v1/events", guarded(events), methods=["GET"]),
        Route("/v1/keyring", guarded(keyring_list), methods=["GET"]),
        Route("/v1/keyring/{op}", guarded(keyring_change), methods=["POST"]),
        Route("/v1/maintenance", guarded(maintenance_status), methods=["GET"]),
        Route("/v1/maintenance", guarded(maintenance), methods=["PUT"]),
        Route("/v1/maintenance/{instance_id:path}", guarded(maintenance), methods=["PUT"]),
        Route("/v1/prometheus/targets", guarded(prometheus_targets), methods=["GET"]),
        # api/consul/: Consul's paths (no clash with ours) over the same node operations.
        *consul_routes(node, rng),
        Route("/ui", guarded(ui_redirect), methods=["GET"]),
        Route("/ui/", guarded(ui_file), methods=["GET"]),
        Route("/ui/{file}", guarded(ui_file), methods=["GET"]),
        Route("/v1/ui/overview", guarded(ui_overview), methods=["GET"]),
        Route("/v1/ui/services/{name:path}", guarded(ui_service), methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error},
        # api/auth.py: by method and path, so every route, present or future, is covered.
        middleware=[Middleware(TokenAuth, read_token=read_token, write_token=write_token)],
    )


class _Started:
    """Passes the accept loop's ``started()`` on as ``started((host, port))``, once it accepts."""

    def __init__(self, address: Address, outer: trio.TaskStatus[Address]) -> None:
        self.address = address
        self.outer = outer

    def started(self, value: object = None) -> None:
        self.outer.started(self.address)


async def serve_http(
    node: Node,
    host: str,
    port: int,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the node's HTTP API on host:port until cancelled.

    Calls ``task_status.started((host, bound_port))`` once listening, so
    ``port=0`` works. Cancelling stops at once; returning from
    ``shutdown_trigger`` instead stops accepting and lets open requests
    finish for up to GRACEFUL_TIMEOUT seconds (for a graceful leave).

    We bind the socket ourselves and hand it to hypercorn's worker rather
    than letting ``hypercorn.trio.serve`` bind it: a bind failure is then a
    plain OSError (hypercorn's would arrive wrapped in two exception groups
    and leak its half-made socket), host names resolve like any trio
    socket's, and the socket is closed on every path because we own it.

    Raises:
        OSError: the address cannot be resolved or bound (in use, not local),
            or the TLS files cannot be read.
        ValueError: only one of ``tls_cert`` and ``tls_key`` is set.
    """
    config = HypercornConfig()
    config.accesslog = None
    # hypercorn's own chatter ("Running on ... CTRL + C to quit") is noise under
    # an agent; its warnings and errors still reach our logs.
    server_log = logging.getLogger("gossip_registry.http.server")
    if server_log.level == logging.NOTSET:
        server_log.setLevel(logging.WARNING)
    config.errorlog = server_log
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.include_server_header = False
    cert, key = node.config.tls_cert, node.config.tls_key
    if (cert is None) != (key is None):
        raise ValueError("tls_cert and tls_key must be set together")
    tls = cert is not None
    if tls:  # HTTPS: hypercorn wraps the listener in trio's SSLListener
        config.certfile, config.keyfile = str(cert), str(key)
    # Starlette's ASGI types are looser than hypercorn's; the protocol is the same.
    tokens = {"read_token": node.config.read_token, "write_token": node.config.write_token}
    bounded = BodyDeadline(
        build_app(node, **tokens), timeout=node.config.http_body_timeout, stats=node.http_stats
    )
    app = ASGIWrapper(cast(ASGIFramework, bounded))

    family, kind, proto, _, sockaddr = (
        await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    )[0]
    with socket.socket(family, kind, proto) as sock:
        # Like hypercorn's own sockets: reuse a port in TIME_WAIT after a restart, no Nagle delay.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(sockaddr)
        sock.listen(config.backlog)
        sock.setblocking(False)
        bound: Address = (host, sock.getsockname()[1])
        listener: trio.abc.Listener[Any] = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        if tls:
            ssl = config.create_ssl_context()
            assert ssl is not None  # certfile and keyfile are set
            listener = trio.SSLListener(listener, ssl, https_compatible=True)
        # Our accept loop (api/http_limits.py) rather than hypercorn's worker_serve: it bounds
        # the connections, which hypercorn does not.
        limit = connection_budget(node.config.max_http_connections, HTTP_FD_SHARE)
        await serve_connections(
            app,
            config,
            listener,
            limit=limit,
            stats=node.http_stats,
            shutdown_trigger=shutdown_trigger,
            task_status=_Started(bound, task_status),
        )
