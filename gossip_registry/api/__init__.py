"""Adapters that expose a Node over the network (HTTP, DNS), using its public API only.

Loaded lazily: importing one adapter must not load the others (dnspython alone
costs an agent ~10 MiB it never uses without DNS).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gossip_registry.api.dns import serve_dns
    from gossip_registry.api.http import build_app, serve_http

__all__ = ["build_app", "serve_dns", "serve_http"]

_HOMES = {
    "build_app": "gossip_registry.api.http",
    "serve_dns": "gossip_registry.api.dns",
    "serve_http": "gossip_registry.api.http",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
