"""SimCluster: a whole cluster of protocol cores in one deterministic simulation.

Theory of operation. This is the public surface for tests, benchmarks and
the CLI: it names and addresses nodes, builds them through a node factory,
forms the cluster (by joins, or pre-formed for benchmarks), injects faults
(crash, pause, restart, leave, partitions, loss) and answers questions about
the nodes' views (membership agreement, registry digests, traffic). Time
only moves inside ``run_for`` / ``run_until``; between those calls the
cluster is frozen and can be inspected or changed freely.

Everything random (link delays and losses, clock skew, each node's own
``random.Random``) comes from one ``random.Random(seed)``; node generators
are seeded from it in creation order. Same seed and same calls give the same
run.

Health checks are scheduled by the node's own ``CheckScheduler`` on virtual
time, with a probe-outcome model in place of HTTP and TCP (``sim/checks.py``).

Restart policy is the core's, as in the trio node: a node joins with
``join_at_start`` (every seed, at most ``rejoin_limit`` members its snapshot
saw, retried with backoff), and a leaving node stops when the core says
``LeaveDrained``. The cluster only carries that out.

Nodes are ``n00000``, ``n00001``, ... at synthetic addresses
``198.18.{i // 250}.{i % 250 + 1}:7946`` (RFC 2544's benchmarking block;
nothing is ever sent anywhere, the network is in memory).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from types import MappingProxyType
from typing import Any

from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import DriverEvent, IncarnationChanged, LeaveDrained
from gossip_registry.core.members import MemberSeed
from gossip_registry.core.messages import Address, MemberRecord, MemberState
from gossip_registry.core.protocol import Protocol
from gossip_registry.registry.entry import CheckState, Entry, EntryKey, Health
from gossip_registry.registry.health import CheckSpec, assign_check_ids, initial_states, worst
from gossip_registry.sim.checks import ProbeModel, ProbeOutcome, SimChecks
from gossip_registry.sim.engine import Engine, NotifyCallback, TraceRecord, gc_paused
from gossip_registry.sim.network import LinkModel, Network
from gossip_registry.sim.process import (
    NodeFactory,
    NodeStatus,
    Process,
    SimNode,
    Snapshot,
    Traffic,
)

PORT = 7946
"""memberlist's default port, for every synthetic address."""

_MAX_NODES = 250 * 256
_EMPTY_META: MappingProxyType[str, str] = MappingProxyType({})


class SimulationError(RuntimeError):
    """The simulator was asked something impossible (restart a running node, ...)."""


def node_name(index: int) -> str:
    return f"n{index:05d}"


def node_address(index: int) -> Address:
    """The synthetic address of the ``index``-th node slot."""
    if not 0 <= index < _MAX_NODES:
        raise SimulationError(f"node index {index} outside the synthetic address range")
    return (f"198.18.{index // 250}.{index % 250 + 1}", PORT)


def default_node_factory(
    config: ProtocolConfig,
    name: str,
    addr: Address,
    *,
    rng: random.Random,
    now: float,
    wall_offset: float,
    incarnation: int | None,
    entries: Sequence[Entry],
    versions: dict[Entry, Entry] | None = None,
) -> SimNode:
    """The real protocol core; ``SimCluster`` passes its nodes one ``versions`` map to share."""
    return Protocol(
        config,
        name,
        addr,
        rng=rng,
        now=now,
        wall_offset=wall_offset,
        incarnation=incarnation,
        entries=entries,
        versions=versions,
    )


class SimCluster:
    """A simulated cluster; see the module docstring.

    Args:
        n: nodes to create and start at time 0.
        seed: the run's seed; print it when a run fails.
        config: protocol settings for every node (default: LAN).
        link: the default link model (default: ``LinkModel()``, 1 ms median).
        node_factory: builds each node (default: the real ``Protocol``).
        bootstrap: start already formed: before ``start``, every node's
            membership is seeded (``seed_members``) with every node alive at
            incarnation 0, skipping the O(N^2) join. For benchmarks of
            steady-state behaviour; the list passed includes the receiving
            node itself and is one shared list of frozen records, so 10,000
            nodes do not hold 10,000 copies.
        clock_skew: each node's ``wall_offset`` is drawn uniformly from
            [-clock_skew, +clock_skew] seconds (HLC stamps see it).
        leave_grace: the most a leaving node keeps running so its leave
            goes out, virtual seconds (the node's ``leave_timeout``); it stops
            sooner once the core says the leave has drained.
        join_stagger: without bootstrap, node i joins at i x this, not all at once.
        probe_model: what the probes of health checks find (``sim/checks.py``);
            default: what ``script_probes`` set for the instance, passing until then.
        trace: record every event handed to a node in ``trace``.
    """

    def __init__(
        self,
        n: int = 0,
        *,
        seed: int,
        config: ProtocolConfig | None = None,
        link: LinkModel | None = None,
        node_factory: NodeFactory | None = None,
        bootstrap: bool = False,
        clock_skew: float = 0.0,
        leave_grace: float = 2.0,
        join_stagger: float = 0.001,
        probe_model: ProbeModel | None = None,
        trace: bool = False,
    ) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if clock_skew < 0 or leave_grace < 0 or join_stagger < 0:
            raise ValueError("clock_skew, leave_grace and join_stagger must be >= 0")
        self.config = config if config is not None else ProtocolConfig()
        self.clock_skew = clock_skew
        self.leave_grace = leave_grace
        self.join_stagger = join_stagger
        self.seed_names: list[str] = [node_name(0)]
        """Where nodes join when not told otherwise (restarts add them too)."""
        # The real cores share one Entry object per version: each its own copy of every
        # entry was about 1.4 KiB per node per entry (issue 15).
        self._factory: NodeFactory = node_factory or partial(default_node_factory, versions={})
        self._engine = Engine(seed, link or LinkModel(), trace=trace)
        self._engine.lifecycle = self._on_lifecycle
        self._checks = SimChecks(self._engine, probe_model)
        self._by_name: dict[str, Process] = {}
        self._traffic_since = 0.0

        with gc_paused():
            self._build_all(n, bootstrap, join_stagger)

    def _build_all(self, n: int, bootstrap: bool, join_stagger: float) -> None:
        procs = [self._spawn(node_name(i)) for i in range(n)]
        if bootstrap:
            shared = MemberSeed.build(
                MemberRecord(p.name, p.addr, 0, MemberState.ALIVE, _EMPTY_META) for p in procs
            )
            for p in procs:
                p.node.seed_members(shared)
        for p in procs:
            self._apply(p, p.node.start(0.0))
        if not bootstrap:
            for i, p in enumerate(procs):
                seeds = self._seed_addrs(p)
                if seeds:
                    self._join_at(i * join_stagger, p, seeds)

    # Building nodes.

    def _spawn(self, name: str) -> Process:
        """Create the next node slot and its node (not started)."""
        if name in self._by_name:
            raise SimulationError(f"a node named {name!r} exists already")
        engine = self._engine
        index = len(engine.procs)
        addr = node_address(index)
        skew = self.clock_skew
        wall_offset = engine.rng.uniform(-skew, skew) if skew else 0.0
        node = self._build(name, addr, wall_offset, None, ())
        proc = Process(index, name, addr, node, wall_offset)
        engine.procs.append(proc)
        engine.by_addr[addr] = proc
        self._by_name[name] = proc
        return proc

    def _build(
        self,
        name: str,
        addr: Address,
        wall_offset: float,
        incarnation: int | None,
        entries: Sequence[Entry],
    ) -> SimNode:
        rng = random.Random(self._engine.rng.getrandbits(64))
        return self._factory(
            self.config,
            name,
            addr,
            rng=rng,
            now=self._engine.now,
            wall_offset=wall_offset,
            incarnation=incarnation,
            entries=entries,
        )

    def _seed_addrs(self, proc: Process) -> list[Address]:
        """Addresses of the configured seeds, deduplicated, without ``proc``."""
        out: list[Address] = []
        for name in self.seed_names:
            other = self._by_name.get(name)
            if other is not None and other is not proc and other.addr not in out:
                out.append(other.addr)
        return out

    def _join_at(self, when: float, proc: Process, seeds: list[Address]) -> None:
        """Call ``join`` at ``when`` if the same process is still running then."""
        life = proc.life

        def join() -> None:
            if proc.life == life and proc.status is NodeStatus.RUNNING:
                self._apply(proc, proc.node.join_at_start(self._engine.now, seeds))

        self._engine.call_at(when, join)

    def add_node(
        self, name: str | None = None, *, join_via: str | Iterable[str] | None = None
    ) -> str:
        """Create, start and join a new node now; returns its name.

        Args:
            name: defaults to ``n{index:05d}``.
            join_via: node name(s) to join through; default ``seed_names``.
        """
        proc = self._spawn(name or node_name(len(self._engine.procs)))
        self._apply(proc, proc.node.start(self._engine.now))
        if join_via is None:
            seeds = self._seed_addrs(proc)
        else:
            via = [join_via] if isinstance(join_via, str) else list(join_via)
            seeds = [self._proc(v).addr for v in via if v != proc.name]
        if seeds:
            self._apply(proc, proc.node.join_at_start(self._engine.now, seeds))
        return proc.name

    # Looking at nodes.

    def _proc(self, name: str) -> Process:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no node named {name!r}") from None

    def _apply(self, proc: Process, effects: Iterable[object]) -> None:
        self._engine.apply(proc, effects)

    def node(self, name: str) -> SimNode:
        """The node's current protocol object (after a crash: the dead one, until restart)."""
        return self._proc(name).node

    @property
    def names(self) -> list[str]:
        """Every node ever created, in creation order."""
        return [p.name for p in self._engine.procs]

    def live_names(self) -> list[str]:
        """Nodes neither crashed nor left (paused ones included)."""
        return [p.name for p in self._engine.procs if p.live]

    def status(self, name: str) -> NodeStatus:
        return self._proc(name).status

    def is_paused(self, name: str) -> bool:
        return self._proc(name).status is NodeStatus.PAUSED

    def address(self, name: str) -> Address:
        return self._proc(name).addr

    def name_at(self, addr: Address) -> str | None:
        proc = self._engine.by_addr.get(addr)
        return None if proc is None else proc.name

    @property
    def now(self) -> float:
        """Virtual seconds since the start."""
        return self._engine.now

    @property
    def seed(self) -> int:
        return self._engine.seed

    @property
    def network(self) -> Network:
        """The link model and cuts, with datagram counters (sent, lost, cut)."""
        return self._engine.net

    @property
    def link(self) -> LinkModel:
        return self._engine.net.link

    @property
    def drops(self) -> Counter[str]:
        """Events and streams that went nowhere, by reason."""
        return self._engine.drops

    @property
    def notify_counts(self) -> Counter[str]:
        """Notify effects seen so far: "member alive", "member dead", "entry changed", ..."""
        return self._engine.notify_counts

    @property
    def events_delivered(self) -> int:
        return self._engine.delivered

    @property
    def trace(self) -> list[TraceRecord] | None:
        """Every event handed to a node, if built with ``trace=True``."""
        return self._engine.trace

    def on_notify(self, callback: NotifyCallback) -> None:
        """Call ``callback(node_name, now, event)`` for every Notify effect."""
        self._engine.observers.append(callback)

    # Running.

    def run_for(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot run for a negative time: {seconds}")
        self._engine.run(self._engine.now + seconds)

    def run_until(
        self, predicate: Callable[[], bool], *, timeout: float, check_every: float = 0.1
    ) -> bool:
        """Run until ``predicate()`` holds; False (never an exception) once ``timeout`` passes.

        The predicate is checked now and every ``check_every`` virtual
        seconds, so the answer is known to within that resolution.
        """
        if check_every <= 0 or timeout < 0:
            raise ValueError("check_every must be > 0 and timeout >= 0")
        if predicate():
            return True
        engine = self._engine
        deadline = engine.now + timeout
        while engine.now < deadline:
            engine.run(min(engine.now + check_every, deadline))
            if predicate():
                return True
        return False

    def call_at(self, when: float, fn: Callable[[], object]) -> None:
        """Run ``fn()`` at virtual time ``when``: for fault schedules."""
        self._engine.call_at(when, fn)

    def call_later(self, delay: float, fn: Callable[[], object]) -> None:
        self._engine.call_at(self._engine.now + delay, fn)

    # The registry, through one node.

    def register(
        self,
        name: str,
        service: str,
        instance_id: str,
        *,
        address: str | None = None,
        port: int = 8080,
        check_specs: Sequence[CheckSpec] = (),
        **kw: Any,
    ) -> Entry:
        """Register an instance on node ``name`` (address defaults to the node's host).

        Durable once this returns, like the real node's (``runtime/storage/durability.py``).
        With ``check_specs`` the node runs them, as ``Node.register`` does: they
        start critical, the status is the worst of theirs, and their probes find
        what the probe model says (``script_probes``). Registering again
        replaces the instance's checks.
        """
        proc = self._running(name)
        specs = assign_check_ids(instance_id, check_specs)
        states = initial_states(specs)
        if states:
            kw.update(status=worst(s.status for s in states), checks=states)
        entry, effects = proc.node.register(
            self._engine.now, service, instance_id, address or proc.addr[0], port, **kw
        )
        proc.durable[entry.key] = entry
        self._apply(proc, effects)
        self._checks.replace(proc, entry.key, specs, states)
        return entry

    def deregister(self, name: str, key: EntryKey) -> Entry | None:
        """Deregister on node ``name`` (its checks stop); durable once this returns."""
        proc = self._running(name)
        self._checks.replace(proc, key, (), ())
        entry, effects = proc.node.deregister(self._engine.now, key)
        if entry is not None:
            proc.durable.pop(key, None)
        self._apply(proc, effects)
        return entry

    def update_ttl(self, name: str, check_id: str, status: Health, output: str = "") -> None:
        """A TTL check's report to node ``name``, as ``Node.update_ttl``.

        Raises:
            KeyError: no check ``check_id`` runs on that node.
            ValueError: it is not a TTL check.
        """
        self._checks.report_ttl(self._running(name), check_id, status, output)

    def script_probes(self, key: EntryKey, outcome: ProbeOutcome) -> None:
        """From now on, the probes of instance ``key``'s HTTP and TCP checks find ``outcome``
        (with the default probe model)."""
        self._checks.script(key, outcome)

    def check_states(self, name: str, key: EntryKey) -> tuple[CheckState, ...]:
        """The states of the checks node ``name`` runs for ``key`` (none if it runs none)."""
        checks = self._proc(name).checks
        return () if checks is None else checks.states(key)

    def _running(self, name: str) -> Process:
        proc = self._proc(name)
        if proc.status is not NodeStatus.RUNNING:
            raise SimulationError(f"{name} is {proc.status}, not running")
        return proc

    # Faults.

    def crash(self, name: str, *, host_up: bool = False) -> None:
        """Stop the process at once: no goodbye, timers die, traffic to it is dropped.

        With ``host_up`` only the process died: its host answers every datagram
        with a refusal (ICMP port unreachable) and every connect with a reset.
        Without, the host is gone too and nothing answers.
        """
        proc = self._proc(name)
        if not proc.live:
            raise SimulationError(f"{name} is {proc.status} already")
        self._stop(proc, NodeStatus.CRASHED)
        proc.refuses = host_up

    def _stop(self, proc: Process, status: NodeStatus) -> None:
        node = proc.node
        states = node.member_states()
        proc.snapshot = Snapshot(
            incarnation=proc.incarnation,
            entries=tuple(proc.durable[key] for key in sorted(proc.durable)),
            alive_members=tuple(
                sorted(n for n, s in states.items() if s is MemberState.ALIVE and n != proc.name)
            ),
            checks=tuple(sorted(proc.check_specs.items())),
        )
        proc.checks, proc.checks_wake = None, math.inf
        if proc.pending:
            self._engine.drops[f"held while paused, then {status}"] += len(proc.pending)
        proc.pending = []
        proc.status = status
        proc.life += 1

    def pause(self, name: str, duration: float) -> None:
        """Freeze the process for ``duration`` s; what arrives meanwhile waits for it."""
        if duration < 0:
            raise ValueError(f"duration must be >= 0, got {duration}")
        proc = self._proc(name)
        if not proc.live:
            raise SimulationError(f"cannot pause {name}: it is {proc.status}")
        until = self._engine.now + duration
        if proc.status is NodeStatus.PAUSED and proc.paused_until >= until:
            return
        proc.status = NodeStatus.PAUSED
        proc.paused_until = until
        life = proc.life

        def resume() -> None:
            if (
                proc.life == life
                and proc.status is NodeStatus.PAUSED
                and self._engine.now >= proc.paused_until
            ):
                proc.status = NodeStatus.RUNNING
                self._engine.release(proc)

        self._engine.call_at(until, resume)

    def restart(self, name: str, from_snapshot: bool = True) -> None:
        """Start a fresh process in a crashed (or left) node's slot, and join.

        With ``from_snapshot`` the new process gets the incarnation the old
        one had when it stopped and the own entries its acknowledged writes
        left on disk, runs the checks of those entries again from the states
        they recorded, and the core joins through the seeds and some of the
        members it then saw alive (at most ``rejoin_limit``); without, it
        starts empty and joins through the seeds.
        """
        proc = self._proc(name)
        if proc.live:
            raise SimulationError(f"cannot restart {name}: it is {proc.status}")
        snap = proc.snapshot if from_snapshot else None
        engine = self._engine
        if snap is not None:
            node = self._build(name, proc.addr, proc.wall_offset, snap.incarnation, snap.entries)
            known = [self._proc(n).addr for n in snap.alive_members]
        else:
            node = self._build(name, proc.addr, proc.wall_offset, None, ())
            known = []
        proc.node = node
        proc.durable = {} if snap is None else {e.key: e for e in snap.entries}
        proc.status = NodeStatus.RUNNING
        proc.refuses = False
        self._apply(proc, node.start(engine.now))
        proc.check_specs = {}
        if snap is not None:
            self._checks.restore(proc, snap)
        seeds = self._seed_addrs(proc)
        if seeds or known:
            self._apply(proc, node.join_at_start(engine.now, seeds, known))

    def leave(self, name: str) -> None:
        """Graceful leave: the node says goodbye and stops once the core says it has drained.

        That is when the leave has been gossiped its full count, or nobody
        is left to tell, or ``leave_grace`` is up (``_on_lifecycle``).
        """
        proc = self._running(name)
        self._apply(proc, proc.node.leave(self._engine.now, self.leave_grace))

    def _on_lifecycle(self, proc: Process, event: DriverEvent) -> None:
        """The driver's part of the core's policy; join results and stale changes need
        nothing here (``stale_keys`` reads the core's verdict). Our incarnation goes
        on disk as the node's journal writes it (``runtime/storage/durability.py``)."""
        if isinstance(event, IncarnationChanged):
            proc.incarnation = event.incarnation
            return
        if not isinstance(event, LeaveDrained):
            return
        life = proc.life

        def stop() -> None:  # after the effects that came with it are carried out
            if proc.life == life and proc.live:
                self._stop(proc, NodeStatus.LEFT)

        self._engine.call_at(self._engine.now, stop)

    def _indices(self, group: str | Iterable[str]) -> list[int]:
        names = [group] if isinstance(group, str) else group
        return [self._proc(n).index for n in names]

    def partition(
        self, group_a: str | Iterable[str], group_b: str | Iterable[str], one_way: bool = False
    ) -> None:
        """Cut a -> b (and b -> a unless ``one_way``), datagrams and streams; cuts add up.

        A stream needs both directions, so even a one-way cut fails streams
        either way between the groups.
        """
        self._engine.net.partition(self._indices(group_a), self._indices(group_b), one_way=one_way)

    def isolate(self, name: str) -> None:
        """Cut one node from every other, both directions."""
        self._engine.net.isolate(self._proc(name).index)

    def unisolate(self, name: str) -> None:
        self._engine.net.unisolate(self._proc(name).index)

    def heal(self) -> None:
        """Remove every partition and isolation."""
        self._engine.net.heal()

    def set_loss(self, p: float) -> None:
        """Datagram (and TCP segment) loss probability on every link without an override."""
        self._engine.net.set_loss(p)

    def set_link(self, src: str, dst: str, link: LinkModel | None) -> None:
        """Override delay and loss on the directed link src -> dst; None removes it."""
        self._engine.net.set_override(self._proc(src).index, self._proc(dst).index, link)

    # Views.

    def states(self, of: str) -> dict[str, MemberState]:
        """Node ``of``'s view of the membership, itself included."""
        return self._proc(of).node.member_states()

    def digest(self, name: str) -> int:
        return self._proc(name).node.table.digest

    def stale_keys(self, name: str) -> set[EntryKey]:
        """Keys node ``name`` serves stale now: its core's self-preservation, as a real node's.

        Raises:
            SimulationError: the node has no self-preservation (a test's fake node).
        """
        node = self._proc(name).node
        if not isinstance(node, Protocol):
            raise SimulationError(f"{name} is not a protocol core")
        return {e.key for e in node.preservation.stale_entries()}

    def _live(self, names: Iterable[str] | None) -> list[Process]:
        if names is None:
            return [p for p in self._engine.procs if p.live]
        return [p for p in (self._proc(n) for n in names) if p.live]

    def agree_on_membership(self, names: Iterable[str] | None = None) -> bool:
        """Whether the live nodes among ``names`` (default: all) have converged.

        Each of them must see every one of them ALIVE, and every crashed or
        left node of the whole cluster as neither ALIVE nor SUSPECT. Nodes
        outside ``names`` that are live are not checked (the other side of a
        partition, say).
        """
        procs = self._live(names)
        live = [p.name for p in procs]
        gone = [p.name for p in self._engine.procs if not p.live]
        alive, suspect = MemberState.ALIVE, MemberState.SUSPECT
        for p in procs:
            view = p.node.member_states()
            if any(view.get(n) is not alive for n in live):
                return False
            if any(view.get(n) in (alive, suspect) for n in gone):
                return False
        return True

    def digests_agree(self, names: Iterable[str] | None = None) -> bool:
        """Whether the live nodes among ``names`` (default: all) hold the same registry."""
        digests = {p.node.table.digest for p in self._live(names)}
        return len(digests) <= 1

    # Traffic.

    def traffic(self, name: str) -> Traffic:
        """One node's traffic since the last ``reset_traffic`` (across its restarts)."""
        return self._proc(name).traffic(self._engine.now - self._traffic_since)

    def total_traffic(self) -> Traffic:
        elapsed = self._engine.now - self._traffic_since
        total = Traffic(elapsed=elapsed)
        for p in self._engine.procs:
            total += p.traffic(elapsed)
        return total

    def reset_traffic(self) -> None:
        """Zero every node's counters; ``elapsed`` counts from now."""
        for p in self._engine.procs:
            p.reset_traffic()
        self._traffic_since = self._engine.now
