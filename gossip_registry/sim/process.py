"""A simulated process: the node interface the simulator drives, and what it keeps per node.

Theory of operation. The simulator drives any object with the protocol
core's driver interface (``core/driver.py``, the one the trio node drives) and
the reads ``SimNode`` adds, built by a ``NodeFactory``; the real
``gossip_registry.core.protocol.Protocol`` is one, and tests plug in fakes.
A ``Process`` is the simulator's bookkeeping for one node slot (one host and
port): the current protocol object, its *life* (a generation number bumped
on every crash or stop, so events addressed to an old life are recognised
and discarded), whether it runs, is paused, crashed or left, the events held
while it is paused, what is on its disk (``durable``: the own entries its
acknowledged writes put there, as the real node's journal holds them; written
in the same step as the acknowledgement, so no crash can fall between
them), what a snapshot would restore after a crash, its health checks
(``sim/checks.py``), and its traffic
counters. It is deliberately small: the simulator must hold 10,000 of them.
"""

from __future__ import annotations

import math
import random
import typing
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.driver import Driven
from gossip_registry.core.members import MemberSeed
from gossip_registry.core.messages import Address, MemberState
from gossip_registry.registry.check_schedule import CheckScheduler
from gossip_registry.registry.entry import Entry, EntryKey
from gossip_registry.registry.health import CheckSpec


class TableView(typing.Protocol):
    """What the simulator and its checks read of a node's registry table."""

    @property
    def digest(self) -> int: ...
    def get(self, key: EntryKey) -> Entry | None: ...


class SimNode(Driven, typing.Protocol):
    """The core as the simulator drives it (``core.driver.Driven``, shared with the trio
    node) plus the few reads it makes of a node's state."""

    @property
    def name(self) -> str: ...
    @property
    def addr(self) -> Address: ...
    @property
    def incarnation(self) -> int: ...
    @property
    def table(self) -> TableView: ...
    @property
    def stats(self) -> Counter[str]: ...

    def seed_members(self, seed: MemberSeed) -> None: ...
    def member_states(self) -> dict[str, MemberState]: ...


class NodeFactory(typing.Protocol):
    """Builds one node; the signature is ``Protocol``'s constructor, so the class itself fits."""

    def __call__(
        self,
        config: ProtocolConfig,
        name: str,
        addr: Address,
        *,
        rng: random.Random,
        now: float,
        wall_offset: float,
        incarnation: int | None,
        entries: Sequence[Entry],
    ) -> SimNode: ...


class NodeStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    """Alive but processing nothing until it resumes (a stopped VM, a long GC)."""
    CRASHED = "crashed"
    LEFT = "left"
    """Stopped after a graceful leave, once the core said it had drained."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a node's on-disk snapshot would restore, read when it stopped."""

    incarnation: int
    entries: tuple[Entry, ...]
    alive_members: tuple[str, ...]
    """Other members it saw alive: where a restarted node looks for the cluster."""
    checks: tuple[tuple[EntryKey, tuple[CheckSpec, ...]], ...] = ()
    """Each own instance's checks, as the node's snapshot keeps them."""


@dataclass(frozen=True, slots=True)
class Traffic:
    """Traffic of one node (or a sum of nodes) over ``elapsed`` virtual seconds.

    Datagrams and bytes count what the protocol handed to the network (lost
    ones included) and what reached a running process. Stream frames and
    bytes (requests and replies) are counted at the sender, once the
    connection is made.
    """

    udp_sent: int = 0
    udp_received: int = 0
    udp_bytes_sent: int = 0
    udp_bytes_received: int = 0
    stream_sent: int = 0
    stream_bytes_sent: int = 0
    elapsed: float = 0.0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            udp_sent=self.udp_sent + other.udp_sent,
            udp_received=self.udp_received + other.udp_received,
            udp_bytes_sent=self.udp_bytes_sent + other.udp_bytes_sent,
            udp_bytes_received=self.udp_bytes_received + other.udp_bytes_received,
            stream_sent=self.stream_sent + other.stream_sent,
            stream_bytes_sent=self.stream_bytes_sent + other.stream_bytes_sent,
            elapsed=max(self.elapsed, other.elapsed),
        )

    def per_second(self) -> dict[str, float]:
        """Each counter divided by ``elapsed`` (zeros if no time has passed)."""
        span = self.elapsed
        return {
            f.name: (getattr(self, f.name) / span if span > 0 else 0.0) for f in fields(self)[:-1]
        }


class Process:
    """Simulator-side state of one node slot. Mutable, hot: plain ``__slots__``."""

    __slots__ = (
        "addr",
        "check_specs",
        "checks",
        "checks_wake",
        "durable",
        "incarnation",
        "index",
        "life",
        "name",
        "node",
        "paused_until",
        "pending",
        "refuses",
        "snapshot",
        "status",
        "stream_bytes_sent",
        "stream_sent",
        "udp_bytes_received",
        "udp_bytes_sent",
        "udp_received",
        "udp_sent",
        "wall_offset",
    )

    def __init__(self, index: int, name: str, addr: Address, node: SimNode, wall_offset: float):
        self.index = index
        self.name = name
        self.addr = addr
        self.node = node
        self.life = 0
        self.status = NodeStatus.RUNNING
        self.paused_until = 0.0
        self.pending: list[tuple[Any, ...]] = []
        self.refuses = False
        """Crashed on a live host: datagrams draw a refusal, connects a reset (issue 17)."""
        self.snapshot: Snapshot | None = None
        self.durable: dict[EntryKey, Entry] = {}
        self.incarnation = 0
        """Its incarnation as its journal holds it: the core's last ``IncarnationChanged``."""
        self.check_specs: dict[EntryKey, tuple[CheckSpec, ...]] = {}
        """The checks of the own instances in ``durable``, on disk with them."""
        self.checks: CheckScheduler | None = None
        """This life's check scheduler (``sim/checks.py``); None until it runs a check."""
        self.checks_wake = math.inf
        """When the scheduler's wake-up is armed (inf: none)."""
        self.wall_offset = wall_offset
        self.udp_sent = 0
        self.udp_received = 0
        self.udp_bytes_sent = 0
        self.udp_bytes_received = 0
        self.stream_sent = 0
        self.stream_bytes_sent = 0

    @property
    def live(self) -> bool:
        """Not crashed and not left (paused counts as live)."""
        return self.status is NodeStatus.RUNNING or self.status is NodeStatus.PAUSED

    def traffic(self, elapsed: float) -> Traffic:
        return Traffic(
            self.udp_sent,
            self.udp_received,
            self.udp_bytes_sent,
            self.udp_bytes_received,
            self.stream_sent,
            self.stream_bytes_sent,
            elapsed,
        )

    def reset_traffic(self) -> None:
        self.udp_sent = self.udp_received = 0
        self.udp_bytes_sent = self.udp_bytes_received = 0
        self.stream_sent = self.stream_bytes_sent = 0
