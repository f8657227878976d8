"""Fuzz targets for every decoder and for the merge: hostile input never crashes, never corrupts.

Each target is a function and its strategies; ``fuzz_test(name)`` makes
the hypothesis test. The suite runs each briefly and derandomized
(``test_fuzz.py``); ``scripts/fuzz.py`` runs the same for minutes with
fresh seeds.

- ``node_packet``: a datagram (random, or a valid packet mutated) into a
  whole protocol core: nothing escapes ``handle_packet`` and the table's
  invariants hold afterwards.
- ``tcp_frame``: a byte stream, split into arbitrary chunks, through the
  transport's framing and into ``handle_stream``: only ``FrameError``
  comes out of the framing, nothing out of the core.
- ``sealed_frame``: a chunked sealed frame mutated, cut, spliced with
  another or sealed under a key we lack, read in arbitrary pieces under a
  strict or lenient seal: only ``FrameError``, and nothing but the sealed
  plaintext is ever accepted.
- ``snapshot_file``: a valid snapshot mutated: ``decode_snapshot`` raises
  only ``SnapshotError``, ``load_snapshot`` never raises, and what it
  returns starts a node.
- ``cluster_toml``: the shipped cluster.toml mutated, or a random document
  built from real keys and random values: only ``ConfigError``.
- ``http_body``: random JSON, random bytes and random ids and query strings
  against the HTTP API of a real node: never a 5xx.
- ``adversarial_merge``: entries with random stamps (a year ahead
  included), owners, incarnations and duplicates, mixed with member deaths,
  refutations and local writes: the table's digests equal a recomputation,
  no owner passes its limit, no HLC runs beyond the skew bound.

Semantically hostile input (issue 10): well-formed, but extreme.

- ``boundary_fields``: datagrams and frames built field by field, each
  integer at a boundary of its range (0, 1, max-1, max, max+1, negative,
  the msgpack extremes) and each size at its limit and one past it: the
  codec accepts exactly the values in range, the core never raises, and
  everything the core sends in answer decodes at a peer.
- ``hostile_membership``: sequences of alive, suspect, dead and left about
  ourselves, known members and strangers, at incarnations around the known
  one, the step, the ceiling and 2**63-1, by datagram or push-pull, with
  timers firing in between: our incarnation stays encodable, no member is
  believed beyond the ceiling, and every datagram and frame we send decodes.
- ``hostile_floods``: floods at and beyond every table limit (members,
  entries per owner with tombstones, foreign entries in total, updates per
  packet, push-pull lists): no limit is passed, and what we send decodes.

Hostile clients: ``http_request`` and ``dns_query`` (``fuzz_interfaces.py``).
"""

from __future__ import annotations

import contextlib
import heapq
import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgpack
import trio
from hypothesis import given
from hypothesis import strategies as st

from gossip_registry.api.http import build_app
from gossip_registry.config.cluster_file import load_cluster
from gossip_registry.config.node import NodeConfig
from gossip_registry.core.codec import (
    MAX_BUCKETS,
    MAX_INCARNATION,
    MAX_PORT,
    MAX_SEQ,
    MAX_UPDATES,
    MAX_WEIGHT,
    CodecError,
    decode_packet,
    decode_stream,
    encode_packet,
    encode_stream,
)
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Effect, Send, SetTimer, StreamRequest, StreamSend, Timer
from gossip_registry.core.limits import Limits
from gossip_registry.core.messages import (
    PROTOCOL_VERSION,
    Address,
    Alive,
    Dead,
    EntryUpdate,
    Left,
    MemberRecord,
    MemberState,
    MsgType,
    Packet,
    Suspect,
    SyncFinish,
)
from gossip_registry.core.protocol import Protocol
from gossip_registry.core.swim import INCARNATION_CEILING
from gossip_registry.crypto.keyring import CHUNK_SIZE, GossipSeal, Keyring
from gossip_registry.errors import ConfigError
from gossip_registry.registry.clock import make_stamp, stamp_wall
from gossip_registry.registry.entry import Entry, Health
from gossip_registry.runtime.node import Node
from gossip_registry.runtime.storage.snapshot import (
    SNAPSHOT_FILE,
    Snapshot,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
    load_snapshot,
)
from gossip_registry.runtime.transport import FrameError, encode_frame, read_frame
from tests.property.fuzz_interfaces import INTERFACE_FUNCTIONS, INTERFACE_STRATEGIES
from tests.property.test_codec_fuzz import (
    mutate,
    mutations,
    packets,
    replace_one_node,
    streams,
)

REPO = Path(__file__).resolve().parents[2]
WALL = 1_800_000_000.0
YEAR = 365 * 24 * 3600.0
ME: Address = ("198.18.0.1", 7946)
PEER: Address = ("198.18.0.2", 7946)
LIMITS = Limits(max_members=12, max_entries_per_owner=4, max_foreign_entries=40)
"""Small, so that examples reach them."""


def new_core() -> Protocol:
    config = ProtocolConfig(limits=LIMITS)
    node = Protocol(config, "me", ME, rng=random.Random(0), now=0.0, wall_offset=WALL)
    node.start(0.0)
    return node


def check_invariants(node: Protocol, wall: float) -> None:
    """What no input may break: digests, per-owner counts and limits, the HLC bound.

    ``wall`` is the latest wall-clock time this node has had: peers can push
    its HLC at most the skew limit beyond that.
    """
    table = node.table
    total, buckets = 0, [0] * table.buckets
    owners: dict[str, int] = {}
    for entry in table.entries():
        buckets[table.bucket_of(entry.key)] ^= entry.digest  # tombstones too
        if not entry.deleted:
            total ^= entry.digest
            owners[entry.owner] = owners.get(entry.owner, 0) + 1
    assert table.digest == total
    assert table.bucket_digests() == tuple(buckets)
    assert table.live_count == sum(owners.values())
    for owner, count in owners.items():
        assert table.live_count_of(owner) == count
    for owner in table.owners():  # deletions count too (issue 10, finding 8)
        assert table.count_of(owner) <= LIMITS.max_entries_per_owner
    assert table.foreign_count(node.name) <= LIMITS.max_foreign_entries
    assert len(node.members) <= LIMITS.max_members
    assert stamp_wall(node.clock.last) <= wall + LIMITS.max_clock_skew


# --- UDP packets ----------------------------------------------------------------------------


def _packet_bytes(data: st.DataObject) -> bytes:
    how = data.draw(st.sampled_from(["random", "mutated", "replaced"]))
    if how == "random":
        return data.draw(st.binary(max_size=512))
    packet = data.draw(packets)
    if how == "mutated":
        return mutate(encode_packet(packet), data.draw(mutations))
    raw: bytes = msgpack.packb(replace_one_node(data, msgpack.unpackb(encode_packet(packet))))
    return raw


def node_packet(data: st.DataObject) -> None:
    node = new_core()
    for i in range(data.draw(st.integers(1, 4))):
        node.handle_packet(float(i), PEER, _packet_bytes(data))
        check_invariants(node, WALL + i)


# --- TCP frames -----------------------------------------------------------------------------


class _Chunks(trio.abc.ReceiveStream):
    """A receive stream that hands out ``data`` in the given chunk sizes."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes = data, sizes

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        size = self.sizes.pop(0) if self.sizes else len(self.data)
        size = min(size, max_bytes or len(self.data))
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def _frame_stream(data: st.DataObject) -> bytes:
    how = data.draw(st.sampled_from(["random", "framed", "mutated"]))
    if how == "random":
        return data.draw(st.binary(max_size=512))
    frame = encode_frame(encode_stream(data.draw(streams)))
    return frame if how == "framed" else mutate(frame, data.draw(mutations))


def tcp_frame(data: st.DataObject) -> None:
    raw = _frame_stream(data)
    sizes = data.draw(st.lists(st.integers(1, 64), max_size=8))
    max_frame = data.draw(st.sampled_from([16, 256, 1 << 20]))

    async def read() -> bytes | None:
        return await read_frame(_Chunks(raw, sizes), max_frame)

    try:
        frame = trio.run(read)
    except FrameError:
        return
    if frame is None:
        return
    with contextlib.suppress(CodecError):
        decode_stream(frame, max_frame)
    node = new_core()
    node.handle_stream(1.0, PEER, frame)
    check_invariants(node, WALL + 1.0)


_SEAL_KEY, _OTHER_KEY = b"\x11" * 32, b"\x22" * 32
_SEALED_SIZES = st.sampled_from([0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE])


def sealed_frame(data: st.DataObject) -> None:
    """A sealed frame mutated, cut, spliced or under another key, read in arbitrary pieces:
    only ``FrameError`` comes out, and what is accepted is exactly what was sealed."""
    ring = Keyring([_SEAL_KEY])
    plaintext = data.draw(st.binary(max_size=64)) * data.draw(_SEALED_SIZES)
    plaintext = plaintext[: 2 * CHUNK_SIZE + 7]
    sealed = ring.seal_frame(plaintext)
    how = data.draw(st.sampled_from(["intact", "mutated", "cut", "spliced", "other_key"]))
    if how == "mutated":
        sealed = mutate(sealed, data.draw(mutations))
    elif how == "cut":
        sealed = sealed[: data.draw(st.integers(0, len(sealed)))]
    elif how == "spliced":
        other = ring.seal_frame(plaintext)
        at = data.draw(st.integers(0, len(sealed)))
        sealed = sealed[:at] + other[at:]
    elif how == "other_key":
        sealed = Keyring([_OTHER_KEY]).seal_frame(plaintext)
    declared = data.draw(st.sampled_from([len(sealed), len(sealed) - 1, len(sealed) + 1]))
    raw = max(declared, 0).to_bytes(4, "big") + sealed
    sizes = data.draw(st.lists(st.integers(1, 70_000), max_size=8))
    lenient = data.draw(st.booleans())
    seal = GossipSeal(Keyring([_OTHER_KEY, _SEAL_KEY]), verify_incoming=not lenient)

    async def read() -> bytes | None:
        with trio.fail_after(10):
            return await read_frame(_Chunks(raw, sizes), 1 << 20, None, seal)

    try:
        frame = trio.run(read)
    except FrameError:
        assert how != "intact" or declared != len(sealed)
        return
    # Only the frame as sealed passes (a mutation may undo itself), or plaintext when let in.
    body = sealed[: max(declared, 0)]
    assert frame == plaintext or (lenient and body[:1] != b"\xc1" and frame == body), how


# --- Snapshot files -------------------------------------------------------------------------


def _own_entry(i: int) -> Entry:
    return Entry(
        "web", f"w{i}", "198.18.1.1", 80, ("a",), {"k": "v"}, 1, Health.PASSING, "", "me", 3,
        make_stamp(WALL + i), False,
    )  # fmt: skip


def snapshot_file(n_entries: int, edits: list[tuple[str, int, int]], mutated: bool) -> None:
    snapshot = Snapshot(
        "me", 5, (("p1", "198.18.0.2", 7946),), tuple(_own_entry(i) for i in range(n_entries))
    )
    raw = encode_snapshot(snapshot)
    if mutated:
        raw = mutate(raw, edits)
    with contextlib.suppress(SnapshotError):
        decode_snapshot(raw)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / SNAPSHOT_FILE).write_bytes(raw)
        loaded = load_snapshot(Path(tmp), "me")
    if loaded is not None:
        node = Protocol(
            ProtocolConfig(limits=LIMITS),
            "me",
            ME,
            rng=random.Random(0),
            now=0.0,
            wall_offset=WALL,
            incarnation=loaded.incarnation,
            entries=loaded.entries,
        )
        node.start(0.0)
        check_invariants(node, WALL)


# --- cluster.toml ---------------------------------------------------------------------------

SHIPPED_TOML = (REPO / "cluster.toml").read_bytes()
_KEYS = [
    "host", "profile", "data_root", "seeds", "meta", "leave_timeout", "probe_interval",
    "suspicion_mult", "tcp_fallback", "read_token", "write_token", "read_token_file",
    "tls_cert", "tls_key", "name", "gossip_port", "http_port", "advertise", "data_dir",
    "max_members", "max_clock_skew", "packet_size", "bogus",
]  # fmt: skip
_TABLES = ["cluster", "defaults", "limits", "[nodes]", "nodes.x"]
_toml_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["1s", "500ms", "0s", "lan", "127.0.0.1:7946", "::1", "data", "99999h"]),
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # inf and -inf are TOML too
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, or a TOMLDecodeError for surrogates
    return str(value)


_toml_docs = st.lists(
    st.tuples(
        st.sampled_from(_TABLES),
        st.lists(
            st.tuples(st.sampled_from(_KEYS), _toml_scalars | st.lists(_toml_scalars, max_size=3)),
            max_size=5,
        ),
    ),
    max_size=5,
).map(
    lambda tables: "\n".join(
        (f"[{name}]" if name != "[nodes]" else "[[nodes]]")
        + "\n"
        + "".join(f"{key} = {_toml_value(value)}\n" for key, value in pairs)
        for name, pairs in tables
    ).encode("utf-8", "surrogatepass")
)


def cluster_toml(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.toml"
        path.write_bytes(raw)
        with contextlib.suppress(ConfigError):
            load_cluster(path)


# --- HTTP bodies ----------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_fields = st.sampled_from(["name", "id", "address", "port", "tags", "meta", "weight", "x"])
_bodies = st.one_of(
    st.binary(max_size=64),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(_fields, _json_values, max_size=7).map(lambda v: json.dumps(v).encode()),
    st.just(b'{"name": "web", "port": 80}'),
)
_requests = st.lists(
    st.one_of(
        st.tuples(st.just("PUT"), st.just("/v1/services"), _bodies),
        st.tuples(st.just("DELETE"), st.text(min_size=1, max_size=12), st.just(b"")),
        st.tuples(st.just("GET"), st.text(max_size=12), st.just(b"")),
    ),
    min_size=1,
    max_size=5,
)


def http_body(requests: list[tuple[str, str, bytes]]) -> None:
    async def run() -> None:
        with trio.fail_after(20):
            async with Node(NodeConfig("fuzz", bind=("127.0.0.1", 0))) as node:
                transport = httpx.ASGITransport(app=build_app(node))
                async with httpx.AsyncClient(transport=transport, base_url="http://n") as client:
                    for method, tail, body in requests:
                        if method == "PUT":
                            url = tail
                        elif method == "DELETE":
                            url = "/v1/services/" + quote(tail, safe="")
                        else:
                            url = "/v1/services/web?" + quote(tail, safe="=&:")
                        response = await client.request(method, url, content=body)
                        assert response.status_code < 500, (method, url, body, response.text)
                        assert "error" in response.json() or response.is_success

    trio.run(run)


# --- Merge with adversarial versions ----------------------------------------------------------

_owners = st.sampled_from(["me", "p1", "p2", "p3"])
_offsets = st.one_of(st.floats(-10.0, 10.0), st.sampled_from([59.0, 61.0, YEAR, -YEAR / 10, 0.0]))


@st.composite
def _versions(draw: st.DrawFn) -> Entry:
    return Entry(
        service=draw(st.sampled_from(["web", "db"])),
        instance_id=draw(st.sampled_from(["a", "b", "c", "d", "e", "f"])),
        address="198.18.1.1",
        port=draw(st.integers(0, 3)),
        tags=(),
        meta={},
        weight=1,
        status=Health.PASSING,
        output="",
        owner=draw(_owners),
        owner_incarnation=draw(st.integers(0, 3)),
        stamp=make_stamp(max(0.0, WALL + draw(_offsets))) + draw(st.integers(0, 2)),
        deleted=draw(st.booleans()),
    )


_operations = st.lists(
    st.one_of(
        st.tuples(st.just("entry"), st.lists(_versions(), min_size=1, max_size=4)),
        st.tuples(st.just("dead"), _owners, st.integers(0, 3)),
        st.tuples(st.just("alive"), _owners, st.integers(0, 4)),
        st.tuples(st.just("suspect"), _owners, st.integers(0, 3)),
        st.tuples(st.just("register"), st.sampled_from(["a", "b", "c", "d", "e", "f"])),
        st.tuples(st.just("deregister"), st.sampled_from(["a", "b", "c"])),
        st.tuples(st.just("clock"), _offsets),
    ),
    max_size=25,
)


def _apply(node: Protocol, now: float, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "entry":
        updates = tuple(EntryUpdate(v) for v in op[1])
        node.handle_packet(now, PEER, encode_packet(Packet(None, updates + updates[:1])))
    elif kind in ("dead", "suspect", "alive"):
        name, incarnation = op[1], op[2]
        update = (
            Dead(name, incarnation, "p9")
            if kind == "dead"
            else Suspect(name, incarnation, "p9")
            if kind == "suspect"
            else Alive(name, PEER, incarnation, {})
        )
        node.handle_packet(now, PEER, encode_packet(Packet(None, (update,))))
    elif kind == "register":
        try:
            node.register(now, "web", op[1], "198.18.1.1", 80)
        except ValueError:  # deletions count toward the limit too
            assert node.table.count_of("me") >= LIMITS.max_entries_per_owner
    elif kind == "deregister":
        stored = node.table.get(("web", op[1]))
        if stored is None or stored.deleted or stored.owner == "me":  # only the owner may delete
            node.deregister(now, ("web", op[1]))
    else:  # our own wall clock steps
        node.wall_offset = WALL + op[1]


def adversarial_merge(operations: list[tuple[Any, ...]]) -> None:
    node = new_core()
    now, latest_wall = 0.0, WALL
    for op in operations:
        now += 1.0
        _apply(node, now, op)
        latest_wall = max(latest_wall, now + node.wall_offset)
        check_invariants(node, latest_wall)


# --- Semantically hostile: boundary values ------------------------------------------------

STEP = LIMITS.max_incarnation_step


def _around(maximum: int) -> list[int]:
    """Boundary values of a field whose range is 0..maximum, and the msgpack extremes.

    Only what msgpack can carry (-2**63..2**64-1): a peer cannot send more.
    """
    values = [0, 1, maximum - 1, maximum, maximum + 1, -1, -(2**63), 2**64 - 1]
    return [v for v in values if -(2**63) <= v < 2**64]


_INCARNATIONS = [*_around(MAX_INCARNATION), STEP - 1, STEP, STEP + 1, INCARNATION_CEILING]
_STAMPS = [
    *_around(MAX_INCARNATION),
    make_stamp(WALL),
    make_stamp(WALL + LIMITS.max_clock_skew),
    make_stamp(WALL + LIMITS.max_clock_skew + 0.001),
]
_NAMES = st.sampled_from(["me", "p1", "p2", "ghost", "x" * 128, "x" * 129, ""])


def check_output(effects: list[Effect], node: Protocol) -> None:
    """Everything ``node`` sends must decode at a peer: finding 1 was a refutation none could."""
    for effect in effects:
        if isinstance(effect, Send):
            decode_packet(effect.data)
        elif isinstance(effect, StreamRequest | StreamSend):
            decode_stream(effect.data, node.config.max_stream_bytes)


def check_counters(node: Protocol) -> None:
    """No counter a peer moves leaves what this node could legitimately reach."""
    assert 0 <= node.incarnation <= INCARNATION_CEILING + 1
    for record in node.members:
        assert record.incarnation <= INCARNATION_CEILING, record
    for entry in node.table.entries():
        assert entry.owner_incarnation <= INCARNATION_CEILING, entry


def _entry_fields(draw: st.DrawFn) -> list[Any]:
    return [
        "web",
        draw(_NAMES),
        "198.18.1.1",
        draw(st.sampled_from(_around(MAX_PORT))),
        draw(st.sampled_from([[], ["t"] * 64, ["t"] * 65])),
        draw(st.sampled_from([{}, {f"k{i}": "v" for i in range(64)}, {"k": "v" * 513}])),
        draw(st.sampled_from(_around(MAX_WEIGHT))),
        "passing",
        draw(st.sampled_from(["", "o" * 256, "o" * 257])),
        draw(_NAMES),
        draw(st.sampled_from(_INCARNATIONS)),
        draw(st.sampled_from(_STAMPS)),
        draw(st.booleans()),
    ]


def _record_fields(draw: st.DrawFn) -> list[Any]:
    return [
        draw(_NAMES),
        "198.18.0.9",
        draw(st.sampled_from(_around(MAX_PORT))),
        draw(st.sampled_from(_INCARNATIONS)),
        draw(st.sampled_from([*range(-1, 6), 255])),
        {},
    ]


@st.composite
def _boundary_update(draw: st.DrawFn) -> list[Any]:
    inc = st.sampled_from(_INCARNATIONS)
    kind = draw(st.sampled_from(["alive", "suspect", "dead", "left", "entry"]))
    if kind == "alive":
        port = draw(st.sampled_from(_around(MAX_PORT)))
        return [int(MsgType.ALIVE), draw(_NAMES), "198.18.0.9", port, draw(inc), {}]
    if kind == "suspect":
        return [int(MsgType.SUSPECT), draw(_NAMES), draw(inc), "acc"]
    if kind == "dead":
        return [int(MsgType.DEAD), draw(_NAMES), draw(inc), "acc"]
    if kind == "left":
        return [int(MsgType.LEFT), draw(_NAMES), draw(inc)]
    return [int(MsgType.ENTRY), *_entry_fields(draw)]


@st.composite
def _boundary_primary(draw: st.DrawFn) -> list[Any] | None:
    seq = draw(st.sampled_from(_around(MAX_SEQ)))
    kind = draw(st.sampled_from(["none", "ping", "ping_req", "ack", "nack"]))
    if kind == "ping":
        return [int(MsgType.PING), seq, draw(_NAMES), "p1"]
    if kind == "ping_req":
        port = draw(st.sampled_from(_around(MAX_PORT)))
        return [int(MsgType.PING_REQ), seq, draw(_NAMES), "198.18.0.9", port, "p1", True]
    if kind in ("ack", "nack"):
        return [int(MsgType.ACK if kind == "ack" else MsgType.NACK), seq]
    return None


@st.composite
def _boundary_stream(draw: st.DrawFn) -> list[Any]:
    kind = draw(st.sampled_from(["hello", "reply", "finish"]))
    records = draw(st.lists(st.composite(_record_fields)(), max_size=3))
    entries = draw(st.lists(st.composite(_entry_fields)(), max_size=3))
    if kind == "hello":
        n = draw(st.sampled_from([0, 1, LIMITS_BUCKETS, MAX_BUCKETS, MAX_BUCKETS + 1]))
        blob = draw(st.sampled_from([b"\0" * 8 * n, b"\0" * (8 * min(n, 4) + 1)]))
        digest = draw(st.sampled_from(_around(2**64 - 1)))
        return [int(MsgType.SYNC_HELLO), _record_fields(draw), digest, blob]
    if kind == "reply":
        buckets = draw(st.lists(st.sampled_from(_around(MAX_BUCKETS - 1)), max_size=4))
        return [int(MsgType.SYNC_REPLY), records, draw(st.booleans()), buckets, entries]
    return [int(MsgType.SYNC_FINISH), records, entries]


LIMITS_BUCKETS = ProtocolConfig().registry_buckets


def boundary_fields(data: st.DataObject) -> None:
    node = new_core()
    for i in range(data.draw(st.integers(1, 4))):
        now = float(i)
        if data.draw(st.booleans()):
            n = data.draw(st.sampled_from([0, 1, 3, MAX_UPDATES, MAX_UPDATES + 1]))
            update = data.draw(_boundary_update())
            raw = msgpack.packb([PROTOCOL_VERSION, data.draw(_boundary_primary()), [update] * n])
            with contextlib.suppress(CodecError):
                decode_packet(raw)
            effects = node.handle_packet(now, PEER, raw)
        else:
            raw = msgpack.packb([PROTOCOL_VERSION, data.draw(_boundary_stream())])
            with contextlib.suppress(CodecError):
                decode_stream(raw, node.config.max_stream_bytes)
            reply, effects = node.handle_stream(now, PEER, raw)
            if reply is not None:
                decode_stream(reply, node.config.max_stream_bytes)
        check_output(effects, node)
        check_invariants(node, WALL + now)
        check_counters(node)


# --- Semantically hostile: membership state machine ------------------------------------------

_SUBJECTS = st.sampled_from(["me", "p1", "p2", "ghost"])
_RELATIVE = st.sampled_from([-1, 0, 1, STEP - 1, STEP, STEP + 1])
_ABSOLUTE = st.sampled_from(
    [
        0,
        1,
        STEP,
        INCARNATION_CEILING - 1,
        INCARNATION_CEILING,
        INCARNATION_CEILING + 1,
        MAX_INCARNATION - 1,
        MAX_INCARNATION,
    ]
)
_membership_ops = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["alive", "suspect", "dead", "left"]),
            _SUBJECTS,
            st.one_of(st.tuples(st.just("rel"), _RELATIVE), st.tuples(st.just("abs"), _ABSOLUTE)),
            st.sampled_from(["packet", "push-pull"]),
        ),
        st.tuples(st.just("time"), st.sampled_from([0.1, 1.0, 5.0, 30.0])),
        st.tuples(st.just("entry"), _SUBJECTS, _RELATIVE),
        st.tuples(st.just("register"), st.sampled_from(["a", "b"])),
    ),
    max_size=30,
)
_STATE_OF = {
    "alive": MemberState.ALIVE,
    "suspect": MemberState.SUSPECT,
    "dead": MemberState.DEAD,
    "left": MemberState.LEFT,
}


class _Driver:
    """One core under a timer heap, so suspicions time out and refutations go out."""

    def __init__(self, node: Protocol) -> None:
        self.node, self.now = node, 0.0
        self.timers: list[tuple[float, int, Timer]] = []
        self._seq = 0
        for name, addr in (("p1", PEER), ("p2", ("198.18.0.3", 7946))):
            self.feed(
                node.handle_packet(
                    0.0, PEER, encode_packet(Packet(None, (Alive(name, addr, 0, {}),)))
                )
            )

    def feed(self, effects: list[Effect]) -> None:
        check_output(effects, self.node)
        for effect in effects:
            if isinstance(effect, SetTimer):
                self._seq += 1
                heapq.heappush(self.timers, (effect.at, self._seq, effect.timer))
            elif isinstance(effect, StreamRequest):  # the peer never answers
                self.feed(self.node.handle_stream_reply(self.now, effect.token, None))

    def advance(self, dt: float) -> None:
        self.now += dt
        for _ in range(1000):  # bounded: periodic timers re-arm themselves
            if not self.timers or self.timers[0][0] > self.now:
                return
            _, _, timer = heapq.heappop(self.timers)
            self.feed(self.node.handle_timer(self.now, timer))

    def known(self, name: str) -> int:
        record = self.node.members.get(name)
        return record.incarnation if record is not None else 0


def hostile_membership(operations: list[tuple[Any, ...]]) -> None:
    driver = _Driver(new_core())
    node = driver.node
    for op in operations:
        kind = op[0]
        if kind == "time":
            driver.advance(op[1])
        elif kind == "register":
            with contextlib.suppress(ValueError):
                driver.feed(node.register(driver.now, "web", op[1], "198.18.1.1", 80)[1])
        elif kind == "entry":
            entry = replace(
                _own_entry(0),
                owner=op[1],
                owner_incarnation=max(0, driver.known(op[1]) + op[2]),
                stamp=make_stamp(WALL + driver.now),
            )
            packet = encode_packet(Packet(None, (EntryUpdate(entry),)))
            driver.feed(node.handle_packet(driver.now, PEER, packet))
        else:
            name, (how, value), path = op[1], op[2], op[3]
            inc = max(0, driver.known(name) + value) if how == "rel" else value
            if path == "packet":
                update = (
                    Alive(name, PEER, inc, {})
                    if kind == "alive"
                    else Suspect(name, inc, "p9")
                    if kind == "suspect"
                    else Dead(name, inc, "p9")
                    if kind == "dead"
                    else Left(name, inc)
                )
                driver.feed(
                    node.handle_packet(driver.now, PEER, encode_packet(Packet(None, (update,))))
                )
            else:
                record = MemberRecord(name, PEER, inc, _STATE_OF[kind], {})
                frame = encode_stream(SyncFinish((record,), ()))
                reply, effects = node.handle_stream(driver.now, PEER, frame)
                assert reply is None
                driver.feed(effects)
        check_counters(node)
        check_invariants(node, WALL + driver.now)


# --- Semantically hostile: floods at every limit ---------------------------------------------


def hostile_floods(kinds: list[str], beyond: int) -> None:
    node = new_core()
    effects: list[Effect] = []
    limit_members, limit_owner = LIMITS.max_members, LIMITS.max_entries_per_owner
    for step_no, kind in enumerate(kinds):
        now = float(step_no)
        if kind == "members":
            updates = tuple(Alive(f"m{i}", PEER, 0, {}) for i in range(limit_members + beyond))
            effects += node.handle_packet(now, PEER, encode_packet(Packet(None, updates)))
        elif kind == "owner":
            versions = [
                replace(
                    _own_entry(i),
                    owner="p1",
                    instance_id=f"o{i}",
                    owner_incarnation=0,
                    deleted=i % 2 == 0,
                )
                for i in range(limit_owner + beyond)
            ]
            flood = tuple(EntryUpdate(v) for v in versions)
            effects += node.handle_packet(now, PEER, encode_packet(Packet(None, flood)))
        elif kind == "owners":
            versions = [
                replace(_own_entry(i), owner=f"g{i}", instance_id=f"g{i}", owner_incarnation=0)
                for i in range(limit_members * limit_owner + beyond)
            ]
            _, more = node.handle_stream(
                now, PEER, encode_stream(SyncFinish(None, tuple(versions)))
            )
            effects += more
        elif kind == "updates":
            update = encode_packet(Packet(None, (Alive("p1", PEER, 0, {}),)))[4:]
            for n in (MAX_UPDATES, MAX_UPDATES + beyond):
                raw = (
                    bytes([0x93, PROTOCOL_VERSION, 0xC0, 0xDC]) + n.to_bytes(2, "big") + update * n
                )
                effects += node.handle_packet(now, PEER, raw)
        else:  # a push-pull member list past the member limit
            records = tuple(
                MemberRecord(f"r{i}", PEER, i % 3, MemberState(i % 4), {})
                for i in range(limit_members + beyond)
            )
            _, more = node.handle_stream(now, PEER, encode_stream(SyncFinish(records, ())))
            effects += more
        check_output(effects, node)
        check_invariants(node, WALL + now)
        check_counters(node)


def fuzz_test(name: str) -> Callable[[], None]:
    """A fresh hypothesis test of target ``name``, ready for its own ``settings`` and ``seed``.

    Fresh each call: hypothesis refuses settings applied twice to one function.
    """
    return given(*_STRATEGIES[name])(_FUNCTIONS[name])


_STRATEGIES: dict[str, tuple[st.SearchStrategy[Any], ...]] = {
    "node_packet": (st.data(),),
    "tcp_frame": (st.data(),),
    "sealed_frame": (st.data(),),
    "snapshot_file": (
        st.integers(0, 3),
        mutations,
        st.booleans(),
    ),
    "cluster_toml": (
        st.one_of(mutations.map(lambda edits: mutate(SHIPPED_TOML, edits)), _toml_docs),
    ),
    "http_body": (_requests,),
    "adversarial_merge": (_operations,),
    "boundary_fields": (st.data(),),
    "hostile_membership": (_membership_ops,),
    "hostile_floods": (
        st.lists(
            st.sampled_from(["members", "owner", "owners", "updates", "records"]),
            min_size=1,
            max_size=4,
        ),
        st.sampled_from([0, 1, 2, 50]),
    ),
    **INTERFACE_STRATEGIES,
}
_FUNCTIONS: dict[str, Callable[..., None]] = {
    "node_packet": node_packet,
    "tcp_frame": tcp_frame,
    "sealed_frame": sealed_frame,
    "snapshot_file": snapshot_file,
    "cluster_toml": cluster_toml,
    "http_body": http_body,
    "adversarial_merge": adversarial_merge,
    "boundary_fields": boundary_fields,
    "hostile_membership": hostile_membership,
    "hostile_floods": hostile_floods,
    **INTERFACE_FUNCTIONS,
}
TARGETS = tuple(_FUNCTIONS)
"""Every fuzz target by name; ``scripts/fuzz.py`` and ``test_fuzz.py`` run these."""
