"""Wire codec: protocol messages to msgpack bytes and back. The one module that knows the wire.

Theory of operation
-------------------
*Layout.* Every message is a msgpack array ``[type, field, ...]``: positional,
not a map, so no key names travel and a probe costs a dozen bytes. A UDP packet
is ``[PROTOCOL_VERSION, primary or nil, [update, ...]]``; a TCP frame is
``[PROTOCOL_VERSION, message]``. Updates are encoded once, when they are
queued for piggybacking (``encode_update``), and ``assemble_packet``
concatenates the stored bytes under a hand-written array header, so the sender
knows each update's size, fills a packet to the byte with ``packet_overhead``
and never re-encodes. A registry entry travels as ``Entry.canonical()``, the same values
its digest is computed over.

*Append only.* A field's position is its identity. A newer minor version may
only append fields (decoders here ignore trailing extras, in messages and in
the envelope) and append ``MsgType`` values. Old decoders reject a packet that
holds an unknown type, so send a new type only to peers known to understand it.
Removing, reordering or reinterpreting a field needs a new ``PROTOCOL_VERSION``,
which older nodes reject whole.

*One error.* Peers are untrusted. Decoding checks every field's type and range
against the limits below before it builds a value, and raises ``CodecError``,
and nothing else, for anything it will not accept; the caller drops the
datagram, counts it and carries on (h11's ``RemoteProtocolError``). Encoding
trusts its input, since it runs for every message we send; ``check_update``
says whether peers would accept a locally built update, and belongs wherever
outside input becomes one (registration, node metadata). An invalid entry that
got into the broadcast queue would make every packet carrying it, and every
push-pull exchange holding it, fail to decode at every peer.

This module may know nothing of sockets, time or randomness.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgpack

from gossip_registry.core.messages import (
    KEYRING_OPS,
    PROTOCOL_VERSION,
    Ack,
    Alive,
    Dead,
    EntryUpdate,
    KeyringMessage,
    KeyringReply,
    KeyringRequest,
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
from gossip_registry.registry.schema import (
    MAX_CHECKS,
    MAX_HOST_LEN,
    MAX_META_PAIRS,
    MAX_META_VALUE_LEN,
    MAX_NAME_LEN,
    MAX_OUTPUT_LEN,
    MAX_PORT,
    MAX_TAGS,
    MAX_WEIGHT,
    is_host,
    is_name,
)

__all__ = [
    "MAX_BUCKETS",
    "MAX_CHECKS",
    "MAX_DIGEST",
    "MAX_HOST_LEN",
    "MAX_INCARNATION",
    "MAX_META_PAIRS",
    "MAX_META_VALUE_LEN",
    "MAX_NAME_LEN",
    "MAX_OUTPUT_LEN",
    "MAX_PORT",
    "MAX_SEQ",
    "MAX_SYNC_ITEMS",
    "MAX_TAGS",
    "MAX_UDP_PAYLOAD",
    "MAX_UPDATES",
    "MAX_WEIGHT",
    "CodecError",
    "SplitPacket",
    "assemble_packet",
    "check_update",
    "decode_keyring",
    "decode_packet",
    "decode_stream",
    "encode_keyring",
    "encode_packet",
    "encode_primary",
    "encode_stream",
    "encode_update",
    "is_frame_head",
    "is_keyring_frame",
    "message_sizes",
    "packet_overhead",
    "record_size",
    "split_packet",
    "unpack_bounded",
]

# Limits enforced on decode. Changing one is a protocol change: a node that
# sends what an older node rejects loses the whole packet or frame.
MAX_UDP_PAYLOAD = 65507
"""Largest IPv4 UDP payload; the default ``max_size`` of ``decode_packet``."""
MAX_SEQ = 2**32 - 1
"""Probe sequence numbers are 32-bit and wrap."""
MAX_INCARNATION = 2**63 - 1
"""Incarnations, HLC stamps and owner incarnations: signed 64-bit, non-negative."""
MAX_DIGEST = 2**64 - 1
"""Member-list digest: an unsigned 64-bit hash."""
# Field limits and character sets (names, hosts, ports, tags, meta, weight, checks) are
# registry/schema.py's, imported above: the API, config and registration use the same.
MAX_BUCKETS = 65536
"""Digest buckets in a SyncHello, bucket indices in a SyncReply (each < MAX_BUCKETS)."""
MAX_UPDATES = 1024
"""Piggybacked updates in one packet; ``assemble_packet`` refuses more."""
MAX_SYNC_ITEMS = 2**20
"""Members, and separately entries, in one push-pull message."""
MAX_KEY_LEN = 64
"""Bytes of a key in a keyring request (the keyring itself wants exactly 32)."""
MAX_KEYS = 64
"""Key fingerprints in a keyring reply."""
MAX_KEYRING_FRAME = 64 * 1024
"""Largest keyring frame decoded; real ones are a few hundred bytes."""


class CodecError(ValueError):
    """Bytes from a peer that we will not accept.

    Raised by ``decode_packet`` and ``decode_stream`` (and ``check_update``) for
    anything malformed: truncated or oversized data, trailing bytes, an unknown
    protocol version or message type, a message in the wrong slot, a field of
    the wrong type (a bool is not an int, nor an int a bool) or out of range.
    Decoding raises no other exception, so a receive loop needs one ``except``.
    """


# --- Decoding: field checks --------------------------------------------------
#
# ``type(v) is int`` rejects bool (a subclass of int) and anything msgpack did
# not produce; comparisons come after the type check so that no value from the
# wire reaches an operator it could make raise. Error messages never quote the
# offending value: it may be large, and formatting it is work for an attacker.


def _name(v: Any, what: str) -> str:
    if is_name(v):
        return v
    raise CodecError(f"invalid {what}")


def _host(v: Any) -> str:
    if is_host(v):
        return v
    raise CodecError("invalid host")


def _uint(v: Any, maximum: int, what: str) -> int:
    if type(v) is int and 0 <= v <= maximum:
        return v
    raise CodecError(f"invalid {what}")


def _bool(v: Any, what: str) -> bool:
    if type(v) is bool:
        return v
    raise CodecError(f"invalid {what}")


def _meta(v: Any) -> dict[str, str]:
    if type(v) is not dict or len(v) > MAX_META_PAIRS:
        raise CodecError("invalid meta")
    for key, value in v.items():
        if not (is_name(key) and type(value) is str and len(value) <= MAX_META_VALUE_LEN):
            raise CodecError("invalid meta pair")
    return v


def _tags(v: Any) -> tuple[str, ...]:
    if type(v) is not tuple or len(v) > MAX_TAGS:
        raise CodecError("invalid tags")
    for tag in v:
        if not is_name(tag):
            raise CodecError("invalid tag")
    return v


_HEALTH: dict[str, Health] = {h.value: h for h in Health}
_KINDS: dict[str, CheckKind] = {k.value: k for k in CheckKind}
_STATES: dict[int, MemberState] = {s.value: s for s in MemberState}
_ENTRY_FIELDS = 13  # len(Entry.canonical()) before checks were appended (they may be absent)
_CHECK_FIELDS = 4  # len(CheckState.canonical())
_RECORD_FIELDS = 6


def _output(v: Any, what: str) -> str:
    if type(v) is not str or len(v) > MAX_OUTPUT_LEN:
        raise CodecError(f"invalid {what} output")
    return v


def _check(c: Any) -> CheckState:
    if type(c) is not tuple or len(c) < _CHECK_FIELDS:
        raise CodecError("invalid check")
    check_id, kind, status, output = c[:_CHECK_FIELDS]
    decoded_kind = _KINDS.get(kind) if type(kind) is str else None
    health = _HEALTH.get(status) if type(status) is str else None
    if decoded_kind is None or health is None:
        raise CodecError("invalid check kind or status")
    return CheckState(_name(check_id, "check id"), decoded_kind, health, _output(output, "check"))


def _checks(f: tuple[Any, ...]) -> tuple[CheckState, ...]:
    """The checks appended after the first 13 entry fields; absent means none."""
    if len(f) <= _ENTRY_FIELDS:
        return ()
    v = f[_ENTRY_FIELDS]
    if type(v) is not tuple or len(v) > MAX_CHECKS:
        raise CodecError("invalid check list")
    return tuple([_check(c) for c in v])


def _entry(f: tuple[Any, ...]) -> Entry:
    """An entry from the values of ``f`` in its canonical order (extra trailing ones ignored)."""
    (
        service,
        instance_id,
        address,
        port,
        tags,
        meta,
        weight,
        status,
        output,
        owner,
        owner_incarnation,
        stamp,
        deleted,
    ) = f[:_ENTRY_FIELDS]
    health = _HEALTH.get(status) if type(status) is str else None
    if health is None:
        raise CodecError("invalid entry status")
    return Entry(
        service=_name(service, "service"),
        instance_id=_name(instance_id, "instance id"),
        address=_host(address),
        port=_uint(port, MAX_PORT, "port"),
        tags=_tags(tags),
        meta=_meta(meta),
        weight=_uint(weight, MAX_WEIGHT, "weight"),
        status=health,
        output=_output(output, "entry"),
        owner=_name(owner, "owner"),
        owner_incarnation=_uint(owner_incarnation, MAX_INCARNATION, "owner incarnation"),
        stamp=_uint(stamp, MAX_INCARNATION, "stamp"),
        deleted=_bool(deleted, "deleted"),
        checks=_checks(f),
    )


def _record(r: Any) -> MemberRecord:
    if type(r) is not tuple or len(r) < _RECORD_FIELDS:
        raise CodecError("invalid member record")
    state = _STATES.get(r[4]) if type(r[4]) is int else None
    if state is None:
        raise CodecError("invalid member state")
    return MemberRecord(
        name=_name(r[0], "member name"),
        addr=(_host(r[1]), _uint(r[2], MAX_PORT, "port")),
        incarnation=_uint(r[3], MAX_INCARNATION, "incarnation"),
        state=state,
        meta=_meta(r[5]),
    )


def _entry_item(e: Any) -> Entry:
    if type(e) is not tuple or len(e) < _ENTRY_FIELDS:
        raise CodecError("invalid entry")
    return _entry(e)


def _bucket_index(b: Any) -> int:
    if type(b) is int and 0 <= b < MAX_BUCKETS:
        return b
    raise CodecError("invalid bucket index")


class _Checked(tuple[Any, ...]):
    """A list whose items ``_walk_stream`` already decoded one by one with its item rule."""


_I = TypeVar("_I")


def _list(v: Any, item: Callable[[Any], _I], limit: int, what: str) -> tuple[_I, ...]:
    if type(v) not in (tuple, _Checked) or len(v) > limit:
        raise CodecError(f"invalid {what} list")
    if type(v) is _Checked:
        return tuple(v)
    return tuple([item(x) for x in v])


def _records(v: Any) -> tuple[MemberRecord, ...] | None:
    return None if v is None else _list(v, _record, MAX_SYNC_ITEMS, "member")


def _entries(v: Any) -> tuple[Entry, ...]:
    return _list(v, _entry_item, MAX_SYNC_ITEMS, "entry")


# --- Decoding: one function per message type ---------------------------------
# Each receives the whole message array, type at index 0, already checked to
# hold at least the number of elements its table row says.


def _ping(m: tuple[Any, ...]) -> Ping:
    return Ping(_uint(m[1], MAX_SEQ, "seq"), _name(m[2], "target"), _name(m[3], "source"))


def _ping_req(m: tuple[Any, ...]) -> PingReq:
    return PingReq(
        seq=_uint(m[1], MAX_SEQ, "seq"),
        target=_name(m[2], "target"),
        target_addr=(_host(m[3]), _uint(m[4], MAX_PORT, "port")),
        source=_name(m[5], "source"),
        want_nack=_bool(m[6], "want_nack"),
    )


def _ack(m: tuple[Any, ...]) -> Ack:
    return Ack(_uint(m[1], MAX_SEQ, "seq"))


def _nack(m: tuple[Any, ...]) -> Nack:
    return Nack(_uint(m[1], MAX_SEQ, "seq"))


def _alive(m: tuple[Any, ...]) -> Alive:
    return Alive(
        name=_name(m[1], "name"),
        addr=(_host(m[2]), _uint(m[3], MAX_PORT, "port")),
        incarnation=_uint(m[4], MAX_INCARNATION, "incarnation"),
        meta=_meta(m[5]),
    )


def _suspect(m: tuple[Any, ...]) -> Suspect:
    return Suspect(
        _name(m[1], "name"), _uint(m[2], MAX_INCARNATION, "incarnation"), _name(m[3], "accuser")
    )


def _dead(m: tuple[Any, ...]) -> Dead:
    return Dead(
        _name(m[1], "name"), _uint(m[2], MAX_INCARNATION, "incarnation"), _name(m[3], "accuser")
    )


def _left(m: tuple[Any, ...]) -> Left:
    return Left(_name(m[1], "name"), _uint(m[2], MAX_INCARNATION, "incarnation"))


def _entry_update(m: tuple[Any, ...]) -> EntryUpdate:
    return EntryUpdate(_entry(m[1:]))


def _digests(blob: Any) -> tuple[int, ...]:
    if type(blob) is not bytes or len(blob) % 8 or len(blob) > 8 * MAX_BUCKETS:
        raise CodecError("invalid bucket digests")
    return struct.unpack(f">{len(blob) // 8}Q", blob)


def _sync_hello(m: tuple[Any, ...]) -> SyncHello:
    return SyncHello(
        sender=_record(m[1]),
        members_digest=_uint(m[2], MAX_DIGEST, "members digest"),
        buckets=_digests(m[3]),
    )


def _sync_reply(m: tuple[Any, ...]) -> SyncReply:
    return SyncReply(
        members=_records(m[1]),
        want_members=_bool(m[2], "want_members"),
        buckets=_list(m[3], _bucket_index, MAX_BUCKETS, "bucket"),
        entries=_entries(m[4]),
        # Appended field: a reply without it is a whole answer.
        resume=_uint(m[5], MAX_BUCKETS - 1, "resume bucket") if len(m) > 5 else 0,
        members_resume=_uint(m[6], MAX_SYNC_ITEMS, "members resume") if len(m) > 6 else 0,
    )


def _sync_finish(m: tuple[Any, ...]) -> SyncFinish:
    return SyncFinish(members=_records(m[1]), entries=_entries(m[2]))


def _sync_more(m: tuple[Any, ...]) -> SyncMore:
    start = _uint(m[1], MAX_BUCKETS - 1, "start bucket")
    buckets = _digests(m[2])
    if start + len(buckets) > MAX_BUCKETS:
        raise CodecError("bucket digests beyond the last bucket")
    members_from = _uint(m[3], MAX_SYNC_ITEMS, "members from") if len(m) > 3 else 0
    return SyncMore(start, buckets, members_from)


def _keyring_request(m: tuple[Any, ...]) -> KeyringRequest:
    op, key = m[1], m[2]
    if type(op) is not str or op not in KEYRING_OPS:
        raise CodecError("invalid keyring operation")
    if type(key) is not bytes or len(key) > MAX_KEY_LEN:
        raise CodecError("invalid key")
    return KeyringRequest(op, key)


def _keyring_reply(m: tuple[Any, ...]) -> KeyringReply:
    error, keys = m[1], m[2]
    if type(error) is not str or len(error) > MAX_OUTPUT_LEN:
        raise CodecError("invalid keyring error")
    if type(keys) is not tuple or len(keys) > MAX_KEYS:
        raise CodecError("invalid key list")
    return KeyringReply(error, tuple([_name(k, "key fingerprint") for k in keys]))


_M = TypeVar("_M")
_Decoders = dict[int, tuple[int, Callable[[tuple[Any, ...]], _M]]]
"""Message type -> (minimum array length including the type, decoder)."""

_PRIMARY_DECODERS: _Decoders[Primary] = {
    MsgType.PING: (4, _ping),
    MsgType.PING_REQ: (7, _ping_req),
    MsgType.ACK: (2, _ack),
    MsgType.NACK: (2, _nack),
}
_UPDATE_DECODERS: _Decoders[Update] = {
    MsgType.ALIVE: (6, _alive),
    MsgType.SUSPECT: (4, _suspect),
    MsgType.DEAD: (4, _dead),
    MsgType.LEFT: (3, _left),
    MsgType.ENTRY: (1 + _ENTRY_FIELDS, _entry_update),
}
_STREAM_DECODERS: _Decoders[StreamMessage] = {
    MsgType.PING: (4, _ping),
    MsgType.ACK: (2, _ack),
    MsgType.SYNC_HELLO: (4, _sync_hello),
    MsgType.SYNC_REPLY: (5, _sync_reply),
    MsgType.SYNC_FINISH: (3, _sync_finish),
    MsgType.SYNC_MORE: (3, _sync_more),
}

_KEYRING_DECODERS: _Decoders[KeyringMessage] = {
    MsgType.KEYRING_REQUEST: (3, _keyring_request),
    MsgType.KEYRING_REPLY: (3, _keyring_reply),
}


def _message(m: Any, decoders: _Decoders[_M], slot: str) -> _M:
    if type(m) is not tuple or not m or type(m[0]) is not int:
        raise CodecError(f"invalid {slot} message")
    row = decoders.get(m[0])
    if row is None:
        raise CodecError(f"message type {m[0]} is unknown or not allowed as {slot}")
    min_len, decode = row
    if len(m) < min_len:
        raise CodecError(f"message type {m[0]} has too few fields")
    return decode(m)


def unpack_bounded(data: bytes | memoryview, max_size: int) -> Any:
    """msgpack bytes to values, defensively: for any input we did not produce.

    Arrays come back as tuples; ext types are refused. Snapshots use it too.

    Raises:
        CodecError: too large, or not valid msgpack (whatever msgpack raised).
    """
    size = len(data)
    if size > max_size:
        raise CodecError(f"{size} bytes exceeds the limit of {max_size}")
    try:
        # No declared length can exceed the data's size, so bounding the
        # lengths by it stops a 5-byte header from making msgpack allocate a
        # 4-billion-element list. Arrays become tuples (tags, bucket indices
        # are then ready to use); ext types are never valid here.
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size // 2,
            max_ext_len=0,
        )
    except Exception as exc:
        # msgpack raises ExtraData, FormatError, StackError, OutOfData,
        # ValueError (truncated input, length limits, bad map keys),
        # UnicodeDecodeError and TypeError among others; all mean bad bytes.
        raise CodecError(f"not a valid msgpack frame: {type(exc).__name__}") from exc


def _unpack(data: bytes, max_size: int, min_len: int) -> tuple[Any, ...]:
    """The envelope ``[version, ...]`` as a tuple of at least ``min_len`` values."""
    obj = unpack_bounded(data, max_size)
    if type(obj) is not tuple or len(obj) < min_len:
        raise CodecError("invalid envelope")
    if type(obj[0]) is not int or obj[0] != PROTOCOL_VERSION:
        raise CodecError("unsupported protocol version")
    return obj


def _envelope(data: bytes, max_size: int) -> tuple[Primary | None, tuple[Any, ...]]:
    """A datagram's primary, decoded, and its updates as msgpack values."""
    obj = _unpack(data, max_size, 3)
    primary = None if obj[1] is None else _message(obj[1], _PRIMARY_DECODERS, "primary")
    raw_updates = obj[2]
    if type(raw_updates) is not tuple or len(raw_updates) > MAX_UPDATES:
        raise CodecError("invalid update list")
    return primary, raw_updates


def decode_packet(data: bytes, max_size: int = MAX_UDP_PAYLOAD) -> Packet:
    """Decode one UDP datagram.

    Args:
        data: the datagram payload.
        max_size: refuse anything longer, before parsing.

    Returns:
        The packet; meta maps are plain dicts, tags and lists are tuples.

    Raises:
        CodecError: for anything we do not accept (see ``CodecError``).
    """
    primary, raw_updates = _envelope(data, max_size)
    return Packet(primary, tuple([_message(u, _UPDATE_DECODERS, "update") for u in raw_updates]))


class SplitPacket:
    """A datagram whose updates are decoded one by one, on demand (``split_packet``)."""

    __slots__ = ("_values", "primary", "updates")

    def __init__(
        self, primary: Primary | None, updates: tuple[bytes, ...], values: tuple[Any, ...]
    ):
        self.primary = primary
        self.updates = updates
        """Each update's own bytes, as ``encode_update`` made them."""
        self._values = values

    def decode(self, index: int) -> Update:
        """The update at ``index``.

        Raises:
            CodecError: it is not one we accept (the packet is then bad as a whole).
        """
        return _message(self._values[index], _UPDATE_DECODERS, "update")


def split_packet(data: bytes, max_size: int = MAX_UDP_PAYLOAD) -> SplitPacket:
    """Check one UDP datagram and find the bytes of each update, decoding none of them.

    Finding the bytes costs a fraction of a microsecond per update; decoding an
    entry about ten. A receiver that recognises an update by its bytes
    (``core/recent.py``) skips decoding it.

    Raises:
        CodecError: the envelope or primary is not one we accept, or the
            datagram is not valid msgpack (see ``decode_packet``).
    """
    primary, values = _envelope(data, max_size)
    walk = msgpack.Unpacker(max_buffer_size=len(data))
    walk.feed(data)
    # The unpacking above checked the whole structure, so this walk cannot fail.
    walk.read_array_header()
    walk.skip()  # the version
    walk.skip()  # the primary
    updates = []
    for _ in range(walk.read_array_header()):
        start = walk.tell()
        walk.skip()
        updates.append(data[start : walk.tell()])
    return SplitPacket(primary, tuple(updates), values)


def decode_stream(data: bytes, max_size: int) -> StreamMessage:
    """Decode one TCP frame (the framing itself is the transport's).

    A frame up to ``WHOLE_FRAME_BYTES`` is unpacked in one call. A larger one
    is walked (``_walk_stream``): whatever it holds, the Python objects built
    from it at any moment are those of one list item, not of the whole frame.

    Args:
        data: the frame payload.
        max_size: refuse anything longer, before parsing (``max_stream_bytes``).

    Raises:
        CodecError: for anything we do not accept (see ``CodecError``).
    """
    if len(data) <= WHOLE_FRAME_BYTES:
        return _message(_unpack(data, max_size, 2)[1], _STREAM_DECODERS, "stream")
    if len(data) > max_size:
        raise CodecError(f"{len(data)} bytes exceeds the limit of {max_size}")
    return _message(_walk_stream(data), _STREAM_DECODERS, "stream")


# --- Decoding large frames ------------------------------------------------------
#
# msgpack builds every value of a frame before our checks see the first one,
# and Python objects cost far more than their encoding: an empty map is one
# byte on the wire and a 64-byte dict in memory, a 3-byte integer a 28-byte
# int. A 32 MiB frame of empty maps, refused afterwards, took 2.7 GB and 9 s of
# one event-loop step to build. So a frame above WHOLE_FRAME_BYTES is walked:
# msgpack's skip() (C, builds nothing) measures each value, each is unpacked
# alone only if it fits its bound, and the items of the long lists (members,
# entries, bucket indices) are checked one at a time with the same rules as
# above, so what a frame costs in memory is its valid content plus one item.

WHOLE_FRAME_BYTES = 64 * 1024
"""Frames up to this size are unpacked in one call: at most a few MB of objects
whatever they hold. Push-pull pages (``protocol.SYNC_PAGE_ENTRIES``) mostly fit."""
MAX_VALUE_BYTES = 64 * 1024
"""Largest encoded value unpacked in one call in a walked frame: a member record,
an entry (the largest valid ones are a few KB), a field that is not a list."""
_MAX_BLOB_BYTES = 8 * MAX_BUCKETS + MAX_VALUE_BYTES
"""A bin or str decodes to one object, so it may be longer: bucket digests are a
bin of 8 bytes per bucket (a longer one is the decoder's to refuse, by name)."""
_MEMBERS = (_record, MAX_SYNC_ITEMS, "member")
_ENTRIES = (_entry_item, MAX_SYNC_ITEMS, "entry")
_STREAMED_LISTS: dict[int, dict[int, tuple[Callable[[Any], Any], int, str]]] = {
    MsgType.SYNC_REPLY: {1: _MEMBERS, 3: (_bucket_index, MAX_BUCKETS, "bucket"), 4: _ENTRIES},
    MsgType.SYNC_FINISH: {1: _MEMBERS, 2: _ENTRIES},
}
"""Message type -> position of a list field -> (its item rule, length limit, name)."""
_BLOB_TYPES = frozenset((0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB))  # bin 8/16/32, str 8/16/32


class _Walk:
    """One pass over a large frame, value by value (see the block comment above)."""

    __slots__ = ("data", "unpacker", "view")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.view = memoryview(data)
        # BytesIO shares the bytes object's buffer: nothing is copied but what
        # the unpacker buffers, and a value longer than that buffer is refused.
        self.unpacker = msgpack.Unpacker(
            io.BytesIO(data), max_buffer_size=_MAX_BLOB_BYTES, read_size=64 * 1024
        )

    def at_array(self) -> bool:
        head = self.data[self.unpacker.tell()]
        return 0x90 <= head <= 0x9F or head in (0xDC, 0xDD)

    def header(self) -> int:
        """The length of the array that starts here (``at_array`` said so)."""
        return int(self.unpacker.read_array_header())

    def value(self) -> Any:
        """The next value, unpacked alone; refused if longer than its bound."""
        start = self.unpacker.tell()
        limit = _MAX_BLOB_BYTES if self.data[start] in _BLOB_TYPES else MAX_VALUE_BYTES
        self.unpacker.skip()
        end = self.unpacker.tell()
        if end - start > limit:
            raise CodecError(f"a value of {end - start} bytes in a frame (limit {limit})")
        return unpack_bounded(self.view[start:end], limit)

    def items(self, rule: Callable[[Any], Any], limit: int, what: str) -> Any:
        """A list field, its items checked by ``rule`` as they come; any other value
        as it is, for the message's decoder to judge (nil, or refuse)."""
        if not self.at_array():
            return self.value()
        count = self.header()
        if count > limit:
            raise CodecError(f"invalid {what} list")
        return _Checked([rule(self.value()) for _ in range(count)])

    def skip(self, count: int) -> None:
        for _ in range(count):
            self.unpacker.skip()


def _walk_stream(data: bytes) -> Any:
    """The message of a frame ``[version, [type, field, ...], ...]`` for ``_message``:
    its list fields decoded item by item (``_Checked``), its other values as
    ``unpack_bounded`` gives them.

    Raises:
        CodecError: as ``decode_stream``.
    """
    walk = _Walk(data)
    try:
        if not walk.at_array() or (envelope := walk.header()) < 2:
            raise CodecError("invalid envelope")
        version = walk.value()
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise CodecError("unsupported protocol version")
        if walk.at_array():
            fields = walk.header()
            message: Any = [walk.value()] if fields else []
            kind = message[0] if fields else None
            lists = _STREAMED_LISTS.get(kind, {}) if type(kind) is int else {}
            for index in range(1, fields):
                rule = lists.get(index)
                message.append(walk.value() if rule is None else walk.items(*rule))
            message = tuple(message)
        else:
            message = walk.value()  # not a message: _message refuses it
        walk.skip(envelope - 2)  # appended envelope fields are ignored, as on the whole path
        if walk.unpacker.tell() != len(data):
            raise CodecError("not a valid msgpack frame: ExtraData")
    except CodecError:
        raise
    except Exception as exc:  # msgpack's several error types, IndexError on a cut frame
        raise CodecError(f"not a valid msgpack frame: {type(exc).__name__}") from exc
    return message


def is_frame_head(head: bytes) -> bool:
    """Whether ``head``, a frame's first two bytes, can begin one: an envelope array
    of at least two values whose first, when the header is one byte, is our version.

    Lets the transport drop a plaintext frame of anything else before buffering
    it (``transport.read_frame``); the decoder still judges the rest.
    """
    if len(head) < 2:
        return False
    if 0x92 <= head[0] <= 0x9F:
        return head[1] == PROTOCOL_VERSION
    return head[0] in (0xDC, 0xDD)  # arrays of 16 or more: the version comes later


def is_keyring_frame(data: bytes) -> bool:
    """Whether a frame holds a keyring message, from its first bytes and without decoding it.

    Lets the driver route key management (not protocol state) away from
    the core without decoding every push-pull frame twice. A frame that
    claims to be one and is not is refused by ``decode_keyring``.
    """
    return (
        len(data) > 3
        and data[:2] == _STREAM_HEAD
        and data[2] & 0xF0 == 0x90  # fixarray: every keyring message has 3 fields
        and data[3] in _KEYRING_TYPES
    )


def decode_keyring(data: bytes) -> KeyringMessage:
    """Decode a keyring frame (request or reply).

    Raises:
        CodecError: for anything we do not accept.
    """
    obj = _unpack(data, MAX_KEYRING_FRAME, 2)
    return _message(obj[1], _KEYRING_DECODERS, "keyring")


# --- Encoding ----------------------------------------------------------------
# Each encoder returns the message array as a tuple (msgpack packs tuples as
# arrays). Meta maps are copied to dicts only if they are not dicts already:
# msgpack packs dict and its subclasses, not other Mappings.


# Plain ints: msgpack packs an IntEnum member by a slower path.
_PING = int(MsgType.PING)
_PING_REQ = int(MsgType.PING_REQ)
_ACK = int(MsgType.ACK)
_NACK = int(MsgType.NACK)
_ALIVE = int(MsgType.ALIVE)
_SUSPECT = int(MsgType.SUSPECT)
_DEAD = int(MsgType.DEAD)
_LEFT = int(MsgType.LEFT)
_ENTRY = int(MsgType.ENTRY)
_SYNC_HELLO = int(MsgType.SYNC_HELLO)
_SYNC_REPLY = int(MsgType.SYNC_REPLY)
_SYNC_FINISH = int(MsgType.SYNC_FINISH)
_SYNC_MORE = int(MsgType.SYNC_MORE)
_KEYRING_REQUEST = int(MsgType.KEYRING_REQUEST)
_KEYRING_REPLY = int(MsgType.KEYRING_REPLY)
_KEYRING_TYPES = frozenset({_KEYRING_REQUEST, _KEYRING_REPLY})


def _dict(meta: Mapping[str, str]) -> dict[str, str]:
    return meta if type(meta) is dict else dict(meta)


def _enc_ping(m: Ping) -> tuple[Any, ...]:
    return (_PING, m.seq, m.target, m.source)


def _enc_ping_req(m: PingReq) -> tuple[Any, ...]:
    return (_PING_REQ, m.seq, m.target, m.target_addr[0], m.target_addr[1], m.source, m.want_nack)


def _enc_ack(m: Ack) -> tuple[Any, ...]:
    return (_ACK, m.seq)


def _enc_nack(m: Nack) -> tuple[Any, ...]:
    return (_NACK, m.seq)


def _enc_alive(m: Alive) -> tuple[Any, ...]:
    return (_ALIVE, m.name, m.addr[0], m.addr[1], m.incarnation, _dict(m.meta))


def _enc_suspect(m: Suspect) -> tuple[Any, ...]:
    return (_SUSPECT, m.name, m.incarnation, m.accuser)


def _enc_dead(m: Dead) -> tuple[Any, ...]:
    return (_DEAD, m.name, m.incarnation, m.accuser)


def _enc_left(m: Left) -> tuple[Any, ...]:
    return (_LEFT, m.name, m.incarnation)


def _enc_entry(m: EntryUpdate) -> tuple[Any, ...]:
    return (_ENTRY, *m.entry.canonical())


def _enc_record(r: MemberRecord) -> tuple[Any, ...]:
    return (r.name, r.addr[0], r.addr[1], r.incarnation, int(r.state), _dict(r.meta))


def _enc_records(rs: tuple[MemberRecord, ...] | None) -> list[tuple[Any, ...]] | None:
    return None if rs is None else [_enc_record(r) for r in rs]


def _enc_digests(buckets: tuple[int, ...]) -> bytes:
    return struct.pack(f">{len(buckets)}Q", *buckets)


def _enc_sync_hello(m: SyncHello) -> tuple[Any, ...]:
    return (_SYNC_HELLO, _enc_record(m.sender), m.members_digest, _enc_digests(m.buckets))


def _enc_sync_reply(m: SyncReply) -> tuple[Any, ...]:
    entries = [e.canonical() for e in m.entries]
    fields = (_SYNC_REPLY, _enc_records(m.members), m.want_members, m.buckets, entries)
    if m.members_resume:
        return (*fields, m.resume, m.members_resume)
    return (*fields, m.resume) if m.resume else fields  # a whole answer: the original five


def _enc_sync_more(m: SyncMore) -> tuple[Any, ...]:
    fields = (_SYNC_MORE, m.start, _enc_digests(m.buckets))
    return (*fields, m.members_from) if m.members_from else fields


def record_size(record: MemberRecord) -> int:
    """Bytes ``record`` takes in a push-pull member list, to fill a page by size."""
    return len(_pack(_enc_record(record)))


def _enc_sync_finish(m: SyncFinish) -> tuple[Any, ...]:
    return (_SYNC_FINISH, _enc_records(m.members), [e.canonical() for e in m.entries])


def _enc_keyring_request(m: KeyringRequest) -> tuple[Any, ...]:
    return (_KEYRING_REQUEST, m.op, m.key)


def _enc_keyring_reply(m: KeyringReply) -> tuple[Any, ...]:
    return (_KEYRING_REPLY, m.error, list(m.keys))


_Encoders = dict[type, Callable[[Any], tuple[Any, ...]]]
_PRIMARY_ENCODERS: _Encoders = {
    Ping: _enc_ping,
    PingReq: _enc_ping_req,
    Ack: _enc_ack,
    Nack: _enc_nack,
}
_UPDATE_ENCODERS: _Encoders = {
    Alive: _enc_alive,
    Suspect: _enc_suspect,
    Dead: _enc_dead,
    Left: _enc_left,
    EntryUpdate: _enc_entry,
}
_STREAM_ENCODERS: _Encoders = {
    Ping: _enc_ping,
    Ack: _enc_ack,
    SyncHello: _enc_sync_hello,
    SyncReply: _enc_sync_reply,
    SyncFinish: _enc_sync_finish,
    SyncMore: _enc_sync_more,
}
_KEYRING_ENCODERS: _Encoders = {
    KeyringRequest: _enc_keyring_request,
    KeyringReply: _enc_keyring_reply,
}


def _fields(msg: object, encoders: _Encoders, kind: str) -> tuple[Any, ...]:
    encode = encoders.get(type(msg))
    if encode is None:
        raise TypeError(f"{type(msg).__name__} is not a {kind} message")
    return encode(msg)


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def encode_update(update: Update) -> bytes:
    """One update as a standalone msgpack array, ready for ``assemble_packet``.

    Values are not checked against the limits (see ``check_update``).

    Raises:
        TypeError: ``update`` is not an update type.
    """
    return _pack(_fields(update, _UPDATE_ENCODERS, "update"))


def encode_primary(msg: Primary) -> bytes:
    """A primary message as a standalone msgpack array, for ``assemble_packet``.

    Raises:
        TypeError: ``msg`` is not a primary type (Ping, PingReq, Ack, Nack).
    """
    return _pack(_fields(msg, _PRIMARY_ENCODERS, "primary"))


_NIL = b"\xc0"
_PACKET_HEAD = b"\x93" + _pack(PROTOCOL_VERSION)  # fixarray of 3, then the version
_STREAM_HEAD = b"\x92" + _pack(PROTOCOL_VERSION)  # fixarray of 2, then the version


def _array_header(n: int) -> bytes:
    if n <= 15:
        return bytes((0x90 | n,))  # fixarray
    if n <= 0xFFFF:
        return b"\xdc" + n.to_bytes(2, "big")  # array 16
    return b"\xdd" + n.to_bytes(4, "big")  # array 32


def packet_overhead(primary: bytes | None, n_updates: int) -> int:
    """Exact size of a packet minus its update bodies.

    ``len(assemble_packet(primary, updates)) == packet_overhead(primary,
    len(updates)) + sum(map(len, updates))``. The update list's header is 1
    byte up to 15 updates and 3 bytes from 16, so the 16th update costs 2
    bytes more than its body.
    """
    header = 1 if n_updates <= 15 else 3 if n_updates <= 0xFFFF else 5
    return len(_PACKET_HEAD) + (1 if primary is None else len(primary)) + header


def assemble_packet(primary: bytes | None, updates: Sequence[bytes]) -> bytes:
    """Build a datagram from pre-encoded parts, by concatenation.

    Args:
        primary: ``encode_primary`` output, or None for a gossip-only packet.
        updates: ``encode_update`` outputs, at most ``MAX_UPDATES``.

    Raises:
        ValueError: more than ``MAX_UPDATES`` updates (peers would reject it).
    """
    if len(updates) > MAX_UPDATES:
        raise ValueError(f"{len(updates)} updates exceed the limit of {MAX_UPDATES} per packet")
    head = _NIL if primary is None else primary
    return b"".join((_PACKET_HEAD, head, _array_header(len(updates)), *updates))


def encode_packet(packet: Packet) -> bytes:
    """The whole datagram for ``packet``; the sender's path is ``assemble_packet``."""
    primary = None if packet.primary is None else encode_primary(packet.primary)
    return assemble_packet(primary, [encode_update(u) for u in packet.updates])


def encode_stream(msg: StreamMessage) -> bytes:
    """One TCP frame payload for ``msg``.

    Raises:
        TypeError: ``msg`` is not a stream type (Ping, Ack, SyncHello, SyncReply, SyncFinish,
            SyncMore).
    """
    return _STREAM_HEAD + _pack(_fields(msg, _STREAM_ENCODERS, "stream"))


def encode_keyring(msg: KeyringMessage) -> bytes:
    """One TCP frame payload for a keyring message.

    Raises:
        TypeError: ``msg`` is not a KeyringRequest or KeyringReply.
    """
    return _STREAM_HEAD + _pack(_fields(msg, _KEYRING_ENCODERS, "keyring"))


def check_update(update: Update) -> None:
    """Raise unless peers would accept ``update``: call it where outside input enters.

    Raises:
        CodecError: a value is of the wrong type or outside the limits.
        TypeError: ``update`` is not an update type.
    """
    encode = _UPDATE_ENCODERS.get(type(update))
    if encode is None:
        raise TypeError(f"{type(update).__name__} is not an update message")
    try:
        data = _pack(encode(update))
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError("update holds a value msgpack cannot encode") from exc
    decode_packet(_PACKET_HEAD + _NIL + _array_header(1) + data)


# --- Census -------------------------------------------------------------------


def _element(data: bytes, unpacker: msgpack.Unpacker) -> tuple[int, int]:
    """(message type, encoded size) of the message array the unpacker stands at; skips it.

    The type is read from the array's first byte after its header (a positive
    fixint: every ``MsgType`` is below 128), so no field is decoded. Type 0
    means "no message" (nil) or not a message array.
    """
    start = unpacker.tell()
    unpacker.skip()
    size = unpacker.tell() - start
    return _kind_at(data, start, size), size


def _kind_at(data: bytes, start: int, size: int) -> int:
    """The type of the message array of ``size`` bytes at ``start``; 0 if it is none."""
    head = data[start]
    header = 1 if 0x90 <= head <= 0x9F else 3 if head == 0xDC else 5 if head == 0xDD else 0
    kind = data[start + header] if header and size > header else 0
    return kind if kind < 0x80 else 0


_STREAM_HEAD_BYTES = 16
"""Enough of a frame for its envelope header, version and message header."""


def message_sizes(data: bytes, *, stream: bool) -> list[tuple[int, int]]:
    """(message type, encoded size) of each message in a datagram or a frame, fields undecoded.

    For metrics by message type: a walk over the envelope that costs a tenth
    of ``decode_packet``, so only a runtime that wants the figures pays for it.
    The sizes exclude the envelope (version and list headers, a few bytes).
    A datagram without a primary message yields only its updates. Types are
    not checked against ``MsgType``: the decoder judges the content.

    Raises:
        CodecError: not an envelope of the expected shape.
    """
    # A frame's message is the rest of it: only its head is walked, so a frame
    # of max_stream_bytes is not copied into the unpacker just to be counted.
    walked = data[:_STREAM_HEAD_BYTES] if stream else data
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(walked), 1))
    try:
        unpacker.feed(walked)
        fields = unpacker.read_array_header()
        if fields < (2 if stream else 3):
            raise CodecError("invalid envelope")
        unpacker.skip()  # the protocol version
        if stream:
            start = unpacker.tell()
            return [(_kind_at(data, start, len(data) - start), len(data) - start)]
        first = _element(data, unpacker)
        sizes = [first] if first[0] else []
        for _ in range(unpacker.read_array_header()):
            sizes.append(_element(data, unpacker))
        return sizes
    except CodecError:
        raise
    except Exception as exc:  # msgpack's several error types, IndexError on a cut array
        raise CodecError(f"not a valid msgpack frame: {type(exc).__name__}") from exc
