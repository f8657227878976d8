"""The wire census behind the by-type traffic metrics: sizes and types without decoding."""

from __future__ import annotations

import tracemalloc

import pytest

from gossip_registry.core.codec import (
    CodecError,
    assemble_packet,
    encode_primary,
    encode_stream,
    encode_update,
    message_sizes,
    packet_overhead,
)
from gossip_registry.core.effects import Send, SetTimer, StreamSend, Timer, TimerKind
from gossip_registry.core.messages import (
    Ack,
    Alive,
    EntryUpdate,
    MemberRecord,
    MemberState,
    MsgType,
    Ping,
    Suspect,
    SyncFinish,
    SyncHello,
)
from gossip_registry.registry.entry import Entry, Health
from gossip_registry.runtime.traffic import WireTraffic

ADDR = ("127.0.0.1", 7946)
ENTRY = Entry("web", "web-1", "10.0.0.1", 80, ("v2",), {"zone": "a"}, 1, Health.PASSING, "",
              "n1", 0, 100, False)  # fmt: skip
UPDATES = [
    encode_update(EntryUpdate(ENTRY)),
    encode_update(Alive("n2", ADDR, 4, {"dc": "x"})),
    encode_update(Suspect("n3", 2, "n1")),
]


def test_each_message_of_a_packet_is_counted_with_its_type_and_exact_size() -> None:
    head = encode_primary(Ping(5, "n2", "n1"))
    data = assemble_packet(head, UPDATES)
    sizes = message_sizes(data, stream=False)
    assert sizes == [
        (MsgType.PING, len(head)),
        (MsgType.ENTRY, len(UPDATES[0])),
        (MsgType.ALIVE, len(UPDATES[1])),
        (MsgType.SUSPECT, len(UPDATES[2])),
    ]
    assert sum(size for _, size in sizes) == len(data) - packet_overhead(None, 3) + 1


def test_a_gossip_only_packet_has_no_primary_and_a_frame_has_one_message() -> None:
    assert [t for t, _ in message_sizes(assemble_packet(None, UPDATES), stream=False)] == [
        MsgType.ENTRY,
        MsgType.ALIVE,
        MsgType.SUSPECT,
    ]
    record = MemberRecord("n1", ADDR, 0, MemberState.ALIVE, {})
    frame = encode_stream(SyncHello(record, 7, (1, 2, 3)))
    [(kind, size)] = message_sizes(frame, stream=True)
    assert kind == MsgType.SYNC_HELLO
    assert size == len(frame) - 2  # the envelope: array header and version


def test_a_large_frame_is_counted_from_its_head_without_a_copy() -> None:
    entries = tuple(
        Entry("web", f"w{i}", "10.0.0.1", 80, (), {}, 1, Health.PASSING, "", "n1", 1, i, False)
        for i in range(20_000)
    )
    frame = encode_stream(SyncFinish(None, entries))
    tracemalloc.start()
    try:
        [(kind, size)] = message_sizes(frame, stream=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (kind, size) == (MsgType.SYNC_FINISH, len(frame) - 2)
    assert peak < len(frame) // 10, f"{peak} bytes traced to count a {len(frame)}-byte frame"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x93", b"\x01\x02", b"\x92\x01\xc0", b"\x93\x01\xc0\xdd\xff\xff\xff\xff", b"\xc1"],
)
def test_bytes_that_are_no_envelope_raise_only_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        message_sizes(data, stream=False)


def test_wire_traffic_charges_effects_by_channel_and_garbage_whole_to_invalid() -> None:
    traffic = WireTraffic()
    ack = assemble_packet(encode_primary(Ack(1)), UPDATES[:1])
    traffic.sent(Send(ADDR, ack))
    traffic.sent(StreamSend(ADDR, encode_stream(SyncFinish(None, (ENTRY,)))))
    traffic.sent(SetTimer(1.0, Timer(TimerKind.PROBE, 1)))
    traffic.count("in", "udp", b"\xff garbage")
    assert traffic.messages == {
        ("out", "udp", "ack"): 1,
        ("out", "udp", "entry"): 1,
        ("out", "tcp", "sync_finish"): 1,
        ("in", "udp", "invalid"): 1,
    }
    assert traffic.bytes[("out", "udp", "entry")] == len(UPDATES[0])
    assert traffic.bytes[("in", "udp", "invalid")] == len(b"\xff garbage")
