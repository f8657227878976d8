"""PLACEHOLDER: interface being written; see Protocol below."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Effect, Timer
from gossip_registry.core.messages import Address
from gossip_registry.registry.entry import Entry, EntryKey, Health


class Protocol:
    """One node's whole protocol: membership (SWIM + Lifeguard), dissemination, registry.

    Args:
        config: protocol settings.
        name: this node's unique name.
        addr: the address peers reach us at (advertised, not necessarily bound).
        rng: the only source of randomness.
        now: monotonic seconds at creation.
        wall_offset: add to ``now`` to get wall-clock seconds (for HLC stamps).
        incarnation: restored from a snapshot; we come back above it.
        meta: node metadata (small string map).
        entries: our own registrations restored from a snapshot; re-asserted.
    """

    def __init__(
        self,
        config: ProtocolConfig,
        name: str,
        addr: Address,
        *,
        rng: random.Random,
        now: float,
        wall_offset: float = 0.0,
        incarnation: int = 0,
        meta: Mapping[str, str] | None = None,
        entries: Sequence[Entry] = (),
    ) -> None:
        raise NotImplementedError

    def start(self, now: float) -> list[Effect]:
        """Arm the periodic timers. Call once, before anything else."""
        raise NotImplementedError

    def join(self, now: float, seeds: Iterable[Address]) -> list[Effect]:
        """Push-pull with each seed (StreamRequest effects) and announce ourselves."""
        raise NotImplementedError

    def leave(self, now: float) -> list[Effect]:
        """Broadcast a graceful leave at once; the driver waits a bounded time, then stops."""
        raise NotImplementedError

    def handle_packet(self, now: float, src: Address, data: bytes) -> list[Effect]:
        """A UDP datagram arrived. Garbage is counted in ``stats`` and dropped."""
        raise NotImplementedError

    def handle_timer(self, now: float, timer: Timer) -> list[Effect]:
        raise NotImplementedError

    def handle_stream(self, now: float, src: Address, data: bytes) -> tuple[bytes | None, list[Effect]]:
        """One TCP frame arrived; returns the reply frame to write back (or None)."""
        raise NotImplementedError

    def handle_stream_reply(self, now: float, token: int, reply: bytes | None) -> list[Effect]:
        """The outcome of a StreamRequest: the reply frame, or None if it failed."""
        raise NotImplementedError

    def register(
        self,
        now: float,
        service: str,
        instance_id: str,
        address: str,
        port: int,
        *,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        weight: int = 1,
        status: Health = Health.PASSING,
        output: str = "",
    ) -> tuple[Entry, list[Effect]]:
        raise NotImplementedError

    def deregister(self, now: float, key: EntryKey) -> tuple[Entry | None, list[Effect]]:
        raise NotImplementedError
