"""The interface a driver drives the core through: the trio node and the simulator alike.

Every input reaches the core through one of these entry points, each taking
``now`` and returning the effects to carry out (``effects.py``); what the
core decided comes back as notifications among them, never by reading its
counters or queues. ``Protocol`` (``protocol.py``) implements it; the
simulator also drives test fakes through it (``sim/process.py`` adds the
few reads it makes of a node's state), so a change here is one change for
both drivers and neither can drift.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence

from gossip_registry.core.effects import Effect, Timer
from gossip_registry.core.messages import Address
from gossip_registry.registry.entry import CheckState, Entry, EntryKey, Health


class Driven(typing.Protocol):
    """The core's entry points (see ``core.protocol.Protocol`` for what each does)."""

    def start(self, now: float) -> list[Effect]: ...
    def join(self, now: float, seeds: Iterable[Address], *, tag: int = 0) -> list[Effect]: ...
    def join_at_start(
        self,
        now: float,
        seeds: Iterable[Address],
        known: Iterable[Address] = (),
        *,
        tag: int = 0,
        resolve: bool = False,
    ) -> list[Effect]: ...
    def join_resolved(self, now: float, tag: int, seeds: Iterable[Address]) -> list[Effect]: ...
    def leave(self, now: float, timeout: float) -> list[Effect]: ...
    def handle_packet(self, now: float, src: Address, data: bytes) -> list[Effect]: ...
    def handle_timer(self, now: float, timer: Timer) -> list[Effect]: ...
    def handle_stream(
        self, now: float, src: Address, data: bytes
    ) -> tuple[bytes | None, list[Effect]]: ...
    def handle_stream_reply(self, now: float, token: int, reply: bytes | None) -> list[Effect]: ...
    def handle_refused(self, now: float, addr: Address) -> list[Effect]: ...
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
        checks: Sequence[CheckState] = (),
    ) -> tuple[Entry, list[Effect]]: ...
    def update_checks(
        self, now: float, key: EntryKey, checks: Sequence[CheckState]
    ) -> tuple[Entry | None, list[Effect]]: ...
    def deregister(self, now: float, key: EntryKey) -> tuple[Entry | None, list[Effect]]: ...
    def rewrite(
        self, now: float, entry: Entry, *, status: Health, checks: Sequence[CheckState]
    ) -> tuple[Entry, list[Effect]]: ...
    def force_leave(self, now: float, name: str) -> list[Effect]: ...
    def observe_wall(self, now: float, wall: float) -> None: ...
    def own_entries(self) -> list[Entry]: ...
    def own_entry(self, key: EntryKey) -> Entry | None: ...
    def own_keys(self, instance_id: str, service: str | None = None) -> list[EntryKey]: ...
    def owned_copy(self) -> list[Entry]: ...
