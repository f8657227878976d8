"""Client library for services that do not embed a node: discovery over the HTTP API,
client-side load balancing, node fail-over, retries and outlier ejection.

``AsyncRegistryClient`` for trio code, ``RegistryClient`` for blocking code;
both run the same plans (``plans.py``) over the same pure state
(``core.py``: cache, balancers, ejection, node rotation).
"""

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
from gossip_registry.client.sync import RegistryClient
from gossip_registry.client.views import Member

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
    "RegistryClient",
    "RegistryError",
    "Strategy",
]
