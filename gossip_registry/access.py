"""HTTP API access settings that configuration needs without the web stack.

The middleware that enforces tokens is ``api/auth.py``; this module holds
what config loading and the agent check before a node starts, and imports
only the standard library (``cli`` modules must stay light, see
``cli/_common.py``).
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["exposure_warning", "token_problem"]

_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")


def token_problem(value: object) -> str | None:
    """Why ``value`` cannot be a token, or None. Tokens travel in a header: visible ASCII only."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return None
    return "must be 1..512 visible ASCII characters (no spaces)"


def exposure_warning(http: tuple[str, int] | None, write_token: str | None) -> str | None:
    """A warning when the HTTP API listens beyond loopback with writes open to anyone."""
    if http is None or write_token:
        return None
    host = http[0]
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: may resolve to anything
    return (
        f"the HTTP API listens on {host}, beyond loopback, with no write token: anyone who "
        "can reach it can register and deregister services. Set a write token "
        "(--write-token or GOSSIP_REGISTRY_WRITE_TOKEN, or write_token in cluster.toml) and TLS."
    )
