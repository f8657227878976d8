"""Closing a nursery that an ``async with`` object opened for itself.

A Node and an AsyncRegistryClient each open a nursery in ``__aenter__`` and
own it until ``__aexit__``; closing it right has two subtleties worth
keeping in one place: cancellation must reach the nursery itself (so the
scopes unwind in order), and an error raised by the body of the ``async
with`` must propagate as itself, not wrapped in an ExceptionGroup by the
nursery.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import trio

__all__ = ["close_owned_nursery"]


async def close_owned_nursery(
    nursery: trio.Nursery,
    manager: Any,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """Cancel ``nursery`` and exit its ``manager``; the return value is ``__aexit__``'s."""
    nursery.cancel_scope.cancel()
    if exc is None or isinstance(exc, trio.Cancelled):
        return bool(await manager.__aexit__(exc_type, exc, tb))
    await manager.__aexit__(None, None, None)
    return None
