"""The trio node runtime: drives the sans-I/O protocol core over real sockets.

Theory of operation: ``Protocol`` (``core/protocol.py``) is the whole
protocol of one node and performs no I/O; every entry point returns effects
(``core/effects.py``). ``Node`` is the thin shell that feeds it and carries
the effects out, in order:

- ``Send``: queued on the transport's sender task (``runtime/transport.py``), so
  applying effects never waits on a socket.
- ``SetTimer``: pushed on a heap serviced by one task that sleeps in a
  cancel scope whose deadline is the earliest timer; an earlier timer moves
  the deadline. No polling. Timers are never cancelled: the core ignores
  stale ones by token.
- ``StreamRequest`` / ``StreamSend``: one task each in the node's nursery
  (connect, write a frame, read the reply, report back).
- ``Notify``: published on the event stream (``events.py``), wakes watchers
  of the affected service (``runtime/watch.py``), logs member changes, wakes
  watchers of what self-preservation shows stale (``runtime/stale_entries.py``),
  and tells the journal writer (``runtime/storage/durability.py``) when our own entries
  change. The core's word to its driver (``JoinResult``, ``LeaveDrained``)
  ends a ``join`` or a ``leave``: the policy is the core's, shared with the
  simulator.

``now`` is always ``trio.current_time()``, so ``trio.testing.MockClock``
drives the node as it drives trio. Everything the node runs lives in one
nursery opened by ``run``: the UDP receive and send loops, the TCP accept
loop and its connection tasks, the timer task, stream tasks, the health
checks (``runtime/checks.py``), the journal writer (``runtime/storage/durability.py``), the HTTP
API and DNS (``api/serve.py``). Cancelling ``run`` stops all of it; its
``finally`` writes the last snapshot and closes both sockets.

Durability: with a ``data_dir``, ``register`` and ``deregister`` return only
once the change is in the journal on disk (a failed fsync undoes it and
raises ``DurabilityError``); without one nothing survives a restart.

The wall clock (``time.time`` unless another source is given) is read again
before every call into the core (``_core_now``), so HLC stamps follow a
clock that NTP steps while the node runs.

Gossip encryption (``crypto/keyring.py``, set up by ``crypto/sealing.py``): with
a keyring the transport seals and opens every datagram and frame, the core
leaves ``SEAL_OVERHEAD`` bytes of room in each packet, and keyring frames
from peers are answered here (``crypto/rotation.py``) before the core sees
them.

Public methods are called from tasks in the same trio run (the embedding
API, the HTTP API); ``runtime/threaded.py`` offers them to plain threads. What they
are given is checked before it reaches the core (``runtime/registration.py``), so a
write peers would refuse fails at the caller, naming the field.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import logging
import math
import os
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any
from uuid import uuid4

import trio

from gossip_registry.config.node import NodeConfig
from gossip_registry.core.codec import CodecError, check_update, is_frame_head, is_keyring_frame
from gossip_registry.core.effects import (
    DriverEvent,
    Effect,
    EntryChanged,
    IncarnationChanged,
    JoinResult,
    LeaveDrained,
    MemberChanged,
    Notify,
    ResolveSeeds,
    Send,
    SetTimer,
    StaleChanged,
    StreamRequest,
    StreamSend,
    Synced,
    Timer,
)
from gossip_registry.core.messages import ACTIVE_STATES, Address, Alive, MemberState
from gossip_registry.core.protocol import Protocol
from gossip_registry.crypto.keyring import SEAL_OVERHEAD
from gossip_registry.crypto.sealing import GossipEncryption
from gossip_registry.registry.entry import CheckState, Entry, EntryKey, Health
from gossip_registry.registry.health import CheckSpec, initial_states, worst
from gossip_registry.runtime.advertise import advertise_host
from gossip_registry.runtime.checks import CheckRunner
from gossip_registry.runtime.events import EventBus
from gossip_registry.runtime.faultinject import unsafe_node_faults
from gossip_registry.runtime.heap import TableHeap
from gossip_registry.runtime.maintenance import (
    NODE_CHECK_ID,
    SERVICE_CHECK_PREFIX,
    Maintenance,
    NoRoom,
)
from gossip_registry.runtime.owned_nursery import close_owned_nursery
from gossip_registry.runtime.registration import admit_checks, check_registration
from gossip_registry.runtime.seeds import has_names, resolve_seeds
from gossip_registry.runtime.stale_entries import StaleEntries
from gossip_registry.runtime.stall import StallMeter
from gossip_registry.runtime.storage.durability import DurableStore
from gossip_registry.runtime.storage.journal import Delete, Put, Record, recover
from gossip_registry.runtime.storage.snapshot import Snapshot
from gossip_registry.runtime.traffic import WireTraffic
from gossip_registry.runtime.transport import Transport, open_transport
from gossip_registry.runtime.watch import CATALOG, ENTRIES, MEMBERS, ChangeIndex

__all__ = ["MemberView", "Node", "NotSynced", "open_node"]

logger = logging.getLogger("gossip_registry")

LEAVE_SLACK = 2.0
"""Seconds a leave on exit may take beyond leave_timeout (stopping, the last snapshot)."""

CHECK_RESTORE_CHUNK = 64
"""Instances whose checks a restart runs again per step (as the core's merges: ``MERGE_CHUNK``)."""


def _check_interface_limits(config: NodeConfig) -> None:
    """Refuse interface limits that would leave an interface unusable or unbounded."""
    for field_name in ("max_http_connections", "max_dns_tcp_connections"):
        value = getattr(config, field_name)
        if type(value) is not int or value < 1:
            raise ValueError(f"{field_name}: must be an integer >= 1, got {value!r}")
    if type(config.dns_rate_limit) is not int or config.dns_rate_limit < 0:
        raise ValueError(f"dns_rate_limit: must be an integer >= 0, got {config.dns_rate_limit!r}")
    if not (config.http_body_timeout > 0 and math.isfinite(config.http_body_timeout)):
        raise ValueError(
            f"http_body_timeout: must be > 0 seconds, got {config.http_body_timeout!r}"
        )
    for network in config.dns_trusted_networks:
        try:
            ipaddress.ip_network(network)
        except ValueError as exc:
            raise ValueError(f"dns_trusted_networks: {exc}") from None


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member as the API shows it."""

    name: str
    address: str
    port: int
    state: MemberState
    incarnation: int
    meta: Mapping[str, str]
    gone_for: float | None = None
    """Seconds since it became dead or left; None while it is alive or suspect."""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "state": self.state.label,
            "incarnation": self.incarnation,
            "meta": dict(self.meta),
            "gone_for": None if self.gone_for is None else round(self.gone_for, 1),
        }


class NotSynced(TimeoutError):
    """No seed answered a push-pull within the wait: the node holds only its own state."""


class _TimerHeap:
    """The core's timers, fired by one task that sleeps until the earliest deadline.

    ``push`` lowers the sleeping task's cancel-scope deadline when a timer
    comes due earlier than anything queued, so the task wakes exactly when
    needed and never polls.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, timer: Timer) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), timer))
        if self._sleep is not None and at < self._sleep.deadline:
            self._sleep.deadline = at

    async def run(self, fire: Callable[[float, Timer], None]) -> None:
        """Fire due timers in deadline order until cancelled."""
        heap = self._heap
        while True:
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
            now = trio.current_time()
            # A handler may arm timers already due (at == now), such as the next step of a
            # large merge: they fire in this pass, each after the other tasks had a turn.
            while heap and heap[0][0] <= now:
                _, _, timer = heapq.heappop(heap)
                fire(now, timer)
                await trio.lowlevel.checkpoint()
                now = trio.current_time()


class _JoinWait:
    """A ``join`` call waiting for the core's ``JoinResult`` with its tag."""

    def __init__(self) -> None:
        self.answered = 0
        self.done = trio.Event()

    def finish(self, result: JoinResult) -> None:
        self.answered = result.answered
        self.done.set()


class Node:
    """One registry node in a trio program.

    ``async with Node(config) as node:`` starts it in a nursery of its own
    (UDP+TCP transport, protocol timers, anti-entropy, HTTP API if
    configured), enters the block once the node has synced with a seed
    (``sync_timeout``), and leaves gracefully however the block exits (its
    end, an error, cancellation, Ctrl-C): no task or socket is left behind.
    Alternatively ``await nursery.start(node.run)`` runs it in the caller's
    nursery; cancelling ``run`` then stops it at once, which peers take for
    a crash (call ``leave`` first).

    A Node object runs once; build a new one to restart.

    ``wall_clock`` is read for every HLC stamp (tests pass a clock that NTP
    "steps"); ``now`` stays ``trio.current_time()``.

    Raises:
        ValueError: from the constructor, for a name or metadata peers
            would refuse, or a non-positive timeout.
    """

    name: str
    gossip_addr: Address
    """Bound (UDP and TCP); the configured bind address until started."""
    advertise_addr: Address
    """What peers use to reach us; final once started."""
    http_addr: Address | None
    """Bound HTTP address, known once started."""
    dns_addr: Address | None
    """Bound DNS address (UDP and TCP), known once started."""
    dns_stats: dict[str, int]
    """DNS counters (queries, answers, nxdomain, malformed, truncated ...), for metrics."""
    http_stats: dict[str, int]
    """HTTP interface counters (connections refused, body timeouts ...), for metrics."""
    stats: Counter[str]
    """The node's own counters (keyring frames refused), beside the core's and the transport's."""

    def __init__(self, config: NodeConfig, *, wall_clock: Callable[[], float] = time.time) -> None:
        try:
            check_update(Alive(config.name, ("0.0.0.0", 0), 0, dict(config.meta)))
        except CodecError as exc:
            raise ValueError(f"invalid node name or meta: {exc}") from None
        if not (config.leave_timeout >= 0 and math.isfinite(config.leave_timeout)):
            raise ValueError(f"leave_timeout: must be >= 0 seconds, got {config.leave_timeout!r}")
        if not (config.tcp_timeout > 0 and math.isfinite(config.tcp_timeout)):
            raise ValueError(f"tcp_timeout: must be > 0 seconds, got {config.tcp_timeout!r}")
        if type(config.max_checks_per_node) is not int or config.max_checks_per_node < 0:
            raise ValueError(
                f"max_checks_per_node: must be an integer >= 0, got {config.max_checks_per_node!r}"
            )
        _check_interface_limits(config)
        # --- gossip encryption: the keyring the node runs with, and what it accepts.
        self._encryption = GossipEncryption.from_config(
            config.keyring,
            config.data_dir,
            allow_plaintext=config.gossip_allow_plaintext,
            encrypt_outgoing=config.gossip_encrypt_outgoing,
        )
        self.config = config
        self._wall_clock = wall_clock
        self.name = config.name
        self.gossip_addr = config.bind
        self.advertise_addr = config.advertise or config.bind
        self.http_addr = None
        self.dns_addr = None
        self.dns_stats = {}
        self.http_stats = {}
        self.stats = Counter()
        self._protocol: Protocol | None = None
        self._transport: Transport | None = None
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._running = False
        self._stopped = trio.Event()
        self._timers = _TimerHeap()
        # Join and leave policy is the core's (core/protocol.py); these wait on its word.
        self._join_waits: dict[int, _JoinWait] = {}
        self._join_tags = itertools.count(1)
        self._leave_drained = trio.Event()
        # The longest event-loop stall while we run (stall.py): /v1/status and /metrics.
        self.stalls = StallMeter()
        # A large table is frozen out of the cyclic GC's full passes as it grows (heap.py).
        self._heap = TableHeap()
        self._seeds: list[Address] = []
        self._synced = trio.Event()
        # For the web view (api/ui): when each member last changed state, and per peer
        # address when our last push-pull with it ended and whether it held our versions.
        # Both are pruned to the current members as they grow (``_prune_views``).
        self._member_changed: dict[str, float] = {}
        self._peer_syncs: dict[Address, tuple[float, bool]] = {}
        self._incarnation = 0
        """Ours, from the core's ``IncarnationChanged`` (``start`` sends the first)."""
        # Watches: the index of each view, and self-preservation (both in their own modules).
        self._index = ChangeIndex(config.max_waiters)
        self._stale = StaleEntries(config.self_preservation, self._index)
        # The journal and snapshots (durability.py); only with data_dir, once the core exists.
        self._durable: DurableStore | None = None
        # The nursery opened by __aenter__.
        self._context: trio.Nursery | None = None
        self._context_manager: Any = None
        self._shield: trio.CancelScope | None = None
        # Health checks of our own instances (health.py).
        self._checks = CheckRunner(
            on_change=self._on_check_change,
            on_deregister=self._on_check_deregister,
            rng=random.Random(os.urandom(16)),
        )
        # Maintenance mode of our instances (maintenance.py): checks added to their own.
        self._maintenance = Maintenance()
        # Introspection (metrics.py, events.py): wire traffic by type, the event stream.
        self.traffic = WireTraffic()
        self.events = EventBus()

    # ------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Node:
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        try:
            await nursery.start(self._run_shielded)
            await self._first_sync()
        except BaseException:
            self._unshield()
            nursery.cancel_scope.cancel()
            await manager.__aexit__(None, None, None)
            raise
        self._context, self._context_manager = nursery, manager
        return self

    async def _run_shielded(self, *, task_status: trio.TaskStatus[Node]) -> None:
        """``run``, out of reach of the caller's cancellation: ``__aexit__`` leaves first."""
        with trio.CancelScope(shield=True) as self._shield:
            await self.run(task_status=task_status)

    def _unshield(self) -> None:
        if self._shield is not None:
            self._shield.cancel()

    async def _first_sync(self) -> None:
        """Wait (``sync_timeout``) until the node holds the cluster's table; say when it does not.

        Raises:
            NotSynced: no seed answered in time and ``sync_required`` is set.
        """
        config = self.config
        if not self._seeds:
            return  # run() said so
        if config.sync_timeout <= 0 or await self.wait_synced(config.sync_timeout):
            return
        seeds = ", ".join(f"{h}:{p}" for h, p in self._seeds)
        message = (
            f"node {self.name}: no seed answered within {config.sync_timeout:g}s ({seeds}); "
            "its table holds only its own entries until one does"
        )
        if config.sync_required:
            raise NotSynced(message)
        logger.warning("%s (it keeps trying in the background)", message)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        nursery, manager = self._context, self._context_manager
        self._context = self._context_manager = None
        assert nursery is not None, "__aexit__ without __aenter__"
        await self._leave_on_exit()
        self._unshield()
        return await close_owned_nursery(nursery, manager, exc_type, exc, tb)

    async def _leave_on_exit(self) -> None:
        """Leave gracefully however the block ends (its end, an error, cancellation, Ctrl-C).

        Shielded, since a cancelled or interrupted block is the usual way out,
        and bounded by ``leave_timeout`` plus the stop's own slack, so an exit
        never hangs. Without it peers would declare us dead seconds later and
        hand out our instances meanwhile.
        """
        if not self._running:
            return  # left already, or stopped
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.config.leave_timeout + LEAVE_SLACK
            await self.leave()

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ``task_status.started(self)`` once every socket listens.

        Raises:
            RuntimeError: this Node ran before.
            OSError: the gossip (or HTTP) address cannot be bound.
        """
        if self._started:
            raise RuntimeError("a Node runs once; create a new one to restart")
        self._started = True
        config = self.config
        snapshot: Snapshot | None = None
        generation = 0
        if config.data_dir is not None:
            snapshot, generation = await trio.to_thread.run_sync(
                recover, config.data_dir, self.name
            )
        else:
            logger.warning("no data dir: nothing is durable, registrations are lost on restart")
        protocol_config = config.protocol
        encryption = self._encryption
        if encryption is not None:
            await trio.to_thread.run_sync(encryption.save_first)
        transport = await open_transport(
            config.bind[0],
            config.bind[1],
            max_frame=config.protocol.max_stream_bytes,
            tcp_timeout=config.tcp_timeout,
        )
        # --- chaos testing: injected packet faults (test-only, see faultinject.py) ---
        if config.unsafe_test_faults is not None:
            transport.faults = unsafe_node_faults(config.unsafe_test_faults, self.name)
        # --- end chaos testing ---
        transport.head = is_frame_head
        try:
            # --- gossip encryption: seal below the protocol, leave room in each packet.
            if encryption is not None:
                transport.seal = encryption.seal
                if encryption.seal.encrypt_outgoing:
                    protocol_config = replace(protocol_config, seal_overhead=SEAL_OVERHEAD)
            self._transport = transport
            self.gossip_addr = transport.addr
            # Names are resolved now, for the advertised address's route and the first
            # attempt; the join policy has them resolved again before each retry.
            seeds = await self._resolve_seeds(config.seeds)
            host, port = config.advertise or (transport.addr[0], 0)
            if config.advertise is None:
                host = advertise_host(host, transport.udp.family, [h for h, _ in seeds])
            self.advertise_addr = (host, port or transport.addr[1])
            now = trio.current_time()
            protocol = self._protocol = Protocol(
                protocol_config,
                self.name,
                self.advertise_addr,
                rng=random.Random(os.urandom(16)),
                now=now,
                wall_offset=self._wall_clock() - now,
                incarnation=snapshot.incarnation if snapshot is not None else None,
                meta=config.meta,
                entries=snapshot.entries if snapshot is not None else (),
                preservation=config.self_preservation,
            )
            self._stale.attach(protocol.preservation)
            if config.data_dir is not None:
                self._durable = DurableStore(
                    config.data_dir, self.name, protocol, self._checks, generation
                )
            trio.lowlevel.add_instrument(self.stalls)
            async with trio.open_nursery() as nursery:
                # Running before any input can arrive: effects are never
                # dropped while the core lives (a lost timer would stall it).
                self._nursery = nursery
                self._running = True
                nursery.start_soon(transport.send_loop)
                transport.on_refused = self._on_refused
                nursery.start_soon(transport.receive_loop, self._on_datagram)
                await nursery.start(transport.serve_streams, self._on_frame)
                nursery.start_soon(self._timers.run, self._on_timer)
                self._apply(protocol.start(self._core_now()))
                await nursery.start(self._checks.run)
                if snapshot is not None:
                    await self._restore_checks(snapshot)
                if self._durable is not None:
                    # Compacts at once: the file must hold this life's incarnation
                    # before anything else, or a crash now would let the next
                    # life start at the incarnation this one already used.
                    self._durable.start(nursery)
                while protocol.restoring:
                    # The snapshot's instances are restamped a chunk per MERGE step (the
                    # timer task); reads and the join wait for all of them, the loop does not.
                    await trio.lowlevel.checkpoint()
                if config.http is not None or config.dns is not None:
                    from gossip_registry.api.serve import serve_interfaces  # lazy: optional deps

                    self.http_addr, self.dns_addr = await serve_interfaces(nursery, self)
                known = [] if snapshot is None else snapshot.members
                seeds = [s for s in seeds if s not in self._own_addrs()]
                remembered = [(h, p) for n, h, p in known if n != self.name]
                # As configured, for messages: names are shown, our own addresses are not.
                self._seeds = [
                    *(s for s in config.seeds if s not in self._own_addrs()),
                    *remembered,
                ]
                if self._seeds:
                    # The core's policy: every seed plus a few remembered members, retried.
                    self._apply(
                        protocol.join_at_start(
                            self._core_now(),
                            seeds,
                            remembered,
                            tag=next(self._join_tags),
                            resolve=has_names(config.seeds),
                        )
                    )
                else:
                    logger.info("node %s has no seeds: it starts a cluster of its own", self.name)
                logger.info(
                    "node %s listening on %s:%d (advertising %s:%d, incarnation %d)",
                    self.name,
                    *self.gossip_addr,
                    *self.advertise_addr,
                    self._incarnation,
                )
                task_status.started(self)
        finally:
            with contextlib.suppress(KeyError):  # added only once the core was built
                trio.lowlevel.remove_instrument(self.stalls)
            self._running = False
            self._nursery = None
            for wait in self._join_waits.values():
                wait.done.set()
            self._leave_drained.set()
            self._index.close()
            self.events.close()
            try:
                if self._durable is not None:
                    await self._durable.save_last()
            finally:
                transport.close()
                self._stopped.set()
                logger.info("node %s stopped", self.name)

    def stop(self) -> None:
        """Stop at once (like a crash to the others, who will declare us dead); idempotent."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until a push-pull we started has completed (the node holds the cluster's table).

        ``async with Node(...)`` already waits (``sync_timeout``); this is for
        ``nursery.start(node.run)`` and for a wait of another length.

        Returns:
            True once synced (at once if it already was), False after ``timeout``
            seconds without a sync (no seed answered, or there are none).
        """
        with trio.move_on_after(timeout):
            await self._synced.wait()
        return self._synced.is_set()

    @property
    def synced(self) -> bool:
        """Whether a push-pull we started has completed since the node started."""
        return self._synced.is_set()

    @property
    def joining(self) -> bool:
        """Whether the node has seeds and has not synced with any yet (its table may be partial)."""
        return bool(self._seeds) and not self._synced.is_set()

    async def wait_stopped(self) -> None:
        """Return once the node has stopped and its sockets are closed."""
        await self._stopped.wait()

    async def leave(self) -> None:
        """Graceful leave: broadcast left, wait up to leave_timeout, then stop.

        The core decides when the leave has spread (``LeaveDrained``: gossiped
        its full retransmit count, or nobody to tell, or leave_timeout is
        up); the node then lets the datagrams leave the socket, within the
        same leave_timeout. Returns once the node has stopped.
        """
        protocol = self._require_running()
        transport = self._transport
        assert transport is not None
        deadline = trio.current_time() + self.config.leave_timeout
        self._apply(protocol.leave(self._core_now(), self.config.leave_timeout))
        logger.info("node %s leaving", self.name)
        await self._leave_drained.wait()
        with trio.move_on_at(deadline):
            await transport.drain()
        self.stop()
        await self._stopped.wait()

    # --------------------------------------------------------- membership

    async def join(self, seeds: Sequence[Address]) -> int:
        """Push-pull with each seed; returns how many answered.

        Waits at most ``tcp_timeout`` (plus a second of slack) for the replies.
        A seed whose host is a name is asked at every address it resolves to.
        Our own addresses are skipped.
        """
        protocol = self._require_running()
        own = self._own_addrs()
        found = await self._resolve_seeds([(str(h), int(p)) for h, p in seeds])
        targets = [s for s in found if s not in own]
        if not targets:
            return 0
        tag = next(self._join_tags)
        wait = self._join_waits[tag] = _JoinWait()
        try:
            self._apply(protocol.join(self._core_now(), targets, tag=tag))
            with trio.move_on_after(self.config.tcp_timeout + 1.0):
                await wait.done.wait()
        finally:
            self._join_waits.pop(tag, None)
        return wait.answered

    def _own_addrs(self) -> set[Address]:
        return {self.gossip_addr, self.advertise_addr}

    async def _resolve_seeds(self, seeds: Sequence[Address]) -> list[Address]:
        """Every address of ``seeds`` now (names resolved, ``runtime/seeds.py``), in our family."""
        transport = self._transport
        assert transport is not None
        family = transport.udp.family
        return await resolve_seeds(
            seeds, family=socket.AF_INET if family == socket.AF_INET else socket.AF_UNSPEC
        )

    async def _rejoin_resolved(self, tag: int) -> None:
        """Answer the core's ``ResolveSeeds``: the names once more, for the join's next attempt."""
        found = await self._resolve_seeds(self.config.seeds)
        protocol = self._require_running()
        targets = [s for s in found if s not in self._own_addrs()]
        self._apply(protocol.join_resolved(self._core_now(), tag, targets))

    def _joined(self, result: JoinResult) -> None:
        """Log a join attempt's outcome (the core decides on retries) and wake its caller."""
        if result.retry_in is not None:
            logger.warning(
                "no seed answered (attempt %d); retrying in %.0fs", result.attempt, result.retry_in
            )
        elif result.answered:
            logger.info("joined through %d of %d seeds", result.answered, result.asked)
        elif result.asked:
            logger.warning("gave up joining: none of %d seeds answered", result.asked)
        wait = self._join_waits.get(result.tag)
        if wait is not None:
            wait.finish(result)

    def members(self) -> list[MemberView]:
        """Every member we know (ourselves included, dead and left ones until reaped), by name."""
        protocol = self._protocol_or_raise()
        now = trio.current_time()
        views = []
        for r in sorted(protocol.members, key=lambda r: r.name):
            since = protocol.members.since(r.name)
            gone_for = None if since is None else max(0.0, now - since)
            views.append(
                MemberView(r.name, r.addr[0], r.addr[1], r.state, r.incarnation, r.meta, gone_for)
            )
        return views

    def member_changes(self) -> dict[str, float]:
        """Member name -> seconds since this node saw its state change (members it has seen
        change since it started; the others have not changed since)."""
        now = trio.current_time()
        return {name: now - at for name, at in self._member_changed.items()}

    def peer_syncs(self) -> dict[Address, tuple[float, bool]]:
        """Peer address -> (seconds since our last completed push-pull with it, whether it
        held the same versions as we did then): how far this node's table agrees with others'."""
        now = trio.current_time()
        return {addr: (now - at, agreed) for addr, (at, agreed) in self._peer_syncs.items()}

    def _prune_views(self) -> None:
        """Forget reaped members' times once the maps outgrow the member list (amortised O(1))."""
        members = self._protocol_or_raise().members
        bound = 2 * len(members) + 16
        if len(self._member_changed) > bound:
            self._member_changed = {
                k: v for k, v in self._member_changed.items() if members.get(k) is not None
            }
        if len(self._peer_syncs) > bound:
            addrs = {r.addr for r in members}
            self._peer_syncs = {k: v for k, v in self._peer_syncs.items() if k in addrs}

    def force_leave(self, name: str) -> None:
        """Mark dead member ``name`` left here and on every peer (Consul's force-leave).

        Raises:
            KeyError: no member ``name``.
            ValueError: it is this node, or not dead.
            RuntimeError: the node is not running.
        """
        protocol = self._require_running()
        self._apply(protocol.force_leave(self._core_now(), name))
        logger.info("member %s forced to leave", name)

    # ------------------------------------------------------------ registry

    async def register(
        self,
        service: str,
        *,
        instance_id: str | None = None,
        address: str | None = None,
        port: int,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        weight: int = 1,
        status: Health = Health.PASSING,
        checks: Sequence[CheckSpec] = (),
    ) -> Entry:
        """Register an instance owned by this node; returns once it is in the local
        table, queued for gossip and, with a ``data_dir``, on disk. ``instance_id`` defaults to
        ``<service>-<8 hex digits>``; ``address`` to our advertised host.
        Registering an existing id of ours again overwrites it, and replaces
        its checks.

        With ``checks`` the node runs them and the instance's status is the
        worst of theirs (``status`` is ignored); they start critical, so the
        instance is discovered once they pass (see ``registry/health.py``).

        Raises:
            ValueError: invalid fields (the message names the field).
            DurabilityError: it could not be written to disk, and was undone.
            RuntimeError: the node is not running.
        """
        protocol = self._require_running()
        if instance_id is None:
            instance_id = f"{service}-{uuid4().hex[:8]}"
        if address is None:
            address = self.advertise_addr[0]
        meta = {} if meta is None else meta
        check_registration(service, instance_id, address, port, tags, meta, weight)
        try:
            health = Health(status)
        except ValueError:
            raise ValueError(f"status: must be one of {[h.value for h in Health]}") from None
        specs = admit_checks(
            (service, instance_id), checks, self._checks, self.config.max_checks_per_node
        )
        states = initial_states(specs)
        written = (*states, *self._maintenance.states((service, instance_id)))
        if written:
            health = worst(s.status for s in written)
        undo = self._undo_for((service, instance_id))
        try:
            entry, effects = protocol.register(
                self._core_now(),
                service,
                instance_id,
                address,
                port,
                tags=tuple(tags),
                meta=dict(meta),
                weight=weight,
                status=health,
                checks=written,
            )
        except ValueError as exc:
            raise ValueError(f"registration: {exc}") from None
        self._apply(effects)
        self._checks.replace(entry.key, specs, states)
        await self._make_durable(Put(entry, specs), undo)
        return entry

    async def deregister(self, instance_id: str, *, service: str | None = None) -> Entry | None:
        """Deregister one of this node's instances by id; None if it had none.

        Only this node's own live instances are considered (only the owner
        may delete an entry).

        Raises:
            ValueError: the id is registered under several services here;
                pass ``service`` to say which.
            RuntimeError: the node is not running.
        """
        protocol = self._require_running()
        try:
            key = self._own_key(protocol, instance_id, service)
        except KeyError:
            return None
        undo = self._undo_for(key)
        self._checks.remove(key)
        self._maintenance.forget(key)
        entry, effects = protocol.deregister(self._core_now(), key)
        self._apply(effects)
        await self._make_durable(Delete(key), undo)
        return entry

    async def set_maintenance(
        self,
        enable: bool,
        reason: str = "",
        *,
        instance_id: str | None = None,
        service: str | None = None,
    ) -> list[Entry]:
        """Turn maintenance mode on or off for one of our instances, or (no ``instance_id``)
        for the whole node; returns the instances written again (turning it on: those
        that now carry the maintenance check).

        In maintenance an instance reads critical, with ``reason`` as the output
        of its maintenance check, so discovery stops sending callers to it while it
        stays registered (``runtime/maintenance.py``). Node-wide maintenance also covers
        instances registered while it is on.

        Raises:
            KeyError: no instance ``instance_id`` of ours (of ``service``, if given).
            NoRoom: turning it on for ``instance_id``, whose entry cannot carry one
                more check (a ValueError; node-wide maintenance skips such instances,
                and logs each).
            ValueError: the id is registered under several services here (pass
                ``service``), or ``reason`` is not a string.
            RuntimeError: the node is not running.
        """
        protocol = self._require_running()
        if not isinstance(reason, str):
            raise ValueError("reason: must be a string")
        if instance_id is None:
            keys = [e.key for e in protocol.own_entries()]
            self._maintenance.set_node(enable, reason)
        else:
            keys = [self._own_key(protocol, instance_id, service)]
            self._maintenance.set_instance(keys[0], enable, reason)
        for key in keys:
            self._on_check_change(key)
        current = (protocol.table.get(key) for key in keys)
        entries = [e for e in current if e is not None and not e.deleted]
        if not enable:
            return entries
        wanted = NODE_CHECK_ID if instance_id is None else SERVICE_CHECK_PREFIX + instance_id
        took = [e for e in entries if any(c.check_id == wanted for c in e.checks)]
        if instance_id is not None and entries and not took:
            self._maintenance.set_instance(keys[0], False, "")  # its rewrite was refused
            raise NoRoom(
                f"{instance_id}: no room for a maintenance check in its entry (it has "
                "the most checks an entry may carry, or is as large as a packet allows)"
            )
        return took

    def maintenance(self) -> dict[str, Any]:
        """``{"node": reason or None, "instances": {"service/id": reason}}``: what is in
        maintenance here."""
        instances = {f"{s}/{i}": reason for (s, i), reason in self._maintenance.instances().items()}
        return {"node": self._maintenance.node_reason, "instances": instances}

    def own_entries(self) -> list[Entry]:
        """This node's live instances (those it registered), in no particular order."""
        return self._protocol_or_raise().own_entries()

    def _own_key(self, protocol: Protocol, instance_id: str, service: str | None) -> EntryKey:
        matches = protocol.own_keys(instance_id, service)
        if not matches:
            raise KeyError(instance_id)
        if len(matches) > 1:
            services = sorted(s for s, _ in matches)
            raise ValueError(f"instance_id {instance_id!r} is in services {services}; pass service")
        return matches[0]

    def services(self) -> dict[str, int]:
        """Service name -> number of live instances (any health), stale ones included."""
        return self._stale.counts(self._protocol_or_raise().table.services())

    def health_counts(self) -> dict[str, dict[str, int]]:
        """Service name -> instances by status (passing, warning, critical), stale ones included.

        Visits every live instance: for the operator's table, not for a hot path.
        """
        protocol = self._protocol_or_raise()
        counts: dict[str, dict[str, int]] = {}
        for service in self.services():
            by_status = counts[service] = {str(h): 0 for h in Health}
            for entry in self._instances(protocol, service):
                by_status[str(entry.status)] += 1
        return counts

    def owners_of(self, instance_id: str, service: str | None = None) -> list[str]:
        """Nodes owning a live instance ``instance_id`` (of ``service`` if given), for errors.

        Without ``service`` it visits every live instance: a deregistration
        that failed pays for it, nothing else does.
        """
        table = self._protocol_or_raise().table
        services = [service] if service is not None else list(table.services())
        return sorted(
            {e.owner for name in services for e in table.live(name) if e.instance_id == instance_id}
        )

    def discover(
        self,
        service: str,
        *,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        passing_only: bool = True,
    ) -> list[Entry]:
        """Live instances of ``service`` having every tag and meta pair asked for, by id.

        During self-preservation this includes instances of members declared
        dead, kept as they were last seen; ``is_stale`` tells them apart.
        Each filter is a pass of its own, skipped when not asked for: the
        usual lookup (passing, no tag or meta) of a 100-instance service
        then takes a few microseconds (``scripts/bench_discovery.py``).
        """
        protocol = self._protocol_or_raise()
        entries = self._instances(protocol, service)
        if passing_only:
            passing = Health.PASSING  # looked up once: enum attribute access is slow per entry
            entries = [e for e in entries if e.status is passing]
        if tags:
            wanted_tags = set(tags)
            entries = [e for e in entries if wanted_tags.issubset(e.tags)]
        if meta:
            pairs = dict(meta).items()
            entries = [e for e in entries if all(e.meta.get(k) == v for k, v in pairs)]
        return entries

    async def watch(self, service: str) -> AsyncGenerator[list[Entry], None]:
        """Yield the current instance list, then the new list after every change.

        Lists hold every live instance of ``service`` whatever its health,
        sorted by id (stale ones included, as ``discover`` has them). Changes
        that happen while the consumer is busy are not lost: the next
        iteration yields at once with the latest list (several changes may be
        folded into that one list). Only changes to ``service`` wake this
        watcher. The iteration ends when the node stops.

        Raises:
            TooManyWaiters: ``max_waiters`` waits are already in progress.
        """
        protocol = self._protocol_or_raise()
        while self._running:
            seen = self._index.of(service)
            yield self._instances(protocol, service)
            await self._index.wait(service, seen)

    # ------------------------------------------- watches and self-preservation

    def index(self, service: str | None = None) -> int:
        """The index of ``service``'s last change, or of the catalog's (``services()``) for None.

        Indexes start at 1 and only grow while the node runs; they are this
        node's alone (see ``runtime/watch.py``).
        """
        return self._index.of(CATALOG if service is None else service)

    def members_index(self) -> int:
        """The index of the member list's last change."""
        return self._index.of(MEMBERS)

    def entries_index(self) -> int:
        """The index of the last change to any instance of any service (tags, checks too)."""
        return self._index.of(ENTRIES)

    async def wait_for_change(self, service: str | None, index: int, timeout: float) -> int:
        """Wait until ``index(service)`` is no longer ``index``, at most ``timeout`` seconds.

        Returns the index then (at once if it already differs, and when the
        node stops). Only changes to that service (or to the catalog, for
        None) wake the caller.

        Raises:
            TooManyWaiters: ``max_waiters`` waits are already in progress.
        """
        return await self._index.wait(CATALOG if service is None else service, index, timeout)

    async def wait_for_members_change(self, index: int, timeout: float) -> int:
        """``wait_for_change`` for the member list."""
        return await self._index.wait(MEMBERS, index, timeout)

    async def wait_for_entries_change(self, index: int, timeout: float) -> int:
        """``wait_for_change`` for every instance of every service (``entries_index``)."""
        return await self._index.wait(ENTRIES, index, timeout)

    def is_stale(self, entry: Entry) -> bool:
        """True if ``entry`` is served only because self-preservation kept it (owner dead)."""
        return self._stale.is_stale(entry)

    def stale_keys(self) -> set[EntryKey]:
        """Keys of every instance served stale now (empty outside self-preservation)."""
        return self._stale.keys()

    def _instances(self, protocol: Protocol, service: str) -> list[Entry]:
        return self._stale.instances(protocol.table.live(service), service)

    def status(self) -> dict[str, Any]:
        """name, incarnation, address, members by state, table digest (hex), counts, stats,
        and the journal's counters (None without a data dir)."""
        protocol = self._protocol_or_raise()
        counts = {s.label: 0 for s in MemberState}
        for record in protocol.members:
            counts[record.state.label] += 1
        stats: dict[str, int] = dict(protocol.stats)
        if self._transport is not None:
            stats.update(self._transport.stats)
        stats.update(self.stats)
        return {
            "name": self.name,
            "cluster": self.config.cluster,
            "incarnation": self._incarnation,
            "address": self.advertise_addr[0],
            "port": self.advertise_addr[1],
            "members": counts,
            "digest": f"{protocol.table.digest:016x}",
            "entries": protocol.table.live_count,
            "tombstones": protocol.table.tombstone_count,
            "stats": stats,
            "index": self._index.current,
            "waiters": self._index.waiters,
            "self_preservation": self._stale.status(),
            "event_loop": {**self.stalls.status(), "gc_freezes": self._heap.freezes},
            "durability": None if self._durable is None else self._durable.status(),
            "maintenance": self.maintenance(),
        }

    @property
    def protocol(self) -> Protocol:
        """The protocol core (for tests and diagnostics; mutate it only through the Node).

        Raises:
            RuntimeError: the node has not started yet.
        """
        return self._protocol_or_raise()

    @property
    def transport(self) -> Transport:
        """The bound sockets (for tests and diagnostics).

        Raises:
            RuntimeError: the node has not started yet.
        """
        if self._transport is None:
            raise RuntimeError(f"node {self.name} has not started")
        return self._transport

    @property
    def running(self) -> bool:
        return self._running

    # ------------------------------------------------------------ driving

    def _core_now(self) -> float:
        """``now`` for a call into the core, which is first told the wall clock's reading."""
        now = trio.current_time()
        if self._protocol is not None:
            self._protocol.observe_wall(now, self._wall_clock())
        return now

    def _protocol_or_raise(self) -> Protocol:
        if self._protocol is None:
            raise RuntimeError(f"node {self.name} has not started")
        return self._protocol

    def _require_running(self) -> Protocol:
        protocol = self._protocol_or_raise()
        if not self._running:
            raise RuntimeError(f"node {self.name} is not running")
        return protocol

    # The protocol's work runs KI-protected: a Ctrl-C that lands in it is raised
    # in the program's main task instead (trio defers it there), which then
    # leaves through __aexit__. Raised in a node task, it would crash the node
    # and peers would declare it dead instead of seeing it leave.

    @trio.lowlevel.enable_ki_protection
    def _on_datagram(self, src: Address, data: bytes) -> None:
        assert self._protocol is not None
        self.traffic.count("in", "udp", data)
        self._apply(self._protocol.handle_packet(self._core_now(), src, data))

    @trio.lowlevel.enable_ki_protection
    def _on_refused(self, addr: Address) -> None:
        """A peer's host refused us: evidence its process is gone (issue 17)."""
        assert self._protocol is not None
        self._apply(self._protocol.handle_refused(self._core_now(), addr))

    @trio.lowlevel.enable_ki_protection
    def _on_frame(self, src: Address, data: bytes) -> bytes | None:
        assert self._protocol is not None
        self.traffic.count("in", "tcp", data)
        if is_keyring_frame(data):  # key management is the node's, not the protocol's
            keyring_reply = None if self._encryption is None else self._encryption.answer(data)
            if keyring_reply is None:
                self.stats["keyring_refused"] += 1
            return keyring_reply
        reply, effects = self._protocol.handle_stream(self._core_now(), src, data)
        if reply is not None:
            self.traffic.count("out", "tcp", reply)
        self._apply(effects)
        return reply

    @trio.lowlevel.enable_ki_protection
    def _on_timer(self, now: float, timer: Timer) -> None:
        assert self._protocol is not None
        self._protocol.observe_wall(now, self._wall_clock())
        self._apply(self._protocol.handle_timer(now, timer))

    def _apply(self, effects: list[Effect]) -> None:
        """Carry out one batch of effects, in order. Never blocks."""
        if not self._running:
            return  # stopping: the sockets and the nursery are going away
        transport, nursery = self._transport, self._nursery
        assert transport is not None
        assert nursery is not None
        for effect in effects:
            self.traffic.sent(effect)
            if isinstance(effect, Send):
                transport.send_datagram(effect.addr, effect.data)
            elif isinstance(effect, SetTimer):
                self._timers.push(effect.at, effect.timer)
            elif isinstance(effect, StreamRequest):
                nursery.start_soon(self._stream_request, effect)
            elif isinstance(effect, StreamSend):
                nursery.start_soon(transport.send_stream, effect.addr, effect.data)
            elif isinstance(effect, Notify):
                self._notify(effect.event)
        assert self._protocol is not None
        self._heap.table_changed(self._protocol.versions_taken_in)

    @trio.lowlevel.enable_ki_protection
    async def _stream_request(self, request: StreamRequest) -> None:
        assert self._transport is not None
        assert self._protocol is not None
        reply = await self._transport.request(request.addr, request.data)
        if reply is not None:
            self.traffic.count("in", "tcp", reply)
        self._apply(self._protocol.handle_stream_reply(self._core_now(), request.token, reply))

    def _notify(self, event: MemberChanged | EntryChanged | DriverEvent) -> None:
        if isinstance(event, IncarnationChanged):
            self._incarnation = event.incarnation
            if event.previous is not None:
                logger.info("node %s refuted: incarnation %d", self.name, event.incarnation)
            if self._durable is not None:
                self._durable.incarnation_changed(event)
            return
        if isinstance(event, Synced):
            if not self._synced.is_set():
                logger.info("node %s synced with %s:%d", self.name, *event.addr)
                self._synced.set()
            self._peer_syncs[event.addr] = (trio.current_time(), event.agreed)
            self._prune_views()
            return
        if isinstance(event, JoinResult):
            self._joined(event)
            return
        if isinstance(event, ResolveSeeds):
            assert self._nursery is not None  # effects are applied only while running
            self._nursery.start_soon(self._rejoin_resolved, event.tag)
            return
        if isinstance(event, LeaveDrained):
            self._leave_drained.set()
            return
        if isinstance(event, StaleChanged):
            self._stale.changed(event)
            return
        self.events.notify(event)
        if isinstance(event, MemberChanged):
            logger.info(
                "member %s is now %s (incarnation %d)",
                event.name,
                event.state.label,
                event.incarnation,
            )
            self._index.changed((MEMBERS,))
            self._member_changed[event.name] = trio.current_time()
            self._prune_views()
            if self._durable is not None:  # the snapshot's member list, saved lazily
                self._durable.lazy_change()
            return
        entries = [e for e in (event.old, event.new) if e is not None]
        service = entries[0].service  # one key, so one service
        # The catalog (service -> count) changes only when an instance comes or goes.
        self._index.changed(
            (service, ENTRIES, CATALOG)
            if event.old is None or event.new is None
            else (service, ENTRIES)
        )
        if event.new is None and not self.protocol.table.has_live(service):
            self._index.forget(service)  # peers pick service names: keep no index per gone one
        if self._durable is not None and any(e.owner == self.name for e in entries):
            self._durable.lazy_change()

    # ------------------------------------------------------------ keyring

    async def keyring_operation(self, op: str, key: str | None = None) -> dict[str, Any]:
        """Run a keyring operation (list, install, use, remove) here and on every active member.

        Returns per node name ``{"ok", "error", "primary", "keys"}`` (keys as
        fingerprints, the primary first); a node that did not answer is an
        error, never left out.

        Raises:
            ValueError: gossip encryption is off here, or the op or key is invalid.
            RuntimeError: the node is not running.
        """
        protocol = self._require_running()
        if self._encryption is None:
            raise ValueError("gossip encryption is not enabled on this node")
        keys = self._encryption.operable_keys()
        members = [
            (r.name, r.addr)
            for r in protocol.members
            if r.name != self.name and r.state in ACTIVE_STATES
        ]
        return await keys.run_everywhere(op, key, self.name, members, self.transport.request)

    # -------------------------------------------------------- health checks

    async def _restore_checks(self, snapshot: Snapshot) -> None:
        """Run again the checks of the entries the snapshot gave back, from their last states,
        and take up their maintenance again, a chunk per step: 20,000 in one step blocked the
        event loop for 0.7 s (issue 15)."""
        protocol = self._protocol_or_raise()
        checks = snapshot.checks
        for start in range(0, len(checks), CHECK_RESTORE_CHUNK):
            chunk = checks[start : start + CHECK_RESTORE_CHUNK]
            own = {key: e for key, _ in chunk if (e := protocol.own_entry(key)) is not None}
            self._checks.restore(own, chunk)
            await trio.lowlevel.checkpoint()
        entries = protocol.own_entries()
        for start in range(0, len(entries), CHECK_RESTORE_CHUNK):
            self._maintenance.recover(entries[start : start + CHECK_RESTORE_CHUNK])
            await trio.lowlevel.checkpoint()

    def _on_check_change(self, key: EntryKey) -> None:
        """Write the instance again with its checks' new states (it gossips like any write)."""
        protocol = self._protocol
        if protocol is None:
            self._checks.remove(key)
            return
        try:
            states = (*self._checks.states(key), *self._maintenance.states(key))
            entry, effects = protocol.update_checks(self._core_now(), key, states)
        except ValueError as exc:  # it fitted at registration with empty outputs: a bug
            logger.error("could not write new check states of %s/%s: %s", *key, exc)
            return
        self._apply(effects)
        if entry is None:
            self._checks.remove(key)  # its instance went away meanwhile
            return
        logger.info("%s/%s is now %s", *key, entry.status)

    def _write_back(
        self, protocol: Protocol, entry: Entry, status: Health, states: Sequence[CheckState]
    ) -> None:
        """Write ``entry``'s content again (a new version) with this status and these checks."""
        _, effects = protocol.rewrite(self._core_now(), entry, status=status, checks=states)
        self._apply(effects)

    def _on_check_deregister(self, key: EntryKey) -> None:
        protocol = self._protocol
        if protocol is None or not self._running:
            return
        logger.warning("deregistering %s/%s: critical longer than its deregister_after", *key)
        self._maintenance.forget(key)
        _, effects = protocol.deregister(self._core_now(), key)
        self._apply(effects)
        if self._durable is not None:  # nobody was promised it: no wait, no undo
            self._durable.record_lazily(Delete(key))

    # ---------------------------------------------------------- durability

    async def _make_durable(self, record: Record, undo: Callable[[], None]) -> None:
        """Wait until ``record`` is on disk (at once without a data dir).

        Raises:
            DurabilityError: it could not be written; ``undo`` has run.
        """
        if self._durable is not None:
            await self._durable.commit(record, undo)

    def _undo_for(self, key: EntryKey) -> Callable[[], None]:
        """What puts ``key`` back as it is now (our live entry or nothing, and its checks)."""
        protocol = self._protocol_or_raise()
        previous = protocol.table.get(key)
        if previous is not None and (previous.deleted or previous.owner != self.name):
            previous = None
        specs, states = self._checks.specs_of(key), self._checks.states(key)

        def undo() -> None:
            if not self._running:
                return
            if previous is None:
                self._checks.remove(key)
                _, effects = protocol.deregister(self._core_now(), key)
                self._apply(effects)
            else:
                self._write_back(protocol, previous, previous.status, previous.checks)
                self._checks.replace(key, specs, states)

        return undo

    async def update_ttl(self, check_id: str, status: Health, output: str = "") -> None:
        """A TTL check's report (pass, warn or fail, with an optional reason).

        Raises:
            KeyError: no check ``check_id`` runs on this node.
            ValueError: it is not a TTL check, or ``status`` is not a Health.
            RuntimeError: the node is not running.
        """
        self._require_running()
        try:
            health = Health(status)
        except ValueError:
            raise ValueError(f"status: must be one of {[h.value for h in Health]}") from None
        if not isinstance(output, str):
            raise ValueError("output: must be a string")
        self._checks.report_ttl(check_id, health, output)

    def check_counts(self) -> dict[str, int]:
        """This node's checks by status (``passing``, ``warning``, ``critical``), for metrics."""
        return self._checks.counts()


@asynccontextmanager
async def open_node(config: NodeConfig) -> AsyncIterator[Node]:
    """``async with open_node(config) as node:``, the same as ``async with Node(config)``."""
    async with Node(config) as node:
        yield node
