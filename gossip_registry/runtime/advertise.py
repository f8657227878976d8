"""The address a node tells its peers to use, when the configuration names none.

Theory of operation: a node bound to a wildcard (0.0.0.0, ::) cannot
advertise it, since peers would send to themselves. It advertises instead
a local address peers can reach, found in this order:

1. the source address the kernel would use towards the first seed it has a
   route to: on a multi-homed host that is the interface on the cluster's
   network, not whichever one carries the default route;
2. the source address of the default route (a pod's only interface);
3. an address this host's name resolves to that is not loopback (in a pod
   or container, ``/etc/hosts`` maps the host name to the pod IP, which
   helps when a network has no default route);
4. loopback, which serves a single-host cluster, with a warning.

Each probe is a UDP ``connect``, which sends nothing: it only asks the
kernel for a route. An explicit ``advertise`` in the configuration (NAT,
containers, ``GOSSIP_REGISTRY_ADVERTISE`` from the pod IP) always wins and
never comes here.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence

__all__ = ["advertise_host"]

logger = logging.getLogger("gossip_registry")

_UNROUTED: dict[int, str] = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
"""Documentation addresses (never answered): a connect to one finds the default route."""


def route_source(family: int, destination: str) -> str | None:
    """The local address the kernel would send from towards ``destination``; None: no route."""
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect((destination, 9))
        return str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()


def host_name_addresses(family: int) -> list[str]:
    """What this host's name resolves to (``/etc/hosts`` first, as configured)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_DGRAM)
    except OSError:
        return []
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def advertise_host(
    bound_host: str,
    family: int,
    toward: Sequence[str] = (),
    *,
    route: Callable[[int, str], str | None] = route_source,
    named: Callable[[int], list[str]] = host_name_addresses,
) -> str:
    """A host peers can reach when we bound a wildcard (0.0.0.0, ::) and advertise nothing.

    Args:
        bound_host: the host the gossip sockets are bound to; returned as it
            is unless it is a wildcard.
        family: the sockets' address family.
        toward: seed hosts (IP addresses, names already resolved), in order.
        route: the kernel's route lookup (a test's stand-in).
        named: the host name lookup (a test's stand-in).
    """
    try:
        wildcard = ipaddress.ip_address(bound_host).is_unspecified
    except ValueError:
        return bound_host
    if not wildcard:
        return bound_host
    for seed in toward:
        if _family_of(seed) == family:
            source = route(family, seed)
            if source is not None:
                logger.info(
                    "bound to %s; advertising %s, the way to seed %s", bound_host, source, seed
                )
                return source
    source = route(family, _UNROUTED[family])
    if source is not None:
        logger.info("bound to %s; advertising %s, the default route's", bound_host, source)
        return source
    for address in named(family):
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
            logger.info("bound to %s; advertising %s, the host name's", bound_host, address)
            return address
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    logger.warning(
        "bound to %s with no advertise address and no route out; advertising %s", bound_host, host
    )
    return host


def _family_of(host: str) -> int | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET
