"""Request handling both HTTP APIs share: our own (``api/http.py``) and Consul's (``api/consul/``).

Theory of operation: a handler checks its input with the functions here,
which raise ``Reject`` on bad input; ``guarded`` wraps every handler and
turns a ``Reject`` into a 4xx ``{"error": "<field>: <problem>"}``, a node-wide
limit into a 429, a write the node could not make durable into a 503, and
anything else into a logged 500. A module of its own so that both APIs can
use one set of checks without either importing the other.

Input is untrusted. Bodies are read with a 64 KiB cap (checked on the
Content-Length header and again while streaming, since chunked bodies have
none); every field is typed and ranged with the codec's limits (the rules
of ``registry/schema.py``), because an entry the codec would refuse on
decode must never be accepted here: peers would drop every packet carrying
it. Blocking queries (``?index=N&wait=D``) follow Consul's rules.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from gossip_registry.api.checks import check_specs
from gossip_registry.config.values import parse_duration
from gossip_registry.registry.schema import (
    MAX_WEIGHT,
    host_problem,
    label_problem,
    meta_problem,
    name_problem,
    port_problem,
    tags_problem,
)
from gossip_registry.runtime.storage.durability import DurabilityError
from gossip_registry.runtime.watch import TooManyWaiters

__all__ = [
    "BLOCKING_PARAMS",
    "DEFAULT_WAIT",
    "MAX_BODY_BYTES",
    "MAX_WAIT",
    "REGISTER_FIELDS",
    "Handler",
    "Reject",
    "blocking_query",
    "composite_field",
    "error_response",
    "guarded",
    "integer_field",
    "json_object",
    "optional_json_object",
    "registration",
    "show",
    "string_field",
    "valid_field",
]

# The HTTP API's logger: failures are logged where they were before this module existed.
log = logging.getLogger("gossip_registry.http")

MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted; a registration is well under 40 KiB even at every limit."""
REGISTER_FIELDS = ("name", "id", "address", "port", "tags", "meta", "weight", "checks")
"""The fields of our registration body (``PUT /v1/services``); any other is refused."""
BLOCKING_PARAMS = ("index", "wait")
"""The query parameters of a blocking query, accepted by every blockable read."""
DEFAULT_WAIT = 300.0
"""Seconds a blocking query is held when it names no ``wait`` (Consul's 5 minutes)."""
MAX_WAIT = 600.0
"""Longest hold, seconds (Consul's 10 minutes), before jitter of up to 1/16 of it is added."""


class Reject(Exception):
    """Bad input: becomes a 4xx JSON error. Raised by the checks below and by handlers;
    ``guarded`` answers it, so it never escapes the app."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """Turn rejections into 4xx and anything else into a logged 500.

    Done per handler rather than with Starlette's 500 handler, which
    re-raises after responding: the server would then log every node bug
    twice, and an in-process test client would see an exception instead of
    the response a real client gets.
    """

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Reject as exc:
            return error_response(exc.status, exc.message)
        except TooManyWaiters as exc:  # a node-wide limit, not a bug: the client may retry
            return error_response(429, str(exc), {"Retry-After": "1"})
        except ClientDisconnect:  # gone mid-body, or too slow (counted in http_limits.py)
            log.debug(
                "%s %s: client went away before its body arrived", request.method, request.url.path
            )
            return error_response(400, "body: client disconnected")
        except DurabilityError as exc:  # the disk failed; the write was undone, reads go on
            return error_response(503, str(exc), {"Retry-After": "1"})
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(500, "internal error")

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


# --- Input checks ----------------------------------------------------------------


async def json_object(request: Request) -> dict[str, Any]:
    value = await optional_json_object(request)
    if value is None:
        raise Reject(400, "body must be a JSON object")
    return value


async def optional_json_object(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object, or None for an empty body (a TTL report needs none)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Reject(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    # aclosing: leaving the loop early must close the generator now, not at GC time.
    async with aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise Reject(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        return None
    try:
        value = json.loads(body)
    except RecursionError:  # deeply nested arrays: json recurses per level
        raise Reject(400, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for non-UTF bytes
        raise Reject(400, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Reject(400, "body must be a JSON object")
    return value


def show(value: Any) -> str:
    """A value for an error message, cut short: it came from the client and may be huge."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def string_field(field: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise Reject(400, f"{field}: must be a non-empty string of at most {limit} characters")
    return value


def valid_field(field: str, value: Any, problem: Callable[[Any], str | None]) -> Any:
    """``value`` if ``problem`` (a registry/schema.py rule) finds none, else a 400 naming it."""
    found = problem(value)
    if found is not None:
        raise Reject(400, f"{field}: {found}")
    return value


def integer_field(field: str, value: Any, limit: int) -> int:
    # type() rather than isinstance(): JSON true is a bool, and a bool is an int.
    if type(value) is not int or not 0 <= value <= limit:
        raise Reject(400, f"{field}: must be an integer 0..{limit}, got {show(value)}")
    return value


def composite_field(
    field: str, value: Any, problem: Callable[[Any], tuple[str, str] | None]
) -> Any:
    """``value`` if ``problem`` (a registry/schema.py rule over a list or a table) finds
    none, else a 400 naming the field and the item in it."""
    found = problem(value)
    if found is not None:
        where, why = found
        raise Reject(400, f"{field}{where}: {why}")
    return value


def registration(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The service name and ``Node.register`` keyword arguments from a PUT body.

    Optional fields may be null, meaning absent. Unknown fields are refused
    rather than ignored: a misspelt ``tgas`` silently dropped would register
    an instance nobody finds by tag.
    """
    unknown = [key for key in body if key not in REGISTER_FIELDS]
    if unknown:
        raise Reject(
            400,
            f"{unknown[0]}: unknown field (allowed: {', '.join(REGISTER_FIELDS)})",
        )
    if body.get("name") is None:
        raise Reject(400, "name: required")
    if body.get("port") is None:
        raise Reject(400, "port: required")
    # registry/schema.py's rules, under this API's field names.
    name = valid_field("name", body["name"], label_problem)
    kwargs: dict[str, Any] = {"port": valid_field("port", body["port"], port_problem)}
    if body.get("id") is not None:
        kwargs["instance_id"] = valid_field("id", body["id"], name_problem)
    if body.get("address") is not None:
        kwargs["address"] = valid_field("address", body["address"], host_problem)
    if body.get("tags") is not None:
        kwargs["tags"] = composite_field("tags", body["tags"], tags_problem)
    if body.get("meta") is not None:
        kwargs["meta"] = composite_field("meta", body["meta"], meta_problem)
    if body.get("weight") is not None:
        kwargs["weight"] = integer_field("weight", body["weight"], MAX_WEIGHT)
    if body.get("checks") is not None:
        try:
            kwargs["checks"] = check_specs(body["checks"])
        except ValueError as exc:
            raise Reject(400, str(exc)) from None
    return name, kwargs


def blocking_query(request: Request, rng: random.Random) -> tuple[int, float] | None:
    """``(index, seconds)`` from ``?index=N&wait=D``; None when no index asks to block.

    The wait is capped at MAX_WAIT, then up to 1/16 of it is added at random
    (Consul's rule), so that watchers that started together, say after a
    restart, do not all come back in the same instant. ``wait`` without
    ``index`` is accepted and ignored, as Consul does.
    """
    params = request.query_params
    for key in BLOCKING_PARAMS:
        if len(params.getlist(key)) > 1:
            raise Reject(400, f"{key}: given more than once")
    wait = DEFAULT_WAIT
    if "wait" in params:
        try:
            wait = parse_duration(params["wait"])
        except ValueError as exc:
            raise Reject(400, f"wait: {exc}") from None
    if "index" not in params:
        return None
    text = params["index"]
    # isascii: int() would accept other scripts' digits, '+5' and ' 5'.
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise Reject(400, f"index: must be a non-negative integer, got {show(text)}")
    wait = min(wait, MAX_WAIT)
    return int(text), wait + rng.uniform(0, wait / 16)
