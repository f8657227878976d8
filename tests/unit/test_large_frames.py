"""Frames above ``codec.WHOLE_FRAME_BYTES`` are walked value by value (issue 10, finding 2).

A hostile frame must cost its decoder about what one of its list items costs,
not what msgpack would build for the whole of it; a valid one must decode to
exactly what the one-call path gives.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from gossip_registry.core import codec
from gossip_registry.core.codec import CodecError, decode_stream, encode_stream
from gossip_registry.core.messages import (
    PROTOCOL_VERSION,
    MemberRecord,
    MemberState,
    MsgType,
    SyncFinish,
    SyncReply,
)
from gossip_registry.registry.entry import CheckKind, CheckState, Entry, Health
from tests.unit.test_codec import (  # the stream tests, run again on the walked path below
    test_every_stream_type_round_trips_in_a_frame,
    test_extra_trailing_fields_in_records_and_sync_entries_are_ignored,
    test_extra_trailing_fields_in_the_envelope_are_ignored,
    test_malformed_stream_frame_is_rejected_with_codec_error,
    test_stream_decoder_follows_the_documented_field_layout,
    test_stream_frame_longer_than_max_size_is_rejected,
)

__all__ = [
    "test_every_stream_type_round_trips_in_a_frame",
    "test_extra_trailing_fields_in_records_and_sync_entries_are_ignored",
    "test_extra_trailing_fields_in_the_envelope_are_ignored",
    "test_malformed_stream_frame_is_rejected_with_codec_error",
    "test_stream_decoder_follows_the_documented_field_layout",
    "test_stream_frame_longer_than_max_size_is_rejected",
]

LIMIT = 32 * 1024 * 1024


@pytest.fixture(autouse=True)
def walk_every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every frame takes the walked path, so the imported tests hold for it too."""
    monkeypatch.setattr(codec, "WHOLE_FRAME_BYTES", 0)


def entries(n: int) -> tuple[Entry, ...]:
    check = CheckState("service:web", CheckKind.HTTP, Health.PASSING, "HTTP 200")
    return tuple(
        Entry(
            "web",
            f"web-{i}",
            "10.0.0.1",
            8000 + i % 1000,
            ("v2", "blue"),
            {"zone": "a", "rev": str(i)},
            1,
            Health.PASSING,
            "",
            "n1",
            3,
            1_700_000_000_000 + i,
            i % 7 == 0,
            (check,),
        )
        for i in range(n)
    )


MEMBERS = tuple(
    MemberRecord(f"n{i}", ("10.0.0.1", 7000 + i), i, MemberState.ALIVE, {"dc": "x"})
    for i in range(300)
)


@pytest.mark.parametrize(
    "message",
    [
        SyncReply(MEMBERS, True, tuple(range(0, 60000, 7)), entries(2000), 9),
        SyncReply(None, False, (), entries(1500)),
        SyncFinish(MEMBERS, entries(2500)),
        SyncFinish(None, ()),
    ],
    ids=["reply", "reply-without-members", "finish", "empty-finish"],
)
def test_a_large_frame_decodes_as_the_one_call_path_does(
    message: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode_stream(message)
    walked = decode_stream(data, LIMIT)
    monkeypatch.setattr(codec, "WHOLE_FRAME_BYTES", LIMIT)
    assert walked == decode_stream(data, LIMIT) == message
    assert isinstance(walked, SyncReply | SyncFinish)
    assert type(walked.entries) is tuple


def frame(message: list[Any]) -> bytes:
    return bytes((0x92, PROTOCOL_VERSION)) + message_bytes(message)


def message_bytes(fields: list[Any]) -> bytes:
    """A message array whose fields are raw msgpack bytes (ints are packed)."""
    head = msgpack.packb([0] * len(fields))[: -len(fields)]  # the array header alone
    return head + b"".join(f if isinstance(f, bytes) else msgpack.packb(f) for f in fields)


def array_of(count: int, item: bytes) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big") + item * count


EMPTY_MAPS = array_of(1_000_000, b"\x80")  # 5 MB on the wire, 70 MB if built
BIG_INTS = array_of(1_000_000, b"\xcd\x01\x00")  # 3 MB, 36 MB if built


def hostile_frames() -> Iterator[tuple[str, bytes, str]]:
    finish, reply = MsgType.SYNC_FINISH, MsgType.SYNC_REPLY
    yield "maps as the entry list", frame([finish, b"\xc0", EMPTY_MAPS]), "invalid entry"
    yield "maps as the member list", frame([finish, EMPTY_MAPS, b"\x90"]), "invalid member record"
    yield "maps as a flag", frame([reply, b"\xc0", EMPTY_MAPS, b"\x90", b"\x90"]), "a value of"
    yield "maps in one entry", frame([finish, b"\xc0", b"\x91" + EMPTY_MAPS]), "a value of"
    yield "ints as bucket indices", frame([reply, b"\xc0", True, BIG_INTS, b"\x90"]), "bucket list"
    yield "maps as the message type", frame([EMPTY_MAPS]), "a value of"
    yield "maps as the version", b"\x92" + EMPTY_MAPS + b"\x90", "a value of"
    yield "maps as the envelope", EMPTY_MAPS, "unsupported protocol version"


@pytest.mark.parametrize(
    ("data", "reason"),
    [(data, reason) for _, data, reason in hostile_frames()],
    ids=[name for name, _, _ in hostile_frames()],
)
def test_a_hostile_large_frame_is_refused_before_it_is_built(data: bytes, reason: str) -> None:
    # Built whole, these frames cost 10-70x their size in Python objects (measured:
    # 8 MiB of empty maps, 675 MiB and 2.3 s); walked, one item at a time.
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match=reason):
            decode_stream(data, LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(data) // 2, f"{peak} bytes traced for a {len(data)}-byte frame"


def test_a_frame_of_many_valid_items_is_checked_one_by_one_and_refused_at_the_bad_one() -> None:
    items = [e.canonical() for e in entries(3000)]
    items[2500] = [*items[2500][:3], -1, *items[2500][4:]]  # a port no one may send
    with pytest.raises(CodecError, match="invalid port"):
        decode_stream(frame([MsgType.SYNC_FINISH, None, items]), LIMIT)
