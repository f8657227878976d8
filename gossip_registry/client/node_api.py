"""One node's HTTP API, blocking, one request at a time: what operators' tools call.

The discovery clients (``sync.py``, ``aio.py``) fail over between nodes and
cache; an operator asking one node for its members, or registering an
instance by hand, wants that node's answer or a one-line reason. This module
uses only the standard library (``http.client``), so a command that makes one
request pays a few milliseconds of imports, not httpx and trio's ~100 ms.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from gossip_registry.client.errors import BadResponse, ClientError, RegistryError

__all__ = ["NodeApi", "NodeUnreachable", "reason_in_words"]


class NodeUnreachable(ClientError):
    """No HTTP answer from the node: refused, timed out, or hung up without answering."""

    def __init__(self, reason: str, *, hung_up: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hung_up = hung_up
        """The server accepted and closed without an HTTP answer (a gossip port does that)."""


class NodeApi:
    """Requests to one node's HTTP API; every call opens and closes its own connection.

    Args:
        host, port: the HTTP API's address.
        timeout: seconds for connecting and for each read.
        token: bearer token, for a node that requires one.
        ssl_context: talk HTTPS with this context (None: plain HTTP, unless ``https``).
        https: talk HTTPS with the system's default trust store.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 5.0,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        https: bool = False,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        if https and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self.ssl_context = ssl_context

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        json_body: Any = None,
    ) -> Any:
        """The decoded JSON of a 2xx answer.

        Raises:
            NodeUnreachable: no HTTP answer (refused, timed out, hung up).
            RegistryError: the node refused the request; its ``error`` message.
            BadResponse: an answer that is not the API's (not JSON, no message).
        """
        if params:
            path += "?" + urlencode(params)
        headers = dict(self.headers)
        payload = None
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        connection = self._connection()
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except TimeoutError:
            raise NodeUnreachable(f"no answer within {self.timeout:g}s") from None
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
            raise NodeUnreachable(
                "server disconnected without sending a response", hung_up=True
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise NodeUnreachable(reason_in_words(exc)) from None
        finally:
            connection.close()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if 200 <= response.status < 300 and body is not None:
            return body
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            raise RegistryError(response.status, body["error"])
        raise BadResponse(f"HTTP {response.status} {raw[:200].decode('utf-8', 'replace')!r}")

    def _connection(self) -> http.client.HTTPConnection:
        if self.ssl_context is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.ssl_context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)


def reason_in_words(exc: BaseException) -> str:
    """``connection refused`` rather than ``[Errno 111] Connection refused``."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno is not None:
            text = os.strerror(cause.errno)
            return text[:1].lower() + text[1:]
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if text.startswith("[Errno") and "] " in text:
        text = text.split("] ", 1)[1]
    return text[:1].lower() + text[1:]
