"""The keyring: sealing, opening, rotation guard rails, key parsing, the wire messages for keys."""

from __future__ import annotations

import base64
import contextlib
import heapq
import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip_registry.core.codec import (
    CodecError,
    decode_keyring,
    encode_keyring,
    encode_packet,
    encode_stream,
    is_keyring_frame,
)
from gossip_registry.core.config import ProtocolConfig
from gossip_registry.core.effects import Send, SetTimer
from gossip_registry.core.messages import Ack, Alive, KeyringReply, KeyringRequest, Packet
from gossip_registry.core.protocol import Protocol
from gossip_registry.crypto.keyring import (
    SEAL_OVERHEAD,
    TCP,
    UDP,
    GossipSeal,
    Keyring,
    KeyringError,
    SealError,
    encode_key,
    fingerprint,
    parse_key,
)

A, B, C = (bytes([i]) * 32 for i in (1, 2, 3))


def counter_nonces() -> Keyring:
    """A keyring with a deterministic nonce source (injected, as the module allows)."""
    counter = itertools.count()
    return Keyring([A], nonce=lambda n: next(counter).to_bytes(n, "big"))


def test_sealed_message_opens_to_the_plaintext_and_costs_29_bytes() -> None:
    ring = Keyring([A])
    sealed = ring.seal(b"hello", UDP)
    assert SEAL_OVERHEAD == 29
    assert len(sealed) == len(b"hello") + 29
    assert sealed[0] == 0xC1
    assert ring.open(sealed, UDP) == b"hello"


def test_every_seal_uses_a_fresh_nonce() -> None:
    ring = Keyring([A])
    assert ring.seal(b"x", UDP) != ring.seal(b"x", UDP)


def test_an_injected_nonce_source_makes_sealing_deterministic() -> None:
    assert counter_nonces().seal(b"x", UDP) == counter_nonces().seal(b"x", UDP)


@pytest.mark.parametrize("position", [0, 1, 12, 13, -1])
def test_flipping_any_byte_makes_the_message_fail_to_open(position: int) -> None:
    ring = Keyring([A])
    tampered = bytearray(ring.seal(b"payload", UDP))
    tampered[position] ^= 0x01
    with pytest.raises(SealError):
        ring.open(bytes(tampered), UDP)


def test_the_channel_label_is_authenticated() -> None:
    ring = Keyring([A])
    with pytest.raises(SealError):
        ring.open(ring.seal(b"frame", TCP), UDP)


def test_the_protocol_version_is_authenticated(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = Keyring([A])
    sealed = ring.seal(b"v1", UDP)
    monkeypatch.setattr("gossip_registry.crypto.keyring.PROTOCOL_VERSION", 2)
    with pytest.raises(SealError):
        ring.open(sealed, UDP)


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\xc1" + bytes(27), b"\x93" + bytes(40)])
def test_short_or_unsealed_data_fails_with_the_one_error(data: bytes) -> None:
    with pytest.raises(SealError):
        Keyring([A]).open(data, UDP)


def test_a_message_opens_under_any_installed_key_and_not_under_others() -> None:
    old, rotating, stranger = Keyring([A]), Keyring([B, A]), Keyring([C])
    assert rotating.open(old.seal(b"m", UDP), UDP) == b"m"
    with pytest.raises(SealError):
        old.open(rotating.seal(b"m", UDP), UDP)  # sealed under B, the primary
    with pytest.raises(SealError):
        stranger.open(old.seal(b"m", UDP), UDP)


def test_rotation_install_use_remove_and_its_guard_rails() -> None:
    ring = Keyring([A])
    ring.install(B)
    ring.install(B)  # idempotent
    assert ring.keys == (A, B)
    with pytest.raises(KeyringError, match="not installed"):
        ring.use(C)
    with pytest.raises(KeyringError, match="primary"):
        ring.remove(A)
    ring.use(B)
    assert ring.primary == B
    assert ring.keys == (B, A)
    ring.remove(A)
    # tuple(): mypy keeps ring.keys narrowed to two keys by the asserts above, across remove()
    assert tuple(ring.keys) == (B,)
    assert A not in ring
    with pytest.raises(KeyringError, match="32 bytes"):
        ring.install(b"short")


def test_a_keyring_needs_a_key_and_never_shows_one_in_its_repr() -> None:
    with pytest.raises(KeyringError, match="at least one"):
        Keyring([])
    shown = repr(Keyring([A, B]))
    assert fingerprint(A) in shown
    assert encode_key(A) not in shown
    assert Keyring([A, B]) == Keyring([A, B]) != Keyring([B, A])


def test_parse_key_accepts_what_encode_key_prints() -> None:
    assert parse_key(encode_key(A)) == A
    assert parse_key(f"  {encode_key(A)}\n") == A


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(bytes(16)).decode(), "got 16"),
        (base64.b64encode(bytes(33)).decode(), "got 33"),
        ("", "got 0"),
    ],
)
def test_parse_key_errors_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(KeyringError, match=problem):
        parse_key(text)


def test_gossip_seal_modes_for_a_migration() -> None:
    ring = Keyring([A])
    strict = GossipSeal(ring)
    with pytest.raises(SealError, match="plaintext refused"):
        strict.open(b"\x93plain", UDP)
    lenient = GossipSeal(ring, verify_incoming=False, encrypt_outgoing=False)
    assert lenient.open(b"\x93plain", UDP) == b"\x93plain"
    assert lenient.seal(b"\x93plain", UDP) == b"\x93plain"
    assert lenient.open(strict.seal(b"x", UDP), UDP) == b"x"
    with pytest.raises(SealError):  # a bad sealed message is refused in every mode
        lenient.open(Keyring([C]).seal(b"x", UDP), UDP)


# --- The wire messages for keys -----------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        KeyringRequest("install", A),
        KeyringRequest("list", b""),
        KeyringReply("", (fingerprint(A), fingerprint(B))),
        KeyringReply("key is the primary key", ()),
    ],
)
def test_keyring_messages_round_trip_and_are_recognised(
    message: KeyringRequest | KeyringReply,
) -> None:
    frame = encode_keyring(message)
    assert is_keyring_frame(frame)
    assert decode_keyring(frame) == message


def test_protocol_frames_are_not_taken_for_keyring_frames() -> None:
    assert not is_keyring_frame(encode_stream(Ack(13)))
    assert not is_keyring_frame(b"")


@pytest.mark.parametrize(
    "message",
    [KeyringRequest("steal", A), KeyringRequest("use", bytes(65)), KeyringReply("", ("",))],
)
def test_invalid_keyring_messages_are_refused(message: KeyringRequest | KeyringReply) -> None:
    with pytest.raises(CodecError):
        decode_keyring(encode_keyring(message))


# --- The packet budget --------------------------------------------------------------


def test_seal_overhead_is_not_a_cluster_setting_and_must_be_small() -> None:
    assert ProtocolConfig(seal_overhead=29).payload_size == 1371
    with pytest.raises(ValueError, match="seal_overhead"):
        ProtocolConfig(seal_overhead=-1)


def largest_datagram(seal_overhead: int, meta_len: int) -> int:
    """The largest datagram a core builds in 5 virtual seconds with 30 entries queued."""
    node = Protocol(
        ProtocolConfig(seal_overhead=seal_overhead),
        "me",
        ("198.18.0.1", 7946),
        rng=random.Random(1),
        now=0.0,
    )
    effects = node.start(0.0)
    peers = tuple(Alive(f"p{i}", (f"198.18.0.{i + 2}", 7946), 1, {}) for i in range(4))
    effects += node.handle_packet(0.0, ("198.18.0.2", 7946), encode_packet(Packet(None, peers)))
    for i in range(30):
        _, more = node.register(0.0, "svc", f"i-{i}", "198.18.0.9", 80, meta={"k": "v" * meta_len})
        effects += more
    timers = [(e.at, n, e.timer) for n, e in enumerate(effects) if isinstance(e, SetTimer)]
    sizes = [len(e.data) for e in effects if isinstance(e, Send)]
    heapq.heapify(timers)
    for n in itertools.count(len(effects)):
        if not timers or timers[0][0] > 5.0:
            break
        at, _, timer = heapq.heappop(timers)
        for e in node.handle_timer(at, timer):
            if isinstance(e, SetTimer):
                heapq.heappush(timers, (e.at, n, e.timer))
            elif isinstance(e, Send):
                sizes.append(len(e.data))
    return max(sizes)


def test_packets_leave_room_for_the_seal() -> None:
    """Whatever the update sizes, a packet fits 1400 B once sealed; without the room it
    would not, for some sizes (so the budget, not luck, keeps it under)."""
    meta_lengths = range(100, 400, 9)
    sealed = [largest_datagram(SEAL_OVERHEAD, n) + SEAL_OVERHEAD for n in meta_lengths]
    assert max(sealed) <= 1400
    unsealed_budget = [largest_datagram(0, n) + SEAL_OVERHEAD for n in meta_lengths]
    assert max(unsealed_budget) > 1400


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_the_one_error_each(data: bytes) -> None:
    with pytest.raises(SealError):
        Keyring([A]).open(data, UDP)
    frame = encode_keyring(KeyringRequest("list", b""))[:3] + data
    with contextlib.suppress(CodecError):
        decode_keyring(frame)
