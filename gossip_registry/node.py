"""The trio node runtime: drives the sans-I/O protocol core over real sockets.

Theory of operation: ``Protocol`` (``core/protocol.py``) is the whole
protocol of one node and performs no I/O; every entry point returns effects
(``core/effects.py``). ``Node`` is the thin shell that feeds it and carries
the effects out, in order:

- ``Send``: queued on the transport's sender task (``transport.py``), so
  applying effects never waits on a socket.
- ``SetTimer``: pushed on a heap serviced by one task that sleeps in a
  cancel scope whose deadline is the earliest timer; an earlier timer moves
  the deadline. No polling. Timers are never cancelled: the core ignores
  stale ones by token.
- ``StreamRequest`` / ``StreamSend``: one task each in the node's nursery
  (connect, write a frame, read the reply, report back).
- ``Notify``: published on the event stream (``events.py``), wakes watchers
  of the affected service (``watch.py``), logs member changes, feeds
  self-preservation (``stale_entries.py``), and wakes the snapshot writer
  when our own entries change.

``now`` is always ``trio.current_time()``, so ``trio.testing.MockClock``
drives the node as it drives trio. Everything the node runs lives in one
nursery opened by ``run``: the UDP receive and send loops, the TCP accept
loop and its connection tasks, the timer task, stream tasks, the
self-preservation deadline task, the health checks (``health.py``), the
snapshot writer (``snapshot_writer.py``), the background join, the HTTP API
and DNS (``api/serve.py``). Cancelling ``run`` stops all of it; its
``finally`` writes the last snapshot and closes both sockets.

Gossip encryption (``keyring.py``, set up by ``gossip_encryption.py``): with
a keyring the transport seals and opens every datagram and frame, the core
leaves ``SEAL_OVERHEAD`` bytes of room in each packet, and keyring frames
from peers are answered here (``key_management.py``) before the core sees
them.

Public methods are called from tasks in the same trio run (the embedding
API, the HTTP API); ``threaded.py`` offers them to plain threads. What they
are given is checked before it reaches the core (``registration.py``), so a
write peers would refuse fails at the caller, naming the field.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import uuid4

import trio

from gossip_registry.advertise import advertise_host
from gossip_registry.core.codec import CodecError, check_update, is_keyring_frame
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import (
    Effect,
    EntryChanged,
    MemberChanged,
    Notify,
    Send,
    SetTimer,
    StreamRequest,
    StreamSend,
    Timer,
)
from gossip_registry.core.messages import ACTIVE_STATES, Address, Alive, MemberState
from gossip_registry.core.protocol import Protocol
from gossip_registry.events import EventBus
from gossip_registry.faultinject import unsafe_node_faults
from gossip_registry.gossip_encryption import GossipEncryption
from gossip_registry.health import CheckRunner
from gossip_registry.keyring import SEAL_OVERHEAD, Keyring
from gossip_registry.owned_nursery import close_owned_nursery
from gossip_registry.registration import admit_checks, check_registration
from gossip_registry.registry.entry import Entry, EntryKey, Health
from gossip_registry.registry.health import CheckSpec, initial_states, worst
from gossip_registry.registry.preservation import PreservationConfig
from gossip_registry.snapshot import Snapshot, load_snapshot
from gossip_registry.snapshot_writer import SnapshotWriter
from gossip_registry.stale_entries import StaleEntries
from gossip_registry.traffic import WireTraffic
from gossip_registry.transport import DEFAULT_TCP_TIMEOUT, Transport, open_transport
from gossip_registry.watch import CATALOG, MEMBERS, ChangeIndex

__all__ = ["MemberView", "Node", "NodeConfig", "open_node"]

logger = logging.getLogger("gossip_registry")

JOIN_ATTEMPTS = 6
"""Background joins tried (with doubling backoff) while no seed answers: peers may start later."""
JOIN_BACKOFF = 1.0
"""First delay between background join attempts, seconds; doubles up to JOIN_BACKOFF_MAX."""
JOIN_BACKOFF_MAX = 16.0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything one node process needs. Built by hand when embedding, or from cluster.toml.

    ``bind`` is where the UDP socket and the TCP listener (same port) bind;
    port 0 picks a free port. ``advertise`` is what peers are told to use
    (NAT, containers); it defaults to the bound address, and an advertised
    port of 0 means the bound port. ``http`` binds the HTTP API when set.
    ``data_dir`` holds the snapshot; None keeps nothing.
    """

    name: str
    bind: Address = ("127.0.0.1", 0)
    advertise: Address | None = None
    http: Address | None = None
    data_dir: Path | None = None
    seeds: tuple[Address, ...] = ()
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    meta: Mapping[str, str] = field(default_factory=dict)
    cluster: str = "default"
    leave_timeout: float = 3.0
    """Bounded wait for a graceful leave to spread before the node stops."""
    tcp_timeout: float = DEFAULT_TCP_TIMEOUT
    """Seconds for one whole TCP exchange (connect, request, reply); memberlist's TCPTimeout."""
    # --- watches and self-preservation
    max_waiters: int = 20_000
    """Most concurrent blocking waits (watches, blocking queries); the next is refused (429)."""
    self_preservation: PreservationConfig = field(default_factory=PreservationConfig)
    """When a mass death is doubted and the dead members' entries are kept, flagged stale."""
    max_checks_per_node: int = 1000
    """Health checks this node runs at most, over all its instances (each is a task and,
    every interval, a probe); registrations beyond it are refused."""
    # --- HTTP API access (api/auth.py); repr=False keeps tokens out of logs and tracebacks.
    read_token: str | None = field(default=None, repr=False)
    """Bearer token for reads of the HTTP API; None leaves reads open."""
    write_token: str | None = field(default=None, repr=False)
    """Bearer token for writes (and key and check operations); None leaves writes open."""
    tls_cert: Path | None = None
    """PEM certificate (chain) for HTTPS on the HTTP API; set together with ``tls_key``."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``."""
    dns: Address | None = None
    """Binds the DNS interface (UDP and TCP, same port) when set; see ``api/dns_answer.py``."""
    dns_domain: str = "registry."
    """The zone DNS answers for: NAME.service.DOMAIN, NODE.node.DOMAIN."""
    dns_ttl: float = 5.0
    """Seconds resolvers may cache DNS answers (0..86400): staleness traded for query load."""
    unsafe_test_faults: Path | None = None
    """Chaos testing only: drop packets by the rules in this file (``faultinject.py``).
    Set only by the agent's ``--unsafe-test-faults`` flag, never from cluster.toml."""
    # --- gossip encryption (keyring.py)
    keyring: Keyring | None = None
    """Gossip keys (AES-256-GCM); None gossips in plaintext. ``<data_dir>/keyring.json``,
    when it exists, wins: it holds the keys as rotated since."""
    gossip_allow_plaintext: bool = False
    """Also accept unsealed gossip (only while moving a cluster to encryption)."""
    gossip_encrypt_outgoing: bool = True
    """Seal what we send; off only in the first step of a migration (needs allow_plaintext)."""


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member as the API shows it."""

    name: str
    address: str
    port: int
    state: MemberState
    incarnation: int
    meta: Mapping[str, str]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "state": self.state.label,
            "incarnation": self.incarnation,
            "meta": dict(self.meta),
        }


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
            # A handler may arm timers already due (at == now): they fire in this pass.
            while heap and heap[0][0] <= now:
                _, _, timer = heapq.heappop(heap)
                fire(now, timer)


class _JoinWait:
    """The sync streams one ``join`` started, and how many seeds answered."""

    def __init__(self, tokens: set[int]) -> None:
        self.pending = tokens
        self.answered = 0
        self.done = trio.Event()
        if not tokens:
            self.done.set()

    def finish(self, token: int, answered: bool) -> None:
        self.pending.discard(token)
        self.answered += answered
        if not self.pending:
            self.done.set()


class Node:
    """One registry node in a trio program.

    ``async with Node(config) as node:`` starts it in a nursery of its own
    (UDP+TCP transport, protocol timers, anti-entropy, HTTP API if
    configured) and stops it cleanly when the block exits (or on
    cancellation): no task or socket is left behind. Alternatively
    ``await nursery.start(node.run)`` runs it in the caller's nursery.

    A Node object runs once; build a new one to restart.

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

    def __init__(self, config: NodeConfig) -> None:
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
        # --- gossip encryption: the keyring the node runs with, and what it accepts.
        self._encryption = GossipEncryption.from_config(
            config.keyring,
            config.data_dir,
            allow_plaintext=config.gossip_allow_plaintext,
            encrypt_outgoing=config.gossip_encrypt_outgoing,
        )
        self.config = config
        self.name = config.name
        self.gossip_addr = config.bind
        self.advertise_addr = config.advertise or config.bind
        self.http_addr = None
        self.dns_addr = None
        self.dns_stats = {}
        self._protocol: Protocol | None = None
        self._transport: Transport | None = None
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._running = False
        self._stopped = trio.Event()
        self._timers = _TimerHeap()
        self._join_waits: dict[int, _JoinWait] = {}
        self._progress: trio.Event | None = None
        # Watches: the index of each view, and self-preservation (both in their own modules).
        self._index = ChangeIndex(config.max_waiters)
        self._stale = StaleEntries(config.self_preservation, self._index)
        # Snapshot writes (snapshot_writer.py); only with data_dir, once the core exists.
        self._snapshots: SnapshotWriter | None = None
        # The nursery opened by __aenter__.
        self._context: trio.Nursery | None = None
        self._context_manager: Any = None
        # Health checks of our own instances (health.py).
        self._checks = CheckRunner(
            on_change=self._on_check_change,
            on_deregister=self._on_check_deregister,
            rng=random.Random(os.urandom(16)),
        )
        # Introspection (metrics.py, events.py): wire traffic by type, the event stream.
        self.traffic = WireTraffic()
        self.events = EventBus()

    # ------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Node:
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        try:
            await nursery.start(self.run)
        except BaseException:
            nursery.cancel_scope.cancel()
            await manager.__aexit__(None, None, None)
            raise
        self._context, self._context_manager = nursery, manager
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        nursery, manager = self._context, self._context_manager
        self._context = self._context_manager = None
        assert nursery is not None, "__aexit__ without __aenter__"
        return await close_owned_nursery(nursery, manager, exc_type, exc, tb)

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
        if config.data_dir is not None:
            snapshot = await trio.to_thread.run_sync(load_snapshot, config.data_dir, self.name)
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
        try:
            # --- gossip encryption: seal below the protocol, leave room in each packet.
            if encryption is not None:
                transport.seal = encryption.seal
                if encryption.seal.encrypt_outgoing:
                    protocol_config = replace(protocol_config, seal_overhead=SEAL_OVERHEAD)
            self._transport = transport
            self.gossip_addr = transport.addr
            host, port = config.advertise or (transport.addr[0], 0)
            if config.advertise is None:
                host = advertise_host(host, transport.udp.family)
            self.advertise_addr = (host, port or transport.addr[1])
            now = trio.current_time()
            protocol = self._protocol = Protocol(
                protocol_config,
                self.name,
                self.advertise_addr,
                rng=random.Random(os.urandom(16)),
                now=now,
                wall_offset=time.time() - now,
                incarnation=snapshot.incarnation if snapshot is not None else None,
                meta=config.meta,
                entries=snapshot.entries if snapshot is not None else (),
            )
            if config.data_dir is not None:
                self._snapshots = SnapshotWriter(config.data_dir, self.name, protocol, self._checks)
            async with trio.open_nursery() as nursery:
                # Running before any input can arrive: effects are never
                # dropped while the core lives (a lost timer would stall it).
                self._nursery = nursery
                self._running = True
                nursery.start_soon(transport.send_loop)
                nursery.start_soon(transport.receive_loop, self._on_datagram)
                await nursery.start(transport.serve_streams, self._on_frame)
                nursery.start_soon(self._timers.run, self._on_timer)
                nursery.start_soon(self._stale.run, protocol.members)
                self._apply(protocol.start(trio.current_time()))
                await nursery.start(self._checks.run)
                if snapshot is not None:
                    self._restore_checks(snapshot)
                if self._snapshots is not None:
                    # Write at once: the file must hold this life's incarnation
                    # before anything else, or a crash now would let the next
                    # life start at the incarnation this one already used.
                    self._snapshots.start(nursery)
                if config.http is not None or config.dns is not None:
                    from gossip_registry.api.serve import serve_interfaces  # lazy: optional deps

                    await serve_interfaces(nursery, self)
                seeds = list(config.seeds)
                if snapshot is not None:
                    seeds += [(h, p) for n, h, p in snapshot.members if n != self.name]
                if seeds:
                    nursery.start_soon(self._join_in_background, seeds)
                logger.info(
                    "node %s listening on %s:%d (advertising %s:%d, incarnation %d)",
                    self.name,
                    *self.gossip_addr,
                    *self.advertise_addr,
                    protocol.incarnation,
                )
                task_status.started(self)
        finally:
            self._running = False
            self._nursery = None
            for wait in self._join_waits.values():
                wait.done.set()
            self._index.close()
            self.events.close()
            try:
                if self._snapshots is not None:
                    await self._snapshots.save_last()
            finally:
                transport.close()
                self._stopped.set()
                logger.info("node %s stopped", self.name)

    def stop(self) -> None:
        """Stop at once (like a crash to the others, who will declare us dead); idempotent."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def wait_stopped(self) -> None:
        """Return once the node has stopped and its sockets are closed."""
        await self._stopped.wait()

    async def leave(self) -> None:
        """Graceful leave: broadcast left, wait up to leave_timeout, then stop.

        The wait ends as soon as the leave has been gossiped its full
        retransmit count (the broadcast queue is empty) and the datagrams
        have left the socket, or at once if we have no peers to tell.
        Returns once the node has stopped.
        """
        protocol = self._require_running()
        transport = self._transport
        assert transport is not None
        self._apply(protocol.leave(trio.current_time()))
        logger.info("node %s leaving", self.name)
        with trio.move_on_after(self.config.leave_timeout):
            while len(protocol.queue) and protocol.members.active_count > 1 and self._running:
                self._progress = progress = trio.Event()
                await progress.wait()
            await transport.drain()
        self.stop()
        await self._stopped.wait()

    # --------------------------------------------------------- membership

    async def join(self, seeds: Sequence[Address]) -> int:
        """Push-pull with each seed; returns how many answered.

        Waits at most ``tcp_timeout`` (plus a second of slack) for the replies.
        Our own addresses are skipped.
        """
        protocol = self._require_running()
        own = {self.gossip_addr, self.advertise_addr}
        targets = [s for s in dict.fromkeys((str(h), int(p)) for h, p in seeds) if s not in own]
        if not targets:
            return 0
        effects = protocol.join(trio.current_time(), targets)
        wait = _JoinWait({e.token for e in effects if isinstance(e, StreamRequest)})
        for token in wait.pending:
            self._join_waits[token] = wait
        self._apply(effects)
        try:
            with trio.move_on_after(self.config.tcp_timeout + 1.0):
                await wait.done.wait()
        finally:
            for token in wait.pending:
                self._join_waits.pop(token, None)
        logger.info("joined through %d of %d seeds", wait.answered, len(targets))
        return wait.answered

    async def _join_in_background(self, seeds: list[Address]) -> None:
        """Join at start, retrying with backoff while nobody answers (peers may start later)."""
        delay = JOIN_BACKOFF
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            if await self.join(seeds) > 0:
                return
            protocol = self._protocol
            if protocol is not None and protocol.members.active_count > 1:
                return  # someone found us meanwhile
            if attempt < JOIN_ATTEMPTS:
                logger.warning("no seed answered (attempt %d); retrying in %.0fs", attempt, delay)
                await trio.sleep(delay)
                delay = min(2 * delay, JOIN_BACKOFF_MAX)
        logger.warning("gave up joining: none of %d seeds answered", len(seeds))

    def members(self) -> list[MemberView]:
        """Every member we know (ourselves included, dead and left ones until reaped), by name."""
        protocol = self._protocol_or_raise()
        return [
            MemberView(r.name, r.addr[0], r.addr[1], r.state, r.incarnation, r.meta)
            for r in sorted(protocol.members, key=lambda r: r.name)
        ]

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
        table and queued for gossip. ``instance_id`` defaults to
        ``<service>-<8 hex digits>``; ``address`` to our advertised host.
        Registering an existing id of ours again overwrites it, and replaces
        its checks.

        With ``checks`` the node runs them and the instance's status is the
        worst of theirs (``status`` is ignored); they start critical, so the
        instance is discovered once they pass (see ``registry/health.py``).

        Raises:
            ValueError: invalid fields (the message names the field).
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
        if states:
            health = worst(s.status for s in states)
        try:
            entry, effects = protocol.register(
                trio.current_time(),
                service,
                instance_id,
                address,
                port,
                tags=tuple(tags),
                meta=dict(meta),
                weight=weight,
                status=health,
                checks=states,
            )
        except ValueError as exc:
            raise ValueError(f"registration: {exc}") from None
        self._apply(effects)
        self._checks.replace(entry.key, specs, states)
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
        matches = [
            e
            for e in protocol.own_entries()
            if e.instance_id == instance_id and (service is None or e.service == service)
        ]
        if not matches:
            return None
        if len(matches) > 1:
            services = sorted(e.service for e in matches)
            raise ValueError(f"instance_id {instance_id!r} is in services {services}; pass service")
        self._checks.remove(matches[0].key)
        entry, effects = protocol.deregister(trio.current_time(), matches[0].key)
        self._apply(effects)
        return entry

    def services(self) -> dict[str, int]:
        """Service name -> number of live instances (any health), stale ones included."""
        return self._stale.counts(self._protocol_or_raise().table.services())

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
        node's alone (see ``watch.py``).
        """
        return self._index.of(CATALOG if service is None else service)

    def members_index(self) -> int:
        """The index of the member list's last change."""
        return self._index.of(MEMBERS)

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

    def is_stale(self, entry: Entry) -> bool:
        """True if ``entry`` is served only because self-preservation kept it (owner dead)."""
        return self._stale.is_stale(entry)

    def stale_keys(self) -> set[EntryKey]:
        """Keys of every instance served stale now (empty outside self-preservation)."""
        return self._stale.keys()

    def _instances(self, protocol: Protocol, service: str) -> list[Entry]:
        return self._stale.instances(protocol.table.live(service), service)

    def status(self) -> dict[str, Any]:
        """name, incarnation, address, members by state, table digest (hex), counts, stats."""
        protocol = self._protocol_or_raise()
        counts = {s.label: 0 for s in MemberState}
        for record in protocol.members:
            counts[record.state.label] += 1
        stats: dict[str, int] = dict(protocol.stats)
        if self._transport is not None:
            stats.update(self._transport.stats)
        return {
            "name": self.name,
            "cluster": self.config.cluster,
            "incarnation": protocol.incarnation,
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

    def _protocol_or_raise(self) -> Protocol:
        if self._protocol is None:
            raise RuntimeError(f"node {self.name} has not started")
        return self._protocol

    def _require_running(self) -> Protocol:
        protocol = self._protocol_or_raise()
        if not self._running:
            raise RuntimeError(f"node {self.name} is not running")
        return protocol

    def _on_datagram(self, src: Address, data: bytes) -> None:
        assert self._protocol is not None
        self.traffic.count("in", "udp", data)
        self._apply(self._protocol.handle_packet(trio.current_time(), src, data))

    def _on_frame(self, src: Address, data: bytes) -> bytes | None:
        assert self._protocol is not None
        self.traffic.count("in", "tcp", data)
        if is_keyring_frame(data):  # key management is the node's, not the protocol's
            keyring_reply = None if self._encryption is None else self._encryption.answer(data)
            if keyring_reply is None:
                self._protocol.stats["keyring_refused"] += 1
            return keyring_reply
        reply, effects = self._protocol.handle_stream(trio.current_time(), src, data)
        if reply is not None:
            self.traffic.count("out", "tcp", reply)
        self._apply(effects)
        return reply

    def _on_timer(self, now: float, timer: Timer) -> None:
        assert self._protocol is not None
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
        self._stale.settle(self._protocol.members)
        if self._progress is not None:
            self._progress.set()
            self._progress = None
        if self._snapshots is not None:
            self._snapshots.effects_applied()

    async def _stream_request(self, request: StreamRequest) -> None:
        assert self._transport is not None
        assert self._protocol is not None
        reply = await self._transport.request(request.addr, request.data)
        if reply is not None:
            self.traffic.count("in", "tcp", reply)
        protocol = self._protocol
        completed = protocol.stats["syncs_completed"]
        effects = protocol.handle_stream_reply(trio.current_time(), request.token, reply)
        wait = self._join_waits.pop(request.token, None)
        if wait is not None:
            wait.finish(request.token, protocol.stats["syncs_completed"] > completed)
        self._apply(effects)

    def _notify(self, event: MemberChanged | EntryChanged) -> None:
        self.events.notify(event)
        if isinstance(event, MemberChanged):
            logger.info(
                "member %s is now %s (incarnation %d)",
                event.name,
                event.state.label,
                event.incarnation,
            )
            self._index.changed((MEMBERS,))
            self._stale.member_changed(event)
            return
        entries = [e for e in (event.old, event.new) if e is not None]
        service = entries[0].service  # one key, so one service
        self._stale.entry_changed(event)
        # The catalog (service -> count) changes only when an instance comes or goes.
        self._index.changed(
            (service, CATALOG) if event.old is None or event.new is None else (service,)
        )
        if event.new is None and not self.protocol.table.live(service):
            self._index.forget(service)  # peers pick service names: keep no index per gone one
        if self._snapshots is not None and any(e.owner == self.name for e in entries):
            self._snapshots.entries_changed()

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

    def _restore_checks(self, snapshot: Snapshot) -> None:
        """Run again the checks of the entries the snapshot gave back, from their last states."""
        protocol = self._protocol_or_raise()
        for key, specs in snapshot.checks:
            entry = protocol.table.get(key)
            if entry is not None and not entry.deleted and entry.owner == self.name:
                self._checks.replace(key, specs, initial_states(specs, entry.checks))

    def _on_check_change(self, key: EntryKey) -> None:
        """Write the instance again with its checks' new states (it gossips like any write)."""
        protocol = self._protocol
        entry = None if protocol is None else protocol.table.get(key)
        if protocol is None or entry is None or entry.deleted or entry.owner != self.name:
            self._checks.remove(key)  # its instance went away meanwhile
            return
        states = self._checks.states(key)
        try:
            _, effects = protocol.register(
                trio.current_time(),
                entry.service,
                entry.instance_id,
                entry.address,
                entry.port,
                tags=entry.tags,
                meta=entry.meta,
                weight=entry.weight,
                status=worst(s.status for s in states),
                output=entry.output,
                checks=states,
            )
        except ValueError as exc:  # it fitted at registration with empty outputs: a bug
            logger.error("could not write new check states of %s/%s: %s", *key, exc)
            return
        logger.info("%s/%s is now %s", *key, worst(s.status for s in states))
        self._apply(effects)

    def _on_check_deregister(self, key: EntryKey) -> None:
        protocol = self._protocol
        if protocol is None or not self._running:
            return
        logger.warning("deregistering %s/%s: critical longer than its deregister_after", *key)
        _, effects = protocol.deregister(trio.current_time(), key)
        self._apply(effects)

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
