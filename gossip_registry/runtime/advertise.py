"""The address a node tells its peers to use, when the configuration names none.

Theory of operation: a node bound to a wildcard (0.0.0.0, ::) cannot
advertise it, since peers would send to themselves. It advertises instead
the local address the kernel would route outwards from; an explicit
``advertise`` in the configuration (NAT, containers) always wins and never
comes here.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

__all__ = ["advertise_host"]

logger = logging.getLogger("gossip_registry")


def advertise_host(bound_host: str, family: int) -> str:
    """A host peers can reach when we bound a wildcard (0.0.0.0, ::) and advertise nothing.

    A UDP ``connect`` sends nothing; it only asks the kernel which local
    address routes outwards (memberlist picks a private interface address
    instead; this needs no interface enumeration). Without a route we fall
    back to loopback, which serves a single-host cluster, and say so.
    """
    try:
        wildcard = ipaddress.ip_address(bound_host).is_unspecified
    except ValueError:
        return bound_host
    if not wildcard:
        return bound_host
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect(("2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1", 9))
        host = str(probe.getsockname()[0])
    except OSError:
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    finally:
        probe.close()
    logger.warning("bound to %s with no advertise address; advertising %s", bound_host, host)
    return host
