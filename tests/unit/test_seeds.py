"""Seeds by name (``seeds.py``): every address of every name, resolved at each call.

The resolver is a stand-in (the real one is exercised by the multi-host test
against a DNS server of its own); the clock is trio's autojump clock, so the
per-name timeout costs no wall time.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio

from gossip_registry.core.messages import Address
from gossip_registry.runtime.seeds import has_names, is_literal, resolve_seeds, system_resolver

RECORDS = {
    "seeds.svc": ["198.18.0.1", "198.18.0.2", "198.18.0.3"],
    "other.svc": ["198.18.0.3", "198.18.0.4"],
    "empty.svc": [],
}


class FakeDNS:
    """Answers from a table that a test may change between calls; counts every question."""

    def __init__(self) -> None:
        self.records = {name: list(hosts) for name, hosts in RECORDS.items()}
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, name: str, port: int, family: int) -> list[Address]:
        self.asked.append((name, family))
        if name == "slow.svc":
            await trio.sleep_forever()
        if name not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(host, port) for host in self.records[name]]


def test_ip_addresses_are_literals_and_everything_else_is_a_name() -> None:
    assert is_literal("198.18.0.1")
    assert is_literal("::1")
    assert not is_literal("seeds.svc")
    assert not is_literal("localhost")
    assert has_names([("198.18.0.1", 7946), ("seeds.svc", 7946)])
    assert not has_names([("198.18.0.1", 7946), ("::1", 7946)])


async def test_every_address_of_every_name_is_returned_in_order_each_once() -> None:
    dns = FakeDNS()
    seeds = [("198.18.0.9", 7000), ("seeds.svc", 7946), ("other.svc", 7946)]
    assert await resolve_seeds(seeds, resolver=dns) == [
        ("198.18.0.9", 7000),
        ("198.18.0.1", 7946),
        ("198.18.0.2", 7946),
        ("198.18.0.3", 7946),
        ("198.18.0.4", 7946),
    ]
    assert [name for name, _ in dns.asked] == ["seeds.svc", "other.svc"]  # literals: no lookup


async def test_each_call_resolves_again_and_sees_hosts_that_came_and_went() -> None:
    dns = FakeDNS()
    first = await resolve_seeds([("seeds.svc", 7946)], resolver=dns)
    dns.records["seeds.svc"] = ["198.18.0.2", "198.18.0.7"]
    second = await resolve_seeds([("seeds.svc", 7946)], resolver=dns)
    assert len(first) == 3
    assert second == [("198.18.0.2", 7946), ("198.18.0.7", 7946)]


async def test_a_name_that_fails_adds_nothing_and_the_others_still_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dns = FakeDNS()
    seeds = [("missing.svc", 7946), ("empty.svc", 7946), ("other.svc", 7946)]
    assert await resolve_seeds(seeds, resolver=dns) == [("198.18.0.3", 7946), ("198.18.0.4", 7946)]
    assert "seed missing.svc:7946 does not resolve" in caplog.text
    assert "seed empty.svc:7946 resolves to no address" in caplog.text


async def test_a_name_that_does_not_answer_gives_up_after_the_timeout(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dns = FakeDNS()
    start = trio.current_time()
    found = await resolve_seeds([("slow.svc", 1), ("other.svc", 2)], resolver=dns, timeout=3.0)
    assert found == [("198.18.0.3", 2), ("198.18.0.4", 2)]
    assert trio.current_time() - start == pytest.approx(3.0)
    assert "seed slow.svc:1 did not resolve within 3s" in caplog.text


async def test_the_family_is_passed_to_the_resolver() -> None:
    dns = FakeDNS()
    await resolve_seeds([("seeds.svc", 7946)], family=socket.AF_INET, resolver=dns)
    assert dns.asked == [("seeds.svc", socket.AF_INET)]


async def test_the_system_resolver_answers_from_the_hosts_file() -> None:
    with trio.fail_after(10):
        found = await system_resolver("localhost", 7946, socket.AF_INET)
    assert ("127.0.0.1", 7946) in found
