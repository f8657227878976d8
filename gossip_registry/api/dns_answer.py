"""DNS answers from a Node: a query's bytes in, the response's bytes out, no I/O.

Names, after Consul's scheme (DOMAIN defaults to ``registry.``):

- ``NAME.service.DOMAIN``: A/AAAA of the passing instances of NAME, and SRV
  records (priority 1, weight = instance weight, port, target);
- ``TAG.NAME.service.DOMAIN``, or RFC 2782's ``_NAME._TAG.service.DOMAIN``
  (``_tcp``/``_udp`` in place of a tag mean no tag filter): instances with TAG;
- ``NODE.node.DOMAIN``: the gossip address of a member that is alive or suspect;
- ``HEX.addr.DOMAIN``: the address HEX encodes (8 hex digits for IPv4, 32 for
  IPv6). SRV targets are such names, with their A/AAAA in the additional
  section. Like Consul's, a target names the address rather than the
  instance: any node answers it without a lookup, it still resolves while a
  cached SRV outlives the instance, and instance ids (any characters) need
  not be squeezed into host-name labels, where two could collide. An
  instance registered under a host name instead of an IP has no A/AAAA of
  ours (we do not answer CNAMEs); its SRV target is that host name.

Service and node names match case-insensitively, as DNS names do.

Rcodes: a name exists while it has anything to give (a service with live
instances of any health, an active member, a well-formed addr name, the
empty non-terminals ``service``, ``node``, ``addr``); otherwise NXDOMAIN. A
name that exists but has no record of the asked type is NOERROR with no
answer. Both carry our SOA, whose minimum is the TTL, so a resolver caches a
negative answer no longer than a positive one (without it Windows keeps an
NXDOMAIN for 15 minutes). Names outside DOMAIN are REFUSED: we are no
recursive resolver. Bytes that do not parse get FORMERR when they have a
query header to answer, else are dropped; responses (QR set) are always
dropped, so two servers can never bounce packets between them.

Size: over UDP an answer must fit 512 bytes, or the payload size the query
advertises with EDNS0 (capped at MAX_UDP_PAYLOAD). What does not fit loses
additional records first (optional data: no TC), then answer records, whole
ones from the end, and is sent with the TC bit with the answers that fit, so
a resolver asks again over TCP and one that cannot (HAProxy's, for SRV)
still has servers to use.

Load balancers: HAProxy's resolver (``src/resolvers.c`` in 2.6,
``resolv_validate_dns_response``) rejects a response without exactly one
question or with no answer record, and pairs an additional A/AAAA with an
SRV record when its owner name equals the SRV target byte for byte; it
steps over no other record type there, so the OPT record goes last. Ours
are built for that: the additional section holds only the A/AAAA of SRV
targets (the same name object renders both), the OPT comes last, a
truncated answer keeps what fits. Every SRV target of an IP-addressed
instance (``HEX.addr.DOMAIN``) answers A/AAAA, so a target HAProxy got no
additional record for resolves at the same server.

Speed: dnspython spends about 20 us per record building a message, so a
100-instance answer would cost milliseconds. Each record is built once by
dnspython and kept as wire bytes per (service, tag) for as long as
``node.discover`` returns the very same Entry objects (``view_cache.py``).
Parsed queries are kept too, by their bytes after the id (clients repeat a
few queries), with the response skeletons (header, question, EDNS)
dnspython built for them. A repeated query then costs a dictionary lookup,
a discover, a pick of a random order and a splice of the records into its
skeleton. Answer owner names point at the question (offset 12), so the
response echoes the case the client asked in
(resolvers using 0x20 randomisation check it).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV

from gossip_registry.api.view_cache import ViewCache
from gossip_registry.core.messages import ACTIVE_STATES
from gossip_registry.registry.entry import Entry

if TYPE_CHECKING:  # node.py starts the DNS server, so importing it here would be circular
    from gossip_registry.runtime.node import Node

__all__ = [
    "CLASSIC_UDP_PAYLOAD",
    "MAX_TTL",
    "MAX_UDP_PAYLOAD",
    "STAT_KEYS",
    "DnsAnswerer",
    "addr_label",
    "parse_domain",
]

log = logging.getLogger("gossip_registry.dns")

CLASSIC_UDP_PAYLOAD = 512
"""Largest UDP response for a query without EDNS0 (RFC 1035)."""
MAX_UDP_PAYLOAD = 4096
"""Largest UDP response we send whatever a query's EDNS0 advertises; above it, TCP."""
MAX_TTL = 86400
"""Largest TTL accepted, seconds: a registry answer cached for a day is stale by design."""
RENDER_CACHE_MAX = 1024
"""Rendered (service, tag) answers kept; past it the cache starts over (names are client input)."""
PERMUTATIONS = 16
"""Random orders kept per record list (see _Shuffler)."""
SHAPE_CACHE_MAX = 4096
"""Parsed queries kept (by their bytes after the id); past it the cache starts over."""
STAT_KEYS = (
    "queries",
    "answers",
    "nxdomain",
    "refused",
    "malformed",
    "truncated",
    "servfail",
    "rate_limited",
    "tcp_refused",
)
"""Counters in ``DnsAnswerer.stats``: queries received, responses sent, and why some differ;
``rate_limited`` and ``tcp_refused`` are the server's (``dns.py``), kept in the same dict."""

_T = TypeVar("_T")
_QNAME_POINTER = b"\xc0\x0c"  # compression pointer to the question name, right after the header
_HEADER = struct.Struct("!HHHHHH")
_COUNTS = struct.Struct("!HHH")  # ANCOUNT, NSCOUNT, ARCOUNT
_RR = struct.Struct("!HHIH")  # a record's type, class, TTL and data length, after its owner name
_CLASSES = (dns.rdataclass.IN, dns.rdataclass.ANY)
_NO_TAG_PROTOCOLS = (b"_tcp", b"_udp")
_SOA_TIMERS = (3600, 600, 86400)  # refresh, retry, expire: no zone transfers happen


def parse_domain(domain: str) -> dns.name.Name:
    """The absolute name we answer for, from ``"registry."`` (a missing final dot is implied).

    Raises:
        ValueError: not a valid DNS name, or the root (we would claim every name).
    """
    try:
        name = dns.name.from_text(domain)
    except dns.exception.DNSException as exc:
        raise ValueError(f"dns domain: not a valid DNS name: {domain!r} ({exc})") from None
    if name == dns.name.root:
        raise ValueError("dns domain: must not be the root '.'")
    return name


def addr_label(address: str) -> str | None:
    """The ``HEX`` of ``HEX.addr.DOMAIN`` for an IP address; None for a host name."""
    try:
        return ipaddress.ip_address(address).packed.hex()
    except ValueError:
        return None


class _Shuffler(Generic[_T]):
    """Random orders of one record list, cheaply: a shuffle per query would cost more than the rest.

    PERMUTATIONS random permutations are drawn on first use; each query
    gets one of them rotated by a random offset. The first record, the one
    most clients use, is then uniform over the instances, and consecutive
    queries differ throughout.
    """

    __slots__ = ("_orders", "items")

    def __init__(self, items: list[_T]) -> None:
        self.items = items
        self._orders: list[list[_T]] | None = None

    def pick(self, rng: random.Random) -> list[_T]:
        items = self.items
        if len(items) < 2:
            return items
        if self._orders is None:
            self._orders = [rng.sample(items, len(items)) for _ in range(PERMUTATIONS)]
        order = self._orders[rng.randrange(PERMUTATIONS)]
        at = rng.randrange(len(order))
        return order[at:] + order[:at]


@dataclass(frozen=True, slots=True)
class _Records:
    """The wire records of one (service, tag) view."""

    a: _Shuffler[bytes]
    aaaa: _Shuffler[bytes]
    srv: _Shuffler[tuple[bytes, bytes | None]]
    """(SRV answer, the target's A/AAAA for the additional section, if it has one)."""
    any: _Shuffler[bytes]


@dataclass(slots=True)
class _Reply:
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: Sequence[bytes] = ()
    authority: Sequence[bytes] = ()
    additional: Sequence[bytes] = ()
    needs: Sequence[int] = ()
    """Per additional record, how many answers must be sent for it to belong (its SRV's rank)."""


class DnsAnswerer:
    """Answers DNS queries about one node's registry; one per server, used by one thread.

    Args:
        node: the node whose public API (``discover``, ``members``) answers.
        domain: the zone we are authoritative for.
        ttl: seconds resolvers may cache our answers (0..MAX_TTL, rounded).
        rng: shuffles every answer, so clients that take the first record
            spread their load.
        stats: where the counters of STAT_KEYS live (created if None), so a
            metrics exporter can hold the same dict.

    Raises:
        ValueError: invalid domain or ttl.
    """

    def __init__(
        self,
        node: Node,
        *,
        domain: str,
        ttl: float,
        rng: random.Random,
        stats: dict[str, int] | None = None,
    ) -> None:
        if not (isinstance(ttl, int | float) and math.isfinite(ttl) and 0 <= ttl <= MAX_TTL):
            raise ValueError(f"dns ttl: must be 0..{MAX_TTL} seconds, got {ttl!r}")
        self.node = node
        self.domain = parse_domain(domain)
        self.ttl = round(ttl)
        self.rng = rng
        self.stats = stats if stats is not None else {}
        for key in STAT_KEYS:
            self.stats.setdefault(key, 0)
        self._views = ViewCache(self._render, max_size=RENDER_CACHE_MAX)
        self._shapes: dict[bytes, _Shape] = {}
        refresh, retry, expire = _SOA_TIMERS
        self._soa_rdata = dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.SOA,
            f"ns.{self.domain} hostmaster.{self.domain} 1 {refresh} {retry} {expire} {self.ttl}",
        )
        self._soa = self._record(_wire(self.domain), self._soa_rdata)

    # ------------------------------------------------------------- entry

    def answer(self, data: bytes, *, udp: bool, trusted: bool = True) -> bytes | None:
        """The response to the query in ``data``, or None to send nothing.

        ``trusted``: over UDP, whether the answer may use the EDNS0 size the
        query offers; an untrusted source (whose address a spoofer may have
        forged) gets at most 512 bytes, the rest truncated, so the node
        amplifies a forged query at most about tenfold (issue 10, finding 9).

        Never raises: garbage is counted and answered FORMERR or dropped; a
        failure of ours is logged and answered SERVFAIL.
        """
        self.stats["queries"] += 1
        key = data[2:]  # all but the id: clients repeat the same few queries
        shape = self._shapes.get(key)
        if shape is None:
            parsed = self._parse(data)
            if not isinstance(parsed, _Shape):
                return None if parsed is None else self._sent(parsed)
            if len(self._shapes) >= SHAPE_CACHE_MAX:
                self._shapes.clear()
            shape = self._shapes[key] = parsed
        try:
            reply = self._resolve(shape.labels, shape.qtype)
        except Exception:
            log.exception("DNS query %s failed", shape.response.question[0])
            self.stats["servfail"] += 1
            reply = _Reply(dns.rcode.SERVFAIL)
        if reply.rcode == dns.rcode.NXDOMAIN:
            self.stats["nxdomain"] += 1
        elif reply.rcode == dns.rcode.REFUSED:
            self.stats["refused"] += 1
        limit = (shape.udp_limit if trusted else CLASSIC_UDP_PAYLOAD) if udp else 65535
        return self._sent(data[:2] + self._assemble(shape, reply, limit))

    def _parse(self, data: bytes) -> _Shape | bytes | None:
        """A query's shape; or the final response (FORMERR, NOTIMP, BADVERS), or None to drop."""
        try:
            query = dns.message.from_wire(data)
        except Exception:  # dnspython raises many types on garbage, not all DNSException
            self.stats["malformed"] += 1
            return _formerr(data)
        if query.flags & dns.flags.QR:
            self.stats["malformed"] += 1
            return None
        response = dns.message.make_response(query, our_payload=MAX_UDP_PAYLOAD)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        if len(query.question) != 1:
            self.stats["malformed"] += 1
            response.question = []  # a response never holds more than one (HAProxy demands it)
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return response.to_wire()
        question = query.question[0]
        labels = None  # not ours to answer: REFUSED
        if question.name.is_subdomain(self.domain) and question.rdclass in _CLASSES:
            relative = question.name.relativize(self.domain).labels
            labels = tuple(label.lower() for label in relative)
        limit = CLASSIC_UDP_PAYLOAD
        if query.edns >= 0:
            limit = max(CLASSIC_UDP_PAYLOAD, min(query.payload, MAX_UDP_PAYLOAD))
        return _Shape(response, labels, question.rdtype, limit)

    def _sent(self, wire: bytes) -> bytes:
        self.stats["answers"] += 1
        return wire

    # -------------------------------------------------------------- names

    def _resolve(self, labels: tuple[bytes, ...] | None, qtype: int) -> _Reply:
        """The records for a name (its labels below the domain, in lower case)."""
        if labels is None:
            return _Reply(dns.rcode.REFUSED)
        if not labels:
            if qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
                return _Reply(answer=[self._record(_QNAME_POINTER, self._soa_rdata)])
            return self._nodata()
        if labels in ((b"service",), (b"node",), (b"addr",)):
            return self._nodata()
        kind = labels[-1]
        if kind == b"service" and len(labels) in (2, 3):
            return self._service(labels[:-1], qtype)
        if kind == b"node" and len(labels) == 2:
            return self._node(labels[0], qtype)
        if kind == b"addr" and len(labels) == 2:
            return self._addr(labels[0], qtype)
        return self._nxdomain()

    def _service(self, labels: tuple[bytes, ...], qtype: int) -> _Reply:
        if len(labels) == 2 and labels[0].startswith(b"_") and labels[1].startswith(b"_"):
            name, tag = labels[0][1:], (None if labels[1] in _NO_TAG_PROTOCOLS else labels[1][1:])
        elif len(labels) == 2:
            tag, name = labels
        else:
            name, tag = labels[0], None
        service, tag_text = _text(name), None if tag is None else _text(tag)
        if service is None or (tag is not None and tag_text is None):
            return self._nxdomain()
        # Fast path: the name as asked is the registry's spelling (the usual case).
        passing = self.node.discover(service)
        if not passing:
            known = next((s for s in self.node.services() if s.lower() == service), None)
            if known is None:
                return self._nxdomain()
            service = known
            passing = self.node.discover(service)
        if tag_text is not None:
            passing = [e for e in passing if _has_tag(e, tag_text)]
        if not passing:
            # The name exists if an instance of any health would match it.
            everyone = self.node.discover(service, passing_only=False)
            if tag_text is None or any(_has_tag(e, tag_text) for e in everyone):
                return self._nodata()
            return self._nxdomain()
        # The index is compared too: a stale flag can change while the entries stay the same.
        records = self._views.get((service, tag_text), passing, self.node.index(service))
        if qtype == dns.rdatatype.SRV:
            return self._srv_reply(records.srv)
        wanted = {
            dns.rdatatype.A: records.a,
            dns.rdatatype.AAAA: records.aaaa,
            dns.rdatatype.ANY: records.any,
        }.get(dns.rdatatype.RdataType.make(qtype))
        if wanted is None or not wanted.items:
            return self._nodata()
        if qtype == dns.rdatatype.ANY:
            # RFC 8482: ANY gets a minimal answer, one record of what the name has, not all.
            return _Reply(answer=[self.rng.choice(wanted.items)])
        return _Reply(answer=wanted.pick(self.rng))

    def _srv_reply(self, srv: _Shuffler[tuple[bytes, bytes | None]]) -> _Reply:
        pairs = srv.pick(self.rng)
        extra: dict[bytes, int] = {}  # each target's address once, after its first SRV record
        for rank, (_, add) in enumerate(pairs, 1):
            if add is not None:
                extra.setdefault(add, rank)
        return _Reply(
            answer=[answer for answer, _ in pairs],
            additional=list(extra),
            needs=list(extra.values()),
        )

    def _node(self, label: bytes, qtype: int) -> _Reply:
        name = _text(label)
        member = next(
            (m for m in self.node.members() if m.name.lower() == name and m.state in ACTIVE_STATES),
            None,
        )
        if member is None:
            return self._nxdomain()
        return self._address_reply(member.address, qtype)

    def _addr(self, label: bytes, qtype: int) -> _Reply:
        try:
            packed = bytes.fromhex(label.decode("ascii"))
            address = str(ipaddress.ip_address(packed)) if len(packed) in (4, 16) else None
        except ValueError:  # not hex (UnicodeDecodeError is a ValueError)
            address = None
        if address is None:
            return self._nxdomain()
        return self._address_reply(address, qtype)

    def _address_reply(self, address: str, qtype: int) -> _Reply:
        """A/AAAA of ``address`` at the question's name; NODATA for other types or a host name."""
        rdata = _address_rdata(address)
        if rdata is None or qtype not in (rdata.rdtype, dns.rdatatype.ANY):
            return self._nodata()
        return _Reply(answer=[self._record(_QNAME_POINTER, rdata)])

    def _nodata(self) -> _Reply:
        return _Reply(authority=[self._soa])

    def _nxdomain(self) -> _Reply:
        return _Reply(dns.rcode.NXDOMAIN, authority=[self._soa])

    # ------------------------------------------------------------ records

    def _render(self, entries: list[Entry]) -> _Records:
        """The wire records of ``entries`` (cached by the caller until they change)."""
        a: dict[str, bytes] = {}
        aaaa: dict[str, bytes] = {}
        srv: list[tuple[bytes, bytes | None]] = []
        for entry in entries:
            # A stale instance (self-preservation) is answered with TTL 0: DNS has no flag,
            # but resolvers then never cache an answer whose owner may be gone.
            ttl = 0 if self.node.is_stale(entry) else self.ttl
            rdata = _address_rdata(entry.address)
            label = addr_label(entry.address)
            if rdata is not None and label is not None:
                target = dns.name.Name((label.encode(), b"addr", *self.domain.labels))
                addresses = a if rdata.rdtype == dns.rdatatype.A else aaaa
                addresses.setdefault(entry.address, self._record(_QNAME_POINTER, rdata, ttl))
                additional: bytes | None = self._record(_wire(target), rdata, ttl)
            else:
                try:
                    target = dns.name.from_text(entry.address)
                except dns.exception.DNSException:
                    continue  # neither an IP nor a DNS name: nothing to point at
                additional = None
            record = dns.rdtypes.IN.SRV.SRV(  # type: ignore[no-untyped-call]
                dns.rdataclass.IN, dns.rdatatype.SRV, 1, entry.weight, entry.port, target
            )
            srv.append((self._record(_QNAME_POINTER, record, ttl), additional))
        ips = [*a.values(), *aaaa.values()]
        return _Records(
            _Shuffler(list(a.values())),
            _Shuffler(list(aaaa.values())),
            _Shuffler(srv),
            _Shuffler(ips + [answer for answer, _ in srv]),
        )

    def _record(self, owner: bytes, rdata: dns.rdata.Rdata, ttl: int | None = None) -> bytes:
        """One resource record's wire form: ``owner`` is a name's wire form or _QNAME_POINTER."""
        data = cast(bytes, rdata.to_wire())
        ttl = self.ttl if ttl is None else ttl
        return owner + _RR.pack(rdata.rdtype, rdata.rdclass, ttl, len(data)) + data

    # ----------------------------------------------------------- assembly

    def _assemble(self, shape: _Shape, reply: _Reply, limit: int) -> bytes:
        """Splice the records into the response skeleton; shed whole records beyond ``limit``.

        The skeleton (without its id) is the header, the question, then the
        OPT record if the query had EDNS0; our records go between the
        question and the OPT, so the OPT stays last (RFC 6891 section 6.1.1
        allows it anywhere; HAProxy's resolver, reading the additional
        section, loses its place at any record but A/AAAA, so nothing may
        follow one).

        Beyond ``limit`` the answer keeps as many whole records as fit (in
        their shuffled order) with TC set: a client that cannot retry over
        TCP, as HAProxy's resolver for SRV, still uses them, and an empty
        truncated answer is an error to it. The authority section goes
        with a truncated answer. Additional records are optional data (RFC
        2181 section 9): as many as fit, no TC for the rest, and only those
        of SRV records sent.
        """
        skeleton = shape.skeleton(reply.rcode, truncated=False)
        end = shape.question_end
        arcount = int.from_bytes(skeleton[8:10], "big")
        answer, authority, additional = reply.answer, reply.authority, reply.additional
        room = limit - 2 - len(skeleton)  # - the id
        size = sum(map(len, answer)) + sum(map(len, authority))
        truncated = size > room
        if truncated:
            answer, authority = _fitting(answer, room), ()
            room -= sum(map(len, answer))
            if reply.needs:
                additional = [
                    a for a, n in zip(additional, reply.needs, strict=True) if n <= len(answer)
                ]
        else:
            room -= size
        additional = _fitting(additional, room)
        if truncated:
            self.stats["truncated"] += 1
            skeleton = shape.skeleton(reply.rcode, truncated=True)
        return b"".join(
            (
                skeleton[:4],
                _COUNTS.pack(len(answer), len(authority), arcount + len(additional)),
                skeleton[10:end],
                *answer,
                *authority,
                *additional,
                skeleton[end:],
            )
        )


class _Shape:
    """A parsed query without its id: what answering it needs, and its response skeletons.

    A skeleton is dnspython's rendering of the response with no records,
    minus the 2-byte id, per (rcode, truncated); built on first use.
    """

    __slots__ = ("_skeletons", "labels", "qtype", "question_end", "response", "udp_limit")

    def __init__(
        self,
        response: dns.message.Message,
        labels: tuple[bytes, ...] | None,
        qtype: int,
        udp_limit: int,
    ) -> None:
        self.response = response
        self.labels = labels
        self.qtype = qtype
        self.udp_limit = udp_limit
        # Offsets are without the id: flags and 4 counts (10 bytes), name, type and class.
        self.question_end = 10 + len(_wire(response.question[0].name)) + 4
        self._skeletons: dict[tuple[int, bool], bytes] = {}

    def skeleton(self, rcode: dns.rcode.Rcode, *, truncated: bool) -> bytes:
        wire = self._skeletons.get((rcode, truncated))
        if wire is None:
            response = self.response
            response.set_rcode(rcode)
            response.flags &= ~(dns.flags.AA | dns.flags.TC)
            if rcode != dns.rcode.REFUSED:  # outside our zone we claim no authority
                response.flags |= dns.flags.AA
            if truncated:
                response.flags |= dns.flags.TC
            wire = self._skeletons[(rcode, truncated)] = response.to_wire()[2:]
        return wire


def _fitting(records: Sequence[bytes], room: int) -> Sequence[bytes]:
    """The longest prefix of ``records`` that fits ``room`` bytes (all of them, usually)."""
    for count, record in enumerate(records):
        room -= len(record)
        if room < 0:
            return records[:count]
    return records


def _text(label: bytes) -> str | None:
    """A label as the registry spells names (lower case here); None if it is not ASCII."""
    try:
        return label.decode("ascii").lower()
    except UnicodeDecodeError:
        return None


def _has_tag(entry: Entry, tag: str) -> bool:
    """Whether ``entry`` has ``tag`` (given in lower case): DNS names ignore case."""
    return any(t.lower() == tag for t in entry.tags)


def _address_rdata(address: str) -> dns.rdata.Rdata | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 4:
        return dns.rdtypes.IN.A.A(dns.rdataclass.IN, dns.rdatatype.A, str(ip))  # type: ignore[no-untyped-call]
    return dns.rdtypes.IN.AAAA.AAAA(dns.rdataclass.IN, dns.rdatatype.AAAA, str(ip))  # type: ignore[no-untyped-call]


def _wire(name: dns.name.Name) -> bytes:
    """A name's uncompressed wire form."""
    return cast(bytes, name.to_wire())


def _formerr(data: bytes) -> bytes | None:
    """FORMERR for bytes with a query header we can answer; None (drop) for anything else."""
    if len(data) < _HEADER.size:
        return None
    query_id, flags = struct.unpack_from("!HH", data)
    if flags & dns.flags.QR:
        return None
    response = dns.message.Message(id=query_id)
    response.flags = dns.flags.QR | (flags & (dns.flags.RD | 0x7800))  # keep RD and the opcode
    response.set_rcode(dns.rcode.FORMERR)
    return response.to_wire()
