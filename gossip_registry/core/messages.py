"""Protocol messages: what travels between nodes, as plain frozen values.

Theory of operation: a UDP packet carries one *primary* message (a probe, an
ack, ...) or none, plus piggybacked *updates* (membership changes and registry
entries) taken from the broadcast queue. A TCP stream carries one message per
frame: a probe over TCP (the fallback ping) or a step of the push-pull
anti-entropy exchange. ``codec`` turns these values into bytes and back.

The numeric message types are part of the wire protocol: ONLY APPEND to
``MsgType``; never renumber or reuse a value.

This module may know nothing of sockets, time or randomness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from gossip_registry.registry.entry import Entry

Address = tuple[str, int]
"""(host, port) as the transport sees it; host is an IP literal or a name."""

PROTOCOL_VERSION = 1


class MsgType(IntEnum):
    """Wire identifiers. Append only: the values are the protocol."""

    PING = 1
    PING_REQ = 2
    ACK = 3
    NACK = 4
    ALIVE = 5
    SUSPECT = 6
    DEAD = 7
    LEFT = 8
    ENTRY = 9
    SYNC_HELLO = 10
    SYNC_REPLY = 11
    SYNC_FINISH = 12
    KEYRING_REQUEST = 13
    KEYRING_REPLY = 14
    SYNC_MORE = 15


class MemberState(IntEnum):
    """SWIM states. The numeric order is the precedence at equal incarnation."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3

    @property
    def label(self) -> str:
        return self.name.lower()


ACTIVE_STATES = frozenset({MemberState.ALIVE, MemberState.SUSPECT})
"""States of a member still in the cluster: probed, gossiped to, its entries served."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe. ``target`` guards against a reused address reaching the wrong node."""

    seq: int
    target: str
    source: str


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask a peer to probe ``target`` for us and relay the ack (SWIM's ping-req)."""

    seq: int
    target: str
    target_addr: Address
    source: str
    want_nack: bool


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    """From a ping-req helper that got no ack: tells the prober its own link works (Lifeguard)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    name: str
    addr: Address
    incarnation: int
    meta: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Suspect:
    name: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Dead:
    name: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Left:
    """Graceful leave, sent by the leaving node about itself."""

    name: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class EntryUpdate:
    entry: Entry


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One row of a member list in push-pull."""

    name: str
    addr: Address
    incarnation: int
    state: MemberState
    meta: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SyncHello:
    """Opens push-pull: who we are and digests of what we hold.

    ``buckets`` has one 64-bit digest per registry bucket, so a peer can tell
    which slices differ without either side sending its whole table.
    """

    sender: MemberRecord
    members_digest: int
    buckets: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SyncReply:
    """The peer's answer: its members if they differ, its entries in differing buckets.

    A large difference comes in pages (``protocol.SYNC_PAGE_ENTRIES``): ``buckets``
    lists the whole buckets this page carries and ``resume``, when not 0, the first
    differing bucket left out; the initiator asks for the rest with ``SyncMore``.
    A member list longer than a page (``protocol.MEMBER_PAGE_SHARE``) comes the same
    way: ``members`` holds the records from the position asked for and
    ``members_resume``, when not 0, the position of the first one left out.
    """

    members: tuple[MemberRecord, ...] | None
    want_members: bool
    buckets: tuple[int, ...]
    entries: tuple[Entry, ...]
    resume: int = 0
    members_resume: int = 0


@dataclass(frozen=True, slots=True)
class SyncFinish:
    """Closes push-pull: what the peer lacks, computed from its reply."""

    members: tuple[MemberRecord, ...] | None
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class SyncMore:
    """The next page of a push-pull: digests of buckets ``start`` onwards.

    Answered by a ``SyncReply``; the sync's finish for each page is a ``SyncFinish``
    as usual. No ``buckets`` asks for no entries. ``members_from``, when not 0, asks
    for the peer's member list from that position (its ``members_resume``).
    """

    start: int
    buckets: tuple[int, ...]
    members_from: int = 0


@dataclass(frozen=True, slots=True)
class KeyringRequest:
    """Key management from the node an operator asked, over a sealed stream.

    Not protocol state: the node answers it before the protocol core sees
    the frame. ``op`` is one of ``KEYRING_OPS``; ``key`` is empty for list.
    """

    op: str
    key: bytes


@dataclass(frozen=True, slots=True)
class KeyringReply:
    """``error`` is empty on success; ``keys`` are fingerprints, the primary first."""

    error: str
    keys: tuple[str, ...]


KEYRING_OPS = ("list", "install", "use", "remove")
"""Keyring operations, by the name the wire and the HTTP API use."""

Update = Alive | Suspect | Dead | Left | EntryUpdate
Primary = Ping | PingReq | Ack | Nack
StreamMessage = Ping | Ack | SyncHello | SyncReply | SyncFinish | SyncMore
Message = Primary | Update | SyncHello | SyncReply | SyncFinish | SyncMore
KeyringMessage = KeyringRequest | KeyringReply


@dataclass(frozen=True, slots=True)
class Packet:
    """One UDP datagram: an optional primary message and piggybacked updates."""

    primary: Primary | None
    updates: tuple[Update, ...] = ()
