"""Fuzzing the codec: garbage raises only CodecError; valid messages round-trip."""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import types
import typing
from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from gossip_registry.core import codec
from gossip_registry.core.codec import (
    CodecError,
    decode_packet,
    decode_stream,
    encode_packet,
    encode_stream,
)
from gossip_registry.core.messages import (
    Ack,
    Alive,
    Dead,
    EntryUpdate,
    Left,
    MemberRecord,
    MemberState,
    Message,
    MsgType,
    Nack,
    Packet,
    Ping,
    PingReq,
    Suspect,
    SyncFinish,
    SyncHello,
    SyncReply,
)
from gossip_registry.registry.entry import CheckKind, CheckState, Entry, Health
from gossip_registry.registry.schema import is_name

STREAM_LIMIT = 1 << 20

# --- Valid values -----------------------------------------------------------------
# Text without surrogates (msgpack cannot encode them; peers could never send them).


def text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8"), min_size=min_size, max_size=max_size)


def uint(maximum: int) -> st.SearchStrategy[int]:
    return st.integers(0, maximum)


# Names and hosts as registry/schema.py allows them: printable without '/', IPs or host names.
names = st.text(
    st.characters(
        codec="utf-8",
        exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"),
        exclude_characters="/",
    ),
    min_size=1,
    max_size=codec.MAX_NAME_LEN,
).filter(is_name)
_labels = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,20}[A-Za-z0-9])?", fullmatch=True)
hosts = st.ip_addresses().map(str) | st.lists(_labels, min_size=1, max_size=6).map(".".join)
addrs = st.tuples(hosts, uint(codec.MAX_PORT))
seqs = uint(codec.MAX_SEQ)
incarnations = uint(codec.MAX_INCARNATION)
metas = st.dictionaries(names, text(0, codec.MAX_META_VALUE_LEN), max_size=4)

checks = st.builds(
    CheckState,
    names,
    st.sampled_from(CheckKind),
    st.sampled_from(Health),
    text(0, codec.MAX_OUTPUT_LEN),
)
entries = st.builds(
    Entry,
    service=names,
    instance_id=names,
    address=hosts,
    port=uint(codec.MAX_PORT),
    tags=st.lists(names, max_size=4).map(tuple),
    meta=metas,
    weight=uint(codec.MAX_WEIGHT),
    status=st.sampled_from(Health),
    output=text(0, codec.MAX_OUTPUT_LEN),
    owner=names,
    owner_incarnation=incarnations,
    stamp=incarnations,
    deleted=st.booleans(),
    checks=st.lists(checks, max_size=3).map(tuple),
)
records = st.builds(MemberRecord, names, addrs, incarnations, st.sampled_from(MemberState), metas)
member_lists = st.none() | st.lists(records, max_size=3).map(tuple)
entry_lists = st.lists(entries, max_size=3).map(tuple)

pings = st.builds(Ping, seqs, names, names)
acks = st.builds(Ack, seqs)
primaries = st.one_of(
    pings,
    st.builds(PingReq, seqs, names, addrs, names, st.booleans()),
    acks,
    st.builds(Nack, seqs),
)
updates = st.one_of(
    st.builds(Alive, names, addrs, incarnations, metas),
    st.builds(Suspect, names, incarnations, names),
    st.builds(Dead, names, incarnations, names),
    st.builds(Left, names, incarnations),
    st.builds(EntryUpdate, entries),
)
packets = st.builds(Packet, st.none() | primaries, st.lists(updates, max_size=5).map(tuple))
streams = st.one_of(
    pings,
    acks,
    st.builds(
        SyncHello, records, uint(codec.MAX_DIGEST), st.lists(uint(codec.MAX_DIGEST)).map(tuple)
    ),
    st.builds(
        SyncReply,
        member_lists,
        st.booleans(),
        st.lists(uint(codec.MAX_BUCKETS - 1)).map(tuple),
        entry_lists,
    ),
    st.builds(SyncFinish, member_lists, entry_lists),
)


def decode_either(kind: str, data: bytes) -> Any:
    return decode_packet(data) if kind == "packet" else decode_stream(data, STREAM_LIMIT)


def encode_either(kind: str, message: Any) -> bytes:
    return encode_packet(message) if kind == "packet" else encode_stream(message)


def assert_well_typed(value: Any, hint: Any) -> None:
    """``value`` has exactly the type ``hint`` declares: no bool for an int, no list for a tuple.

    Round-trip equality cannot see such slips (``True == 1``), and they break
    code that dispatches on types or hashes values.
    """
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        matching = [a for a in typing.get_args(hint) if type(value) is (typing.get_origin(a) or a)]
        assert matching, (value, hint)
        hint = matching[0]
    if dataclasses.is_dataclass(value):
        assert type(value) is hint, (value, hint)
        hints = typing.get_type_hints(hint)
        for f in dataclasses.fields(value):
            if f.init:
                assert_well_typed(getattr(value, f.name), hints[f.name])
        return
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        assert value is None
    elif origin is tuple:
        assert type(value) is tuple, (value, hint)
        item_hints = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        assert len(item_hints) == len(value)
        for item, item_hint in zip(value, item_hints, strict=True):
            assert_well_typed(item, item_hint)
    elif origin is collections.abc.Mapping:
        assert type(value) is dict, (value, hint)
        for key, item in value.items():
            assert_well_typed(key, args[0])
            assert_well_typed(item, args[1])
    else:
        assert type(value) is hint, (value, hint)


def decodes_or_raises_codec_error(kind: str, data: bytes) -> None:
    """Decode; what decodes is well typed and survives its own round trip."""
    try:
        decoded = decode_either(kind, data)
    except CodecError:
        return
    assert_well_typed(decoded, type(decoded))
    assert decode_either(kind, encode_either(kind, decoded)) == decoded


# --- Round trips ----------------------------------------------------------------------


@given(packets)
def test_valid_packets_round_trip(packet: Packet) -> None:
    decoded = decode_packet(encode_packet(packet))
    assert decoded == packet
    assert_well_typed(decoded, Packet)


@given(streams)
def test_valid_stream_messages_round_trip(message: Any) -> None:
    decoded = decode_stream(encode_stream(message), STREAM_LIMIT)
    assert decoded == message
    assert_well_typed(decoded, type(message))


# --- Garbage -----------------------------------------------------------------------------


@given(st.sampled_from(["packet", "stream"]), st.binary(max_size=256))
def test_arbitrary_bytes_raise_only_codec_error(kind: str, data: bytes) -> None:
    decodes_or_raises_codec_error(kind, data)


EDGE_INTS = [-1, 0, 1, 4, 13, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
EDGE_TEXTS = ["", *("x" * n for n in (128, 129, 253, 254, 512, 513, 1024, 1025))]

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.sampled_from(EDGE_INTS)
    | st.floats()
    | text(0, 8)
    | st.sampled_from(EDGE_TEXTS)
    | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=14) | st.dictionaries(text(0, 4), inner, max_size=3),
    max_leaves=20,
)


def paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every node of a decoded msgpack tree, as the keys leading to it."""
    found = [prefix]
    if isinstance(tree, list):
        for i, child in enumerate(tree):
            found += paths(child, (*prefix, i))
    elif isinstance(tree, dict):
        for key, child in tree.items():
            found += paths(child, (*prefix, key))
    return found


def replace_one_node(data: st.DataObject, tree: Any) -> Any:
    """``tree`` with one node, chosen among all of them, replaced by an arbitrary value."""
    path = data.draw(st.sampled_from(paths(tree)[:0:-1]))  # not the root; leaves first
    if not path:
        return data.draw(msgpack_values)
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = data.draw(msgpack_values)
    return tree


# Random bytes rarely get past the envelope. Well-formed msgpack that differs
# from a valid message in one place reaches every field check.


# One message per packet, so that each replacement has few places to land.
single_message_packets = primaries.map(Packet) | updates.map(lambda u: Packet(None, (u,)))


@given(single_message_packets, st.data())
def test_valid_packet_with_one_value_replaced_raises_only_codec_error_or_round_trips(
    packet: Packet, data: st.DataObject
) -> None:
    tree = replace_one_node(data, msgpack.unpackb(encode_packet(packet)))
    decodes_or_raises_codec_error("packet", msgpack.packb(tree))


@given(streams, st.data())
def test_valid_frame_with_one_value_replaced_raises_only_codec_error_or_round_trips(
    message: Any, data: st.DataObject
) -> None:
    tree = replace_one_node(data, msgpack.unpackb(encode_stream(message)))
    decodes_or_raises_codec_error("stream", msgpack.packb(tree))


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]), uint(2**16), uint(255)),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, position, value in edits:
        i = position % (len(buf) + 1)
        if op == "insert":
            buf.insert(i, value)
        elif not buf:
            continue
        elif op == "flip":
            buf[i % len(buf)] ^= 1 << (value % 8)
        elif op == "delete":
            del buf[i % len(buf)]
        else:
            del buf[i:]
    return bytes(buf)


@given(packets, mutations)
def test_mutated_packets_raise_only_codec_error_or_round_trip(
    packet: Packet, edits: list[tuple[str, int, int]]
) -> None:
    decodes_or_raises_codec_error("packet", mutate(encode_packet(packet), edits))


@given(streams, mutations)
def test_mutated_stream_frames_raise_only_codec_error_or_round_trip(
    message: Any, edits: list[tuple[str, int, int]]
) -> None:
    decodes_or_raises_codec_error("stream", mutate(encode_stream(message), edits))


# --- The census behind traffic metrics ------------------------------------------------

TYPE_OF: dict[type, MsgType] = {
    Ping: MsgType.PING,
    PingReq: MsgType.PING_REQ,
    Ack: MsgType.ACK,
    Nack: MsgType.NACK,
    Alive: MsgType.ALIVE,
    Suspect: MsgType.SUSPECT,
    Dead: MsgType.DEAD,
    Left: MsgType.LEFT,
    EntryUpdate: MsgType.ENTRY,
}


@given(packets)
def test_census_of_a_valid_packet_names_each_message_and_sums_to_its_bodies(
    packet: Packet,
) -> None:
    data = encode_packet(packet)
    census = codec.message_sizes(data, stream=False)
    messages: list[Message] = [packet.primary] if packet.primary is not None else []
    messages += packet.updates
    assert [kind for kind, _ in census] == [TYPE_OF[type(m)] for m in messages]
    envelope = codec.packet_overhead(None, len(packet.updates)) - (packet.primary is not None)
    assert sum(size for _, size in census) == len(data) - envelope


@given(packets, mutations)
def test_census_of_mutated_packets_raises_only_codec_error(
    packet: Packet, edits: list[tuple[str, int, int]]
) -> None:
    with contextlib.suppress(CodecError):
        codec.message_sizes(mutate(encode_packet(packet), edits), stream=False)


@given(st.booleans(), st.binary(max_size=256))
def test_census_of_arbitrary_bytes_raises_only_codec_error(stream: bool, data: bytes) -> None:
    with contextlib.suppress(CodecError):
        codec.message_sizes(data, stream=stream)
