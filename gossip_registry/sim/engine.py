"""The event loop: virtual time, the event heap, and carrying out the core's effects.

Theory of operation (FoundationDB's simulation, in miniature): one thread,
one seeded ``random.Random`` and one heap of ``(time, seq, event)``. ``seq``
is a global counter, so events due at the same instant run in the order they
were scheduled and nothing ever compares two events' payloads; with the same
seed and the same calls a run is the same run, event for event. Time is
virtual seconds from 0.0 and jumps from one event to the next: nothing
sleeps and nothing reads a clock.

An event is a flat tuple ``(time, seq, kind, node, life, a, b)``, cheap to
build and to order. ``node`` is the target process index (-1 for a plain
callback) and ``life`` the target's life when the event was scheduled, or -1
for "whatever process is there when it arrives" (datagrams go to an address,
not to a process). When an event pops:

- a callback runs;
- an event for an old life is stale: the process it was meant for is gone
  (a timer armed before a crash never fires in the restarted process; a
  stream whose peer restarted is reset);
- an event for a crashed or stopped node is dropped (a stream request is
  refused, so the requester hears of it); if only the process crashed and
  its host is up (``crash(host_up=True)``) a datagram draws a refusal back
  (ICMP port unreachable, lossy like any datagram) and so does a connect;
- an event for a paused node is held, in order, and handed over when it
  resumes, with ``now`` = the resume time, as a stopped process finds its
  socket buffer and its overdue timers;
- otherwise the node handles it and the effects it returns are carried out:
  ``Send`` asks the network for a delay (or a loss) and schedules the
  datagram; ``SetTimer`` schedules the timer (never before ``now``);
  ``StreamRequest`` / ``StreamSend`` play out the stream model of
  ``network``; ``Notify`` goes to the observers, except the core's word to
  its driver (``JoinResult``, ``LeaveDrained``, ``StaleChanged``), which goes
  to ``lifecycle`` (the cluster acts on it as the trio node does).

Streams. A ``StreamRequest`` gets a deadline event at ``now + stream_timeout``
the moment it is made; whichever reaches the requester first, the reply, an
early failure (refused, reset, closed without reply) or the deadline, is
delivered, and the rest are ignored. The receiver runs ``handle_stream`` when
the request leg completes, and a partition is checked again before the reply
leg. The receiver's effects are carried out even if the requester has given up.

This module knows the core only through the ``SimNode`` interface and the
effect types; it never imports trio, sockets, time or the global random.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
import random
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gossip_registry.core.effects import (
    DriverEvent,
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
)
from gossip_registry.core.messages import Address
from gossip_registry.sim.network import LinkModel, Network
from gossip_registry.sim.process import NodeStatus, Process

NotifyCallback = Callable[[str, float, MemberChanged | EntryChanged], None]
"""Observer of ``Notify`` effects: (node name, virtual time, event)."""

LifecycleCallback = Callable[["Process", DriverEvent], None]
"""The driver's part of the core's join and leave policy: (process, notification)."""

TraceRecord = tuple[float, str, str, tuple[Any, ...]]
"""(time, event kind, node name, details) for each event handed to a node."""

# Event kinds. Plain ints: compared in the hot loop.
_PACKET = 0
"""a = source address, b = payload; life -1."""
_TIMER = 1
"""a = Timer."""
_STREAM_IN = 2
"""A StreamRequest reaches the receiver: a = _Stream, b = request frame."""
_STREAM_PUSH = 3
"""A StreamSend reaches the receiver: a = source address, b = frame."""
_STREAM_OUT = 4
"""Outcome of a StreamRequest at the requester: a = _Stream, b = reply or None."""
_CALL = 5
"""A callback, not addressed to a node: a = zero-argument callable."""
_REFUSED = 6
"""The host of a crashed process refused a datagram or a connect: a = its address; life -1."""

_KIND_NAMES = ("packet", "timer", "stream", "stream-send", "stream-reply", "call", "refused")

_RUNNING = NodeStatus.RUNNING
_PAUSED = NodeStatus.PAUSED


class _Stream:
    """One StreamRequest in flight; ``done`` once its outcome reached the requester."""

    __slots__ = ("deadline", "done", "life", "requester", "src_addr", "token")

    def __init__(self, requester: int, life: int, src_addr: Address, token: int, deadline: float):
        self.requester = requester
        self.life = life
        self.src_addr = src_addr
        self.token = token
        self.deadline = deadline
        self.done = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Turn the cyclic garbage collector off for a while, then back as it was.

    With ten thousand nodes the process holds tens of millions of objects,
    and every full collection (triggered by allocation counts, not by
    garbage: events are freed by reference counting) rescans them all; at
    that size collections took half the run time.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class Engine:
    """Virtual time, the heap, and the processes it delivers to.

    The cluster API (``SimCluster``) owns naming, building nodes and the
    fault schedule; the engine owns how time advances and how effects play out.

    Args:
        seed: seeds the one random source of the run.
        link: the default link model.
        trace: keep a ``TraceRecord`` for every event handed to a node (for
            determinism checks and debugging; costs memory, off by default).
    """

    def __init__(self, seed: int, link: LinkModel, *, trace: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.net = Network(link, self.rng)
        self.now = 0.0
        self.procs: list[Process] = []
        self.by_addr: dict[Address, Process] = {}
        self.observers: list[NotifyCallback] = []
        self.lifecycle: LifecycleCallback | None = None
        self.notify_counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        """Why events or streams went nowhere: "to crashed", "stale timer", "stream cut", ..."""
        self.delivered = 0
        """Events handed to nodes so far (the simulator's unit of work)."""
        self.trace: list[TraceRecord] | None = [] if trace else None
        self._heap: list[tuple[Any, ...]] = []
        self._seq = itertools.count().__next__

    # Scheduling.

    def call_at(self, when: float, fn: Callable[[], object]) -> None:
        """Run ``fn()`` at virtual time ``when`` (or now, if that is past)."""
        heapq.heappush(self._heap, (max(when, self.now), self._seq(), _CALL, -1, -1, fn, None))

    def pending_events(self) -> int:
        return len(self._heap)

    def run(self, until: float) -> None:
        """Process every event due at or before ``until``; then ``now`` = ``until``.

        The cyclic garbage collector is off meanwhile (``gc_paused``).
        """
        with gc_paused():
            self._run(until)

    def _run(self, until: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        procs = self.procs
        deliver = self._deliver
        while heap and heap[0][0] <= until:
            ev = pop(heap)
            self.now = ev[0]
            index = ev[3]
            if index < 0:
                ev[5]()
                continue
            proc = procs[index]
            status = proc.status
            life = ev[4]
            if status is _RUNNING and (life < 0 or life == proc.life):
                deliver(proc, ev)
            elif status is _PAUSED and (life < 0 or life == proc.life):
                proc.pending.append(ev)
            else:
                self._undeliverable(proc, ev)
        if until > self.now:
            self.now = until

    # Handing events to nodes.

    def _deliver(self, proc: Process, ev: tuple[Any, ...]) -> None:
        kind = ev[2]
        now = self.now
        node = proc.node
        self.delivered += 1
        if self.trace is not None:
            self._record(proc, ev)
        try:
            if kind == _PACKET:
                data = ev[6]
                proc.udp_received += 1
                proc.udp_bytes_received += len(data)
                effects = node.handle_packet(now, ev[5], data)
            elif kind == _TIMER:
                effects = node.handle_timer(now, ev[5])
            elif kind == _STREAM_OUT:
                stream = ev[5]
                if stream.done:
                    self.delivered -= 1
                    return
                stream.done = True
                effects = node.handle_stream_reply(now, stream.token, ev[6])
            elif kind == _STREAM_IN:
                self._serve(proc, ev[5], ev[6])
                return
            elif kind == _REFUSED:
                effects = node.handle_refused(now, ev[5])
            else:  # _STREAM_PUSH: one-way, the reply (if any) goes nowhere
                _, effects = node.handle_stream(now, ev[5], ev[6])
        except Exception as exc:
            exc.add_note(
                f"simulation seed={self.seed} t={now!r} node={proc.name} event={_KIND_NAMES[kind]}"
            )
            raise
        if effects:
            self.apply(proc, effects)

    def _record(self, proc: Process, ev: tuple[Any, ...]) -> None:
        assert self.trace is not None
        kind = ev[2]
        a, b = ev[5], ev[6]
        detail: tuple[Any, ...]
        if kind == _TIMER:
            detail = (int(a.kind), a.token, a.subject)
        elif kind == _STREAM_OUT:
            if a.done:
                return
            detail = (a.token, None if b is None else zlib.crc32(b))
        elif kind == _STREAM_IN:
            detail = (a.src_addr, zlib.crc32(b))
        elif kind == _REFUSED:
            detail = (a,)
        else:
            detail = (a, zlib.crc32(b))
        self.trace.append((self.now, _KIND_NAMES[kind], proc.name, detail))

    def _undeliverable(self, proc: Process, ev: tuple[Any, ...]) -> None:
        """An event for a stopped node or an old life: drop it; refuse a stream."""
        kind = ev[2]
        stale = ev[4] >= 0 and ev[4] != proc.life
        self.drops[f"{_KIND_NAMES[kind]} {'stale' if stale else 'to ' + proc.status}"] += 1
        if kind == _STREAM_IN:
            # The receiving process is gone: its host answers with a reset.
            self._fail_stream(ev[5], proc.index)
        elif kind == _PACKET and proc.refuses:
            self._refuse(proc, ev[5])

    def release(self, proc: Process) -> None:
        """Hand a resumed process the events it missed, in order, at the current time."""
        held, proc.pending = proc.pending, []
        for ev in held:
            if proc.status is not _RUNNING:
                break
            if ev[4] < 0 or ev[4] == proc.life:
                self._deliver(proc, ev)

    # Carrying out effects.

    def apply(self, proc: Process, effects: Iterable[object]) -> None:
        """Carry out the effects ``proc``'s node returned, in order."""
        now = self.now
        heap = self._heap
        push = heapq.heappush
        seq = self._seq
        lookup = self.by_addr.get
        datagram = self.net.datagram
        for effect in effects:
            if isinstance(effect, Send):
                data = effect.data
                proc.udp_sent += 1
                proc.udp_bytes_sent += len(data)
                dst = lookup(effect.addr)
                if dst is None:
                    self.drops["packet to unknown address"] += 1
                    continue
                delay = datagram(proc.index, dst.index)
                if delay is not None:
                    push(heap, (now + delay, seq(), _PACKET, dst.index, -1, proc.addr, data))
            elif isinstance(effect, SetTimer):
                at = effect.at if effect.at > now else now
                push(heap, (at, seq(), _TIMER, proc.index, proc.life, effect.timer, None))
            elif isinstance(effect, StreamRequest):
                self._open(proc, effect.addr, effect.data, effect.token)
            elif isinstance(effect, StreamSend):
                self._open(proc, effect.addr, effect.data, None)
            elif isinstance(effect, Notify):
                self._notify(proc, effect.event)
            else:
                raise TypeError(f"{proc.name} returned a non-effect: {effect!r}")

    def _notify(self, proc: Process, event: MemberChanged | EntryChanged | DriverEvent) -> None:
        if isinstance(event, Synced):  # for drivers that wait on a first sync; nothing to observe
            self.notify_counts["synced"] += 1
            return
        if isinstance(event, ResolveSeeds):
            raise TypeError(f"{proc.name}: the simulator's seeds are addresses, never names")
        if isinstance(event, JoinResult | LeaveDrained | StaleChanged | IncarnationChanged):
            if isinstance(event, StaleChanged):
                self.notify_counts["stale changed"] += 1
            if self.lifecycle is not None:
                self.lifecycle(proc, event)
            return
        if isinstance(event, MemberChanged):
            self.notify_counts[f"member {event.state.label}"] += 1
        else:
            self.notify_counts["entry removed" if event.new is None else "entry changed"] += 1
        for callback in self.observers:
            callback(proc.name, self.now, event)

    def _open(self, proc: Process, addr: Address, data: bytes, token: int | None) -> None:
        """Start a stream: a StreamRequest if ``token`` is given, else a one-way StreamSend."""
        now = self.now
        net = self.net
        stream = None
        if token is not None:
            stream = _Stream(proc.index, proc.life, proc.addr, token, now + net.stream_timeout)
            self._push(stream.deadline, _STREAM_OUT, proc.index, proc.life, stream, None)
        dst = self.by_addr.get(addr)
        if dst is None or net.blocked(proc.index, dst.index) or net.blocked(dst.index, proc.index):
            # No SYN-ACK ever comes back: the deadline delivers the failure.
            self.drops["stream cut"] += 1
            return
        if not dst.live:
            self.drops["stream refused"] += 1
            when = now + net.round_trip(proc.index, dst.index)
            if dst.refuses:  # the driver reads the reset as a refusal, before the failure
                self._push(when, _REFUSED, proc.index, -1, dst.addr, None)
            if stream is not None:
                self._push(when, _STREAM_OUT, proc.index, proc.life, stream, None)
            return
        d1 = net.stream_leg(
            proc.index, dst.index, len(data), handshake=True, budget=net.stream_timeout
        )
        if d1 is None:
            self.drops["stream timed out"] += 1
            return
        proc.stream_sent += 1
        proc.stream_bytes_sent += len(data)
        if stream is not None:
            self._push(now + d1, _STREAM_IN, dst.index, dst.life, stream, data)
        else:
            self._push(now + d1, _STREAM_PUSH, dst.index, dst.life, proc.addr, data)

    def _serve(self, proc: Process, stream: _Stream, data: bytes) -> None:
        """The request reached ``proc``: run its handler and send the reply back."""
        now = self.now
        reply, effects = proc.node.handle_stream(now, stream.src_addr, data)
        if effects:
            self.apply(proc, effects)
        if stream.done:
            self.drops["stream reply after requester gave up"] += 1
            return
        net = self.net
        src = stream.requester
        if reply is None:
            # Closed without a reply: the requester sees EOF one trip later.
            self._fail_stream(stream, proc.index)
            return
        if net.blocked(proc.index, src) or net.blocked(src, proc.index):
            self.drops["stream cut"] += 1
            return
        d2 = net.stream_leg(
            proc.index, src, len(reply), handshake=False, budget=stream.deadline - now
        )
        if d2 is None:
            self.drops["stream timed out"] += 1
            return
        proc.stream_sent += 1
        proc.stream_bytes_sent += len(reply)
        self._push(now + d2, _STREAM_OUT, src, stream.life, stream, reply)

    def _fail_stream(self, stream: _Stream, at_node: int) -> None:
        """Tell the requester its stream failed, one trip from ``at_node`` if the path is open."""
        if stream.done:
            return
        src = stream.requester
        if self.net.blocked(at_node, src):
            return  # the deadline will do it
        when = self.now + self.net.one_way(at_node, src)
        self._push(min(when, stream.deadline), _STREAM_OUT, src, stream.life, stream, None)

    def _refuse(self, dead: Process, sender: Address) -> None:
        """``dead``'s host tells ``sender`` that nothing listens: one datagram back, lossy too."""
        src = self.by_addr.get(sender)
        if src is None:
            return
        delay = self.net.datagram(dead.index, src.index)
        if delay is not None:
            self.drops["refused"] += 1
            self._push(self.now + delay, _REFUSED, src.index, -1, dead.addr, None)

    def _push(self, when: float, kind: int, index: int, life: int, a: object, b: object) -> None:
        heapq.heappush(self._heap, (when, self._seq(), kind, index, life, a, b))
