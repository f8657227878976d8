"""``GET /v1/events``: the node's event stream as NDJSON over a long-lived response.

Theory of operation: the response body is an async generator that
subscribes to the node's ``EventBus`` and writes one JSON object per line,
as many lines per chunk as queued up since the last write.
Its first line is ``{"kind": "stream", "event": "subscribed", ...}``, sent
once the subscription exists: a client that waits for it knows every later
change reaches it (without it, a test or a script could not tell when it
may start acting). The subscription ends on every path that ends the
response: the client disconnects (Starlette cancels the generator when the
server reports ``http.disconnect``), the node stops (the bus closes, the
generator returns and the response completes), or the server shuts down
(cancellation). Nothing is buffered beyond the subscriber's bounded queue.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable

from starlette.responses import StreamingResponse

from gossip_registry.runtime.events import EventBus

__all__ = ["MEDIA_TYPE", "event_stream"]

MEDIA_TYPE = "application/x-ndjson"
CHUNK_EVENTS = 256
"""Events written in one chunk at most: about 50 KB of lines, one send."""


def _line(value: dict[str, object]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


async def _lines(bus: EventBus, kinds: frozenset[str]) -> AsyncIterator[bytes]:
    async with bus.subscribe(kinds) as subscription:
        now = round(time.time(), 3)
        yield _line({"time": now, "kind": "stream", "event": "subscribed", "kinds": sorted(kinds)})
        while batch := await subscription.take(CHUNK_EVENTS):
            yield b"".join(_line(event.as_json()) for event in batch)


def event_stream(bus: EventBus, kinds: Iterable[str]) -> StreamingResponse:
    """The streaming response for one subscriber to ``bus``."""
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_lines(bus, frozenset(kinds)), media_type=MEDIA_TYPE, headers=headers)
