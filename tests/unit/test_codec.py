"""The wire codec: round trips, the documented layout, size arithmetic and rejections."""

from __future__ import annotations

import re
from typing import Any

import msgpack
import pytest

from gossip_registry.core import codec
from gossip_registry.core.codec import (
    CodecError,
    assemble_packet,
    check_update,
    decode_packet,
    decode_stream,
    encode_packet,
    encode_primary,
    encode_stream,
    encode_update,
    packet_overhead,
)
from gossip_registry.core.messages import (
    PROTOCOL_VERSION,
    Ack,
    Alive,
    Dead,
    EntryUpdate,
    Left,
    MemberRecord,
    MemberState,
    MsgType,
    Nack,
    Packet,
    Ping,
    PingReq,
    Primary,
    StreamMessage,
    Suspect,
    SyncFinish,
    SyncHello,
    SyncMore,
    SyncReply,
    Update,
)
from gossip_registry.registry.entry import CheckKind, CheckState, Entry, Health

STREAM_LIMIT = 32 * 1024 * 1024


def make_entry(**changes: Any) -> Entry:
    fields: dict[str, Any] = {
        "service": "web",
        "instance_id": "web-1",
        "address": "10.0.0.1",
        "port": 8080,
        "tags": ("blue", "v2"),
        "meta": {"zone": "a", "empty": ""},
        "weight": 10,
        "status": Health.PASSING,
        "output": "HTTP 200",
        "owner": "node-a",
        "owner_incarnation": 3,
        "stamp": 1_700_000_000_000 << 16,
        "deleted": False,
        "checks": (CheckState("service:web-1", CheckKind.HTTP, Health.PASSING, "HTTP 200"),),
    }
    fields.update(changes)
    return Entry(**fields)


ENTRY = make_entry()
TOMBSTONE = make_entry(
    tags=(),
    meta={},
    status=Health.CRITICAL,
    output="",
    port=0,
    weight=0,
    deleted=True,
    checks=(),
)
LONGEST = "n" * codec.MAX_NAME_LEN
LONGEST_HOST = ".".join(["h" * 63] * 3 + ["h" * 61])  # 253 characters, labels of at most 63
MAX_ENTRY = make_entry(
    service=LONGEST,
    instance_id="i" * codec.MAX_NAME_LEN,
    address=LONGEST_HOST,
    port=codec.MAX_PORT,
    tags=tuple(f"{i:03d}".ljust(codec.MAX_NAME_LEN, "t") for i in range(codec.MAX_TAGS)),
    meta={
        f"{i:03d}".ljust(codec.MAX_NAME_LEN, "k"): "v" * codec.MAX_META_VALUE_LEN
        for i in range(codec.MAX_META_PAIRS)
    },
    weight=codec.MAX_WEIGHT,
    status=Health.WARNING,
    output="o" * codec.MAX_OUTPUT_LEN,
    owner="ø" * codec.MAX_NAME_LEN,
    owner_incarnation=codec.MAX_INCARNATION,
    stamp=codec.MAX_INCARNATION,
    checks=tuple(
        CheckState(
            f"{i:03d}".ljust(codec.MAX_NAME_LEN, "c"),
            list(CheckKind)[i % len(CheckKind)],
            Health.CRITICAL,
            "o" * codec.MAX_OUTPUT_LEN,
        )
        for i in range(codec.MAX_CHECKS)
    ),
)
RECORD = MemberRecord("node-a", ("10.0.0.1", 7946), 4, MemberState.SUSPECT, {"dc": "east"})
MAX_RECORD = MemberRecord(
    LONGEST, (LONGEST_HOST, codec.MAX_PORT), codec.MAX_INCARNATION, MemberState.LEFT, {}
)

PRIMARIES: list[Primary] = [
    Ping(7, "node-b", "node-a"),
    Ping(codec.MAX_SEQ, LONGEST, LONGEST),
    PingReq(8, "node-c", ("10.0.0.3", 7946), "node-a", want_nack=True),
    PingReq(0, "node-c", ("::1", 0), "node-a", want_nack=False),
    Ack(9),
    Nack(codec.MAX_SEQ),
]
UPDATES: list[Update] = [
    Alive("node-a", ("10.0.0.1", 7946), 0, {}),
    Alive("nœud-é", ("example.internal", 65535), codec.MAX_INCARNATION, {"role": "db", "x": ""}),
    Suspect("node-b", 5, "node-a"),
    Dead("node-b", 6, "node-c"),
    Left("node-d", 2),
    EntryUpdate(ENTRY),
    EntryUpdate(TOMBSTONE),
]
# The largest valid entry (~51 KB) fits a datagram alone, not with the others.
UPDATES_WITH_MAX: list[Update] = [*UPDATES, EntryUpdate(MAX_ENTRY)]
STREAMS: list[StreamMessage] = [
    Ping(1, "node-b", "node-a"),
    Ack(1),
    SyncHello(RECORD, 0xDEADBEEF_CAFEF00D, (0, 1, codec.MAX_DIGEST)),
    SyncHello(MAX_RECORD, codec.MAX_DIGEST, ()),
    SyncReply(None, True, (), ()),
    SyncReply((RECORD, MAX_RECORD), False, (0, 17, codec.MAX_BUCKETS - 1), (ENTRY, TOMBSTONE)),
    SyncFinish(None, ()),
    SyncFinish((RECORD,), (ENTRY, MAX_ENTRY, TOMBSTONE)),
    SyncReply(None, False, (3, 4), (ENTRY,), 9),
    SyncMore(9, (0, codec.MAX_DIGEST)),
    SyncMore(codec.MAX_BUCKETS - 1, (7,)),
    SyncReply((RECORD,), True, (), (), 0, 512),
    SyncReply((RECORD,), False, (3,), (ENTRY,), 9, codec.MAX_SYNC_ITEMS),
    SyncMore(0, (), 512),
    SyncMore(9, (0,), codec.MAX_SYNC_ITEMS),
]


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def raw_packet(primary: Any = None, updates: Any = (), version: Any = PROTOCOL_VERSION) -> bytes:
    return pack([version, primary, list(updates)])


def raw_stream(message: Any, version: Any = PROTOCOL_VERSION) -> bytes:
    return pack([version, message])


def raw_entry(**changes: Any) -> list[Any]:
    return make_entry(**changes).canonical()


# --- Round trips ---------------------------------------------------------------


@pytest.mark.parametrize("primary", PRIMARIES, ids=repr)
def test_every_primary_type_round_trips_in_a_packet(primary: Any) -> None:
    packet = Packet(primary)
    assert decode_packet(encode_packet(packet)) == packet


@pytest.mark.parametrize("update", UPDATES_WITH_MAX, ids=lambda u: type(u).__name__)
def test_every_update_type_round_trips_in_a_packet(update: Any) -> None:
    packet = Packet(None, (update,))
    assert decode_packet(encode_packet(packet)) == packet


def test_packet_with_primary_and_many_updates_round_trips() -> None:
    packet = Packet(PRIMARIES[2], tuple(UPDATES) * 3)
    decoded = decode_packet(encode_packet(packet))
    assert decoded == packet
    assert all(type(u.meta) is dict for u in decoded.updates if isinstance(u, Alive))


@pytest.mark.parametrize("message", STREAMS, ids=lambda m: type(m).__name__)
def test_every_stream_type_round_trips_in_a_frame(message: Any) -> None:
    assert decode_stream(encode_stream(message), STREAM_LIMIT) == message


def test_decoded_entries_have_the_types_the_registry_expects() -> None:
    (update,) = decode_packet(encode_packet(Packet(None, (EntryUpdate(MAX_ENTRY),)))).updates
    assert isinstance(update, EntryUpdate)
    entry = update.entry
    assert type(entry.tags) is tuple
    assert type(entry.meta) is dict
    assert entry.status is Health.WARNING
    assert entry.digest == MAX_ENTRY.digest
    assert entry.order == MAX_ENTRY.order


def test_decoded_sync_values_are_tuples_and_enums() -> None:
    reply = decode_stream(encode_stream(STREAMS[5]), STREAM_LIMIT)
    assert isinstance(reply, SyncReply)
    assert type(reply.members) is tuple
    assert type(reply.entries) is tuple
    assert type(reply.buckets) is tuple
    assert reply.members[0].state is MemberState.SUSPECT
    assert type(reply.members[0].addr) is tuple
    hello = decode_stream(encode_stream(STREAMS[2]), STREAM_LIMIT)
    assert isinstance(hello, SyncHello)
    assert type(hello.buckets) is tuple


def test_meta_given_as_a_non_dict_mapping_is_encoded() -> None:
    from types import MappingProxyType

    alive = Alive("node-a", ("10.0.0.1", 1), 1, MappingProxyType({"k": "v"}))
    (decoded,) = decode_packet(encode_packet(Packet(None, (alive,)))).updates
    assert decoded == Alive("node-a", ("10.0.0.1", 1), 1, {"k": "v"})


# --- The documented layout -----------------------------------------------------

# Messages written by hand from the wire specification, not by our encoder.
LAYOUT = [
    ([1, 7, "b", "a"], Ping(7, "b", "a")),
    ([2, 7, "c", "10.0.0.3", 53, "a", True], PingReq(7, "c", ("10.0.0.3", 53), "a", True)),
    ([3, 7], Ack(7)),
    ([4, 7], Nack(7)),
    ([5, "a", "h", 1, 2, {"k": "v"}], Alive("a", ("h", 1), 2, {"k": "v"})),
    ([6, "a", 2, "b"], Suspect("a", 2, "b")),
    ([7, "a", 2, "b"], Dead("a", 2, "b")),
    ([8, "a", 2], Left("a", 2)),
    (
        [
            9,
            "web",  # service
            "web-1",  # instance_id
            "10.0.0.1",  # address
            8080,  # port
            ["blue", "v2"],  # tags
            {"empty": "", "zone": "a"},  # meta
            10,  # weight
            "passing",  # status
            "HTTP 200",  # output
            "node-a",  # owner
            3,  # owner_incarnation
            1_700_000_000_000 << 16,  # stamp
            False,  # deleted
            [["service:web-1", "http", "passing", "HTTP 200"]],  # checks: id, kind, status, output
        ],
        EntryUpdate(ENTRY),
    ),
]


def test_entry_without_the_appended_checks_field_decodes_with_no_checks() -> None:
    raw = raw_entry()[:13]
    decoded = decode_packet(raw_packet(None, [[9, *raw]])).updates[0]
    assert decoded == EntryUpdate(make_entry(checks=()))


@pytest.mark.parametrize(("raw", "expected"), LAYOUT, ids=lambda x: repr(x)[:20])
def test_packet_decoder_follows_the_documented_field_layout(raw: Any, expected: Any) -> None:
    if raw[0] <= 4:
        assert decode_packet(raw_packet(raw)) == Packet(expected)
        assert msgpack.unpackb(encode_primary(expected)) == raw
    else:
        assert decode_packet(raw_packet(None, [raw])) == Packet(None, (expected,))
        assert msgpack.unpackb(encode_update(expected)) == raw


def test_stream_decoder_follows_the_documented_field_layout() -> None:
    record = ["node-a", "10.0.0.1", 7946, 4, 1, {"dc": "east"}]
    digests = (1).to_bytes(8, "big") + (2**64 - 1).to_bytes(8, "big")
    hello = decode_stream(raw_stream([10, record, 99, digests]), STREAM_LIMIT)
    assert hello == SyncHello(RECORD, 99, (1, 2**64 - 1))
    reply = decode_stream(raw_stream([11, [record], True, [3], [ENTRY.canonical()]]), 1000)
    assert reply == SyncReply((RECORD,), True, (3,), (ENTRY,))
    finish = decode_stream(raw_stream([12, None, []]), 1000)
    assert finish == SyncFinish(None, ())
    assert msgpack.unpackb(encode_stream(hello)) == [1, [10, record, 99, digests]]


def test_a_packet_is_a_three_array_with_the_version_first() -> None:
    assert encode_packet(Packet(Ack(5))) == b"\x93\x01\x92\x03\x05\x90"
    assert encode_packet(Packet(None)) == b"\x93\x01\xc0\x90"
    assert encode_stream(Ack(5)) == b"\x92\x01\x92\x03\x05"


# --- Packet assembly arithmetic ------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, codec.MAX_UPDATES])
@pytest.mark.parametrize("primary", [None, encode_primary(PRIMARIES[2])], ids=["none", "pingreq"])
def test_assembled_packet_length_is_overhead_plus_update_bodies(
    n: int, primary: bytes | None
) -> None:
    bodies = [encode_update(UPDATES[i % len(UPDATES)]) for i in range(n)]
    data = assemble_packet(primary, bodies)
    assert len(data) == packet_overhead(primary, n) + sum(len(b) for b in bodies)
    decoded = decode_packet(data)
    assert len(decoded.updates) == n
    assert decoded.primary == (None if primary is None else PRIMARIES[2])


def test_the_sixteenth_update_costs_two_extra_header_bytes() -> None:
    assert packet_overhead(None, 16) - packet_overhead(None, 15) == 2
    assert packet_overhead(None, 0) == 4


def test_encode_packet_equals_assembling_the_encoded_parts() -> None:
    packet = Packet(PRIMARIES[0], tuple(UPDATES))
    parts = [encode_update(u) for u in UPDATES]
    assert encode_packet(packet) == assemble_packet(encode_primary(PRIMARIES[0]), parts)


def test_assembling_more_updates_than_peers_accept_is_refused() -> None:
    body = encode_update(Left("a", 1))
    with pytest.raises(ValueError, match="exceed"):
        assemble_packet(None, [body] * (codec.MAX_UPDATES + 1))


@pytest.mark.parametrize(
    ("encode", "message"),
    [
        (encode_primary, Left("a", 1)),
        (encode_primary, SyncFinish(None, ())),
        (encode_update, Ping(1, "a", "b")),
        (encode_stream, Nack(1)),
        (encode_stream, Alive("a", ("h", 1), 1, {})),
    ],
    ids=lambda x: getattr(x, "__name__", type(x).__name__),
)
def test_encoding_a_message_in_the_wrong_slot_is_a_type_error(encode: Any, message: Any) -> None:
    with pytest.raises(TypeError):
        encode(message)


# --- check_update ----------------------------------------------------------------


@pytest.mark.parametrize("update", UPDATES_WITH_MAX, ids=lambda u: type(u).__name__)
def test_valid_updates_pass_the_check(update: Any) -> None:
    check_update(update)


@pytest.mark.parametrize(
    "update",
    [
        EntryUpdate(make_entry(service="s" * (codec.MAX_NAME_LEN + 1))),
        EntryUpdate(make_entry(tags=("",))),
        EntryUpdate(make_entry(meta={"k": 1})),
        EntryUpdate(make_entry(port=70000)),
        Alive("\ud800", ("h", 1), 1, {}),
        Alive("a", ("h", 1), 2**64, {}),
        Suspect("a", -1, "b"),
    ],
    ids=["long-service", "empty-tag", "int-meta", "port", "surrogate", "huge-int", "negative"],
)
def test_updates_peers_would_reject_fail_the_check(update: Any) -> None:
    with pytest.raises(CodecError):
        check_update(update)


def test_checking_a_non_update_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        check_update(Ack(1))  # type: ignore[arg-type]


# --- Rejections ---------------------------------------------------------------------

VALID = encode_packet(Packet(PRIMARIES[0], tuple(UPDATES[:6])))
ENTRY_WIRE = ENTRY.canonical()

BAD_PACKETS: dict[str, tuple[bytes, str]] = {
    "unknown_protocol_version": (raw_packet([3, 1], version=2), "unsupported protocol version"),
    "version_zero": (raw_packet([3, 1], version=0), "unsupported protocol version"),
    "version_as_bool": (raw_packet([3, 1], version=True), "unsupported protocol version"),
    "version_as_float": (raw_packet([3, 1], version=1.0), "unsupported protocol version"),
    "version_as_string": (raw_packet([3, 1], version="1"), "unsupported protocol version"),
    "unknown_message_type": (
        raw_packet([99, 1]),
        "message type 99 is unknown or not allowed as primary",
    ),
    "unknown_update_type": (
        raw_packet(None, [[13, "a"]]),
        "message type 13 is unknown or not allowed as update",
    ),
    "type_as_bool": (raw_packet([True, 1, "a", "b"]), "invalid primary message"),
    "type_as_string": (raw_packet(["3", 1]), "invalid primary message"),
    "update_type_in_primary_slot": (
        raw_packet([8, "a", 1]),
        "message type 8 is unknown or not allowed as primary",
    ),
    "primary_type_in_update_slot": (
        raw_packet(None, [[3, 1]]),
        "message type 3 is unknown or not allowed as update",
    ),
    "stream_type_in_packet": (
        raw_packet([12, None, []]),
        "message type 12 is unknown or not allowed as primary",
    ),
    "empty_message": (raw_packet([]), "invalid primary message"),
    "message_not_an_array": (raw_packet(3), "invalid primary message"),
    "message_as_map": (raw_packet({"type": 3}), "invalid primary message"),
    "too_few_fields": (raw_packet([1, 7, "b"]), "message type 1 has too few fields"),
    "entry_with_too_few_fields": (
        raw_packet(None, [[9, *ENTRY_WIRE[:12]]]),
        "message type 9 has too few fields",
    ),
    "updates_not_an_array": (pack([1, None, {"a": 1}]), "invalid update list"),
    "updates_nil": (pack([1, None, None]), "invalid update list"),
    "too_many_updates": (
        raw_packet(None, [[8, "a", 1]] * (codec.MAX_UPDATES + 1)),
        "invalid update list",
    ),
    "envelope_too_short": (pack([1, None]), "invalid envelope"),
    "envelope_not_an_array": (pack({"v": 1}), "invalid envelope"),
    "envelope_scalar": (pack(1), "invalid envelope"),
    "bool_where_int_expected_seq": (raw_packet([3, True]), "invalid seq"),
    "bool_where_int_expected_port": (
        raw_packet(None, [[5, "a", "h", True, 1, {}]]),
        "invalid port",
    ),
    "bool_where_int_expected_incarnation": (
        raw_packet(None, [[8, "a", False]]),
        "invalid incarnation",
    ),
    "float_where_int_expected": (raw_packet([3, 1.0]), "invalid seq"),
    "int_where_bool_expected": (raw_packet([2, 1, "c", "h", 1, "a", 1]), "invalid want_nack"),
    "nil_where_bool_expected": (raw_packet([2, 1, "c", "h", 1, "a", None]), "invalid want_nack"),
    "out_of_range_port": (raw_packet([2, 1, "c", "h", 65536, "a", True]), "invalid port"),
    "negative_port": (raw_packet(None, [[5, "a", "h", -1, 1, {}]]), "invalid port"),
    "out_of_range_seq": (raw_packet([3, 2**32]), "invalid seq"),
    "negative_seq": (raw_packet([4, -1]), "invalid seq"),
    "out_of_range_incarnation": (raw_packet(None, [[6, "a", 2**63, "b"]]), "invalid incarnation"),
    "too_long_name": (raw_packet(None, [[7, "n" * 129, 1, "b"]]), "invalid name"),
    "empty_name": (raw_packet(None, [[8, "", 1]]), "invalid name"),
    "too_long_accuser": (raw_packet(None, [[6, "a", 1, "n" * 129]]), "invalid accuser"),
    "name_as_bytes": (raw_packet(None, [[8, b"a", 1]]), "invalid name"),
    "name_as_int": (raw_packet([1, 1, 2, "a"]), "invalid target"),
    "too_long_host": (raw_packet(None, [[5, "a", "h" * 254, 1, 1, {}]]), "invalid host"),
    "empty_host": (raw_packet([2, 1, "c", "", 1, "a", True]), "invalid host"),
    "meta_not_a_map": (raw_packet(None, [[5, "a", "h", 1, 1, [["k", "v"]]]]), "invalid meta"),
    "too_many_meta_pairs": (
        raw_packet(None, [[5, "a", "h", 1, 1, {str(i): "" for i in range(65)}]]),
        "invalid meta",
    ),
    "too_long_meta_value": (
        raw_packet(None, [[5, "a", "h", 1, 1, {"k": "v" * 513}]]),
        "invalid meta pair",
    ),
    "too_long_meta_key": (
        raw_packet(None, [[5, "a", "h", 1, 1, {"k" * 129: "v"}]]),
        "invalid meta pair",
    ),
    "empty_meta_key": (raw_packet(None, [[5, "a", "h", 1, 1, {"": "v"}]]), "invalid meta pair"),
    "int_meta_value": (raw_packet(None, [[5, "a", "h", 1, 1, {"k": 1}]]), "invalid meta pair"),
    "bytes_meta_key": (raw_packet(None, [[5, "a", "h", 1, 1, {b"k": "v"}]]), "invalid meta pair"),
    "too_many_tags": (
        raw_packet(None, [[9, *raw_entry(tags=[str(i) for i in range(65)])]]),
        "invalid tags",
    ),
    "empty_tag": (raw_packet(None, [[9, *raw_entry(tags=[""])]]), "invalid tag"),
    "too_long_tag": (raw_packet(None, [[9, *raw_entry(tags=["t" * 129])]]), "invalid tag"),
    "tags_not_an_array": (
        raw_packet(None, [[9, *ENTRY_WIRE[:4], "abc", *ENTRY_WIRE[5:]]]),
        "invalid tags",
    ),
    "unknown_status": (
        raw_packet(None, [[9, *raw_entry(status="healthy")]]),
        "invalid entry status",
    ),
    "status_as_int": (
        raw_packet(None, [[9, *ENTRY_WIRE[:7], 0, *ENTRY_WIRE[8:]]]),
        "invalid entry status",
    ),
    "too_long_output": (
        raw_packet(None, [[9, *raw_entry(output="o" * (codec.MAX_OUTPUT_LEN + 1))]]),
        "invalid entry output",
    ),
    "checks_not_a_list": (raw_packet(None, [[9, *ENTRY_WIRE[:13], "x"]]), "invalid check list"),
    "too_many_checks": (
        raw_packet(None, [[9, *ENTRY_WIRE[:13], [ENTRY_WIRE[13][0]] * (codec.MAX_CHECKS + 1)]]),
        "invalid check list",
    ),
    "check_too_short": (
        raw_packet(None, [[9, *ENTRY_WIRE[:13], [["c", "http", "passing"]]]]),
        "invalid check",
    ),
    "check_unknown_kind": (
        raw_packet(None, [[9, *ENTRY_WIRE[:13], [["c", "grpc", "passing", ""]]]]),
        "invalid check kind or status",
    ),
    "check_unknown_status": (
        raw_packet(None, [[9, *ENTRY_WIRE[:13], [["c", "tcp", "ok", ""]]]]),
        "invalid check kind or status",
    ),
    "check_empty_id": (
        raw_packet(None, [[9, *ENTRY_WIRE[:13], [["", "tcp", "passing", ""]]]]),
        "invalid check id",
    ),
    "check_output_too_long": (
        raw_packet(None, [[9, *ENTRY_WIRE[:13], [["c", "ttl", "warning", "o" * 257]]]]),
        "invalid check output",
    ),
    "out_of_range_weight": (raw_packet(None, [[9, *raw_entry(weight=65536)]]), "invalid weight"),
    "out_of_range_stamp": (raw_packet(None, [[9, *raw_entry(stamp=2**63)]]), "invalid stamp"),
    "negative_owner_incarnation": (
        raw_packet(None, [[9, *raw_entry(owner_incarnation=-1)]]),
        "invalid owner incarnation",
    ),
    "int_where_deleted_bool_expected": (
        raw_packet(None, [[9, *ENTRY_WIRE[:12], 0]]),
        "invalid deleted",
    ),
    "empty_service": (raw_packet(None, [[9, *raw_entry(service="")]]), "invalid service"),
    "too_long_instance_id": (
        raw_packet(None, [[9, *raw_entry(instance_id="i" * 129)]]),
        "invalid instance id",
    ),
    "empty_entry_address": (raw_packet(None, [[9, *raw_entry(address="")]]), "invalid host"),
    # registry/schema.py's character sets (issue 10, finding 5)
    "newline_in_instance_id": (
        raw_packet(None, [[9, *raw_entry(instance_id="a\nb")]]),
        "invalid instance id",
    ),
    "slash_in_instance_id": (
        raw_packet(None, [[9, *raw_entry(instance_id="a/b")]]),
        "invalid instance id",
    ),
    "control_in_tag": (raw_packet(None, [[9, *raw_entry(tags=("v\x1b",))]]), "invalid tag"),
    "nul_in_address": (
        raw_packet(None, [[9, *raw_entry(address="bad host\x00name")]]),
        "invalid host",
    ),
    "space_in_address": (raw_packet(None, [[9, *raw_entry(address="bad host")]]), "invalid host"),
    "truncated_data": (VALID[:-1], "not a valid msgpack frame"),
    "truncated_header": (VALID[:1], "not a valid msgpack frame"),
    "empty_data": (b"", "not a valid msgpack frame"),
    "trailing_garbage": (VALID + b"\x00", "not a valid msgpack frame"),
    "two_packets_back_to_back": (VALID + VALID, "not a valid msgpack frame"),
    "invalid_utf8": (
        pack([1, None, [[8, "a", 1]]]).replace(b"\xa1a", b"\xa1\xff"),
        "not a valid msgpack frame",
    ),
    "ext_type": (pack([1, msgpack.ExtType(1, b"x"), []]), "not a valid msgpack frame"),
    "timestamp_ext": (pack([1, None, [[8, msgpack.Timestamp(1), 1]]]), "not a valid msgpack frame"),
    "nesting_too_deep": (b"\x91" * 5000 + b"\xc0", "not a valid msgpack frame"),
    "huge_declared_array": (b"\x93\x01\xc0\xdd\xff\xff\xff\xff", "not a valid msgpack frame"),
    "huge_declared_string": (
        b"\x93\x01\xc0\x91\x93\x08\xdb\xff\xff\xff\xff",
        "not a valid msgpack frame",
    ),
    "huge_declared_map": (
        b"\x93\x01\xc0\x91\x96\x05\xa1a\xa1h\x01\x01\xdf\xff\xff\xff\xff",
        "not a valid msgpack frame",
    ),
    "array_as_map_key": (
        b"\x93\x01\xc0\x91\x96\x05\xa1a\xa1h\x01\x01\x81\x91\x01\xa1v",
        "not a valid msgpack frame",
    ),
    "reserved_byte": (b"\xc1", "not a valid msgpack frame"),
    "oversized_data": (
        raw_packet(None, [[5, "a", "h", 1, 1, {"k": "v" * 500}]] * 140),
        "exceeds the limit",
    ),
}


@pytest.mark.parametrize(("data", "reason"), BAD_PACKETS.values(), ids=BAD_PACKETS.keys())
def test_malformed_packet_is_rejected_with_codec_error(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=re.escape(reason)):
        decode_packet(data)


def test_unknown_protocol_version_is_rejected() -> None:
    with pytest.raises(CodecError, match="version"):
        decode_packet(encode_packet(Packet(Ack(1))).replace(b"\x93\x01", b"\x93\x02", 1))


def test_packet_longer_than_max_size_is_rejected_before_parsing() -> None:
    data = encode_packet(Packet(Ack(1)))
    assert decode_packet(data, max_size=len(data)) == Packet(Ack(1))
    with pytest.raises(CodecError, match="exceeds"):
        decode_packet(data, max_size=len(data) - 1)
    assert len(BAD_PACKETS["oversized_data"][0]) > codec.MAX_UDP_PAYLOAD


def test_codec_error_keeps_the_msgpack_cause() -> None:
    with pytest.raises(CodecError) as info:
        decode_packet(VALID + b"\x00")
    assert isinstance(info.value.__cause__, msgpack.ExtraData)
    assert isinstance(info.value, ValueError)


RECORD_WIRE = ["node-a", "10.0.0.1", 7946, 4, 1, {}]

BAD_FRAMES: dict[str, tuple[bytes, str]] = {
    "unknown_protocol_version": (raw_stream([3, 1], version=2), "unsupported protocol version"),
    "nack_in_stream": (raw_stream([4, 1]), "message type 4 is unknown or not allowed as stream"),
    "ping_req_in_stream": (
        raw_stream([2, 7, "c", "h", 1, "a", True]),
        "message type 2 is unknown or not allowed as stream",
    ),
    "update_in_stream": (
        raw_stream([8, "a", 1]),
        "message type 8 is unknown or not allowed as stream",
    ),
    "unknown_type": (raw_stream([13]), "message type 13 is unknown or not allowed as stream"),
    "envelope_too_short": (pack([1]), "invalid envelope"),
    "message_nil": (raw_stream(None), "invalid stream message"),
    "bucket_bin_not_multiple_of_8": (
        raw_stream([10, RECORD_WIRE, 1, b"\x00" * 7]),
        "invalid bucket digests",
    ),
    "bucket_digests_as_array": (raw_stream([10, RECORD_WIRE, 1, [1, 2]]), "invalid bucket digests"),
    "bucket_digests_as_string": (
        raw_stream([10, RECORD_WIRE, 1, "\x00" * 8]),
        "invalid bucket digests",
    ),
    "too_many_bucket_digests": (
        raw_stream([10, RECORD_WIRE, 1, b"\x00" * 8 * 65537]),
        "invalid bucket digests",
    ),
    "members_digest_as_float": (raw_stream([10, RECORD_WIRE, 1.5, b""]), "invalid members digest"),
    "members_digest_negative": (raw_stream([10, RECORD_WIRE, -1, b""]), "invalid members digest"),
    "record_with_too_few_fields": (
        raw_stream([10, RECORD_WIRE[:5], 1, b""]),
        "invalid member record",
    ),
    "record_not_an_array": (raw_stream([10, "node-a", 1, b""]), "invalid member record"),
    "unknown_member_state": (
        raw_stream([10, [*RECORD_WIRE[:4], 4, {}], 1, b""]),
        "invalid member state",
    ),
    "member_state_as_bool": (
        raw_stream([10, [*RECORD_WIRE[:4], True, {}], 1, b""]),
        "invalid member state",
    ),
    "member_state_as_string": (
        raw_stream([10, [*RECORD_WIRE[:4], "alive", {}], 1, b""]),
        "invalid member state",
    ),
    "record_port_out_of_range": (
        raw_stream([10, ["a", "h", 65536, 1, 0, {}], 1, b""]),
        "invalid port",
    ),
    "members_not_an_array": (raw_stream([12, {}, []]), "invalid member list"),
    "member_not_a_record": (raw_stream([12, [1], []]), "invalid member record"),
    "entries_nil": (raw_stream([12, None, None]), "invalid entry list"),
    "entry_with_too_few_fields": (raw_stream([12, None, [ENTRY_WIRE[:12]]]), "invalid entry"),
    "entry_not_an_array": (raw_stream([12, None, ["web"]]), "invalid entry"),
    "entry_with_bad_field": (raw_stream([12, None, [raw_entry(port=-1)]]), "invalid port"),
    "want_members_as_int": (raw_stream([11, None, 1, [], []]), "invalid want_members"),
    "bucket_index_out_of_range": (
        raw_stream([11, None, True, [65536], []]),
        "invalid bucket index",
    ),
    "bucket_index_negative": (raw_stream([11, None, True, [-1], []]), "invalid bucket index"),
    "bucket_index_as_bool": (raw_stream([11, None, True, [True], []]), "invalid bucket index"),
    "too_many_bucket_indices": (
        raw_stream([11, None, True, [0] * 65537, []]),
        "invalid bucket list",
    ),
    "bucket_indices_as_bin": (raw_stream([11, None, True, b"\x00\x01", []]), "invalid bucket list"),
    "sync_reply_too_few_fields": (
        raw_stream([11, None, True, []]),
        "message type 11 has too few fields",
    ),
    "truncated_data": (encode_stream(STREAMS[5])[:-3], "not a valid msgpack frame"),
    "trailing_garbage": (encode_stream(Ack(1)) + b"\xc0", "not a valid msgpack frame"),
}


@pytest.mark.parametrize(("data", "reason"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_malformed_stream_frame_is_rejected_with_codec_error(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=re.escape(reason)):
        decode_stream(data, STREAM_LIMIT)


def test_stream_frame_longer_than_max_size_is_rejected() -> None:
    data = encode_stream(STREAMS[7])
    assert decode_stream(data, len(data)) == STREAMS[7]
    with pytest.raises(CodecError, match="exceeds"):
        decode_stream(data, len(data) - 1)


# --- Forward compatibility ---------------------------------------------------------

EXTRA = "from-a-newer-minor-version"


@pytest.mark.parametrize(("raw", "expected"), LAYOUT, ids=lambda x: repr(x)[:20])
def test_extra_trailing_fields_in_a_message_are_ignored(raw: Any, expected: Any) -> None:
    if raw[0] <= 4:
        assert decode_packet(raw_packet([*raw, EXTRA, 1])) == Packet(expected)
    else:
        assert decode_packet(raw_packet(None, [[*raw, EXTRA]])) == Packet(None, (expected,))


def test_extra_trailing_fields_in_the_envelope_are_ignored() -> None:
    assert decode_packet(pack([1, [3, 5], [], EXTRA])) == Packet(Ack(5))
    assert decode_stream(pack([1, [3, 5], EXTRA]), 100) == Ack(5)


def test_extra_trailing_fields_in_records_and_sync_entries_are_ignored() -> None:
    record = [*RECORD_WIRE, EXTRA]
    hello = decode_stream(raw_stream([10, record, 1, b"", EXTRA]), 1000)
    assert hello == SyncHello(
        MemberRecord("node-a", ("10.0.0.1", 7946), 4, MemberState.SUSPECT, {}), 1, ()
    )
    finish = decode_stream(raw_stream([12, [record], [[*ENTRY_WIRE, EXTRA]]]), 1000)
    assert isinstance(finish, SyncFinish)
    assert finish.entries == (ENTRY,)


def test_a_sync_reply_without_the_appended_resume_field_is_a_whole_answer() -> None:
    frame = encode_stream(SyncReply(None, False, (1,), (ENTRY,)))
    assert decode_stream(frame, 1 << 20) == SyncReply(None, False, (1,), (ENTRY,), 0)


@pytest.mark.parametrize(
    "fields",
    [
        (int(MsgType.SYNC_MORE), codec.MAX_BUCKETS, b""),
        (int(MsgType.SYNC_MORE), codec.MAX_BUCKETS - 1, b"\x00" * 16),
        (int(MsgType.SYNC_MORE), 0, b"\x00" * 7),
        (int(MsgType.SYNC_MORE), -1, b""),
    ],
    ids=["start-out-of-range", "digests-past-the-last-bucket", "ragged-digests", "negative"],
)
def test_malformed_sync_more_is_a_codec_error(fields: tuple[Any, ...]) -> None:
    with pytest.raises(CodecError):
        decode_stream(raw_stream(list(fields)), 1 << 20)
