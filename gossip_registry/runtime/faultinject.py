"""Test-only packet faults inside the transport, for chaos runs without network namespaces.

Chaos testing wants kernel-level faults (nftables in a namespace per node,
``gossip_registry/chaos/hosts.py``); without root those are impossible, so the
same scenarios run on loopback with the faults applied here instead. This is
never on by accident: only the agent's ``--unsafe-test-faults FILE`` flag
enables it (cluster.toml has no such key), and the node logs a loud warning.

The control file is JSON written by the chaos runner, re-read when it changes
(at most every ``RELOAD_INTERVAL``)::

    {"loss": 0.1, "blocked": [["127.1.2.1", "127.1.2.2"], ...]}

``loss`` drops that share of outgoing datagrams; a ``[src, dst]`` pair drops
everything src sends to dst (one way). Hosts are IP literals: in a chaos run
every node binds its own loopback address. A TCP exchange needs both
directions, so it fails if either is blocked; loss does not touch TCP, which
retransmits in the kernel. A missing or malformed file means no faults (and
a warning), never a crash.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["FaultFilter", "unsafe_node_faults"]

logger = logging.getLogger("gossip_registry")

RELOAD_INTERVAL = 0.1
"""Seconds between looks at the control file's modification time."""


class FaultFilter:
    """Decides which packets a node drops, from the control file's current rules."""

    def __init__(
        self,
        path: Path,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._rng = rng or random.Random()
        self._clock = clock
        self._checked = -float("inf")
        self._stamp: tuple[int, int, int] | None = None
        self.loss = 0.0
        self.blocked: frozenset[tuple[str, str]] = frozenset()

    def drops_datagram(self, src: str, dst: str) -> bool:
        """Whether a datagram from host ``src`` to host ``dst`` is lost."""
        self._refresh()
        return (src, dst) in self.blocked or (self.loss > 0 and self._rng.random() < self.loss)

    def blocks_stream(self, src: str, dst: str) -> bool:
        """Whether a TCP exchange between ``src`` and ``dst`` cannot happen (either way cut)."""
        self._refresh()
        return (src, dst) in self.blocked or (dst, src) in self.blocked

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked < RELOAD_INTERVAL:
            return
        self._checked = now
        try:
            st = self.path.stat()
        except OSError:
            stamp = None
        else:
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # the runner renames a new file in
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self.loss, self.blocked = 0.0, frozenset()
        if stamp is None:
            return
        try:
            rules = json.loads(self.path.read_text())
            loss = float(rules.get("loss", 0.0))
            blocked = frozenset((str(a), str(b)) for a, b in rules.get("blocked", ()))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("test faults: ignoring unreadable %s: %s", self.path, exc)
            return
        self.loss, self.blocked = min(max(loss, 0.0), 1.0), blocked


def unsafe_node_faults(path: Path, node_name: str) -> FaultFilter:
    """The filter a node's transport applies, announced loudly: never on by accident."""
    faults = FaultFilter(path)
    logger.warning(
        "UNSAFE TEST MODE: node %s drops packets as %s says; never use this in production",
        node_name,
        path,
    )
    return faults
