"""The one polling helper of the test suite, in a trio and a blocking flavour.

Convergence of several nodes (or processes) has no single event to wait
on, so a test polls its condition, bounded in time, and fails with what it
waited for. Never a sleep used as synchronisation: a poll returns as soon
as the condition holds, and says what did not happen when it never does.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

import trio

__all__ = ["eventually", "wait_until"]

INTERVAL = 0.02
"""Seconds between two looks: cheap next to what the tests wait for, short next to a test."""


def _failure(what: object, timeout: float, detail: Callable[[], str] | None) -> AssertionError:
    extra = f"\n{detail()}" if detail is not None else ""
    return AssertionError(f"condition not met within {timeout}s: {what}{extra}")


async def wait_until(
    predicate: Callable[[], bool] | Callable[[], Awaitable[bool]],
    timeout: float = 10.0,
    *,
    what: str | None = None,
    detail: Callable[[], str] | None = None,
    interval: float = INTERVAL,
) -> None:
    """Return once ``predicate()`` holds; fail the test after ``timeout`` seconds.

    Args:
        predicate: the condition; called once per ``interval``, and awaited if it is
            a coroutine function (a condition that needs I/O to look, such as a request).
        timeout: seconds (of trio's clock: virtual under a ``MockClock``).
        what: the condition in words, for the failure (default: the predicate's repr).
        detail: called on failure for more context (logs, stats).
        interval: seconds between two looks.

    Raises:
        AssertionError: the condition did not hold in time.
    """
    try:
        with trio.fail_after(timeout):
            while not await _holds(predicate):
                await trio.sleep(interval)
    except trio.TooSlowError:
        raise _failure(what or predicate, timeout, detail) from None


async def _holds(predicate: Callable[[], bool] | Callable[[], Awaitable[bool]]) -> bool:
    result = predicate()
    return bool(await result) if inspect.isawaitable(result) else bool(result)


def eventually(
    predicate: Callable[[], bool],
    timeout: float = 10.0,
    *,
    what: str | None = None,
    detail: Callable[[], str] | None = None,
    interval: float = INTERVAL,
) -> None:
    """Blocking twin of ``wait_until``, for tests that drive nodes or processes from threads.

    Raises:
        AssertionError: the condition did not hold within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise _failure(what or predicate, timeout, detail)
        time.sleep(interval)
