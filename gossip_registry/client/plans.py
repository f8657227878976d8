"""What the clients do, written once as plans that both the trio and the blocking client run.

Rules: pure, like h11. A plan is a generator that yields actions (``Send``
an HTTP request, ``Pause``) and is sent back each outcome (the
``httpx.Response``, the ``httpx.TransportError`` the request raised, or
None after a pause); its return value is the result. The async client
runs plans with ``await`` and ``trio.sleep``, the blocking one with
``httpx.Client`` and ``time.sleep``: fail-over, retries, ejection and the
blocking-query rules exist once, and tests can step a plan by hand.

A third action, ``Wait``, waits for another task's fetch (single flight);
its event is the driver's kind (``trio.Event`` or ``threading.Event``), made
by the factory the driver passes in.

``Steps`` is the drivers' shared loop: it closes the plan if the driver
stops early (cancellation, a bug), so the plan's ``finally`` blocks
(outstanding counts, a fetch's waiters) always run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import httpx

from gossip_registry.client.cache import CachedList, WatchState
from gossip_registry.client.core import ClientCore
from gossip_registry.client.errors import (
    BadResponse,
    CallFailed,
    ClientError,
    NoNodeAvailable,
    RegistryError,
)
from gossip_registry.client.instance import Instance, InstanceKey, ServiceQuery, parse_instances
from gossip_registry.client.nodes import jittered

__all__ = [
    "Fetched",
    "Flight",
    "Pause",
    "Plan",
    "Send",
    "Steps",
    "View",
    "Wait",
    "ask_view",
    "cached_list",
    "call",
    "refresh",
    "watch_round",
    "watch_step",
]

T = TypeVar("T")

INDEX_HEADER = "X-Registry-Index"
JOINING_HEADER = "X-Registry-Joining"
"""Set by a node that has not synced with the cluster yet (api/http.py)."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""RFC 9110's idempotent methods: safe to send twice when a first attempt may have arrived."""

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before any byte of the request left: a retry can never run it twice."""


@dataclass(frozen=True, slots=True)
class Send:
    method: str
    url: str
    kwargs: dict[str, Any]
    """Passed to ``httpx.Client.request`` as is (params, headers, json, content, timeout)."""


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


class Event(Protocol):
    """What trio's and threading's events have in common, as far as plans care."""

    def set(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Wait:
    event: Any
    """The driver's own event type; the driver calls its ``wait()``."""


@dataclass(slots=True)
class Flight:
    """One fetch in progress, that later callers of the same query wait for."""

    done: Event
    error: ClientError | None = None


Action = Send | Pause | Wait
Outcome = httpx.Response | httpx.TransportError | None
Plan = Generator[Action, Outcome, T]


class Steps(Generic[T]):
    """A plan's actions one by one; the driver sets ``outcome`` after each ``Send``.

    ``guard`` is held while the plan runs (never while the driver does I/O
    or waits): the blocking client passes its lock, so threads sharing a
    client see consistent counts and single-flight bookkeeping.
    """

    def __init__(self, plan: Plan[T], guard: AbstractContextManager[Any] | None = None) -> None:
        self._plan = plan
        self._guard = guard if guard is not None else nullcontext()
        self.outcome: Outcome = None
        self.result: T

    def actions(self) -> Generator[Action, None, None]:
        """The plan's actions; close this iterator (``contextlib.closing``) to stop early."""
        try:
            while True:
                with self._guard:
                    action = self._plan.send(self.outcome)
                self.outcome = None
                yield action
        except StopIteration as stop:
            self.result = stop.value
        finally:
            with self._guard:
                self._plan.close()


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    value: T
    """What the node answered, parsed (the instance list for a service query)."""
    index: int | None
    node: str
    """The node that answered (and whose index ``index`` is)."""


def _duration(seconds: float) -> str:
    """A wait in the API's duration syntax (whole seconds as ``30s``, else ``500ms``)."""
    return f"{seconds:.0f}s" if seconds == int(seconds) else f"{seconds * 1000:.0f}ms"


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _read(outcome: Outcome, parse: Callable[[Any], T]) -> tuple[T, int | None]:
    """The body (through ``parse``) and index of a node's answer.

    Raises:
        BadResponse: the node failed (unreachable, 5xx, garbage) or is busy (429: its
            blocking-query waiters are full): try the next one.
        RegistryError: the node refused the query (other 4xx): no other node would accept it.
    """
    if not isinstance(outcome, httpx.Response):
        raise BadResponse(_describe(outcome) if outcome is not None else "no answer")
    if outcome.status_code >= 500 or outcome.status_code == 429:
        raise BadResponse(f"HTTP {outcome.status_code}")
    try:
        body = outcome.json()
    except ValueError:
        raise BadResponse(f"HTTP {outcome.status_code} with a body that is not JSON") from None
    if outcome.status_code >= 400:
        message = body.get("error") if isinstance(body, dict) else None
        raise RegistryError(outcome.status_code, str(message or body)[:200])
    if outcome.status_code != 200:
        raise BadResponse(f"unexpected HTTP {outcome.status_code}")
    header = outcome.headers.get(INDEX_HEADER)
    index = int(header) if header is not None and header.isdigit() else None
    return parse(body), index


def _query_kwargs(
    core: ClientCore, params: list[tuple[str, str]], index: int | None = None
) -> dict[str, Any]:
    settings = core.settings
    timeout = settings.node_timeout
    if index is not None:
        params += [("index", str(index)), ("wait", _duration(settings.wait))]
        # The node may hold the request for the whole wait plus its jitter (wait/16 in Consul).
        timeout += settings.wait * 1.25
    return {"params": params, "headers": core.node_headers, "timeout": timeout}


def ask_nodes(
    core: ClientCore,
    query: ServiceQuery,
    index: int | None = None,
    index_node: str | None = None,
) -> Plan[Fetched[list[Instance]]]:
    """A service's instances from the first node that answers (``ask_view``)."""
    return (yield from ask_view(core, query, parse_instances, index, index_node))


class View(Protocol):
    """A read of the node API that takes ``index``/``wait`` (``ServiceQuery`` and the like)."""

    @property
    def path(self) -> str: ...

    def params(self) -> list[tuple[str, str]]: ...


def ask_view(
    core: ClientCore,
    view: View,
    parse: Callable[[Any], T],
    index: int | None = None,
    index_node: str | None = None,
) -> Plan[Fetched[T]]:
    """Query the nodes in turn until one answers.

    With ``index``, the query to ``index_node`` (the node that gave it) is
    a blocking query; any other node is asked for its list at once.

    Raises:
        NoNodeAvailable: every node failed.
        RegistryError: a node refused the query.
    """
    settings = core.settings
    failures: list[str] = []
    # A joining node's answer may lack what the cluster holds: the first discovery
    # after a node started must not return [] while another node knows better.
    joining: Fetched[T] | None = None
    for attempt, base in enumerate(core.nodes.order()):
        if attempt:
            yield Pause(
                jittered(settings.node_backoff, attempt, settings.node_backoff_max, core.rng)
            )
        kwargs = _query_kwargs(core, view.params(), index if base == index_node else None)
        outcome = yield Send("GET", base + view.path, kwargs)
        core.stats["node_requests"] += 1
        try:
            value, answered_index = _read(outcome, parse)
        except BadResponse as exc:
            core.stats["node_failures"] += 1
            failures.append(f"{base}: {exc}")
            continue
        core.nodes.answered(base)
        fetched = Fetched(value, answered_index, base)
        if isinstance(outcome, httpx.Response) and JOINING_HEADER in outcome.headers:
            core.stats["joining_answers"] += 1
            joining = joining or fetched
            failures.append(f"{base}: still joining the cluster")
            continue
        return fetched
    if joining is not None:
        return joining  # only joining nodes answered: the best there is
    raise NoNodeAvailable(failures)


def refresh(core: ClientCore, query: ServiceQuery) -> Plan[CachedList]:
    """Fetch a query's list into the cache; when no node answers, keep serving the old one.

    Raises:
        NoNodeAvailable: no node answered and nothing was cached yet.
        RegistryError: a node refused the query.
    """
    core.stats["fetches"] += 1
    try:
        fetched = yield from ask_nodes(core, query)
    except NoNodeAvailable:
        cached = core.cache.get(query)
        if cached is None:
            raise
        # Serve the last good list; try the nodes again after a backoff, not on every call.
        core.cache.hold(query, core.clock(), core.settings.node_backoff_max)
        return cached
    return core.cache.store(query, fetched.value, fetched.index, core.clock(), fetched.node)


def cached_list(
    core: ClientCore,
    query: ServiceQuery,
    flights: dict[ServiceQuery, Flight],
    new_event: Callable[[], Event],
    watched: AbstractSet[ServiceQuery] = frozenset(),
) -> Plan[CachedList]:
    """The query's list from the cache, fetched first if missing or expired.

    Single flight: the first caller fetches; callers arriving meanwhile
    wait for that fetch and share its result or its error, so a hundred
    callers starting together (or finding the same list expired) cost the
    node one request. A watched query never expires: its watcher keeps it.
    If the fetching caller is cancelled, a waiting one takes over.

    Raises:
        NoNodeAvailable: no node answered and nothing was cached yet.
        RegistryError: a node refused the query.
    """
    while True:
        cached = core.cache.get(query)
        if cached is not None and (query in watched or core.cache.fresh(query, core.clock())):
            return cached
        flight = flights.get(query)
        if flight is not None:
            core.stats["shared_fetches"] += 1
            yield Wait(flight.done)
            if flight.error is not None:
                raise flight.error
            continue  # fetched, or the fetching caller was cancelled: look again
        flight = flights[query] = Flight(new_event())
        try:
            return (yield from refresh(core, query))
        except ClientError as exc:
            flight.error = exc
            raise
        finally:
            del flights[query]
            flight.done.set()


def watch_step(core: ClientCore, query: ServiceQuery, state: WatchState) -> Plan[None]:
    """One round of keeping a cached query fresh (the cache bumps the list's version on change)."""

    def store(fetched: Fetched[list[Instance]]) -> None:
        core.cache.store(query, fetched.value, fetched.index, core.clock(), fetched.node)

    yield from watch_round(core, query, parse_instances, state, store)


def watch_round(
    core: ClientCore,
    view: View,
    parse: Callable[[Any], T],
    state: WatchState,
    answered: Callable[[Fetched[T]], None],
) -> Plan[None]:
    """One round of following a view; ``answered`` gets the node's answer, if one came.

    A blocking query when the node gave an index, else a TTL-paced poll.
    Never raises for a node's failure or refusal: the round ends after a
    backoff, and a node refusing ``index=`` (one without blocking queries)
    switches the loop to polling. An answer that came back without blocking
    is followed by a backoff, so a loop never spins.
    """
    settings = core.settings
    if state.index is None:
        yield Pause(core.cache.ttl_delay())
    started = core.clock()
    try:
        fetched = yield from ask_view(core, view, parse, state.index, state.node)
    except (NoNodeAvailable, RegistryError) as exc:
        if isinstance(exc, RegistryError):
            state.index = None
        yield Pause(jittered(settings.node_backoff_max, 1, settings.node_backoff_max, core.rng))
        return
    elapsed = core.clock() - started
    quick = state.observe(fetched.index, fetched.node, elapsed, settings.min_block)
    answered(fetched)
    if quick:
        core.stats["quick_returns"] += 1
        yield Pause(jittered(settings.min_block, quick, settings.wait, core.rng))


def _failed(core: ClientCore, key: InstanceKey) -> None:
    core.stats["instance_failures"] += 1
    if core.ejector.failure(key, core.clock()):
        core.stats["ejections"] += 1


def call(
    core: ClientCore,
    service: str,
    instances: list[Instance],
    method: str,
    path: str,
    kwargs: dict[str, Any],
) -> Plan[httpx.Response]:
    """Send a request to an instance of ``service``, retrying once elsewhere if it cannot connect.

    A retry goes to an instance not tried yet, after a short jittered
    pause, up to ``settings.attempts`` in all. What is retried:

    - a failure before the request was sent (connect error, connect or
      pool timeout), for every method;
    - a failure after it may have arrived (read timeout, connection reset),
      only for idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE):
      a POST the instance may have executed is never sent twice.

    Responses are returned whatever their status, and never retried. A
    transport failure or a 5xx counts toward the instance's ejection; any
    other response clears its record. Bodies must be bytes, str or json
    (a stream could not be sent twice).

    Raises:
        NoInstanceAvailable: the list is empty.
        CallFailed: every attempt failed (the last error chained).
    """
    settings = core.settings
    method = method.upper()
    kwargs.setdefault("timeout", settings.request_timeout)
    tried: set[InstanceKey] = set()
    failures: list[str] = []
    last: httpx.TransportError | None = None
    for attempt in range(settings.attempts):
        if attempt:
            if len(tried) == len(instances):
                break
            core.stats["retries"] += 1
            yield Pause(jittered(settings.retry_backoff, attempt, 1.0, core.rng))
        instance = core.pick(service, instances, exclude=tried)
        tried.add(instance.key)
        core.load[instance.key] += 1
        try:
            outcome = yield Send(method, instance.url(path, settings.scheme), kwargs)
        finally:
            core.load[instance.key] -= 1
            if core.load[instance.key] <= 0:
                del core.load[instance.key]
        if isinstance(outcome, httpx.Response):
            if outcome.status_code >= 500:
                _failed(core, instance.key)
            else:
                core.ejector.success(instance.key)
            return outcome
        assert outcome is not None, "a Send is answered with a response or an error"
        _failed(core, instance.key)
        failures.append(f"{instance.url(scheme=settings.scheme)}: {_describe(outcome)}")
        last = outcome
        if not (isinstance(outcome, NOT_SENT) or method in IDEMPOTENT_METHODS):
            break
    raise CallFailed(service, failures) from last
