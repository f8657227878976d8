"""gossip_registry: a service registry replicated to every node by SWIM gossip.

The public API, importable from here. Names load on first use (PEP 562), so
that ``import gossip_registry.core`` (pure, used by the simulator) does not
pull in trio, httpx or the HTTP server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gossip_registry.client import AsyncRegistryClient, RegistryClient
    from gossip_registry.config.node import NodeConfig
    from gossip_registry.crypto.keyring import Keyring
    from gossip_registry.registry.entry import Entry, Health
    from gossip_registry.registry.health import CheckSpec
    from gossip_registry.runtime.node import MemberView, Node, NotSynced, open_node
    from gossip_registry.runtime.storage.durability import DurabilityError
    from gossip_registry.runtime.threaded import ThreadedNode

_HOMES = {
    "AsyncRegistryClient": "gossip_registry.client",
    "RegistryClient": "gossip_registry.client",
    "DurabilityError": "gossip_registry.runtime.storage.durability",
    "Keyring": "gossip_registry.crypto.keyring",
    "MemberView": "gossip_registry.runtime.node",
    "Node": "gossip_registry.runtime.node",
    "NodeConfig": "gossip_registry.config.node",
    "NotSynced": "gossip_registry.runtime.node",
    "open_node": "gossip_registry.runtime.node",
    "Entry": "gossip_registry.registry.entry",
    "Health": "gossip_registry.registry.entry",
    "CheckSpec": "gossip_registry.registry.health",
    "ThreadedNode": "gossip_registry.runtime.threaded",
}

__all__ = [
    "AsyncRegistryClient",
    "CheckSpec",
    "DurabilityError",
    "Entry",
    "Health",
    "Keyring",
    "MemberView",
    "Node",
    "NodeConfig",
    "NotSynced",
    "RegistryClient",
    "ThreadedNode",
    "open_node",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gossip_registry' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
