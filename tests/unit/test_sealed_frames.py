"""Chunked sealed TCP frames (issue 10, finding 2): every chunk is authenticated as it arrives.

A frame is ``0xC1 | FRAME_VERSION | frame id | chunks``; each chunk is
sealed on its own with the frame id, its index and whether it is the last
bound into the associated data. These tests drive the pure reader
(``FrameReader``) the transport feeds, byte counts exactly as the transport
would ask for them.
"""

from __future__ import annotations

import itertools

import pytest

from gossip_registry.crypto.keyring import (
    CHUNK_OVERHEAD,
    CHUNK_SIZE,
    FRAME_HEADER,
    SEAL_VERSION,
    FrameReader,
    GossipSeal,
    Keyring,
    SealError,
    sealed_frame_size,
)

A, B, C = (bytes([i]) * 32 for i in (1, 2, 3))


def parts(frame: bytes) -> tuple[bytes, list[bytes]]:
    """The header and the chunks (each with its 4-byte header) of a sealed frame."""
    chunks, pos = [], FRAME_HEADER
    while pos < len(frame):
        length = int.from_bytes(frame[pos : pos + 4], "big") & 0x7FFFFFFF
        end = pos + CHUNK_OVERHEAD + length
        chunks.append(frame[pos:end])
        pos = end
    return frame[:FRAME_HEADER], chunks


def feed(reader: FrameReader, frame: bytes, taken: list[int]) -> None:
    """Feed ``frame`` as the transport would, counting in ``taken`` the bytes handed over."""
    while reader.wanted:
        piece = frame[taken[0] : taken[0] + reader.wanted]
        taken[0] += len(piece)
        reader.feed(piece)


def fed_bytes_until_refused(ring: Keyring, frame: bytes) -> int:
    """How many bytes the reader took before it refused ``frame`` (it must refuse)."""
    reader, taken = ring.frame_reader(len(frame)), [0]
    with pytest.raises(SealError):
        feed(reader, frame, taken)
    return taken[0]


@pytest.mark.parametrize(
    "size",
    sorted(
        {0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1}
        | {2 * CHUNK_SIZE - 1, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17}
    ),
)
def test_frames_of_every_size_around_chunk_boundaries_round_trip(size: int) -> None:
    data = bytes(itertools.islice(itertools.cycle(range(251)), size))
    ring = Keyring([A])
    frame = ring.seal_frame(data)
    assert frame[0] == SEAL_VERSION
    assert len(frame) == sealed_frame_size(size)
    assert ring.open_frame(frame) == data
    _, chunks = parts(frame)
    assert len(chunks) == max(1, -(-size // CHUNK_SIZE))


def test_the_reader_never_asks_for_more_than_one_chunk_at_a_time() -> None:
    ring = Keyring([A])
    frame = ring.seal_frame(bytes(5 * CHUNK_SIZE + 3))
    reader = ring.frame_reader(len(frame))
    asked, pos = [], 0
    while reader.wanted:
        asked.append(reader.wanted)
        reader.feed(frame[pos : pos + reader.wanted])
        pos += asked[-1]
    assert pos == len(frame)
    assert max(asked) == CHUNK_SIZE + CHUNK_OVERHEAD - 4
    assert len(reader.plaintext()) == 5 * CHUNK_SIZE + 3


def test_a_wrong_key_is_refused_at_the_first_chunk() -> None:
    frame = Keyring([C]).seal_frame(bytes(10 * CHUNK_SIZE))
    taken = fed_bytes_until_refused(Keyring([A, B]), frame)
    assert taken == FRAME_HEADER + CHUNK_SIZE + CHUNK_OVERHEAD


def test_a_frame_opens_under_any_installed_key_and_then_sticks_to_it() -> None:
    frame = Keyring([B]).seal_frame(bytes(3 * CHUNK_SIZE))
    assert Keyring([A, B]).open_frame(frame) == bytes(3 * CHUNK_SIZE)
    assert Keyring([B, A]).open_frame(frame) == bytes(3 * CHUNK_SIZE)


def test_garbage_after_a_valid_header_is_refused_at_its_first_chunk() -> None:
    """What an attacker without the key can do best: a real header, then noise."""
    header = bytes((SEAL_VERSION,)) + Keyring([A]).seal_frame(b"")[1:FRAME_HEADER]
    size = 32 << 20
    noise = header + (CHUNK_SIZE | 0).to_bytes(4, "big") + b"\x00" * (size - FRAME_HEADER - 4)
    taken = fed_bytes_until_refused(Keyring([A]), noise)
    assert taken == FRAME_HEADER + CHUNK_SIZE + CHUNK_OVERHEAD


def test_reordered_chunks_are_refused() -> None:
    ring = Keyring([A])
    header, chunks = parts(ring.seal_frame(bytes(range(256)) * 1024))  # 4 chunks
    swapped = [chunks[1], chunks[0], *chunks[2:]]
    assert fed_bytes_until_refused(ring, header + b"".join(swapped)) == len(header) + len(chunks[1])


def test_a_truncated_frame_whose_last_chunk_is_not_final_is_refused() -> None:
    ring = Keyring([A])
    header, chunks = parts(ring.seal_frame(bytes(3 * CHUNK_SIZE)))
    truncated = header + b"".join(chunks[:2])
    fed_bytes_until_refused(ring, truncated)


def test_a_non_final_chunk_flagged_final_is_refused() -> None:
    ring = Keyring([A])
    header, chunks = parts(ring.seal_frame(bytes(3 * CHUNK_SIZE)))
    first = bytearray(chunks[0])
    first[0] |= 0x80  # the final flag, which the chunk was not sealed with
    assert fed_bytes_until_refused(ring, header + bytes(first)) == len(header) + len(first)


def test_chunks_spliced_from_another_frame_are_refused() -> None:
    ring = Keyring([A])
    header, chunks = parts(ring.seal_frame(bytes(2 * CHUNK_SIZE + 5)))
    _, others = parts(ring.seal_frame(bytes(2 * CHUNK_SIZE + 5)))
    spliced = header + chunks[0] + others[1] + chunks[2]
    assert fed_bytes_until_refused(ring, spliced) == len(header) + len(chunks[0]) + len(others[1])


def test_a_chunk_cannot_move_between_channels_or_be_a_datagram() -> None:
    ring = Keyring([A])
    datagram = ring.seal(b"x" * 40, b"udp")
    with pytest.raises(SealError):
        ring.open_frame(datagram)


@pytest.mark.parametrize(
    "damage",
    ["old_format", "unknown_version", "chunk_too_long", "short_non_final", "trailing_bytes"],
)
def test_malformed_framing_is_refused_before_the_chunk_is_read(damage: str) -> None:
    ring = Keyring([A])
    frame = bytearray(ring.seal_frame(bytes(CHUNK_SIZE + 10)))
    if damage == "old_format":
        frame = bytearray(ring.seal(bytes(CHUNK_SIZE), b"tcp"))
        frame[1] = 0x01  # an old single-seal frame whose nonce starts like no version
    elif damage == "unknown_version":
        frame[1] = 0x7F
    elif damage == "chunk_too_long":
        frame[FRAME_HEADER : FRAME_HEADER + 4] = (CHUNK_SIZE + 1).to_bytes(4, "big")
    elif damage == "short_non_final":
        frame[FRAME_HEADER : FRAME_HEADER + 4] = (CHUNK_SIZE - 1).to_bytes(4, "big")
    else:
        frame += b"\x00"
    with pytest.raises(SealError):
        ring.open_frame(bytes(frame))


def test_a_lenient_seal_sends_plaintext_frames_and_a_strict_one_sealed_frames() -> None:
    ring = Keyring([A])
    assert GossipSeal(ring, verify_incoming=False, encrypt_outgoing=False).seal_frame(b"\x93") == (
        b"\x93"
    )
    assert ring.open_frame(GossipSeal(ring).seal_frame(b"\x93")) == b"\x93"


def test_each_chunk_gets_its_own_nonce() -> None:
    counter = itertools.count()
    ring = Keyring([A], nonce=lambda n: next(counter).to_bytes(n, "big"))
    _, chunks = parts(ring.seal_frame(bytes(3 * CHUNK_SIZE)))
    nonces = {chunk[4:16] for chunk in chunks}
    assert len(nonces) == 3
