"""Starts the network interfaces a node's configuration asks for: HTTP, DNS.

Theory of operation: both are adapters over the Node's public API, run as
tasks in the node's own nursery so that stopping the node stops them. Each
is started with ``nursery.start``, so the node reports itself started only
once they listen, and its bound address is recorded on the node
(``http_addr``, ``dns_addr``) as soon as it is known, which ``port = 0``
needs. The node imports this module only when an interface is configured:
the HTTP stack is an optional dependency.
"""

from __future__ import annotations

import importlib
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:  # node.py starts the interfaces, so importing it here would be circular
    from gossip_registry.node import Node

__all__ = ["serve_interfaces"]


async def serve_interfaces(nursery: trio.Nursery, node: Node) -> None:
    """Start in ``nursery`` the HTTP API and the DNS interface that ``node.config`` binds.

    Raises:
        OSError: an address cannot be bound (those started before keep
            running until the nursery is cancelled).
    """
    config = node.config
    # Each interface's stack is imported only when it is configured (issue 17).
    if config.http is not None:
        http = await _load("gossip_registry.api.http")
        node.http_addr = await nursery.start(http.serve_http, node, *config.http)
    if config.dns is not None:
        dns = await _load("gossip_registry.api.dns")
        node.dns_addr = await nursery.start(
            partial(
                dns.serve_dns,
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


async def _load(module: str) -> ModuleType:
    """Import ``module`` in a worker thread, which gives the GIL back every few milliseconds:
    imported in the event loop, the HTTP stack was one step of 117 ms CPU at every start,
    the longest of every node in ``bench_scale.py`` (issue 15)."""
    return await trio.to_thread.run_sync(importlib.import_module, module)
