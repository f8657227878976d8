"""Starts the network interfaces a node's configuration asks for: HTTP, DNS.

Theory of operation: both are adapters over the Node's public API, run as
tasks in the node's own nursery so that stopping the node stops them. Each
is started with ``nursery.start``, so the node reports itself started only
once they listen; the bound addresses are returned to the node, which records
them itself (``port = 0`` needs them). The node imports this module only when
an interface is configured: the HTTP stack is an optional dependency.
"""

from __future__ import annotations

import importlib
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import trio

from gossip_registry.core.messages import Address

if TYPE_CHECKING:  # node.py starts the interfaces, so importing it here would be circular
    from gossip_registry.runtime.node import Node

__all__ = ["Listening", "serve_interfaces"]


class Listening(NamedTuple):
    """Where the interfaces listen; None for one not configured."""

    http: Address | None
    dns: Address | None


async def serve_interfaces(nursery: trio.Nursery, node: Node) -> Listening:
    """Start in ``nursery`` the HTTP API and the DNS interface that ``node.config`` binds.

    Returns:
        The bound addresses (with the port the system chose for port 0).

    Raises:
        OSError: an address cannot be bound (those started before keep
            running until the nursery is cancelled).
    """
    config = node.config
    http: Address | None = None
    dns: Address | None = None
    # Each interface's stack is imported only when it is configured (issue 17).
    if config.http is not None:
        module = await _load("gossip_registry.api.http")
        http = await nursery.start(module.serve_http, node, *config.http)
    if config.dns is not None:
        module = await _load("gossip_registry.api.dns")
        dns = await nursery.start(
            partial(
                module.serve_dns,
                domain=config.dns_domain,
                ttl=config.dns_ttl,
                stats=node.dns_stats,
                rate_limit=config.dns_rate_limit,
                trusted_networks=config.dns_trusted_networks,
                max_tcp_connections=config.max_dns_tcp_connections,
            ),
            node,
            *config.dns,
        )
    return Listening(http, dns)


async def _load(module: str) -> ModuleType:
    """Import ``module`` in a worker thread, which gives the GIL back every few milliseconds:
    imported in the event loop, the HTTP stack was one step of 117 ms CPU at every start,
    the longest of every node in ``bench_scale.py`` (issue 15)."""
    return await trio.to_thread.run_sync(importlib.import_module, module)
