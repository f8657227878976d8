"""Enough HTTP/1.1 over a kept trio stream to talk to our own API, cheaply.

Not httpx: polling 50 nodes at once, httpx cost the driving process about
2 ms of CPU per request, so one sweep took ~100 ms and every time measured
was inflated by that much; this costs a fifth of it.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import Any

import trio

__all__ = ["HttpClient", "exchange", "read_response", "send_request"]

MAX_HEAD = 65536


class HttpClient:
    """JSON requests with one kept connection per (host, port); use as ``async with``.

    A request waits for the previous one to the same server (one connection
    each). No answer within ``timeout`` is None, never an exception: a node
    that does not answer (yet, or any more) is an ordinary event for callers.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.failures: Counter[str] = Counter()
        """Requests that got no answer, by exception type (refused, timed out, closed)."""
        self._streams: dict[tuple[str, int], trio.SocketStream] = {}
        self._locks: dict[tuple[str, int], trio.Lock] = {}

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for key in list(self._streams):
            await self._drop(key)

    async def request(
        self, host: str, port: int, method: str, path: str, body: Any = None
    ) -> tuple[int, Any] | None:
        """(status, JSON answer), or None if the server does not answer.

        A kept connection the server has closed meanwhile is retried once on a new one.
        """
        key = (host, port)
        payload = None if body is None else json.dumps(body).encode()
        async with self._locks.setdefault(key, trio.Lock()):
            for _ in range(2):
                reused = key in self._streams
                try:
                    with trio.fail_after(self.timeout):
                        if not reused:
                            self._streams[key] = await trio.open_tcp_stream(host, port)
                        status, raw, keep = await exchange(
                            self._streams[key], host, port, method, path, payload
                        )
                    answer = json.loads(raw) if raw else None
                except (OSError, trio.TooSlowError, trio.BrokenResourceError, ValueError) as exc:
                    await self._drop(key)
                    if reused:  # the server may have closed a kept connection meanwhile
                        continue
                    self.failures[type(exc).__name__] += 1
                    return None
                if not keep:
                    await self._drop(key)
                return status, answer
        return None

    async def _drop(self, key: tuple[str, int]) -> None:
        stream = self._streams.pop(key, None)
        if stream is not None:
            with contextlib.suppress(trio.BrokenResourceError, OSError):
                await stream.aclose()


async def exchange(
    stream: trio.SocketStream, host: str, port: int, method: str, path: str, payload: bytes | None
) -> tuple[int, bytes, bool]:
    """One request and its response: (status, body, whether the connection stays open).

    Raises ValueError as ``read_response`` does.
    """
    await send_request(stream, host, port, method, path, payload)
    status, headers, body = await read_response(stream)
    return status, body, headers.get("connection", "").lower() != "close"


async def send_request(
    stream: trio.SocketStream, host: str, port: int, method: str, path: str, payload: bytes | None
) -> None:
    """Send one request; a JSON body if ``payload`` is not None."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if payload is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    await stream.send_all(head.encode() + b"\r\n" + (payload or b""))


async def read_response(stream: trio.SocketStream) -> tuple[int, dict[str, str], bytes]:
    """The next response on ``stream``: (status, headers by lower-case name, body).

    Enough HTTP/1.1 for our server's answers, which always carry a
    Content-Length. Raises ValueError for anything else, and for a
    connection closed before the response is complete.
    """
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        buffer += await _receive(stream)
        if len(buffer) > MAX_HEAD:
            raise ValueError("response head too long")
    status_line, *header_lines = buffer[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError("response without Content-Length")
    length = int(headers["content-length"])
    body = buffer[end + 4 :]
    while len(body) < length:
        body += await _receive(stream)
    return int(status_line.split(" ", 2)[1]), headers, bytes(body[:length])


async def _receive(stream: trio.SocketStream) -> bytes:
    data = await stream.receive_some(65536)
    if not data:
        raise ValueError("connection closed by the server")
    return data
