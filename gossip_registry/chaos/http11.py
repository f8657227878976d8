"""HTTP/1.1 to our own API over kept trio streams, with h11 speaking the protocol.

Not httpx: polling 50 nodes at once, httpx cost the driving process about
2 ms of CPU per request, so one sweep took ~100 ms and every time measured
was inflated by that much. h11 parses and frames (chunked bodies, keep-alive,
malformed answers), trio carries the bytes, and nothing else runs per request.
The chaos runner and the benchmarks under scripts/ use it.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncGenerator
from typing import Any

import h11
import trio

__all__ = ["HttpClient", "HttpConnection"]

MAX_HEAD = 65536
RECEIVE_SIZE = 65536


class HttpConnection:
    """One HTTP/1.1 connection: requests in turn, each answer read head first, then body."""

    def __init__(self, stream: trio.SocketStream, host: str, port: int) -> None:
        self.stream = stream
        self.authority = f"{host}:{port}"
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)

    async def send(self, method: str, path: str, payload: bytes | None = None) -> None:
        """Send one request; a JSON body if ``payload`` is not None."""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        headers = [("Host", self.authority)]
        if payload is not None:
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        data = self._h11.send(h11.Request(method=method, target=path, headers=headers))
        if payload is not None:
            data += self._h11.send(h11.Data(data=payload))
        data += self._h11.send(h11.EndOfMessage())
        await self.stream.send_all(data)

    async def head(self) -> tuple[int, dict[str, str]]:
        """The answer's status and headers (names in lower case).

        Raises:
            ValueError: a malformed answer, or the connection closed before it.
        """
        event = await self._next()
        while isinstance(event, h11.InformationalResponse):
            event = await self._next()
        if not isinstance(event, h11.Response):
            raise ValueError(f"expected a response, got {type(event).__name__}")
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
        return event.status_code, headers

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The answer's body as it arrives, until it ends (a stream may never end)."""
        while True:
            event = await self._next()
            if isinstance(event, h11.EndOfMessage):
                return
            if isinstance(event, h11.Data):
                yield bytes(event.data)

    async def body(self) -> bytes:
        """The whole body of the answer whose head was read."""
        return b"".join([data async for data in self.chunks()])

    @property
    def reusable(self) -> bool:
        """Whether the exchange ended with the connection open for the next request."""
        return self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    async def _next(self) -> Any:
        try:
            while (event := self._h11.next_event()) is h11.NEED_DATA:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data and self._h11.their_state is h11.SEND_RESPONSE:
                    raise ValueError("connection closed by the server")
                self._h11.receive_data(data)
        except h11.RemoteProtocolError as exc:
            raise ValueError(f"malformed answer: {exc}") from None
        if isinstance(event, h11.ConnectionClosed):
            raise ValueError("connection closed by the server")
        return event


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
        self._connections: dict[tuple[str, int], HttpConnection] = {}
        self._locks: dict[tuple[str, int], trio.Lock] = {}

    @property
    def connections(self) -> int:
        """Connections kept open now."""
        return len(self._connections)

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for key in list(self._connections):
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
                reused = key in self._connections
                try:
                    with trio.fail_after(self.timeout):
                        if not reused:
                            stream = await trio.open_tcp_stream(host, port)
                            self._connections[key] = HttpConnection(stream, host, port)
                        connection = self._connections[key]
                        await connection.send(method, path, payload)
                        status, _ = await connection.head()
                        raw = await connection.body()
                    answer = json.loads(raw) if raw else None
                except (OSError, trio.TooSlowError, trio.BrokenResourceError, ValueError) as exc:
                    await self._drop(key)
                    if reused:  # the server may have closed a kept connection meanwhile
                        continue
                    self.failures[type(exc).__name__] += 1
                    return None
                if not connection.reusable:
                    await self._drop(key)
                return status, answer
        return None

    async def _drop(self, key: tuple[str, int]) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            with contextlib.suppress(trio.BrokenResourceError, OSError):
                await connection.stream.aclose()
