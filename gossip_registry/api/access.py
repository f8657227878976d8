"""Warnings the agent gives before a node starts when its interfaces are exposed.

The middleware that enforces tokens is ``api/auth.py``; the token rule itself
is ``registry/schema.py``'s ``token_problem``. This module imports only the
standard library (``cli`` modules must stay light, see ``cli/_common.py``).
"""

from __future__ import annotations

import ipaddress

__all__ = ["dns_exposure_warning", "exposure_warning"]


def _beyond_loopback(host: str) -> bool:
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: may resolve to anything


def dns_exposure_warning(dns: tuple[str, int] | None, read_token: str | None) -> str | None:
    """A warning when reads are meant to be private but DNS, which has no tokens, is not."""
    if dns is None or not read_token or not _beyond_loopback(dns[0]):
        return None
    return (
        f"DNS listens on {dns[0]}, beyond loopback, while the HTTP API needs a read token: "
        "DNS has no tokens, so anyone who can reach it can list every service's instances. "
        "Bind DNS to loopback or to a network that may read the registry."
    )


def exposure_warning(http: tuple[str, int] | None, write_token: str | None) -> str | None:
    """A warning when the HTTP API listens beyond loopback with writes open to anyone."""
    if http is None or write_token or not _beyond_loopback(http[0]):
        return None
    host = http[0]
    return (
        f"the HTTP API listens on {host}, beyond loopback, with no write token: anyone who "
        "can reach it can register and deregister services. Set a write token "
        "(--write-token or GOSSIP_REGISTRY_WRITE_TOKEN, or write_token in cluster.toml) and TLS."
    )
