"""What one HTTP client can hold: connections per interface and time to send a body.

Theory of operation: hypercorn bounds the wait for request headers (its
keep-alive timeout runs until a request's headers are complete) but not the
wait for a body once the headers arrived, nor the number of connections; a
client sending ``Content-Length: 60000`` and one byte a second holds a task
and a file descriptor for as long as it likes, and a thousand of them used
up every descriptor of a node (issue 10, finding 3). Two bounds close that:

- ``BodyDeadline``, an ASGI middleware: the whole request body must arrive
  within ``timeout`` seconds of the request's start. Past it the app sees a
  disconnect (so a handler stops waiting), and the client gets a 408 with
  ``Connection: close`` (hypercorn then closes: the body was not read).
  Once the body is complete, later ``receive`` calls are not bounded: a
  blocking query or an event stream waits on them for a disconnect.
- ``serve_connections``: our own accept loop over hypercorn's per-connection
  server, holding at most ``limit`` connections; one more is accepted and
  closed at once (counted), rather than left in the backlog, so that the
  client learns now and the descriptors stay free for gossip.
  ``fdlimit.connection_budget`` caps ``limit`` below the process's open-file
  limit, with a reserve for gossip, snapshots and the DNS interface.

Counters go to the node's ``http_stats`` (``STAT_KEYS``) for /metrics.

``serve_connections`` drives hypercorn's per-connection ``TCPServer`` and
``WorkerContext`` (``hypercorn.trio``, 0.18), which are not its documented
API: ``worker_serve`` offers no hook to bound connections. Every HTTP test
goes through this path, so a hypercorn release that changes them fails them.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState

__all__ = ["STAT_KEYS", "BodyDeadline", "serve_connections"]

log = logging.getLogger("gossip_registry.http")

STAT_KEYS = ("connections_refused", "body_timeouts", "client_disconnects", "accept_errors")
"""Counters in ``http_stats``: connections closed at the limit, bodies too slow, clients that
left mid-request, and accept failures (descriptors exhausted)."""
_ACCEPT_PAUSE = 0.1
"""Seconds the accept loop waits after the system refused a descriptor (as trio's does)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TIMEOUT_BODY = b'{"error": "body: not received within the time allowed; closing"}'


def _count(stats: MutableMapping[str, int], key: str) -> None:
    stats[key] = stats.get(key, 0) + 1


class BodyDeadline:
    """ASGI middleware: a request's body must be complete ``timeout`` seconds after it starts."""

    def __init__(self, app: ASGIApp, *, timeout: float, stats: MutableMapping[str, int]) -> None:
        self.app = app
        self.timeout = timeout
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = trio.current_time() + self.timeout
        body_done = False
        timed_out = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal body_done, timed_out
            if body_done or timed_out:
                return await receive()
            with trio.move_on_at(deadline):
                message = await receive()
                if message["type"] == "http.disconnect":
                    _count(self.stats, "client_disconnects")
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True
                return message
            timed_out = True
            _count(self.stats, "body_timeouts")
            log.debug(
                "%s %s: body not complete after %.0f s",
                scope["method"],
                scope["path"],
                self.timeout,
            )
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out and not started:
                return  # the app answers a disconnect it was told of; the 408 below is ours
            started = True
            await send(message)

        await self.app(scope, bounded_receive, guarded_send)
        if timed_out and not started:
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(_TIMEOUT_BODY)),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 408, "headers": headers})
            await send({"type": "http.response.body", "body": _TIMEOUT_BODY})


async def serve_connections(
    app: AppWrapper,
    config: HypercornConfig,
    listener: trio.abc.Listener[trio.abc.Stream],
    *,
    limit: int,
    stats: MutableMapping[str, int],
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``listener`` with at most ``limit`` connections open, until cancelled.

    Returning from ``shutdown_trigger`` stops accepting, tells hypercorn's
    connections to close once idle, and gives open requests
    ``config.graceful_timeout`` seconds (hypercorn's own ``worker_serve``
    does the same). The app's ASGI lifespan is not run: ours has no
    start-up or shutdown handlers.
    """
    context = WorkerContext(None)
    active = 0

    async def handle(stream: trio.abc.Stream) -> None:
        nonlocal active
        try:
            # hypercorn's server works on SocketStream and SSLStream alike.
            await TCPServer(app, config, context, ConnectionState({}), stream)  # type: ignore[arg-type]
        finally:
            active -= 1
            # hypercorn's own close can be cancelled before it closes the socket (its
            # send_eof checkpoints first); this one closes it whatever happens.
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as accepting:

            async def accept_loop() -> None:
                nonlocal active
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        if exc.errno not in (
                            errno.EMFILE,
                            errno.ENFILE,
                            errno.ENOBUFS,
                            errno.ENOMEM,
                        ):
                            raise
                        _count(stats, "accept_errors")
                        log.warning("HTTP accept failed (%s); pausing %.1f s", exc, _ACCEPT_PAUSE)
                        await trio.sleep(_ACCEPT_PAUSE)
                        continue
                    if active >= limit:
                        _count(stats, "connections_refused")
                        await trio.aclose_forcefully(stream)
                        continue
                    active += 1
                    connections.start_soon(handle, stream)

            accepting.start_soon(accept_loop)
            task_status.started()
            if shutdown_trigger is None:
                await trio.sleep_forever()
            await shutdown_trigger()
            accepting.cancel_scope.cancel()
        await context.terminated.set()
        connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
