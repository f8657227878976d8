"""A Node for programs that are not written in trio: it runs in a background thread.

Theory of operation: ``start`` runs ``trio.run`` in a daemon thread; inside,
an ``async with Node(config)`` block waits for a stop request. Every public
method hands its call to that trio thread with ``trio.from_thread.run`` (or
``run_sync``) and the thread's trio token, so the node's state is only ever
touched by its own event loop and callers may be any number of plain
threads. The node is the same ``Node`` the trio API uses; nothing is
duplicated.

Watching is an iterator over a thread-safe queue (``ThreadedWatch``) rather
than a callback: a callback would run inside the node's event loop, where
one slow callback would stall probing and get the node declared dead. The
trio side fills the queue from ``Node.watch``; the consumer blocks in its
own thread.

``stop`` is idempotent and registered with ``atexit``, so an interpreter that
exits without calling it still leaves the cluster gracefully (and writes its
snapshot) instead of being killed mid-write with the daemon thread, which
peers would take for a crash.

``ThreadedNode(config)`` is usable as it is: the first call starts the node
(``start`` is for starting it earlier, or with another timeout). Starting
returns once the node holds the cluster's table (``NodeConfig.sync_timeout``),
as ``async with Node(...)`` does.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import trio

from gossip_registry.config.node import NodeConfig
from gossip_registry.core.messages import Address
from gossip_registry.registry.entry import Entry, Health
from gossip_registry.registry.health import CheckSpec
from gossip_registry.runtime.node import MemberView, Node

__all__ = ["ThreadedNode", "ThreadedWatch"]

T = TypeVar("T")

logger = logging.getLogger("gossip_registry")

START_TIMEOUT = 30.0
"""Seconds ``start`` waits for the node to listen before giving up (plus its sync_timeout)."""
STOP_TIMEOUT = 30.0
"""Seconds ``stop`` waits for the trio thread to finish (leave_timeout excluded)."""


class ThreadedWatch:
    """Blocking iterator over a service's instance lists (see ``Node.watch``).

    The first item is the current list, then one per change (several
    changes may fold into one list). Iteration ends when the watch is closed
    or the node stops. Use ``get(timeout)`` to wait with a bound.
    """

    _END = object()

    def __init__(self, owner: ThreadedNode, service: str) -> None:
        self.service = service
        self._owner = owner
        self._queue: queue.Queue[Any] = queue.Queue()
        self._scope: trio.CancelScope | None = None
        self._closed = False

    async def _pump(
        self, node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Trio side: copy the node's watch into the queue until cancelled or the node stops."""
        try:
            with trio.CancelScope() as self._scope:
                task_status.started()
                async for entries in node.watch(self.service):
                    self._queue.put(entries)
        finally:
            self._queue.put(self._END)

    def get(self, timeout: float | None = None) -> list[Entry]:
        """The next list.

        Raises:
            queue.Empty: nothing arrived within ``timeout`` seconds.
            StopIteration: the watch is closed or the node stopped.
        """
        item = self._queue.get(timeout=timeout)
        if item is self._END:
            self._queue.put(self._END)  # stay ended for later calls
            raise StopIteration
        result: list[Entry] = item
        return result

    def __iter__(self) -> Iterator[list[Entry]]:
        return self

    def __next__(self) -> list[Entry]:
        return self.get()

    def close(self) -> None:
        """Stop watching; idempotent, safe from any thread."""
        if self._closed:
            return
        self._closed = True
        scope = self._scope
        if scope is not None:
            # RuntimeError: the node stopped already, and the watch with it.
            with contextlib.suppress(RuntimeError):
                self._owner._run_sync(scope.cancel)

    def __enter__(self) -> ThreadedWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThreadedNode:
    """A ``Node`` in a background thread, with blocking methods safe from any thread.

    ``with ThreadedNode(config) as node:`` starts it and leaves on exit; a
    bare ``ThreadedNode(config)`` starts on its first call and leaves at
    ``stop()`` or interpreter exit. Methods raise ``RuntimeError`` once the
    node is not running. Calling them from
    inside the node's own trio thread is not supported (it would deadlock);
    trio code should use ``Node`` directly.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._node: Node | None = None
        self._tasks: trio.Nursery | None = None
        self._stop_event: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped = False

    # ------------------------------------------------------------ lifetime

    def start(self, timeout: float = START_TIMEOUT) -> ThreadedNode:
        """Start the node; returns once it listens and has synced with a seed (see Node).

        Raises:
            RuntimeError: already started, or did not start within ``timeout``
                (plus ``sync_timeout``).
            Exception: whatever stopped the node from starting (a bind
                error, an invalid config, ``NotSynced``), re-raised here.
        """
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("ThreadedNode.start called twice")
            self._launch()
        return self._await_ready(timeout)

    def _launch(self) -> None:
        """Start the trio thread; called with ``_lock`` held."""
        self._thread = threading.Thread(
            target=self._thread_main, name=f"gossip-registry-{self.config.name}", daemon=True
        )
        self._thread.start()
        atexit.register(self.stop)

    def _await_ready(self, timeout: float) -> ThreadedNode:
        if not self._ready.wait(timeout + max(self.config.sync_timeout, 0.0)):
            self.stop()
            raise RuntimeError(f"node {self.config.name} did not start within {timeout}s")
        if self._error is not None:
            self.stop()
            raise self._error
        return self

    def _start_on_first_use(self) -> None:
        """Start a node never started, from whichever thread calls first (the README's form)."""
        with self._lock:
            if self._thread is None and not self._stopped:
                self._launch()
        if not self._stopped:
            self._await_ready(START_TIMEOUT)

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            if self._ready.is_set():  # it ran, then failed: nobody is waiting to re-raise it
                logger.exception("node %s stopped with an error", self.config.name)
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._stop_event = trio.Event()
        async with Node(self.config) as node, trio.open_nursery() as tasks:
            self._node, self._tasks = node, tasks
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            with trio.CancelScope() as scope:
                tasks.start_soon(self._stop_when_node_stops, node, scope)
                await self._stop_event.wait()
            tasks.cancel_scope.cancel()

    @staticmethod
    async def _stop_when_node_stops(node: Node, scope: trio.CancelScope) -> None:
        """A node that stopped itself (leave) ends the thread too."""
        await node.wait_stopped()
        scope.cancel()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Leave gracefully (bounded by ``leave_timeout``) and join the thread; idempotent,
        safe from any thread. Also registered with ``atexit``."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        atexit.unregister(self.stop)
        token, event, thread = self._token, self._stop_event, self._thread
        if token is not None and event is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(event.set, trio_token=token)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> ThreadedNode:
        self._start_on_first_use()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopped

    @property
    def node(self) -> Node:
        """The trio Node (read its attributes; call its methods only through this class)."""
        self._start_on_first_use()
        if self._node is None:
            raise RuntimeError(f"node {self.config.name} has not started")
        return self._node

    # ------------------------------------------------------------ calls

    def _token_or_raise(self) -> trio.lowlevel.TrioToken:
        self._start_on_first_use()
        if self._token is None or self._stopped:
            raise RuntimeError(f"node {self.config.name} is not running")
        return self._token

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return trio.from_thread.run(fn, *args, trio_token=self._token_or_raise())
        except trio.RunFinishedError:
            raise RuntimeError(f"node {self.config.name} is not running") from None

    def _run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return trio.from_thread.run_sync(fn, *args, trio_token=self._token_or_raise())
        except trio.RunFinishedError:
            raise RuntimeError(f"node {self.config.name} is not running") from None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def gossip_addr(self) -> Address:
        return self.node.gossip_addr

    @property
    def advertise_addr(self) -> Address:
        return self.node.advertise_addr

    @property
    def http_addr(self) -> Address | None:
        return self.node.http_addr

    @property
    def dns_addr(self) -> Address | None:
        return self.node.dns_addr

    def join(self, seeds: Sequence[Address]) -> int:
        """See ``Node.join``."""
        return self._run(self.node.join, list(seeds))

    def members(self) -> list[MemberView]:
        return self._run_sync(self.node.members)

    def register(
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
        """See ``Node.register``; raises ``ValueError`` naming an invalid field."""
        node = self.node

        async def call() -> Entry:
            return await node.register(
                service,
                instance_id=instance_id,
                address=address,
                port=port,
                tags=tags,
                meta=meta,
                weight=weight,
                status=status,
                checks=checks,
            )

        return self._run(call)

    def update_ttl(self, check_id: str, status: Health, output: str = "") -> None:
        """See ``Node.update_ttl`` (KeyError for an unknown check)."""
        return self._run(self.node.update_ttl, check_id, status, output)

    def check_counts(self) -> dict[str, int]:
        return self._run_sync(self.node.check_counts)

    def deregister(self, instance_id: str, *, service: str | None = None) -> Entry | None:
        """See ``Node.deregister``."""
        node = self.node

        async def call() -> Entry | None:
            return await node.deregister(instance_id, service=service)

        return self._run(call)

    def services(self) -> dict[str, int]:
        return self._run_sync(self.node.services)

    def discover(
        self,
        service: str,
        *,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        passing_only: bool = True,
    ) -> list[Entry]:
        """See ``Node.discover``."""
        node = self.node
        return self._run_sync(
            lambda: node.discover(service, tags=tags, meta=meta, passing_only=passing_only)
        )

    def status(self) -> dict[str, Any]:
        return self._run_sync(self.node.status)

    def watch(self, service: str) -> ThreadedWatch:
        """A blocking iterator of ``service``'s instance lists; close it when done."""
        watch = ThreadedWatch(self, service)
        node, tasks = self.node, self._tasks
        assert tasks is not None

        async def begin() -> None:
            await tasks.start(watch._pump, node)

        self._run(begin)
        return watch

    # --- watches and self-preservation (see Node)

    def index(self, service: str | None = None) -> int:
        """See ``Node.index``."""
        return self._run_sync(self.node.index, service)

    def wait_for_change(self, service: str | None, index: int, timeout: float) -> int:
        """See ``Node.wait_for_change``: blocks this thread, not the node."""
        return self._run(self.node.wait_for_change, service, index, timeout)

    def is_stale(self, entry: Entry) -> bool:
        """See ``Node.is_stale``."""
        return self._run_sync(self.node.is_stale, entry)

    def leave(self) -> None:
        """Graceful leave (bounded by ``leave_timeout``), then stop."""
        try:
            self._run(self.node.leave)
        finally:
            self.stop()
