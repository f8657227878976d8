"""Client library for services that do not embed a node: discovery over the HTTP API,
client-side load balancing, node fail-over, retries and outlier ejection.

``AsyncRegistryClient`` for trio code, ``RegistryClient`` for blocking code;
both run the same plans (``plans.py``) over the same pure state
(``core.py``: cache, balancers, ejection, node rotation). ``NodeApi``
(``node_api.py``) is one node's API for operators' tools, on the standard
library alone.

Names load on first use (PEP 562): ``NodeApi`` must not pay for trio and
httpx, which only the discovery clients need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gossip_registry.client.aio import AsyncRegistryClient
    from gossip_registry.client.balancers import Strategy
    from gossip_registry.client.core import ClientSettings
    from gossip_registry.client.errors import (
        BadResponse,
        CallFailed,
        ClientError,
        NoInstanceAvailable,
        NoNodeAvailable,
        RegistryError,
    )
    from gossip_registry.client.instance import Instance
    from gossip_registry.client.node_api import NodeApi, NodeUnreachable
    from gossip_registry.client.sync import RegistryClient
    from gossip_registry.client.views import Member

_HOMES = {
    "AsyncRegistryClient": "aio",
    "BadResponse": "errors",
    "CallFailed": "errors",
    "ClientError": "errors",
    "ClientSettings": "core",
    "Instance": "instance",
    "Member": "views",
    "NoInstanceAvailable": "errors",
    "NoNodeAvailable": "errors",
    "NodeApi": "node_api",
    "NodeUnreachable": "node_api",
    "RegistryClient": "sync",
    "RegistryError": "errors",
    "Strategy": "balancers",
}

__all__ = [
    "AsyncRegistryClient",
    "BadResponse",
    "CallFailed",
    "ClientError",
    "ClientSettings",
    "Instance",
    "Member",
    "NoInstanceAvailable",
    "NoNodeAvailable",
    "NodeApi",
    "NodeUnreachable",
    "RegistryClient",
    "RegistryError",
    "Strategy",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
