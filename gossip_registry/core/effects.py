"""Effects: everything the core asks its driver (trio runtime or simulator) to do.

The core never performs I/O. Each entry point returns a list of these values
and the driver carries them out in order:

- ``Send``: one UDP datagram.
- ``SetTimer``: call ``handle_timer(now, timer)`` at ``at`` (same clock as
  ``now``). Timers are never cancelled; a timer the core no longer wants is
  recognised by its token and ignored, so drivers need no cancel operation.
- ``StreamRequest``: open a TCP stream to ``addr``, write ``data`` as one
  frame, read one reply frame, and call ``handle_stream_reply(now, token,
  reply)``, with ``reply=None`` if anything failed (refused, timed out,
  malformed framing).
- ``StreamSend``: open a TCP stream, write one frame, close; no reply.
- ``Notify``: an event for observers (watchers, logs, metrics, tests), and
  ``Synced`` for the driver: it says a push-pull we started completed, so the
  driver knows the node holds the cluster's state without reading counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from gossip_registry.core.messages import Address, MemberState
from gossip_registry.registry.entry import Entry


class TimerKind(IntEnum):
    PROBE = 1
    """Start the next probe; re-armed every (scaled) probe interval."""
    PROBE_TIMEOUT = 2
    """No direct ack yet: go indirect and try TCP."""
    PROBE_DEADLINE = 3
    """End of the probe window: suspect unless some ack arrived."""
    RELAY_TIMEOUT = 4
    """A ping-req we relay got no ack: send the requester a nack."""
    SUSPICION = 5
    """A suspicion ran out: declare the member dead."""
    GOSSIP = 6
    """Periodic piggyback gossip; armed only while there is something to send."""
    FAST_GOSSIP = 7
    """Rate-limited immediate push of fresh updates."""
    SYNC = 8
    """Periodic push-pull anti-entropy with a random live member."""
    RECONNECT = 9
    """Periodic push-pull with a random dead member, to heal partitions."""
    REAP = 10
    """Collect tombstones and long-dead members past the horizon."""


@dataclass(frozen=True, slots=True)
class Timer:
    kind: TimerKind
    token: int
    subject: str = ""


@dataclass(frozen=True, slots=True)
class Send:
    addr: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class SetTimer:
    at: float
    timer: Timer


@dataclass(frozen=True, slots=True)
class StreamRequest:
    addr: Address
    data: bytes
    token: int


@dataclass(frozen=True, slots=True)
class StreamSend:
    addr: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class MemberChanged:
    """A member was added or changed state, incarnation, address or metadata."""

    name: str
    addr: Address
    state: MemberState
    incarnation: int
    previous: MemberState | None


@dataclass(frozen=True, slots=True)
class EntryChanged:
    """The visible registry changed for one key. ``new`` is None once it is gone.

    ``fenced``: it went because its owner died, left or restarted without it
    (a fence), not because it was deregistered.
    """

    old: Entry | None
    new: Entry | None
    fenced: bool = False


@dataclass(frozen=True, slots=True)
class Synced:
    """A push-pull we started with ``addr`` completed: its members and entries are merged.

    The first one after start means the node now holds the cluster's table
    (``Node.wait_synced``); a failed exchange says nothing.
    """

    addr: Address


@dataclass(frozen=True, slots=True)
class Notify:
    event: MemberChanged | EntryChanged | Synced


Effect = Send | SetTimer | StreamRequest | StreamSend | Notify
