"""HTTP servers on loopback that stand in for a service's instances, in a trio nursery.

Each answers every request with its own port as the body and counts its
hits; killing one closes its listening socket, so a call to it is refused
like a crashed process's. Used by the client tests and the nginx test.
"""

from __future__ import annotations

from collections import Counter
from functools import partial

import httpx
import trio

__all__ = ["Instances", "served_by"]


class Instances:
    """HTTP servers on 127.0.0.1 that count their hits; each can be killed on its own."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.hits: Counter[int] = Counter()
        self._stops: dict[int, tuple[trio.CancelScope, trio.Event]] = {}

    async def start(self) -> int:
        port: int = await self._nursery.start(self._serve)
        return port

    async def kill(self, port: int) -> None:
        """Return once the port refuses connections."""
        scope, closed = self._stops[port]
        scope.cancel()
        await closed.wait()

    async def _serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        closed = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._stops[port] = (scope, closed)
                async with listener:
                    task_status.started(port)
                    await trio.serve_listeners(partial(self._answer, port), [listener])
        finally:
            closed.set()

    async def _answer(self, port: int, stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
            self.hits[port] += 1
            body = str(port).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            await stream.send_all(head.encode() + body)


async def served_by(http: httpx.AsyncClient, url: str) -> int | None:
    """The port of the instance that answered one ``GET url`` (through a proxy); None: failed."""
    try:
        response = await http.get(url, timeout=5.0)
    except httpx.TransportError:
        return None
    return int(response.text) if response.status_code == 200 else None
