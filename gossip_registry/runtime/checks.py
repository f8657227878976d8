"""The health-check runner: runs the probes of a node's own checks, in the node's nursery.

Theory of operation: this is the trio adapter of ``registry/check_schedule.py``,
which decides which check runs when (first runs spread over the interval, at
most ``max_concurrent`` probes in flight, TTL expiry, ``deregister_after``),
with the status rules of ``registry/health.py``; the simulator drives the same
scheduler. This module only does the I/O it asks for:

- one task sleeps until the scheduler's next due time, and wakes early when
  a change (a registration, a TTL report, a result) brings that time closer;
- each ``RunProbe`` is a task that runs the HTTP or TCP probe under the
  probe's timeout and hands the result back; a ``CancelProbe`` cancels it;
- every HTTP check shares one ``httpx.AsyncClient`` (one connection pool);
  redirects are not followed, so a 3xx is critical, as any non-2xx but 429.

When a check's state changes the runner calls ``on_change(key)``; when an
instance has been critical past a check's ``deregister_after`` it calls
``on_deregister(key)``. Both run synchronously; the node re-registers or
deregisters the entry, which gossips like any other write. Time is
``trio.current_time()``, so ``trio.testing.MockClock`` drives it.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import trio

from gossip_registry.registry.check_schedule import (
    MAX_CONCURRENT_PROBES,
    CancelProbe,
    CheckEffect,
    ChecksChanged,
    CheckScheduler,
    DeregisterCritical,
    RunProbe,
)
from gossip_registry.registry.entry import CheckState, Entry, EntryKey, Health
from gossip_registry.registry.health import CheckSpec, split_host_port

if TYPE_CHECKING:  # httpx is imported by the first HTTP check (``_http_client``)
    import httpx

__all__ = ["MAX_CONCURRENT_PROBES", "CheckRunner", "CheckSpec", "Probe"]

CLIENT_CLOSE_TIMEOUT = 2.0
"""Seconds the HTTP client gets to close its pooled connections when the runner stops."""

Probe = Callable[[CheckSpec], Awaitable[tuple[Health, str]]]
"""Runs one HTTP or TCP check once and says what it found (tests replace it)."""


def http_status(code: int) -> Health:
    """Consul's reading of an HTTP answer: 2xx passing, 429 warning, anything else critical."""
    if 200 <= code < 300:
        return Health.PASSING
    return Health.WARNING if code == 429 else Health.CRITICAL


class CheckRunner:
    """The checks of one node's instances; ``await nursery.start(runner.run)`` first.

    Args:
        on_change: called with an instance's key when one of its checks changed state.
        on_deregister: called with an instance's key when it was critical too long.
        rng: spreads first runs (seed it in tests).
        probe: replaces the real HTTP/TCP probes (tests).
        max_concurrent: probes in flight at once.
    """

    def __init__(
        self,
        *,
        on_change: Callable[[EntryKey], None],
        on_deregister: Callable[[EntryKey], None],
        rng: random.Random,
        probe: Probe | None = None,
        max_concurrent: int = MAX_CONCURRENT_PROBES,
    ) -> None:
        self._on_change = on_change
        self._on_deregister = on_deregister
        self._probe: Probe = probe or self._real_probe
        self.schedule = CheckScheduler(rng, max_concurrent)
        """What runs when; read it for the checks' specs and states."""
        self._probes: dict[int, trio.CancelScope] = {}
        self._sleep: trio.CancelScope | None = None
        """The wait for the next due time; its deadline follows the schedule."""
        self._nursery: trio.Nursery | None = None
        self._client: httpx.AsyncClient | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the probe tasks, and the HTTP client once the first HTTP check opened it."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    with trio.CancelScope(deadline=self.schedule.next_due) as self._sleep:
                        await trio.sleep_forever()
                    self._apply(self.schedule.advance(trio.current_time()))
        finally:
            self._nursery = self._sleep = None
            client, self._client = self._client, None
            if client is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(CLIENT_CLOSE_TIMEOUT):
                    await client.aclose()

    def _http_client(self) -> httpx.AsyncClient:
        """The shared client, opened on first use: httpx costs ~6 MiB a node without HTTP
        checks never needs (issue 17)."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    # ----------------------------------------------------------- bookkeeping

    def __len__(self) -> int:
        return len(self.schedule)

    def owner_of(self, check_id: str) -> EntryKey | None:
        return self.schedule.owner_of(check_id)

    def states(self, key: EntryKey) -> tuple[CheckState, ...]:
        return self.schedule.states(key)

    def specs(self) -> dict[EntryKey, tuple[CheckSpec, ...]]:
        """Every instance's checks, as a snapshot stores them."""
        return self.schedule.specs()

    def specs_of(self, key: EntryKey) -> tuple[CheckSpec, ...]:
        """One instance's checks (none if it has none)."""
        return self.schedule.specs_of(key)

    def counts(self) -> dict[str, int]:
        """Checks by status."""
        return self.schedule.counts()

    def replace(
        self, key: EntryKey, specs: Sequence[CheckSpec], states: Sequence[CheckState]
    ) -> None:
        """Stop the instance's checks and start ``specs`` (ids assigned) from ``states``.

        Raises:
            RuntimeError: the runner is not running.
        """
        self._apply(self.schedule.replace(self._running_now(), key, specs, states))

    def restore(
        self,
        own: Mapping[EntryKey, Entry],
        checks: Iterable[tuple[EntryKey, Sequence[CheckSpec]]],
    ) -> None:
        """Run again a snapshot's checks of the instances still in ``own`` (our live entries).

        Raises:
            RuntimeError: the runner is not running.
        """
        self._apply(self.schedule.restore(self._running_now(), own, checks))

    def remove(self, key: EntryKey) -> None:
        """Stop the instance's checks (no-op without any)."""
        self._apply(self.schedule.remove(key))

    def report_ttl(self, check_id: str, status: Health, output: str = "") -> None:
        """A TTL check's report from its service.

        Raises:
            KeyError: no check ``check_id`` runs on this node.
            ValueError: it is not a TTL check.
        """
        self._apply(self.schedule.report_ttl(trio.current_time(), check_id, status, output))

    # ---------------------------------------------------------------- effects

    def _running_now(self) -> float:
        """Now, for starting checks.

        Raises:
            RuntimeError: the runner is not running, so no probe could run.
        """
        if self._nursery is None:
            raise RuntimeError("the check runner is not running")
        return trio.current_time()

    def _apply(self, effects: list[CheckEffect]) -> None:
        """Carry out the scheduler's word, then sleep until its next due time."""
        for effect in effects:
            if isinstance(effect, RunProbe):
                if self._nursery is not None:  # else the runner has stopped: nothing runs
                    scope = self._probes[effect.token] = trio.CancelScope()
                    self._nursery.start_soon(self._run_probe, effect, scope)
            elif isinstance(effect, CancelProbe):
                running = self._probes.pop(effect.token, None)
                if running is not None:
                    running.cancel()
            elif isinstance(effect, ChecksChanged):
                self._on_change(effect.key)
            elif isinstance(effect, DeregisterCritical):
                self._on_deregister(effect.key)
        if self._sleep is not None:
            self._sleep.deadline = self.schedule.next_due

    async def _run_probe(self, run: RunProbe, scope: trio.CancelScope) -> None:
        """One probe; what it found (or its timeout) goes back to the scheduler."""
        with scope:  # cancelled by CancelProbe: its check is gone, nobody wants the result
            found = await self._timed_probe(run)
            self._probes.pop(run.token, None)
            now = trio.current_time()
            if found is None:
                self._apply(self.schedule.probe_timed_out(now, run.token))
            else:
                self._apply(self.schedule.probe_done(now, run.token, *found))

    async def _timed_probe(self, run: RunProbe) -> tuple[Health, str] | None:
        """What the probe found; None if it did not finish within its timeout."""
        with trio.move_on_after(run.timeout):
            try:
                return await self._probe(run.spec)
            except Exception as exc:  # whatever a probe hits (bad URL, TLS, DNS), the node lives on
                return Health.CRITICAL, f"{type(exc).__name__}: {exc}"
        return None

    async def _real_probe(self, spec: CheckSpec) -> tuple[Health, str]:
        if spec.http is not None:
            # No httpx timeout: the move_on_after around the probe bounds the whole exchange.
            response = await self._http_client().get(spec.http, timeout=None)
            code = response.status_code
            return http_status(code), f"HTTP GET {spec.http}: {code} {response.reason_phrase}"
        assert spec.tcp is not None
        host, port = split_host_port(spec.tcp)
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            return Health.CRITICAL, f"TCP connect {spec.tcp}: {_reason(exc)}"
        await stream.aclose()
        return Health.PASSING, f"TCP connect {spec.tcp}: success"


def _reason(exc: OSError) -> str:
    """The first cause with an errno ("Connection refused"), rather than trio's summary of
    all attempts ("all attempts to connect to ... failed")."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        # trio raises one error per address tried, grouped under its summary
        tried = cause.exceptions if isinstance(cause, BaseExceptionGroup) else ()
        cause = tried[0] if tried else cause.__cause__
    return str(exc)
