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
- ``Notify``: an event for observers (watchers, logs, metrics, tests), or
  for the driver itself: ``JoinResult``, ``ResolveSeeds``, ``LeaveDrained`` and
  ``StaleChanged`` carry the core's join, leave and self-preservation policy (retries,
  backoff, when a leaving node may stop, what is served stale), and
  ``Synced`` says a push-pull we started completed (the node holds the
  cluster's state) and ``IncarnationChanged`` what to write down for a
  restart, so every driver runs the same policy and none reads the core's
  counters or queues to decide.
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
    MERGE = 11
    """Merge the next chunk of a large push-pull message. Armed at ``now``: the driver
    lets other events (probes) in first, so a big merge never blocks the node."""
    JOIN = 12
    """Next attempt of a join at start that nobody answered yet (subject: the join's tag)."""
    LEAVE = 13
    """A graceful leave's time is up: the driver may stop even if gossip is still queued."""
    PRESERVATION = 14
    """A self-preservation reached its ``max_duration``: the dead are believed."""
    LAST_CHANCE = 15
    """Half-way through a suspect's last-chance probe, no answer yet: ping it once more."""
    FANOUT = 16
    """Send our own fresh writes straight to the members (at most one burst per
    ``fanout_interval``); armed only while some wait."""


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
class JoinResult:
    """One attempt of the join tagged ``tag`` (the driver's number) is over.

    ``answered`` of the ``asked`` seeds completed a push-pull. ``retry_in``:
    seconds until the next attempt, or None when this join is over (it
    reached someone, someone reached us, or attempts ran out; then ``asked``
    may be 0: no attempt was made).
    """

    tag: int
    attempt: int
    answered: int
    asked: int
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class ResolveSeeds:
    """The join tagged ``tag`` is due for another attempt and its seeds are names.

    Names are resolved again for every attempt (the pods behind a headless
    service come and go), which is I/O: the driver resolves them and hands
    every address back with ``join_resolved``, an empty list if none came.
    """

    tag: int


@dataclass(frozen=True, slots=True)
class LeaveDrained:
    """A graceful leave may stop now: its news went to every member directly (up to
    ``swim.LEAVE_FANOUT`` distinct ones) and out its full retransmit count by gossip, or
    there is nobody left to tell (``drained``), or its time ran out (not ``drained``).
    Sent once per leave, after the effects that sent the last of it."""

    drained: bool


@dataclass(frozen=True, slots=True)
class StaleChanged:
    """Self-preservation (``registry/preservation.py``) changed what is served stale.

    ``entries`` started or stopped being shown stale (wake their services'
    watchers); ``active``: whether a preservation runs now. Sent once per
    batch of effects, after the changes that caused it.
    """

    entries: tuple[Entry, ...]
    active: bool


@dataclass(frozen=True, slots=True)
class Synced:
    """A push-pull we started with ``addr`` completed: its members and entries are merged.

    The first one after start means the node now holds the cluster's table
    (``Node.wait_synced``); a failed exchange says nothing.
    """

    addr: Address
    agreed: bool
    """The peer held the same versions as we did (every bucket digest equal) when it answered:
    nothing had to be exchanged. The web view shows it per peer (``api/ui``)."""


@dataclass(frozen=True, slots=True)
class IncarnationChanged:
    """Our own incarnation is now ``incarnation``.

    Sent by ``start`` (``previous`` None: the incarnation this life runs at,
    one above what a snapshot recorded) and by every refutation, so a driver
    that keeps state across restarts writes it down when it changes instead
    of polling the core for it: a restart must come back above it.
    """

    incarnation: int
    previous: int | None


DriverEvent = JoinResult | ResolveSeeds | LeaveDrained | StaleChanged | Synced | IncarnationChanged
"""The core's word to its driver, as opposed to news for observers."""


@dataclass(frozen=True, slots=True)
class Notify:
    event: MemberChanged | EntryChanged | DriverEvent


Effect = Send | SetTimer | StreamRequest | StreamSend | Notify
