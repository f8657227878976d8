"""A Consul-compatible HTTP API (a subset), served on every node's HTTP port beside our own.

Tools teams already run (Prometheus' Consul discovery, consul-template,
Traefik's ``consulCatalog`` provider, py-consul and Go's ``api`` package)
talk to any node as they would to a Consul agent. It is a thin adapter over
the Node's public API, the operations our own API (``api/http.py``) calls:
``routes.py`` maps Consul's paths and parameters onto them, ``shapes.py``
renders Consul's JSON, ``bodies.py`` reads Consul's request bodies. What is
served and what is not is listed in docs/integrations.md.
"""

from gossip_registry.api.consul.routes import UNSUPPORTED, consul_routes

__all__ = ["UNSUPPORTED", "consul_routes"]
