"""Adapters that expose a Node over the network (HTTP now; DNS later), using its public API only."""

from gossip_registry.api.http import build_app, serve_http

__all__ = ["build_app", "serve_http"]
