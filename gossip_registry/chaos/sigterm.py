"""SIGTERM as Ctrl-C for a driving script, delivered where trio can handle it.

A Python signal handler that raises would interrupt trio's own code at an
arbitrary point and abandon the run half-torn-down. Inside ``trio.run`` the
signal is instead received as an event, the work cancelled in order, and
KeyboardInterrupt raised from here, so the caller's ``finally`` blocks (stop
every agent, remove every namespace) run as they do for Ctrl-C.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TypeVar

import trio

__all__ = ["interrupt_on_sigterm", "run_interruptible", "sigterm_as_ctrl_c"]

T = TypeVar("T")


async def interrupt_on_sigterm(work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``, abandoned for a KeyboardInterrupt if SIGTERM arrives meanwhile."""
    results: list[T] = []
    terminated = False
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                results.append(await work())
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            async for _ in signals:
                terminated = True
                nursery.cancel_scope.cancel()
                break
    if terminated or not results:
        raise KeyboardInterrupt
    return results[0]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def sigterm_as_ctrl_c() -> None:
    """Outside ``trio.run``, make SIGTERM raise KeyboardInterrupt, so the ``finally`` blocks
    that stop agents and remove namespaces run for it as they do for Ctrl-C."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def run_interruptible(main: Callable[[], int], stopped: str) -> int:
    """``main()``'s exit status, or 130 after Ctrl-C or SIGTERM (saying ``stopped``)."""
    sigterm_as_ctrl_c()
    try:
        return main()
    except* KeyboardInterrupt:  # trio may deliver it inside a group
        pass
    print(f"interrupted; {stopped}", flush=True)
    return 130
