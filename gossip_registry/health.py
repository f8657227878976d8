"""The health-check runner: runs the checks of a node's own instances, in the node's nursery.

Theory of operation: the rules (thresholds, TTL, worst status, check ids)
are pure and live in ``registry/health.py``; this module only produces
results and says when something changed. Each check is one task:

- HTTP and TCP checks first run at a random offset within their interval,
  so a node's checks are spread in time rather than fired together, then
  every interval. At most ``max_concurrent`` probes are in flight at once
  (a ``trio.CapacityLimiter``), so hundreds of checks cannot starve the
  node's own protocol tasks or open hundreds of sockets together.
- A TTL check's task sleeps until the TTL runs out; a report moves the
  deadline of that sleep.
- Every HTTP check shares one ``httpx.AsyncClient`` (one connection pool);
  redirects are not followed, so a 3xx is critical, as any non-2xx but 429.

When a check's state changes the runner calls ``on_change(key)``; when an
instance has been critical past a check's ``deregister_after`` it calls
``on_deregister(key)``. Both run synchronously in the check's task; the node
re-registers or deregisters the entry, which gossips like any other write.
Time is ``trio.current_time()``, so ``trio.testing.MockClock`` drives it.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from gossip_registry.core.codec import MAX_OUTPUT_LEN
from gossip_registry.registry.entry import CheckKind, CheckState, EntryKey, Health
from gossip_registry.registry.health import CheckSpec, CheckTracker, split_host_port

if TYPE_CHECKING:  # httpx is imported by the first HTTP check (``_http_client``)
    import httpx

__all__ = ["MAX_CONCURRENT_PROBES", "CheckRunner", "CheckSpec", "Probe"]

MAX_CONCURRENT_PROBES = 64
"""Probes in flight at once on one node; the rest wait their turn."""
CLIENT_CLOSE_TIMEOUT = 2.0
"""Seconds the HTTP client gets to close its pooled connections when the runner stops."""

Probe = Callable[[CheckSpec], Awaitable[tuple[Health, str]]]
"""Runs one HTTP or TCP check once and says what it found (tests replace it)."""


def _clip(output: str) -> str:
    return output if len(output) <= MAX_OUTPUT_LEN else output[: MAX_OUTPUT_LEN - 3] + "..."


def http_status(code: int) -> Health:
    """Consul's reading of an HTTP answer: 2xx passing, 429 warning, anything else critical."""
    if 200 <= code < 300:
        return Health.PASSING
    return Health.WARNING if code == 429 else Health.CRITICAL


@dataclass
class _Check:
    tracker: CheckTracker
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    """Cancels the check's task."""
    wait: trio.CancelScope | None = None
    """A TTL check's current sleep; its deadline is the expiry (or deregistration)."""


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
        self._rng = rng
        self._probe: Probe = probe or self._real_probe
        self._limiter = trio.CapacityLimiter(max_concurrent)
        self._instances: dict[EntryKey, dict[str, _Check]] = {}
        self._by_id: dict[str, EntryKey] = {}
        self._nursery: trio.Nursery | None = None
        self._client: httpx.AsyncClient | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the check tasks, and the HTTP client once the first HTTP check opened it."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
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
        return len(self._by_id)

    def owner_of(self, check_id: str) -> EntryKey | None:
        return self._by_id.get(check_id)

    def states(self, key: EntryKey) -> tuple[CheckState, ...]:
        return tuple(c.tracker.state for c in self._instances.get(key, {}).values())

    def specs(self) -> dict[EntryKey, tuple[CheckSpec, ...]]:
        """Every instance's checks, as a snapshot stores them."""
        return {key: self.specs_of(key) for key in self._instances}

    def specs_of(self, key: EntryKey) -> tuple[CheckSpec, ...]:
        """One instance's checks (none if it has none)."""
        return tuple(c.tracker.spec for c in self._instances.get(key, {}).values())

    def counts(self) -> dict[str, int]:
        """Checks by status."""
        counts = {str(h): 0 for h in Health}
        for checks in self._instances.values():
            for check in checks.values():
                counts[str(check.tracker.state.status)] += 1
        return counts

    def replace(
        self, key: EntryKey, specs: Sequence[CheckSpec], states: Sequence[CheckState]
    ) -> None:
        """Stop the instance's checks and start ``specs`` (ids assigned) from ``states``.

        Raises:
            RuntimeError: the runner is not running.
        """
        if self._nursery is None:
            raise RuntimeError("the check runner is not running")
        self.remove(key)
        now = trio.current_time()
        checks: dict[str, _Check] = {}
        for spec, state in zip(specs, states, strict=True):
            assert spec.check_id is not None
            check = checks[spec.check_id] = _Check(CheckTracker(spec, state, now))
            self._by_id[spec.check_id] = key
            self._nursery.start_soon(self._run_check, key, check)
        if checks:
            self._instances[key] = checks

    def remove(self, key: EntryKey) -> None:
        """Stop the instance's checks (no-op without any)."""
        for check_id, check in self._instances.pop(key, {}).items():
            check.scope.cancel()
            del self._by_id[check_id]

    def report_ttl(self, check_id: str, status: Health, output: str = "") -> None:
        """A TTL check's report from its service.

        Raises:
            KeyError: no check ``check_id`` runs on this node.
            ValueError: it is not a TTL check.
        """
        key = self._by_id[check_id]
        check = self._instances[key][check_id]
        if check.tracker.spec.kind is not CheckKind.TTL:
            raise ValueError(f"check {check_id!r} is a {check.tracker.spec.kind} check, not ttl")
        changed = check.tracker.report(trio.current_time(), Health(status), _clip(output))
        if check.wait is not None:
            check.wait.deadline = min(check.tracker.expires_at, check.tracker.deregister_at)
        if changed:
            self._on_change(key)

    # ---------------------------------------------------------------- tasks

    def _settle(self, key: EntryKey, check: _Check, changed: bool) -> bool:
        """Tell the node; False once the instance is to be deregistered (the task ends)."""
        if changed:
            self._on_change(key)
        if trio.current_time() >= check.tracker.deregister_at:
            self.remove(key)
            self._on_deregister(key)
            return False
        return True

    async def _run_check(self, key: EntryKey, check: _Check) -> None:
        with check.scope:
            if check.tracker.spec.kind is CheckKind.TTL:
                await self._run_ttl(key, check)
            else:
                await self._run_probes(key, check)

    async def _run_ttl(self, key: EntryKey, check: _Check) -> None:
        tracker = check.tracker
        while True:
            with trio.CancelScope(deadline=min(tracker.expires_at, tracker.deregister_at)) as wait:
                check.wait = wait  # report_ttl moves this deadline
                await trio.sleep_forever()
            now = trio.current_time()
            changed = now >= tracker.expires_at and tracker.expire(now)
            if not self._settle(key, check, changed):
                return

    async def _run_probes(self, key: EntryKey, check: _Check) -> None:
        spec = check.tracker.spec
        await trio.sleep(self._rng.uniform(0, spec.interval))
        while True:
            started = trio.current_time()
            async with self._limiter:
                status, output = await self._timed_probe(spec)
            changed = check.tracker.record(trio.current_time(), status, _clip(output))
            if not self._settle(key, check, changed):
                return
            await trio.sleep_until(started + spec.interval)

    async def _timed_probe(self, spec: CheckSpec) -> tuple[Health, str]:
        timeout = spec.effective_timeout
        with trio.move_on_after(timeout):
            try:
                return await self._probe(spec)
            except Exception as exc:  # whatever a probe hits (bad URL, TLS, DNS), the node lives on
                return Health.CRITICAL, f"{type(exc).__name__}: {exc}"
        return Health.CRITICAL, f"timed out after {timeout:g}s"

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
