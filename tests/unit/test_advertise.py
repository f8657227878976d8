"""The advertised host of a node bound to a wildcard (``advertise.py``).

Route and host-name lookups are stand-ins describing a host: which
destinations have a route and from which local address. The real kernel
lookup is exercised here on loopback, and by the multi-host test in network
namespaces that have no default route.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from gossip_registry.runtime.advertise import advertise_host, route_source

V4 = socket.AF_INET


def routes(table: dict[str, str]) -> Callable[[int, str], str | None]:
    """A kernel with routes to the destinations in ``table`` (or to anything, key ``*``)."""

    def route(family: int, destination: str) -> str | None:
        return table.get(destination, table.get("*"))

    return route


def no_name(family: int) -> list[str]:
    return []


def test_a_bound_host_that_is_not_a_wildcard_is_advertised_as_it_is() -> None:
    assert advertise_host("198.18.0.5", V4, ["10.1.0.1"]) == "198.18.0.5"
    assert advertise_host("node1.example", V4) == "node1.example"


def test_on_a_multi_homed_host_the_interface_towards_the_seeds_is_advertised() -> None:
    # The default route leaves by the public interface; the cluster is on 10.1/16.
    kernel = routes({"10.1.0.7": "10.1.0.5", "*": "203.0.113.9"})
    assert advertise_host("0.0.0.0", V4, ["10.1.0.7"], route=kernel, named=no_name) == "10.1.0.5"


def test_a_seed_without_a_route_or_of_another_family_is_skipped() -> None:
    kernel = routes({"10.1.0.7": "10.1.0.5"})
    toward = ["2001:db8::7", "192.0.2.77", "10.1.0.7"]
    assert advertise_host("0.0.0.0", V4, toward, route=kernel, named=no_name) == "10.1.0.5"


def test_without_seeds_the_default_routes_source_is_advertised() -> None:
    kernel = routes({"*": "10.244.1.17"})
    assert advertise_host("0.0.0.0", V4, route=kernel, named=no_name) == "10.244.1.17"


def test_without_any_route_the_host_names_address_is_advertised_unless_loopback() -> None:
    def pod(family: int) -> list[str]:
        return ["127.0.1.1", "10.244.1.17"]

    assert advertise_host("0.0.0.0", V4, route=routes({}), named=pod) == "10.244.1.17"


def test_with_nothing_else_loopback_is_advertised_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert advertise_host("0.0.0.0", V4, route=routes({}), named=no_name) == "127.0.0.1"
    assert advertise_host("::", socket.AF_INET6, route=routes({}), named=no_name) == "::1"
    assert "no route out" in caplog.text


def test_the_kernel_routes_loopback_from_loopback() -> None:
    assert route_source(V4, "127.0.0.1") == "127.0.0.1"
