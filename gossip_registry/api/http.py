"""The HTTP API: a JSON adapter over the Node's public API, served by hypercorn on trio.

Theory of operation: each handler checks its input, calls one public Node
method (``members``, ``status``, ``register``, ``deregister``, ``services``,
``discover``) and renders the result; it knows nothing of the protocol, so
the API cannot change the protocol's behaviour and the node can change its
internals without touching this file.

Input is untrusted. Bodies are read with a 64 KiB cap (checked on the
Content-Length header and again while streaming, since chunked bodies have
none); every field is typed and ranged with the codec's limits, because an
entry the codec would refuse on decode must never be accepted here: peers
would drop every packet carrying it. Bad input is a 4xx with
``{"error": "<field>: <problem>"}``; a failure inside the node is a 500 with
a generic message, logged with its traceback to ``gossip_registry.http``
(never sent to the client).

``serve_http`` runs the app in the caller's trio nursery:
``addr = await nursery.start(serve_http, node, host, port)``; cancelling
stops it. hypercorn logs through the same logger, without an access log.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, cast

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.typing import ASGIFramework
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gossip_registry.core.codec import (
    MAX_HOST_LEN,
    MAX_META_PAIRS,
    MAX_META_VALUE_LEN,
    MAX_NAME_LEN,
    MAX_PORT,
    MAX_TAGS,
    MAX_WEIGHT,
)
from gossip_registry.core.messages import Address
from gossip_registry.registry.entry import Entry

if TYPE_CHECKING:  # node.py starts the HTTP API, so importing it here would be circular
    from gossip_registry.node import Node

__all__ = ["MAX_BODY_BYTES", "build_app", "serve_http"]

log = logging.getLogger("gossip_registry.http")

MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted; a registration is well under 40 KiB even at every limit."""
GRACEFUL_TIMEOUT = 1.0
"""Seconds hypercorn lets open requests finish after a graceful shutdown is triggered."""

_REGISTER_FIELDS = ("name", "id", "address", "port", "tags", "meta", "weight")
_DISCOVER_PARAMS = ("tag", "meta", "passing")


class _Reject(Exception):
    """Bad input: becomes a 4xx JSON error. Raised by the checks below, never escapes the app."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """Turn rejections into 4xx and anything else into a logged 500.

    Done per handler rather than with Starlette's 500 handler, which
    re-raises after responding: the server would then log every node bug
    twice, and an in-process test client would see an exception instead of
    the response a real client gets.
    """

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except _Reject as exc:
            return _error(exc.status, exc.message)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return _error(500, "internal error")

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


# --- Input checks ----------------------------------------------------------------


async def _json_object(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Reject(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    # aclosing: leaving the loop early must close the generator now, not at GC time.
    async with aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise _Reject(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise _Reject(400, "body must be a JSON object")
    try:
        value = json.loads(body)
    except RecursionError:  # deeply nested arrays: json recurses per level
        raise _Reject(400, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for non-UTF bytes
        raise _Reject(400, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _Reject(400, "body must be a JSON object")
    return value


def _show(value: Any) -> str:
    """A value for an error message, cut short: it came from the client and may be huge."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string(field: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise _Reject(400, f"{field}: must be a non-empty string of at most {limit} characters")
    return value


def _integer(field: str, value: Any, limit: int) -> int:
    # type() rather than isinstance(): JSON true is a bool, and a bool is an int.
    if type(value) is not int or not 0 <= value <= limit:
        raise _Reject(400, f"{field}: must be an integer 0..{limit}, got {_show(value)}")
    return value


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise _Reject(400, f"tags: must be a list of at most {MAX_TAGS} strings")
    return [_string(f"tags[{i}]", tag, MAX_NAME_LEN) for i, tag in enumerate(value)]


def _meta(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_META_PAIRS:
        raise _Reject(400, f"meta: must be an object of at most {MAX_META_PAIRS} string pairs")
    for key, item in value.items():
        if not 0 < len(key) <= MAX_NAME_LEN:
            raise _Reject(400, f"meta: keys must be 1..{MAX_NAME_LEN} characters")
        if not isinstance(item, str) or len(item) > MAX_META_VALUE_LEN:
            raise _Reject(
                400, f"meta.{key}: must be a string of at most {MAX_META_VALUE_LEN} characters"
            )
    return value


def _registration(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The service name and ``Node.register`` keyword arguments from a PUT body.

    Optional fields may be null, meaning absent. Unknown fields are refused
    rather than ignored: a misspelt ``tgas`` silently dropped would register
    an instance nobody finds by tag.
    """
    unknown = [key for key in body if key not in _REGISTER_FIELDS]
    if unknown:
        raise _Reject(
            400,
            f"{unknown[0]}: unknown field (allowed: {', '.join(_REGISTER_FIELDS)})",
        )
    if body.get("name") is None:
        raise _Reject(400, "name: required")
    if body.get("port") is None:
        raise _Reject(400, "port: required")
    name = _string("name", body["name"], MAX_NAME_LEN)
    kwargs: dict[str, Any] = {"port": _integer("port", body["port"], MAX_PORT)}
    if body.get("id") is not None:
        kwargs["instance_id"] = _string("id", body["id"], MAX_NAME_LEN)
    if body.get("address") is not None:
        kwargs["address"] = _string("address", body["address"], MAX_HOST_LEN)
    if body.get("tags") is not None:
        kwargs["tags"] = _tags(body["tags"])
    if body.get("meta") is not None:
        kwargs["meta"] = _meta(body["meta"])
    if body.get("weight") is not None:
        kwargs["weight"] = _integer("weight", body["weight"], MAX_WEIGHT)
    return name, kwargs


def _filters(request: Request) -> dict[str, Any]:
    """``Node.discover`` keyword arguments from ``?tag=&meta=k:v&passing=``."""
    params = request.query_params
    unknown = [key for key in params if key not in _DISCOVER_PARAMS]
    if unknown:
        raise _Reject(
            400, f"{unknown[0]}: unknown query parameter (allowed: {', '.join(_DISCOVER_PARAMS)})"
        )
    tags = [_string("tag", tag, MAX_NAME_LEN) for tag in params.getlist("tag")]
    meta: dict[str, str] = {}
    for item in params.getlist("meta"):
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise _Reject(400, f"meta: expected key:value, got {_show(item)}")
        if key in meta and meta[key] != value:
            raise _Reject(400, f"meta: key {key!r} given twice with different values")
        meta[key] = value
    passing = params.getlist("passing")
    if len(passing) > 1:
        raise _Reject(400, "passing: given more than once")
    passing_only = False
    if passing:
        flag = passing[0].lower()
        if flag not in ("true", "false"):
            raise _Reject(400, f"passing: must be true or false, got {_show(passing[0])}")
        passing_only = flag == "true"
    return {"tags": tags, "meta": meta, "passing_only": passing_only}


def _instance(entry: Entry) -> dict[str, Any]:
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
    }


async def _keyring(node: Node, op: str, key: str | None) -> Response:
    """``{"op", "nodes": {name: {ok, error, primary, keys}}, "failed": n}``; 200 even if
    some node failed (each node's result says so), 400 if nothing could be tried."""
    try:
        nodes = await node.keyring_operation(op, key)
    except ValueError as exc:
        raise _Reject(400, str(exc)) from None
    failed = sum(not result["ok"] for result in nodes.values())
    return JSONResponse({"op": op, "nodes": nodes, "failed": failed})


# --- The app ----------------------------------------------------------------------


def build_app(node: Node) -> Starlette:
    """The ASGI app for ``node``; it holds no state of its own beyond the node."""

    async def healthz(request: Request) -> Response:
        """Liveness: answers as long as the node's trio loop runs."""
        return JSONResponse({"status": "ok", "name": node.name})

    async def members(request: Request) -> Response:
        return JSONResponse([m.as_json() for m in node.members()])

    async def status(request: Request) -> Response:
        return JSONResponse(node.status())

    async def services(request: Request) -> Response:
        return JSONResponse(node.services())

    async def register(request: Request) -> Response:
        name, kwargs = _registration(await _json_object(request))
        try:
            entry = await node.register(name, **kwargs)
        except ValueError as exc:  # the node's own checks; its message names the field
            raise _Reject(400, str(exc)) from None
        return JSONResponse({"id": entry.instance_id, "name": entry.service})

    async def deregister(request: Request) -> Response:
        instance_id: str = request.path_params["instance_id"]
        if not instance_id:
            raise _Reject(404, f"not found: {request.url.path}")
        unknown = [key for key in request.query_params if key != "service"]
        if unknown:
            raise _Reject(400, f"{unknown[0]}: unknown query parameter (allowed: service)")
        service = request.query_params.get("service")
        try:
            # service= only when given: it disambiguates an id used in several services.
            if service is None:
                entry = await node.deregister(instance_id)
            else:
                entry = await node.deregister(
                    instance_id, service=_string("service", service, MAX_NAME_LEN)
                )
        except ValueError as exc:  # the id is ambiguous here: say so, and how to resolve it
            raise _Reject(
                409,
                f"id: {instance_id!r} is registered under several services here; "
                f"add ?service=<name> to choose one ({exc})",
            ) from None
        if entry is None:
            raise _Reject(404, f"id: no instance {instance_id!r} is registered on this node")
        return JSONResponse({"id": instance_id, "deregistered": True})

    async def discover(request: Request) -> Response:
        name: str = request.path_params["name"]
        if not name:
            raise _Reject(404, f"not found: {request.url.path}")
        filters = _filters(request)
        try:
            entries = node.discover(name, **filters)
        except ValueError as exc:
            raise _Reject(400, str(exc)) from None
        return JSONResponse([_instance(e) for e in entries])

    # --- gossip keyring (key_management.py): one operation here, fanned out to every member.
    async def keyring_list(request: Request) -> Response:
        return await _keyring(node, "list", None)

    async def keyring_change(request: Request) -> Response:
        op: str = request.path_params["op"]
        if op not in ("install", "use", "remove"):
            raise _Reject(404, f"not found: {request.url.path}")
        body = await _json_object(request)
        unknown = [k for k in body if k != "key"]
        if unknown:
            raise _Reject(400, f"{unknown[0]}: unknown field (allowed: key)")
        return await _keyring(node, op, _string("key", body.get("key"), 256))

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own 404 and 405, in our JSON shape (405 keeps its Allow header)."""
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"not found: {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        else:
            message = exc.detail
        return _error(exc.status_code, message, exc.headers)

    # {...:path} so an id or name containing '/' (sent as %2F) still routes.
    routes = [
        Route("/healthz", _guarded(healthz), methods=["GET"]),
        Route("/v1/members", _guarded(members), methods=["GET"]),
        Route("/v1/status", _guarded(status), methods=["GET"]),
        Route("/v1/services", _guarded(services), methods=["GET"]),
        Route("/v1/services", _guarded(register), methods=["PUT"]),
        Route("/v1/services/{name:path}", _guarded(discover), methods=["GET"]),
        Route("/v1/services/{instance_id:path}", _guarded(deregister), methods=["DELETE"]),
        Route("/v1/keyring", _guarded(keyring_list), methods=["GET"]),
        Route("/v1/keyring/{op}", _guarded(keyring_change), methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


class _Started:
    """Passes hypercorn's ``started(binds)`` on as ``started((host, port))``.

    hypercorn reports once its lifespan startup ran and its listeners are
    wrapped; forwarding then, not right after ``listen()``, keeps callers
    from sending requests that would sit in the backlog meanwhile.
    """

    def __init__(self, address: Address, outer: trio.TaskStatus[Address]) -> None:
        self.address = address
        self.outer = outer

    def started(self, binds: object = None) -> None:
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
        OSError: the address cannot be resolved or bound (in use, not local).
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
    # Starlette's ASGI types are looser than hypercorn's; the protocol is the same.
    app = ASGIWrapper(cast(ASGIFramework, build_app(node)))

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
        await worker_serve(
            app,
            config,
            sockets=Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[]),
            shutdown_trigger=shutdown_trigger,
            task_status=_Started(bound, task_status),
        )
