"""What a load balancer's resolver needs from our DNS answers (HAProxy 2.6's is the strictest).

Each rule below is one HAProxy relies on in ``src/resolvers.c``
(``resolv_validate_dns_response``): one question; a non-empty answer (an
empty one is an error, even with TC); a truncated SRV answer is used as far
as it goes, so truncation must keep whole records; an additional record is
paired with an SRV record by comparing its owner name byte for byte with the
SRV target, and a record of another type than A/AAAA there is skipped
without stepping over its data, so the OPT record must come last. The
answerer runs against a stand-in for the node (a fixed list of instances),
without sockets.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from gossip_registry.api.dns_answer import DnsAnswerer
from gossip_registry.core.messages import MemberState
from gossip_registry.registry.entry import Entry, Health
from gossip_registry.runtime.node import MemberView

if TYPE_CHECKING:
    from gossip_registry.runtime.node import Node


def entry(
    service: str, i: int, address: str, *, tags: Sequence[str] = (), health: Health = Health.PASSING
) -> Entry:
    return Entry(
        service=service,
        instance_id=f"{service}-{i}",
        address=address,
        port=8000 + i,
        tags=tuple(tags),
        meta={},
        weight=1,
        status=health,
        output="",
        owner="node1",
        owner_incarnation=0,
        stamp=i + 1,
        deleted=False,
    )


@dataclass
class Registry:
    """The part of Node's public API the answerer reads, over a fixed list of entries."""

    entries: list[Entry]

    def discover(self, service: str, *, passing_only: bool = True) -> list[Entry]:
        return [
            e
            for e in self.entries
            if e.service == service and (e.status == Health.PASSING or not passing_only)
        ]

    def services(self) -> Mapping[str, int]:
        return {e.service: 1 for e in self.entries}

    def members(self) -> list[MemberView]:
        return [MemberView("node1", "10.9.0.1", 7946, MemberState.ALIVE, 0, {})]

    def index(self, service: str | None = None) -> int:
        return 1

    def is_stale(self, entry: Entry) -> bool:
        return False


def answerer(entries: list[Entry], domain: str = "consul.") -> DnsAnswerer:
    node = cast("Node", Registry(entries))
    return DnsAnswerer(node, domain=domain, ttl=0, rng=random.Random(1))


def ask(
    answers: DnsAnswerer, name: str, rdtype: str, *, payload: int | None = None, tcp: bool = False
) -> tuple[dns.message.Message, bytes]:
    """The response, parsed and as bytes; ``payload``: the EDNS0 size offered (None: no EDNS)."""
    if payload is None:
        query = dns.message.make_query(name, rdtype)
    else:
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=payload)
    wire = answers.answer(query.to_wire(), udp=not tcp)
    assert wire is not None
    return dns.message.from_wire(wire), wire


def many(n: int, service: str = "web") -> list[Entry]:
    """n passing instances on distinct addresses."""
    return [entry(service, i, f"10.1.{i // 250}.{i % 250 + 1}") for i in range(n)]


# --- Raw wire reading: dnspython compares names case-insensitively, HAProxy byte for byte --------


def read_name(wire: bytes, at: int) -> tuple[bytes, int]:
    """The name at ``at`` with compression pointers followed, as HAProxy reads it; and its end."""
    labels: list[bytes] = []
    end = None
    for _ in range(128):
        length = wire[at]
        if length >= 0xC0:
            if end is None:
                end = at + 2
            at = struct.unpack_from("!H", wire, at)[0] & 0x3FFF
            continue
        if length == 0:
            return b".".join(labels), (at + 1 if end is None else end)
        labels.append(wire[at + 1 : at + 1 + length])
        at += 1 + length
    raise AssertionError("compression loop")


@dataclass(frozen=True)
class Raw:
    section: str
    start: int
    owner: bytes
    rdtype: int
    rdata_at: int
    rdata_len: int

    @property
    def size(self) -> int:
        return self.rdata_at + self.rdata_len - self.start


def raw_records(wire: bytes) -> tuple[int, list[Raw]]:
    """(question count, every record in wire order) of a response."""
    qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
    at = 12
    for _ in range(qd):
        at = read_name(wire, at)[1] + 4
    out = []
    for section, count in (("answer", an), ("authority", ns), ("additional", ar)):
        for _ in range(count):
            start = at
            owner, at = read_name(wire, at)
            rdtype, _, _, length = struct.unpack_from("!HHIH", wire, at)
            out.append(Raw(section, start, owner, rdtype, at + 10, length))
            at += 10 + length
    assert at == len(wire), "bytes after the last record"
    return qd, out


def answered_start(wire: bytes) -> int:
    """Where the answer section starts: after the header and the one question."""
    return read_name(wire, 12)[1] + 4


def srv_targets(wire: bytes, records: list[Raw]) -> list[bytes]:
    return [
        read_name(wire, r.rdata_at + 6)[0]
        for r in records
        if r.section == "answer" and r.rdtype == dns.rdatatype.SRV
    ]


# --- Names -----------------------------------------------------------------------------------


def test_consul_style_names_answer_on_the_configured_domain() -> None:
    entries = [
        entry("web", 0, "10.0.0.1", tags=["v1"]),
        entry("web", 1, "10.0.0.2", tags=["v2"]),
        entry("web", 2, "10.0.0.3", tags=["v2"], health=Health.CRITICAL),
    ]
    answers = answerer(entries, domain="consul.")

    def addresses(name: str) -> set[str]:
        response, _ = ask(answers, name, "A")
        assert response.rcode() == dns.rcode.NOERROR, name
        return {r.address for rrset in response.answer for r in rrset}

    def ports(name: str) -> set[int]:
        response, _ = ask(answers, name, "SRV")
        assert response.rcode() == dns.rcode.NOERROR, name
        return {r.port for rrset in response.answer for r in rrset}

    assert addresses("web.service.consul.") == {"10.0.0.1", "10.0.0.2"}  # critical excluded
    assert addresses("v2.web.service.consul.") == {"10.0.0.2"}
    assert ports("web.service.consul.") == {8000, 8001}
    assert ports("_web._tcp.service.consul.") == {8000, 8001}  # _tcp: no tag filter
    assert ports("_web._v1.service.consul.") == {8000}
    assert ports("v1.web.service.consul.") == {8000}
    assert addresses("node1.node.consul.") == {"10.9.0.1"}
    # The default domain is no longer ours.
    assert ask(answers, "web.service.registry.", "A")[0].rcode() == dns.rcode.REFUSED
    assert ask(answers, "nope.service.consul.", "SRV")[0].rcode() == dns.rcode.NXDOMAIN


def test_every_srv_target_resolves_at_the_same_server() -> None:
    """HAProxy asks the same nameservers for the A/AAAA of a target whose address it lacks."""
    entries = [entry("web", 0, "10.0.0.1"), entry("web", 1, "fd00::2"), entry("web", 2, "10.0.0.1")]
    answers = answerer(entries)
    response, _ = ask(answers, "_web._tcp.service.consul.", "SRV")
    targets = {r.target for rrset in response.answer for r in rrset}
    assert len(targets) == 2  # two instances on one address share its target
    resolved = set()
    for target in targets:
        for rdtype in ("A", "AAAA"):
            reply, _ = ask(answers, target.to_text(), rdtype)
            assert reply.rcode() == dns.rcode.NOERROR
            resolved |= {r.address for rrset in reply.answer for r in rrset}
    assert resolved == {"10.0.0.1", "fd00::2"}


# --- Size ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rdtype", ["SRV", "A"])
@pytest.mark.parametrize("payload", [None, 512, 1232])
def test_an_answer_beyond_the_advertised_size_keeps_whole_records_and_sets_tc(
    rdtype: str, payload: int | None
) -> None:
    """HAProxy drops an answer above its accepted_payload_size and uses a truncated SRV answer."""
    answers = answerer(many(200))
    response, wire = ask(answers, "web.service.consul.", rdtype, payload=payload)
    limit = 512 if payload is None else payload
    assert len(wire) <= limit
    assert response.flags & dns.flags.TC
    kept = sum(len(rrset) for rrset in response.answer)
    assert kept > 0  # an empty answer is an error to HAProxy, TC or not
    # Whole records, as many as fit: one more answer would not have (additional data yields).
    _, records = raw_records(wire)
    answered = records[kept - 1].rdata_at + records[kept - 1].rdata_len
    record = records[0].size
    opt = 0 if payload is None else 11
    assert answered + record + opt > limit
    assert answers.stats["truncated"] == 1
    # Over TCP, everything.
    response, _ = ask(answers, "web.service.consul.", rdtype, tcp=True)
    assert not response.flags & dns.flags.TC
    assert sum(len(rrset) for rrset in response.answer) == 200


def test_additional_records_beyond_the_size_are_dropped_whole_without_tc() -> None:
    """Additional data is optional: as many addresses as fit, no TC (RFC 2181 section 9)."""
    answers = answerer(many(10))  # 10 SRV records take ~450 bytes, their A records ~360 more
    response, wire = ask(answers, "web.service.consul.", "SRV", payload=512)
    assert len(wire) <= 512
    assert not response.flags & dns.flags.TC
    assert sum(len(rrset) for rrset in response.answer) == 10
    extra = sum(len(rrset) for rrset in response.additional)
    assert 0 < extra < 10


def test_a_truncated_srv_answer_fills_the_rest_with_addresses_of_the_targets_it_kept() -> None:
    answers = answerer(many(60))
    _, full = ask(answers, "_web._tcp.service.consul.", "SRV", tcp=True)
    _, records = raw_records(full)
    srv = records[0].size
    address = next(r.size for r in records if r.section == "additional")
    assert address < srv  # an A record fits what 20 SRV records leave over
    limit = answered_start(full) + 11 + 20 * srv + srv - 1  # 11: the OPT record
    response, wire = ask(answers, "_web._tcp.service.consul.", "SRV", payload=limit)
    assert response.flags & dns.flags.TC
    assert len(wire) <= limit
    _, records = raw_records(wire)
    targets = srv_targets(wire, records)
    assert len(targets) == 20
    owners = [r.owner for r in records if r.section == "additional" and r.rdtype != 41]
    assert len(owners) == 1
    assert set(owners) <= set(targets)


# --- Shape -----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [512, 4096])
@pytest.mark.parametrize("count", [3, 60])
def test_one_question_additional_only_addresses_of_srv_targets_and_opt_last(
    payload: int, count: int
) -> None:
    entries = [*many(count), entry("web", 999, "fd00::9"), entry("web", 998, "web.example.com")]
    answers = answerer(entries, domain="Consul.")  # the owner's case is the domain's, as given
    _, wire = ask(answers, "_WEB._tcp.service.consul.", "SRV", payload=payload)
    qd, records = raw_records(wire)
    assert qd == 1
    targets = srv_targets(wire, records)
    assert targets
    additional = [r for r in records if r.section == "additional"]
    assert additional[-1].rdtype == dns.rdatatype.OPT
    for record in additional[:-1]:
        assert record.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        assert record.owner in targets  # byte for byte, as HAProxy's memcmp compares


def test_a_query_with_two_questions_is_formerr_with_one_question_back_at_most() -> None:
    answers = answerer(many(2))
    query = dns.message.make_query("web.service.consul.", "SRV", use_edns=0, payload=1232)
    query.question.append(query.question[0])
    wire = answers.answer(query.to_wire(), udp=True)
    assert wire is not None
    response = dns.message.from_wire(wire, question_only=True)
    assert response.rcode() == dns.rcode.FORMERR
    assert struct.unpack_from("!H", wire, 4)[0] <= 1


def test_a_query_without_edns_gets_no_opt_and_the_opt_size_is_capped() -> None:
    answers = answerer(many(3))
    _, plain = ask(answers, "web.service.consul.", "SRV")
    assert all(r.rdtype != dns.rdatatype.OPT for r in raw_records(plain)[1])
    response, wire = ask(answers, "web.service.consul.", "SRV", payload=65000)
    assert response.edns == 0
    assert raw_records(wire)[1][-1].rdtype == dns.rdatatype.OPT
