"""Messages and bytes on the wire, by channel and message type, for metrics.

Theory of operation: the node hands every datagram and frame it sends or
receives to ``WireTraffic``, which walks the envelope (``codec.message_sizes``)
and charges each message its own encoded size. The census lives in the
runtime, not in the protocol core, because it costs a second pass over each
packet: the simulator, which drives millions of packets through the same
core, should not pay for figures nobody reads there.

Piggybacked updates count as messages of their own type, so ``entry`` bytes
are what registry news costs however it travelled. Envelope bytes (version and
list headers) are in no type; the core's ``udp_bytes_in``/``udp_bytes_out``
totals include them. Input that is not even a valid envelope is charged whole
to the type ``invalid``; what the decoder later refuses is counted again, as a
drop, by the core.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from gossip_registry.core.codec import CodecError, message_sizes
from gossip_registry.core.effects import Effect, Send, StreamRequest, StreamSend
from gossip_registry.core.messages import MsgType

__all__ = ["CHANNEL_TYPES", "DIRECTIONS", "Channel", "Direction", "WireTraffic"]

Channel = Literal["udp", "tcp"]
Direction = Literal["in", "out"]
DIRECTIONS: tuple[Direction, ...] = ("in", "out")

CHANNEL_TYPES: dict[Channel, tuple[str, ...]] = {
    "udp": ("ping", "ping_req", "ack", "nack", "alive", "suspect", "dead", "left", "entry"),
    "tcp": ("ping", "ack", "sync_hello", "sync_reply", "sync_finish"),
}
"""The message types each channel carries: exported at zero before the first one is seen."""

INVALID = "invalid"
_LABELS = {int(t): t.name.lower() for t in MsgType}


class WireTraffic:
    """Counters keyed by (direction, channel, message type)."""

    def __init__(self) -> None:
        self.messages: Counter[tuple[Direction, Channel, str]] = Counter()
        self.bytes: Counter[tuple[Direction, Channel, str]] = Counter()

    def count(self, direction: Direction, channel: Channel, data: bytes) -> None:
        """Charge one datagram (``udp``) or frame (``tcp``); never raises on bad bytes."""
        try:
            sizes = message_sizes(data, stream=channel == "tcp")
        except CodecError:
            sizes = [(-1, len(data))]
        for kind, size in sizes:
            key = (direction, channel, _LABELS.get(kind, INVALID))
            self.messages[key] += 1
            self.bytes[key] += size

    def sent(self, effect: Effect) -> None:
        """Charge an effect that puts bytes on the wire; other effects are ignored."""
        if isinstance(effect, Send):
            self.count("out", "udp", effect.data)
        elif isinstance(effect, StreamRequest | StreamSend):
            self.count("out", "tcp", effect.data)
