"""The DNS interface against real nodes on loopback, asked by dnspython's resolver and queries.

dnspython's client calls block, so they run in a worker thread
(``trio.to_thread``) while the node keeps answering in the test's trio loop.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import httpx
import pytest
import trio

from gossip_registry.api.dns import SourceRateLimit, serve_dns
from gossip_registry.api.dns_answer import addr_label
from gossip_registry.registry.entry import Health
from gossip_registry.runtime.node import Node
from tests.integration import fast_config, start_node, wait_until

TIMEOUT = 20.0
"""Absolute bound on each test (a two-node cluster forms in about a second)."""
QUERY_TIMEOUT = 3.0

_T = TypeVar("_T")


async def blocking(call: Callable[[], _T]) -> _T:
    return await trio.to_thread.run_sync(call)


@asynccontextmanager
async def dns_node(name: str = "d1", **overrides: Any) -> AsyncIterator[Node]:
    """One node with DNS (and HTTP) on free loopback ports."""
    config = fast_config(name, http=("127.0.0.1", 0), dns=("127.0.0.1", 0), **overrides)
    with trio.fail_after(TIMEOUT):
        async with Node(config) as node:
            yield node


def resolver(node: Node) -> dns.resolver.Resolver:
    assert node.dns_addr is not None
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [node.dns_addr[0]]
    r.port = node.dns_addr[1]
    r.lifetime = QUERY_TIMEOUT
    return r


def query(
    node: Node, name: str, rdtype: str, *, tcp: bool = False, **options: Any
) -> dns.message.Message:
    assert node.dns_addr is not None
    host, port = node.dns_addr
    message = dns.message.make_query(name, rdtype, **options)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(message, host, port=port, timeout=QUERY_TIMEOUT)


def srv_set(answer: dns.resolver.Answer) -> set[tuple[str, int, int]]:
    """(address, port, weight) per SRV record: the target's additional A/AAAA, else its name."""
    response = answer.response
    addresses = {
        rrset.name.to_text(): rrset[0].address
        for rrset in response.additional
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
    }
    return {
        (addresses.get(r.target.to_text(), r.target.to_text(omit_final_dot=True)), r.port, r.weight)
        for r in answer
    }


async def register_web(node: Node) -> None:
    await node.register("web", instance_id="w1", address="10.0.0.1", port=80, tags=["v1"])
    await node.register("web", instance_id="w2", address="10.0.0.2", port=81, tags=["V2"], weight=7)
    await node.register("web", instance_id="w3", address="fd00::3", port=82, tags=["v2"])
    await node.register(
        "web", instance_id="w4", address="10.0.0.4", port=83, status=Health.CRITICAL
    )
    await node.register("web", instance_id="w5", address="web5.example.com", port=84)


# --- Answers ------------------------------------------------------------------------


async def test_srv_and_address_answers_of_another_node_match_its_http_api() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            owner, _ = await start_node(nursery, fast_config("n0"))
            config = fast_config(
                "n1", seeds=(owner.advertise_addr,), http=("127.0.0.1", 0), dns=("127.0.0.1", 0)
            )
            asker, _ = await start_node(nursery, config)
            await register_web(owner)
            await wait_until(lambda: len(asker.discover("web", passing_only=False)) == 5)

            srv = await blocking(lambda: resolver(asker).resolve("web.service.registry.", "SRV"))
            a = await blocking(lambda: resolver(asker).resolve("web.service.registry.", "A"))
            aaaa = await blocking(lambda: resolver(asker).resolve("web.service.registry", "AAAA"))
            assert asker.http_addr is not None
            async with httpx.AsyncClient() as client:
                url = f"http://{asker.http_addr[0]}:{asker.http_addr[1]}/v1/services/web"
                api = (await client.get(url, params={"passing": "true"})).json()
            nursery.cancel_scope.cancel()

    ips = {i["address"] for i in api if addr_label(i["address"]) is not None}
    assert (
        {r.address for r in a} | {r.address for r in aaaa}
        == ips
        == {
            "10.0.0.1",
            "10.0.0.2",
            "fd00::3",
        }
    )
    # The instance registered under a host name has it as its SRV target (and no A record).
    assert srv_set(srv) == {(i["address"], i["port"], i["weight"]) for i in api}
    assert len(srv) == len(api) == 4  # the critical one is in neither
    assert all(rrset is not None and rrset.ttl == 5 for rrset in (srv.rrset, a.rrset))


async def test_tags_filter_in_both_name_forms_and_names_ignore_case() -> None:
    async with dns_node() as node:
        await register_web(node)

        for name in ("v2.web.service.registry.", "_WEB._v2.Service.Registry."):
            srv = await blocking(partial(resolver(node).resolve, name, "SRV"))
            assert sorted(r.port for r in srv) == [81, 82]
        tcp = await blocking(lambda: resolver(node).resolve("_web._tcp.service.registry.", "SRV"))
        assert sorted(r.port for r in tcp) == [80, 81, 82, 84]
        echoed = await blocking(lambda: query(node, "WeB.sErViCe.registry.", "A"))
        assert echoed.answer[0].name.to_text() == "WeB.sErViCe.registry."


async def test_a_node_name_gives_the_members_address_and_unknown_names_are_nxdomain() -> None:
    async with dns_node("d1") as node:
        await register_web(node)
        a = await blocking(lambda: resolver(node).resolve("d1.node.registry.", "A"))
        assert [r.address for r in a] == ["127.0.0.1"]

        for name in ("d9.node.registry.", "nope.service.registry.", "x.v1.web.service.registry."):
            response = await blocking(partial(query, node, name, "A"))
            assert response.rcode() == dns.rcode.NXDOMAIN
            assert response.flags & dns.flags.AA
            (soa,) = response.authority
            assert soa.rdtype == dns.rdatatype.SOA
            assert soa[0].minimum == 5  # negative answers cached no longer than positive ones
        assert node.dns_stats["nxdomain"] == 3


async def test_a_known_name_without_records_of_the_type_is_an_empty_noerror() -> None:
    async with dns_node() as node:
        await register_web(node)
        await node.register("down", address="10.0.0.9", port=1, status=Health.CRITICAL)

        for name, rdtype in (
            ("v1.web.service.registry.", "AAAA"),  # only an IPv4 instance has tag v1
            ("down.service.registry.", "A"),  # exists, but nothing passing
            ("service.registry.", "A"),
            ("web.service.registry.", "TXT"),
        ):
            response = await blocking(partial(query, node, name, rdtype))
            assert (response.rcode(), response.answer) == (dns.rcode.NOERROR, [])
            assert response.authority[0].rdtype == dns.rdatatype.SOA


async def test_names_outside_the_domain_are_refused_and_the_domain_is_configurable() -> None:
    async with dns_node(dns_domain="sd.example", dns_ttl=30.0) as node:
        await register_web(node)
        refused = await blocking(lambda: query(node, "web.service.registry.", "A"))
        assert refused.rcode() == dns.rcode.REFUSED
        answered = await blocking(lambda: resolver(node).resolve("web.service.sd.example.", "A"))
        assert answered.rrset is not None
        assert answered.rrset.ttl == 30
        assert node.dns_stats["refused"] == 1


async def test_answers_follow_registry_changes() -> None:
    async with dns_node() as node:
        await node.register("api", instance_id="a1", address="10.1.0.1", port=1)
        first = await blocking(lambda: resolver(node).resolve("api.service.registry.", "SRV"))
        await node.register("api", instance_id="a1", address="10.1.0.2", port=2)
        second = await blocking(lambda: resolver(node).resolve("api.service.registry.", "SRV"))
        await node.deregister("a1")
        gone = await blocking(lambda: query(node, "api.service.registry.", "SRV"))

    assert [r.port for r in first] == [1]
    assert [r.port for r in second] == [2]
    assert gone.rcode() == dns.rcode.NXDOMAIN


async def test_answers_are_shuffled_per_query() -> None:
    async with dns_node() as node:
        for i in range(20):
            await node.register("many", address=f"10.2.0.{i + 1}", port=80)
        firsts = set()
        for _ in range(10):
            response = await blocking(
                lambda: query(node, "many.service.registry.", "A", use_edns=0, payload=1232)
            )
            firsts.add(response.answer[0][0].address)
    assert len(firsts) > 1  # the same first record 10 times: chance 20**-9


# --- Size -----------------------------------------------------------------------------


async def test_a_large_answer_is_truncated_over_udp_and_complete_over_tcp() -> None:
    async with dns_node() as node:
        for i in range(60):
            await node.register("big", address=f"10.3.{i // 200}.{i % 200 + 1}", port=1000 + i)

        udp = await blocking(lambda: query(node, "big.service.registry.", "A"))
        assert udp.flags & dns.flags.TC
        assert 0 < len(udp.answer[0]) < 60  # the whole records that fit 512 bytes
        assert node.dns_stats["truncated"] == 1
        # EDNS0 raises the UDP limit: 60 A records fit 4096 bytes.
        edns = await blocking(
            lambda: query(node, "big.service.registry.", "A", use_edns=0, payload=4096)
        )
        assert not edns.flags & dns.flags.TC
        assert len(edns.answer[0]) == 60
        # The resolver retries a truncated answer over TCP by itself.
        a = await blocking(lambda: resolver(node).resolve("big.service.registry.", "A"))
        assert len(a) == 60
        tcp = await blocking(lambda: query(node, "big.service.registry.", "SRV", tcp=True))
        assert len(tcp.answer[0]) == 60
        assert sum(len(rrset) for rrset in tcp.additional) == 60


async def test_an_answer_that_fits_without_all_its_additional_records_is_not_truncated() -> None:
    async with dns_node() as node:
        for i in range(8):  # 8 SRV records take ~380 bytes, with their A records ~680
            await node.register("mid", address=f"10.4.0.{i + 1}", port=2000 + i)
        response = await blocking(lambda: query(node, "mid.service.registry.", "SRV"))
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 8
    assert 0 < sum(len(rrset) for rrset in response.additional) < 8


# --- Hostile input --------------------------------------------------------------------


async def test_malformed_queries_get_formerr_or_are_dropped_and_the_server_keeps_answering() -> (
    None
):
    async with dns_node() as node:
        await register_web(node)
        assert node.dns_addr is not None
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.connect(node.dns_addr)
            # A header (id 0x1234, a query) followed by a question that runs off the end.
            await sock.send(struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x03ab")
            with trio.fail_after(QUERY_TIMEOUT):
                reply = dns.message.from_wire(await sock.recv(512))
            assert (reply.id, reply.rcode()) == (0x1234, dns.rcode.FORMERR)
            await sock.send(b"\x00\x01\x02")  # too short for a header: dropped
            response = dns.message.make_response(
                dns.message.make_query("web.service.registry.", "A")
            )
            await sock.send(response.to_wire())  # a response: dropped, never answered
            with trio.move_on_after(0.3) as silence:
                await sock.recv(512)
            assert silence.cancelled_caught

        # Over TCP: garbage in a frame gets FORMERR and the connection stays usable.
        stream = await trio.open_tcp_stream(*node.dns_addr)
        async with stream:
            junk = struct.pack("!HHHHHH", 7, 0x0100, 0, 0, 0, 1) + b"\xff" * 5
            await stream.send_all(len(junk).to_bytes(2, "big") + junk)
            good = dns.message.make_query("web.service.registry.", "A").to_wire()
            await stream.send_all(len(good).to_bytes(2, "big") + good)
            data = b""
            with trio.fail_after(QUERY_TIMEOUT):
                while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big") + 2:
                    data += await stream.receive_some(4096)
                    first = 2 + int.from_bytes(data[:2], "big")
                    if len(data) >= first + 2 and len(data) >= first + 2 + int.from_bytes(
                        data[first : first + 2], "big"
                    ):
                        break
            assert dns.message.from_wire(data[2:first]).rcode() == dns.rcode.FORMERR
            assert dns.message.from_wire(data[first + 2 :]).answer

        a = await blocking(lambda: resolver(node).resolve("web.service.registry.", "A"))
        assert len(a) == 2
        assert node.dns_stats["malformed"] == 4


async def test_a_bad_domain_or_ttl_is_refused_before_binding() -> None:
    async with dns_node() as node:
        for kwargs in ({"domain": "."}, {"ttl": -1.0}, {"ttl": float("nan")}):
            with pytest.raises(ValueError, match="dns"):
                await serve_dns(node, "127.0.0.1", 0, **kwargs)


# --- What one source can take (issue 10, finding 9) ---------------------------------------


async def register_big(node: Node, count: int = 60) -> None:
    for i in range(count):
        await node.register("big", address=f"10.3.{i // 200}.{i % 200 + 1}", port=1000 + i)


async def test_any_gets_a_minimal_answer_of_one_record() -> None:
    async with dns_node() as node:
        await register_big(node)
        question = dns.message.make_query("big.service.registry.", "ANY", use_edns=0, payload=4096)
        wire = question.to_wire()
        response = await blocking(
            lambda: query(node, "big.service.registry.", "ANY", use_edns=0, payload=4096)
        )
    assert sum(len(rrset) for rrset in response.answer) == 1
    assert len(response.to_wire()) < 2 * len(wire)


async def test_udp_answers_to_untrusted_sources_are_capped_at_512_bytes_whatever_edns_offers() -> (
    None
):
    async with dns_node(dns_trusted_networks=()) as node:
        await register_big(node)
        assert node.dns_addr is not None
        message = dns.message.make_query("big.service.registry.", "SRV", use_edns=0, payload=4096)
        host, port = node.dns_addr
        wire = await blocking(lambda: _raw_udp(message.to_wire(), host, port))
        response = dns.message.from_wire(wire)
        assert len(wire) <= 512
        assert response.flags & dns.flags.TC
        # Over TCP the whole answer comes back, as a resolver would then ask.
        tcp = await blocking(lambda: query(node, "big.service.registry.", "SRV", tcp=True))
        assert len(tcp.answer[0]) == 60


def _raw_udp(payload: bytes, host: str, port: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(QUERY_TIMEOUT)
        sock.sendto(payload, (host, port))
        return sock.recv(65535)


async def test_queries_beyond_the_per_source_rate_are_dropped_and_counted() -> None:
    sent = 40
    async with dns_node(dns_trusted_networks=(), dns_rate_limit=5) as node:
        await register_web(node)
        assert node.dns_addr is not None
        wire = dns.message.make_query("web.service.registry.", "A").to_wire()
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # trio makes it non-blocking
        with trio.socket.from_stdlib_socket(raw) as sock:
            for _ in range(sent):
                await sock.sendto(wire, node.dns_addr)
            await wait_until(
                lambda: node.dns_stats["queries"] + node.dns_stats["rate_limited"] == sent
            )
            answered = 0
            while True:
                try:
                    raw.recv(65535)
                except BlockingIOError:
                    break
                answered += 1
        assert 5 <= answered <= 10  # a burst of 5, and what refills while they arrive
        assert node.dns_stats["rate_limited"] == sent - node.dns_stats["queries"]
        assert node.dns_stats["rate_limited"] >= sent - 10


async def test_trusted_sources_are_not_rate_limited() -> None:
    async with dns_node(dns_rate_limit=1) as node:  # loopback is trusted by default
        await register_web(node)
        for _ in range(5):
            response = await blocking(lambda: query(node, "web.service.registry.", "A"))
            assert response.answer
        assert node.dns_stats.get("rate_limited", 0) == 0


async def test_dns_tcp_connections_beyond_the_limit_are_closed_at_once_and_counted() -> None:
    async with dns_node(max_dns_tcp_connections=2) as node:
        assert node.dns_addr is not None
        held = [await trio.open_tcp_stream(*node.dns_addr) for _ in range(2)]
        wire = dns.message.make_query("web.service.registry.", "A").to_wire()
        for stream in held:  # an answer on each: both are being served
            await stream.send_all(len(wire).to_bytes(2, "big") + wire)
            with trio.fail_after(QUERY_TIMEOUT):
                assert await stream.receive_some(65535)
        extra = await trio.open_tcp_stream(*node.dns_addr)
        with trio.fail_after(QUERY_TIMEOUT):
            try:
                data = await extra.receive_some(10)
            except trio.BrokenResourceError:
                data = b""
        assert data == b""
        assert node.dns_stats["tcp_refused"] == 1
        for stream in [*held, extra]:
            await stream.aclose()


def test_the_rate_limit_is_a_token_bucket_per_source_bounded_in_sources() -> None:
    limit = SourceRateLimit(2, ("10.0.0.0/8",), max_sources=3)
    assert [limit.check("192.0.2.1", 0.0)[0] for _ in range(3)] == [True, True, False]
    assert limit.check("192.0.2.1", 0.5) == (True, False)  # one token back after half a second
    assert limit.check("192.0.2.2", 0.5) == (True, False)  # another source has its own bucket
    assert all(limit.check("10.1.2.3", 0.5) == (True, True) for _ in range(10))  # trusted
    limit.check("192.0.2.3", 0.5)
    assert len(limit._sources) == 3
    assert "192.0.2.1" not in limit._sources
