"""The trio shell over real loopback sockets; shared helpers for its tests.

Timings: ``FAST`` shortens the protocol so that a failure is detected in
about a second, which keeps each multi-node test to a few seconds of wall
time. Waits are bounded waits on conditions (``wait_until``, ``eventually``:
re-exported from ``tests/polling.py``, the suite's one polling helper), never
sleeps used as synchronisation.
"""

from __future__ import annotations

import signal
import socket
from typing import Any

import trio

from gossip_registry.config.node import NodeConfig
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.runtime.node import Node
from tests.polling import eventually as eventually
from tests.polling import wait_until as wait_until

FAST = ProtocolConfig(
    probe_interval=0.2,
    probe_timeout=0.15,
    suspicion_mult=3,
    gossip_interval=0.05,
    fast_gossip_interval=0.01,
    fanout_interval=0.01,
    push_pull_interval=1.0,
    reconnect_interval=1.0,
)
"""Probe every 200 ms; a silent member is dead about 0.6 s after its suspicion starts.

Margins are wide enough for a loaded CI machine: a 150 ms ack timeout on
loopback, and 600 ms to refute a false suspicion."""


def fast_config(name: str, **overrides: Any) -> NodeConfig:
    """A loopback node on a free port with ``FAST`` timings and short stream timeouts."""
    settings: dict[str, Any] = {"protocol": FAST, "tcp_timeout": 2.0, "leave_timeout": 2.0}
    settings.update(overrides)
    return NodeConfig(name, **settings)


async def start_node(nursery: trio.Nursery, config: NodeConfig) -> tuple[Node, trio.CancelScope]:
    """Run a node in ``nursery`` inside a scope of its own; cancel the scope to crash it."""
    node = Node(config)
    scope = trio.CancelScope()

    async def run(*, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await node.run(task_status=task_status)

    await nursery.start(run)
    return node, scope


async def start_cluster(
    nursery: trio.Nursery, n: int, **overrides: Any
) -> list[tuple[Node, trio.CancelScope]]:
    """``n`` nodes, the others joining through the first; returns once all see all alive."""
    first = await start_node(nursery, fast_config("n0", **overrides))
    seeds = (first[0].advertise_addr,)
    nodes = [first]
    for i in range(1, n):
        nodes.append(await start_node(nursery, fast_config(f"n{i}", seeds=seeds, **overrides)))
    await wait_until(lambda: all(alive_count(node) == n for node, _ in nodes))
    return nodes


def alive_count(node: Node) -> int:
    """Members (ourselves included) that ``node`` holds alive."""
    return sum(m.state.label == "alive" for m in node.members())


def ipv6_available() -> bool:
    """Whether ``::1`` can be bound here (containers often lack IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test stops with Ctrl-C (SIGINT), as a terminal would.

    A shell without job control starts background jobs with SIGINT ignored,
    children inherit that, and Python then installs no KeyboardInterrupt
    handler: the child would never see the Ctrl-C (the CI's runner may start
    the suite so). A terminal's foreground program has SIGINT at its default.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
