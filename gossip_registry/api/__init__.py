"""Adapters that expose a Node over the network (HTTP, DNS), using its public API only."""

from gossip_registry.api.dns import serve_dns
from gossip_registry.api.http import build_app, serve_http

__all__ = ["build_app", "serve_dns", "serve_http"]
