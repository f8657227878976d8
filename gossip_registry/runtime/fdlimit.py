"""Raise this process's soft limit on open files to its hard limit.

Every held blocking query is an open connection, so a node with 10,000
watchers needs over 10,000 descriptors, and many systems start processes
with a soft limit of 1,024 (systemd's default) under a much higher hard one.
Without raising it the node would refuse connections with EMFILE long
before ``max_waiters`` could say anything clearer. Only the soft limit
moves, never above the hard one, so this needs no privilege; it cannot make
a hard limit that is too low any higher.
"""

from __future__ import annotations

import resource
from pathlib import Path

__all__ = ["FD_RESERVE", "connection_budget", "raise_open_files_limit"]

NR_OPEN = Path("/proc/sys/fs/nr_open")
"""Linux's ceiling for any process's limit, used when the hard limit is unlimited."""


def raise_open_files_limit() -> tuple[int, int]:
    """Set RLIMIT_NOFILE's soft limit to the hard one; ``(before, after)`` soft limits.

    An unlimited hard limit cannot be the soft one on Linux (setrlimit
    refuses it), so the kernel's ``nr_open`` is used instead; where that is
    unknown too, or the system refuses, the limit stays as it was
    (``after == before``): the caller runs with fewer descriptors, which is
    what it would have had anyway.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(NR_OPEN.read_text())
        except (OSError, ValueError):
            return soft, soft
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return soft, soft
    return soft, target


FD_RESERVE = 256
"""Descriptors kept out of the client interfaces' reach: gossip's UDP socket and its inbound
and outbound TCP streams (128 inbound slots), snapshot and keyring files, logs."""


def connection_budget(wanted: int, share: float) -> int:
    """Connections an interface may hold: ``wanted``, but at most ``share`` of the descriptors
    left under the soft open-files limit once FD_RESERVE is set aside (at least 1).

    Read at each interface's start, after ``raise_open_files_limit``, so the
    budget follows the limit the process really has: a node with 1,024
    descriptors serves fewer HTTP clients, but still gossips when they are
    all connected (issue 10, finding 3).
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, int((soft - FD_RESERVE) * share)))
