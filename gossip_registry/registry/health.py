"""Health-check rules: what a check is, and how its results become a status.

Theory of operation: the owning node runs each check (``runtime/checks.py``, trio)
and feeds every result to a ``CheckTracker``, which decides whether the
registry must hear of it. The rules are Consul's:

- A check starts *critical* (Consul's default): an instance is not
  discovered until it has proved itself, so a caller is never sent to a
  process that is still starting. A node restarted from its snapshot starts
  from the statuses it had instead.
- HTTP and TCP results count consecutively. ``success_before_passing``
  passing (or warning) results in a row are needed to leave critical, and
  ``failures_before_critical`` critical results in a row to enter it; a
  result that has not reached its threshold changes nothing, not even the
  output, so a flapping endpoint does not flap the registry. 0 and 1 both
  mean "at once", as in Consul.
- A TTL check is the service's own verdict: each report (pass, warn, fail)
  applies at once and pushes the expiry ``ttl`` ahead; no report in time
  makes it critical.
- ``deregister_after``: a check critical for that long has its instance
  deregistered by the node (Consul's ``DeregisterCriticalServiceAfter``).
- Only a change of status or output is a change: identical results write
  nothing, so a healthy service costs no gossip.

An instance's status is the worst of its checks (critical > warning >
passing). This module is pure: time is passed in as ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from gossip_registry.registry.entry import CheckKind, CheckState, Health
from gossip_registry.registry.schema import (
    MAX_PORT,
    MIN_CHECK_INTERVAL,
    MIN_CHECK_TIMEOUT,
    duration_problem,
)

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "MAX_THRESHOLD",
    "CheckSpec",
    "CheckTracker",
    "assign_check_ids",
    "initial_states",
    "split_host_port",
    "worst",
]

DEFAULT_INTERVAL = 10.0
"""Seconds between two runs of an HTTP or TCP check (Consul's examples use 10 s)."""
DEFAULT_TIMEOUT = 5.0
"""Seconds an HTTP or TCP check may take before it counts as critical; capped at the interval."""
MAX_THRESHOLD = 1000
"""Largest success_before_passing / failures_before_critical accepted."""

_SEVERITY = {Health.PASSING: 0, Health.WARNING: 1, Health.CRITICAL: 2}


def worst(statuses: Iterable[Health], default: Health = Health.PASSING) -> Health:
    """The most severe status (critical > warning > passing); ``default`` if there is none."""
    return max(statuses, key=_SEVERITY.__getitem__, default=default)


def split_host_port(target: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` as (host, port).

    Raises:
        ValueError: no port, a port outside 1..65535, or an empty host.
    """
    host, sep, port = target.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= MAX_PORT:
        raise ValueError(f"must be host:port with a port 1..{MAX_PORT}, got {target!r}")
    return host, int(port)


def _positive(field: str, value: float | None) -> None:
    if value is not None and not (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf
    ):
        raise ValueError(f"{field}: must be a duration > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One health check as registered: exactly one of ``http``, ``tcp``, ``ttl``.

    Durations are seconds. ``interval`` and ``timeout`` do not apply to TTL
    checks. ``check_id`` is filled by ``assign_check_ids`` when left None;
    ``name`` is a label for humans.

    Raises:
        ValueError: from the constructor, naming the field at fault.
    """

    http: str | None = None
    tcp: str | None = None
    ttl: float | None = None
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    success_before_passing: int = 1
    failures_before_critical: int = 1
    deregister_after: float | None = None
    check_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("http", "tcp", "ttl") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"check: needs exactly one of http, tcp, ttl (got {given or 'none'})")
        if self.http is not None:
            try:
                parts = urlsplit(self.http) if isinstance(self.http, str) else None
            except ValueError:  # e.g. an unclosed IPv6 bracket
                parts = None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"http: must be an http:// or https:// URL, got {self.http!r}")
        if self.tcp is not None:
            if not isinstance(self.tcp, str):
                raise ValueError(f"tcp: must be host:port, got {self.tcp!r}")
            try:
                split_host_port(self.tcp)
            except ValueError as exc:
                raise ValueError(f"tcp: {exc}") from None
        _positive("deregister_after", self.deregister_after)
        # registry/schema.py's floors: a 1 ms interval is a busy loop, not a health check.
        for field, least in (
            ("ttl", MIN_CHECK_INTERVAL),
            ("interval", MIN_CHECK_INTERVAL),
            ("timeout", MIN_CHECK_TIMEOUT),
        ):
            value = getattr(self, field)
            problem = None if value is None else duration_problem(value, least)
            if problem is not None:
                raise ValueError(f"{field}: {problem}")
        for field in ("success_before_passing", "failures_before_critical"):
            value = getattr(self, field)
            if type(value) is not int or not 0 <= value <= MAX_THRESHOLD:
                raise ValueError(f"{field}: must be an integer 0..{MAX_THRESHOLD}, got {value!r}")

    @property
    def kind(self) -> CheckKind:
        if self.http is not None:
            return CheckKind.HTTP
        return CheckKind.TCP if self.tcp is not None else CheckKind.TTL

    @property
    def effective_timeout(self) -> float:
        """A run never outlasts its interval, so runs of one check cannot overlap."""
        return min(self.timeout, self.interval)


def assign_check_ids(instance_id: str, specs: Sequence[CheckSpec]) -> tuple[CheckSpec, ...]:
    """Give every check without an id Consul's: ``service:<id>``, or ``service:<id>:<n>``
    (n from 1) when the instance has several.

    Raises:
        ValueError: two checks of the instance end up with the same id.
    """
    base = f"service:{instance_id}"
    named = tuple(
        s
        if s.check_id is not None
        else replace(s, check_id=base if len(specs) == 1 else f"{base}:{n}")
        for n, s in enumerate(specs, 1)
    )
    ids = [s.check_id for s in named]
    duplicates = sorted({i for i in ids if ids.count(i) > 1 and i is not None})
    if duplicates:
        raise ValueError(f"checks: id {duplicates[0]!r} used twice")
    return named


def initial_states(
    specs: Sequence[CheckSpec], restored: Sequence[CheckState] = ()
) -> tuple[CheckState, ...]:
    """Critical until proved otherwise, or what a snapshot recorded for the same id and kind."""
    before = {(c.check_id, c.kind): c for c in restored}
    states = []
    for spec in specs:
        assert spec.check_id is not None, "assign_check_ids first"
        state = before.get((spec.check_id, spec.kind))
        states.append(state or CheckState(spec.check_id, spec.kind, Health.CRITICAL, ""))
    return tuple(states)


class CheckTracker:
    """The status of one check, from the stream of its results (the rules above).

    Args:
        spec: the check, with its id assigned.
        state: its status when tracking starts (``initial_states``).
        now: seconds on the caller's clock; the TTL and critical time count from it.
    """

    def __init__(self, spec: CheckSpec, state: CheckState, now: float) -> None:
        self.spec = spec
        self.state = state
        self.successes = 0
        self.failures = 0
        self.critical_since = now if state.status is Health.CRITICAL else None
        self.expires_at = now + spec.ttl if spec.ttl is not None else math.inf

    def _set(self, now: float, status: Health, output: str) -> bool:
        if status is Health.CRITICAL and self.critical_since is None:
            self.critical_since = now
        elif status is not Health.CRITICAL:
            self.critical_since = None
        new = replace(self.state, status=status, output=output)
        changed = new != self.state
        self.state = new
        return changed

    def record(self, now: float, status: Health, output: str) -> bool:
        """One HTTP or TCP result; True if the check's state changed."""
        if status is Health.CRITICAL:
            self.successes = 0
            self.failures += 1
            if self.failures < self.spec.failures_before_critical:
                return False
        else:
            self.failures = 0
            self.successes += 1
            if self.successes < self.spec.success_before_passing:
                return False
        return self._set(now, status, output)

    def report(self, now: float, status: Health, output: str) -> bool:
        """A TTL report (applies at once, restarts the TTL); True if the state changed."""
        assert self.spec.ttl is not None, "report() is for TTL checks"
        self.expires_at = now + self.spec.ttl
        return self._set(now, status, output)

    def expire(self, now: float) -> bool:
        """The TTL ran out without a report; True if the state changed."""
        self.expires_at = math.inf
        return self._set(now, Health.CRITICAL, "TTL expired")

    @property
    def deregister_at(self) -> float:
        """When the instance is to be deregistered, if this check stays critical (inf: never)."""
        if self.critical_since is None or self.spec.deregister_after is None:
            return math.inf
        return self.critical_since + self.spec.deregister_after
