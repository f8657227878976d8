"""Fuzz targets for the client side: the HTTP API and DNS, as a hostile client would use them.

Registered in ``fuzz_targets.TARGETS``, so ``test_fuzz.py`` runs each briefly
and ``scripts/fuzz.py`` for minutes.

- ``http_request``: any method, path (real routes, their neighbours, odd
  segments), query, headers (tokens good and bad, content types) and body
  (registrations with a field at a boundary, random JSON, bytes) against the
  real ASGI app of a running node, with and without tokens: every answer is
  below 500 and every error a JSON object naming it; nothing holds the
  request but a blocking query or the event stream; the node still answers
  afterwards.
- ``dns_query``: any query packet (random bytes, queries built field by field
  with every type, class, opcode, EDNS version and payload, and those
  mutated) into the node's ``DnsAnswerer``, over UDP from trusted and
  untrusted sources and over TCP: an answer or a counted drop, never an
  exception (nor a SERVFAIL, which is one caught), every answer a DNS
  response to that query's id within the size its transport allows; and
  the per-source rate limit, fed any source at any time, stays bounded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import httpx
import trio
from hypothesis import strategies as st

from gossip_registry.api.dns import SourceRateLimit
from gossip_registry.api.dns_answer import CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD, DnsAnswerer
from gossip_registry.api.http import build_app
from gossip_registry.config.node import NodeConfig
from gossip_registry.runtime.node import Node
from tests.property.test_codec_fuzz import mutate, mutations

__all__ = ["INTERFACE_FUNCTIONS", "INTERFACE_STRATEGIES"]

HOLD = 1.0
"""Seconds a request may take; only a blocking query or the event stream may be held longer."""
READ, WRITE = "read-token", "write-token"


async def _populated(node: Node) -> None:
    """A few services so that reads and DNS answers have something to show (and truncate)."""
    await node.register("web", instance_id="web-1", address="10.0.0.1", port=80, tags=("v1",))
    await node.register("web", instance_id="web-2", address="2001:db8::2", port=8080)
    await node.register("db", instance_id="db-1", address="db.example.com", port=5432)
    for i in range(40):  # more than a 512-byte answer holds
        await node.register("big", instance_id=f"big-{i}", address=f"10.1.0.{i}", port=9000 + i)


# --- HTTP --------------------------------------------------------------------------------------

_SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "v1", "services", "members", "status", "healthz", "metrics", "events", "keyring",
            "checks", "force-leave", "install", "use", "remove", "pass", "warn", "fail",
            "web", "web-1", "db", "fuzz", "big-3", "..", ".", "%2F", "%00", "%ZZ", "%",
            "a" * 300, "WEB",
        ]
    ),
    st.text(min_size=1, max_size=12).map(lambda text: quote(text, safe="")),
)  # fmt: skip
_PATHS = st.one_of(
    st.sampled_from(
        [
            "/v1/services", "/v1/services/web", "/v1/services/web-1", "/v1/members",
            "/v1/members/fuzz/force-leave", "/v1/members/nobody/force-leave", "/v1/status",
            "/healthz", "/metrics", "/v1/events", "/v1/keyring", "/v1/keyring/install",
            "/v1/keyring/use", "/v1/checks/c1/pass", "/v1/checks/c1/bogus", "/", "",
        ]
    ),
    st.lists(_SEGMENTS, max_size=5).map(lambda segments: "/" + "/".join(segments)),
)  # fmt: skip
_QUERY_VALUES = st.one_of(
    st.sampled_from(
        [
            "", "0", "1", "-1", "2", "10s", "1ms", "0s", "-5s", "10m", "11m", "1h", "nan",
            "inf", "99999999999999999999", "true", "false", "v1", "k:v", "k", ":", "x" * 300,
        ]
    ),
    st.text(max_size=10),
)  # fmt: skip
_QUERY = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(["index", "wait", "passing", "tag", "meta", "health", "near"]),
            st.text(max_size=6),
        ),
        _QUERY_VALUES,
    ),
    max_size=4,
)
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_HEADERS = st.lists(
    st.one_of(
        st.tuples(
            st.just("authorization"),
            st.sampled_from(
                [
                    f"Bearer {READ}", f"Bearer {WRITE}", f"bearer {WRITE}", "Bearer ",
                    "Bearer wrong", f"Basic {WRITE}", f"Bearer {WRITE} {WRITE}",
                    "Bearer " + "x" * 5000, WRITE,
                ]
            ),
        ),
        st.tuples(
            st.just("content-type"),
            st.sampled_from(
                [
                    "application/json", "text/plain", "application/x-www-form-urlencoded",
                    "multipart/form-data; boundary=x", "application/json; charset=utf-16", "",
                ]
            ),
        ),
        st.tuples(st.sampled_from(["content-encoding", "accept", "accept-encoding"]), _HEADER_TEXT),
        st.tuples(st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1,
                          max_size=12), _HEADER_TEXT),
    ),
    max_size=4,
)  # fmt: skip
_ODD = st.sampled_from([None, True, 0, -1, 1.5, 2**64, "", "x" * 600, [], {}, [1], {"a": 1}])
_REGISTRATION = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["web", "WEB", "a/b", "we b", "x" * 129, "-x"]), _ODD),
        "id": st.one_of(st.sampled_from(["web-9", "a\nb", "a/b", "x" * 129, "é"]), _ODD),
        "address": st.one_of(
            st.sampled_from(["10.0.0.9", "::1", "host.example", "bad host", "a\x00b", "1.2.3"]),
            _ODD,
        ),
        "port": st.one_of(st.sampled_from([0, 1, 65535, 65536, "80"]), _ODD),
        "tags": st.one_of(
            st.lists(st.sampled_from(["v1", "x" * 64, "a b", ""]), max_size=66), _ODD
        ),
        "meta": st.one_of(
            st.dictionaries(st.sampled_from(["k", "", "x" * 200]), st.sampled_from(["v", ""])),
            _ODD,
        ),
        "weight": st.one_of(st.sampled_from([0, 1, 65535, 65536]), _ODD),
        "checks": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "id": st.sampled_from(["c1", "", "a/b"]),
                        "ttl": st.sampled_from(["10s", "1ms", "0s", "x", 5]),
                        "interval": st.sampled_from(["10s", "1ms", "99ms", "100ms", "-1s"]),
                        "timeout": st.sampled_from(["1s", "1ms", "10ms", "1h"]),
                        "http": st.sampled_from(["http://127.0.0.1:9/", "ftp://x", ""]),
                        "tcp": st.sampled_from(["127.0.0.1:9", "nohost", ""]),
                    },
                ),
                max_size=3,
            ),
            _ODD,
        ),
        "status": st.one_of(st.sampled_from(["passing", "warning", "critical", "up"]), _ODD),
        "extra": _ODD,
    },
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_BODIES = st.one_of(
    st.just(b""),
    _REGISTRATION.map(lambda body: json.dumps(body).encode()),
    st.fixed_dictionaries({}, optional={"key": st.one_of(st.text(max_size=50), _ODD)}).map(
        lambda body: json.dumps(body).encode()
    ),
    _JSON.map(lambda body: json.dumps(body).encode()),
    st.binary(max_size=200),
)
_METHODS = st.sampled_from(
    ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW", "get"]
)
_REQUESTS = st.lists(st.tuples(_METHODS, _PATHS, _QUERY, _HEADERS, _BODIES), min_size=1, max_size=6)
_TOKENS = st.sampled_from([(None, None), (None, None), (None, WRITE), (READ, WRITE)])


def _may_hold(method: str, path: str, query: list[tuple[str, str]]) -> bool:
    """Whether a request may rightly outlive ``HOLD``: the event stream or a blocking query."""
    return method.upper() in ("GET", "HEAD") and (
        path.rstrip("/").endswith("events") or any(key == "index" for key, _ in query)
    )


def _check_response(method: str, response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400 and method.upper() != "HEAD":
        body = response.json()
        assert isinstance(body, dict), response.text
        assert isinstance(body.get("error"), str), response.text


def http_request(
    tokens: tuple[str | None, str | None],
    requests: list[tuple[str, str, list[tuple[str, str]], list[tuple[str, str]], bytes]],
) -> None:
    read_token, write_token = tokens

    async def run() -> None:
        with trio.fail_after(60):
            async with Node(NodeConfig("fuzz", bind=("127.0.0.1", 0))) as node:
                await _populated(node)
                app = build_app(node, read_token=read_token, write_token=write_token)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://n") as client:
                    for method, path, query, headers, body in requests:
                        try:
                            request = client.build_request(
                                method, path, params=tuple(query), headers=headers, content=body
                            )
                        except httpx.InvalidURL:  # no client can send it: not the server's
                            continue
                        with trio.move_on_after(HOLD) as held:
                            response = await client.send(request)
                        if held.cancelled_caught:
                            assert _may_hold(method, path, query), (method, path, query)
                            continue
                        _check_response(method, response)
                    auth = {"authorization": f"Bearer {WRITE}"}
                    still = await client.get("/v1/services/web", headers=auth)
                    assert still.status_code == 200, still.text

    trio.run(run)


# --- DNS ---------------------------------------------------------------------------------------

_LABELS = st.one_of(
    st.sampled_from(
        [
            b"web", b"WEB", b"db", b"big", b"v1", b"_web", b"_tcp", b"_udp", b"_v1", b"service",
            b"node", b"addr", b"fuzz", b"0a000001", b"20010db8000000000000000000000002", b"zz",
            b"x" * 63, b"\x00", b"*", b"\xff\xfe", b"registry",
        ]
    ),
    st.binary(min_size=1, max_size=10),
)  # fmt: skip
_SERVICES = st.sampled_from([b"web", b"WEB", b"db", b"big", b"nothing"])
_NAMES = st.one_of(
    st.tuples(_SERVICES, st.just(b"service")),
    st.tuples(st.sampled_from([b"v1", b"V1", b"v2"]), _SERVICES, st.just(b"service")),
    st.tuples(
        _SERVICES.map(lambda name: b"_" + name),
        st.sampled_from([b"_tcp", b"_udp", b"_v1", b"_x"]),
        st.just(b"service"),
    ),
    st.tuples(st.sampled_from([b"fuzz", b"FUZZ", b"other"]), st.just(b"node")),
    st.tuples(_LABELS, st.just(b"addr")),
    st.lists(_LABELS, max_size=5),
)
_SUFFIXES = st.sampled_from(
    [(b"registry", b"")] * 4 + [(b"REGISTRY", b""), (b"example", b"com", b""), (b"",)]
)
_KNOWN_TYPES = st.sampled_from([1, 28, 33, 255, 16, 6, 2, 12, 5, 15, 252, 251, 41, 0, 65535])
_TYPES = st.one_of(_KNOWN_TYPES, _KNOWN_TYPES, _KNOWN_TYPES, st.integers(0, 65535))
_EDNS = st.sampled_from([-1, -1, 0, 0, 0, 1])
_CLASSES = st.sampled_from([1, 1, 1, 1, 1, 1, 255, 3, 254, 0, 65535])
_PAYLOADS = st.sampled_from([0, 1, 511, 512, 513, 1232, 4096, 4097, 65535])


@st.composite
def _built_query(draw: st.DrawFn) -> bytes:
    """A query made field by field with dnspython, each field from its edge cases."""
    if draw(st.booleans()):  # one a resolver would ask, about our own names
        labels = (*draw(_NAMES.filter(lambda name: name[-1:] != ())), b"registry", b"")
        rdtype, rdclass, edns = draw(st.sampled_from([1, 28, 33, 255])), 1, draw(_EDNS)
    else:
        labels = (*draw(_NAMES), *draw(_SUFFIXES))
        rdtype, rdclass, edns = draw(_TYPES), draw(_CLASSES), draw(_EDNS)
    try:
        name = dns.name.Name(labels)
    except dns.exception.DNSException:  # too long: a random name that fits
        name = dns.name.from_text("web.service.registry.")
    query = dns.message.make_query(
        name,
        dns.rdatatype.RdataType.make(rdtype),
        dns.rdataclass.RdataClass.make(rdclass),
        use_edns=edns if edns >= 0 else False,
        payload=max(draw(_PAYLOADS), 1) if edns >= 0 else 1232,
    )
    query.id = draw(st.integers(0, 65535))
    if draw(st.integers(0, 9)) == 0:
        query.set_opcode(dns.opcode.Opcode.make(draw(st.integers(0, 15))))
    if draw(st.integers(0, 9)) == 0:
        query.flags |= dns.flags.QR
    if draw(st.integers(0, 9)) == 0:
        query.question.append(query.question[0])
    wire: bytes = query.to_wire()
    if edns >= 0 and draw(st.booleans()):  # EDNS payload below what dnspython lets us set
        wire = _with_payload(wire, draw(_PAYLOADS))
    return wire


def _with_payload(wire: bytes, payload: int) -> bytes:
    """``wire`` with the OPT record's class (the EDNS payload size) set to ``payload``."""
    at = wire.rfind(b"\x00\x00\x29")  # root owner name, then TYPE OPT
    if at < 0:
        return wire
    return wire[: at + 3] + payload.to_bytes(2, "big") + wire[at + 5 :]


_DNS_QUERIES = st.one_of(
    st.binary(max_size=600),
    _built_query(),
    st.tuples(_built_query(), mutations).map(lambda pair: mutate(*pair)),
)
_DNS_TRANSPORTS = st.sampled_from(["udp-trusted", "udp-untrusted", "tcp"])
_SOURCES = st.one_of(
    st.sampled_from(["127.0.0.1", "192.0.2.1", "::1", "fe80::1%eth0", "", "not an ip"]),
    st.text(max_size=8),
)


def _udp_limit(data: bytes, trusted: bool) -> int:
    """The most a UDP answer to ``data`` may hold: 512, or what a trusted query's EDNS offers."""
    if not trusted:
        return CLASSIC_UDP_PAYLOAD
    try:
        query = dns.message.from_wire(data)
    except Exception:  # anything dnspython refuses gets at most a FORMERR header
        return CLASSIC_UDP_PAYLOAD
    if query.edns < 0:
        return CLASSIC_UDP_PAYLOAD
    return max(CLASSIC_UDP_PAYLOAD, min(query.payload, MAX_UDP_PAYLOAD))


def _check_answer(data: bytes, reply: bytes | None, how: str, dropped: bool) -> None:
    if reply is None:
        assert dropped, "a query dropped without being counted"
        return
    assert reply[:2] == data[:2], "the answer does not carry the query's id"
    assert reply[2] & 0x80, "the answer is not flagged a response"
    limit = 65535 if how == "tcp" else _udp_limit(data, how == "udp-trusted")
    # A refusal echoes the query's questions: never more than the query itself.
    assert len(reply) <= max(limit, len(data)), (len(reply), limit, how)
    dns.message.from_wire(reply, question_only=True)


def dns_query(
    queries: list[tuple[bytes, str]], sources: list[tuple[str, float]], seed: int
) -> None:
    async def run() -> None:
        with trio.fail_after(60):
            async with Node(NodeConfig("fuzz", bind=("127.0.0.1", 0))) as node:
                await _populated(node)
                answerer = DnsAnswerer(node, domain="registry.", ttl=5, rng=random.Random(seed))
                for data, how in queries:
                    before = answerer.stats["malformed"]
                    reply = answerer.answer(data, udp=how != "tcp", trusted=how == "udp-trusted")
                    _check_answer(data, reply, how, answerer.stats["malformed"] > before)
                assert answerer.stats["servfail"] == 0

    trio.run(run)
    limiter = SourceRateLimit(3, ["127.0.0.0/8", "::1/128"], max_sources=4)
    for source, now in sources:
        allowed, trusted = limiter.check(source, now)
        assert allowed or not trusted
        assert len(limiter._sources) <= limiter.max_sources


INTERFACE_STRATEGIES: dict[str, tuple[st.SearchStrategy[Any], ...]] = {
    "http_request": (_TOKENS, _REQUESTS),
    "dns_query": (
        st.lists(st.tuples(_DNS_QUERIES, _DNS_TRANSPORTS), min_size=1, max_size=8),
        st.lists(st.tuples(_SOURCES, st.floats(-1e9, 1e9, allow_nan=False)), max_size=12),
        st.integers(0, 2**32),
    ),
}
INTERFACE_FUNCTIONS: dict[str, Callable[..., None]] = {
    "http_request": http_request,
    "dns_query": dns_query,
}
