"""Seeds given by name: every address each name has now, for one join attempt.

Theory of operation: a seed (``--join``, cluster.toml's ``seeds``) is a
``host:port`` whose host is an IP address or a DNS name. The core's join
policy (``core/protocol.py``: backoff, ``retry_join_timeout``) asks for the
names to be resolved again before each retry (``ResolveSeeds``); this module
does that resolving, which is I/O and so belongs to the runtime. Every
address a name returns is kept, not only the first: a Kubernetes headless
service answers with one A record per pod, and any of them may be the one
that is up (Consul's ``retry_join`` does the same).

The system resolver is used (``getaddrinfo``, in a worker thread that trio
abandons on cancel), so ``/etc/hosts``, search domains and ``resolv.conf``
apply as they do for any program on the host or in the pod. Each name gets at
most ``RESOLVE_TIMEOUT`` seconds: a DNS server that does not answer must not
hold up the join, whose own timing is the core's. A name that fails is
logged and adds no address; whether to try again is the policy's decision.

Lives at ``gossip_registry/runtime/seeds.py`` until the restructure moves the runtime
to ``gossip_registry/runtime/`` (then ``runtime/seeds.py``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable

import trio

from gossip_registry.core.messages import Address

__all__ = ["RESOLVE_TIMEOUT", "Resolver", "has_names", "is_literal", "resolve_seeds"]

logger = logging.getLogger("gossip_registry")

RESOLVE_TIMEOUT = 5.0
"""Seconds one name may take to resolve before its attempt goes on without it."""

Resolver = Callable[[str, int, int], Awaitable[list[Address]]]
"""``(name, port, family) -> addresses``: the system resolver, or a test's stand-in."""


def is_literal(host: str) -> bool:
    """Whether ``host`` is an IP address (used as it is) rather than a name to resolve."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def has_names(seeds: Iterable[Address]) -> bool:
    """Whether any seed is a name: then the join resolves them before every attempt."""
    return any(not is_literal(host) for host, _ in seeds)


async def system_resolver(name: str, port: int, family: int) -> list[Address]:
    """Every address ``getaddrinfo`` gives for ``name`` (A and AAAA records, /etc/hosts)."""
    infos = await trio.socket.getaddrinfo(name, port, family, socket.SOCK_STREAM)
    return [(str(sockaddr[0]), int(sockaddr[1])) for *_, sockaddr in infos]


async def resolve_seeds(
    seeds: Iterable[Address],
    *,
    family: int = socket.AF_UNSPEC,
    resolver: Resolver = system_resolver,
    timeout: float = RESOLVE_TIMEOUT,
) -> list[Address]:
    """The addresses to ask in one join attempt: IP seeds as given, names resolved now.

    Args:
        seeds: configured seeds, names and IP addresses mixed, in order.
        family: the node's address family (``AF_INET`` for a node bound to an
            IPv4 address: an AAAA answer would be a second address of a
            member, ourselves included, that no filter recognises).
        resolver: resolves one name; the system's by default.
        timeout: seconds for each name.

    Returns:
        Every address, in seed order, each once; empty if no name resolved.
    """
    out: list[Address] = []
    for host, port in seeds:
        if is_literal(host):
            out.append((host, port))
            continue
        found: list[Address] = []
        with trio.move_on_after(timeout) as scope:
            try:
                found = await resolver(host, port, family)
            except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
                logger.warning("seed %s:%d does not resolve: %s", host, port, exc)
                continue
        if scope.cancelled_caught:
            logger.warning("seed %s:%d did not resolve within %gs", host, port, timeout)
        elif not found:
            logger.warning("seed %s:%d resolves to no address", host, port)
        else:
            logger.debug("seed %s:%d resolves to %s", host, port, [h for h, _ in found])
        out.extend(found)
    return list(dict.fromkeys(out))
