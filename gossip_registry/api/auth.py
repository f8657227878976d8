"""Bearer tokens on the HTTP API: who may read the registry and who may change it.

Theory of operation: a registry decides where traffic goes, so whoever can
write to it can redirect requests. ``TokenAuth`` is an ASGI middleware in
front of the whole app, so an endpoint added later is covered without
touching this file: the rule is by method and path, not by route.

- Write level: any method other than GET and HEAD, and any path under
  ``/v1/keyring`` or ``/v1/checks`` (key rotation and a service's health
  reports change what the cluster trusts or returns, even when read-only in
  form). Needs the write token; with no write token set, writes are as open
  as reads.
- Read level: everything else. Needs the read token or the write token when
  a read token is set, else is open. ``/metrics`` is a read.
- Key changes (``POST /v1/keyring/install|use|remove``) need a write
  token to be *configured*: without one they are refused with a 403 naming
  the reason, whatever else is open. A key installed and made primary
  through an open API lets its holder forge sealed gossip, so an
  unconfigured node must not offer that to any client that can reach it.
  Listing keys (a GET) stays under the rules above.
- Open: ``/healthz``, and the web view's static files under ``/ui/``
  (``api/ui``). Liveness probes of orchestrators and load balancers carry no
  credentials, and ``/healthz`` reveals nothing but the node's name and that
  it runs; the web view's files hold no data (the page asks for a token and
  reads the API with it, ``/v1/ui/...`` being reads like any other).

The Consul-compatible API (``api/consul/``) is covered by the same rules;
its clients send the token as ``X-Consul-Token``, accepted as an
alternative to ``Authorization: Bearer``. No token at all is a 401 with ``WWW-Authenticate:
Bearer``; a token that is wrong or only good for reads is a 403. Both are
``{"error": ...}`` JSON like every other API error. Tokens are compared with
``hmac.compare_digest``, every configured token every time, so response
time reveals neither a token's prefix nor which token matched.

Without TLS a token crosses the network in clear text: set ``tls_cert`` and
``tls_key`` whenever the API listens beyond loopback.

Which tokens are valid, and when an open API deserves a warning, is
``gossip_registry/api/access.py`` (standard library only, for config loading).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from enum import Enum
from typing import Any

__all__ = ["Level", "TokenAuth", "required_level"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz"})
OPEN_PREFIX = "/ui"
"""The web view's static files: no data, and the page must load to ask for a token."""
WRITE_PREFIXES = ("/v1/keyring", "/v1/checks")
READ_METHODS = frozenset({"GET", "HEAD"})
KEY_CHANGES = "/v1/keyring/"
NO_WRITE_TOKEN = (
    "keyring: key operations are refused because this node has no write token configured "
    "(set write_token, or GOSSIP_REGISTRY_WRITE_TOKEN, and send it as 'Authorization: Bearer')"
)
REALM = 'Bearer realm="gossip-registry"'


class Level(Enum):
    OPEN = "open"
    READ = "read"
    WRITE = "write"


def required_level(method: str, path: str) -> Level:
    """What a request needs; see the module docstring."""
    if path in OPEN_PATHS or path == OPEN_PREFIX or path.startswith(OPEN_PREFIX + "/"):
        return Level.OPEN
    under = any(path == p or path.startswith(p + "/") for p in WRITE_PREFIXES)
    if under or method.upper() not in READ_METHODS:
        return Level.WRITE
    return Level.READ


def _key_change(method: str, path: str) -> bool:
    return path.startswith(KEY_CHANGES) and method.upper() not in READ_METHODS


def _bearer(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header (scheme case-insensitive), or of an
    ``X-Consul-Token`` header (Consul's clients send that one), or None."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name.lower() == b"x-consul-token" and bytes(value).strip():
            return bytes(value).decode("latin-1").strip()
    return None


def _matches(given: str, accepted: tuple[str, ...]) -> bool:
    raw = given.encode("utf-8", "surrogateescape")
    matched = False
    for token in accepted:  # every one, whatever matches first: no timing hint
        matched |= hmac.compare_digest(raw, token.encode())
    return matched


class TokenAuth:
    """ASGI middleware enforcing the read and write tokens (either may be None: open)."""

    def __init__(self, app: ASGIApp, *, read_token: str | None, write_token: str | None) -> None:
        self.app = app
        self._keys_open = write_token is not None
        writers = (write_token,) if write_token else (read_token,) if read_token else ()
        readers = tuple(t for t in (read_token, write_token) if t) if read_token else ()
        self._accepted: dict[Level, tuple[str, ...]] = {
            Level.OPEN: (),
            Level.READ: readers,
            Level.WRITE: writers,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        method, path = scope.get("method", "GET"), scope["path"]
        if not self._keys_open and _key_change(method, path):
            await _refuse(send, 403, [], NO_WRITE_TOKEN)
            return
        level = required_level(method, path)
        accepted = self._accepted[level]
        if not accepted:
            await self.app(scope, receive, send)
            return
        given = _bearer(scope)
        if given is not None and _matches(given, accepted):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        if given is None:
            status, headers = 401, [(b"www-authenticate", REALM.encode())]
            message = (
                f"authorization: {level.value} access needs a token "
                "(header 'Authorization: Bearer TOKEN')"
            )
        else:
            status, headers = 403, []
            message = f"authorization: the token given does not grant {level.value} access"
        await _refuse(send, status, headers, message)


async def _refuse(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], message: str
) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        *headers,
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
