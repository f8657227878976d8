"""The cluster's gossip keys: AES-256-GCM sealing with one primary key and any number of others.

Theory of operation (memberlist ``keyring.go`` and ``security.go``): every
message we send is sealed under the *primary* key; every message we receive
is opened with the primary first, then with each other installed key. So a
cluster rotates without downtime: install the new key everywhere (all still
send under the old one, all can open both), make it primary everywhere (all
send under the new one, all can still open the old one), then remove the old
one.

A sealed message is ``SEAL_VERSION | nonce (12 B) | ciphertext | tag (16 B)``:
``SEAL_OVERHEAD`` = 29 bytes more than the plaintext, as memberlist's version
1. ``SEAL_VERSION`` is 0xC1, the one byte msgpack never uses, so a sealed
message can never be mistaken for a plaintext one (which starts with a
msgpack array header) and the transport can tell the two apart during a
migration. The associated data is the wire protocol version and a label for
the channel (``UDP`` or ``TCP``): a datagram cannot be replayed as a stream
frame, nor a message be accepted by a node speaking another protocol version.

Nonces are 12 random bytes (``os.urandom`` unless a source is injected for
tests). AES-GCM's bound for random nonces is 2**32 messages per key, about
40 years of a busy node's gossip at 3 packets per second; rotate keys anyway.

TCP frames are sealed in chunks (issue 10, finding 2). A frame sealed whole
can be authenticated only once all of it has arrived, so a peer without the
key could make us buffer ``max_stream_bytes`` per connection. A sealed frame
(framing version ``FRAME_VERSION`` = 2; version 1 was one seal over the
whole frame and is refused) is::

    0xC1 | 0x02 | frame id (16 B) | chunk | chunk | ...
    chunk = final bit + 31-bit length (4 B, big-endian) | nonce (12 B) | ciphertext | tag (16 B)

Every chunk but the last carries exactly ``CHUNK_SIZE`` (64 KiB) of
plaintext, the last one 0 to ``CHUNK_SIZE``, so a frame has exactly one
layout. Each chunk is sealed on its own under the primary key with
associated data ``protocol version | "tcp" | 0x02 | frame id | chunk index
(4 B) | final flag (1 B)``: a chunk moved to another position (index), cut
short of its final chunk or flagged final early (flag), or taken from
another frame (frame id) fails to authenticate, and so does a datagram
offered as a frame (label). The receiver (``FrameReader``, sans-I/O: the
transport feeds it the bytes it asks for) opens each chunk as it arrives
and stops at the first that fails, so without the key a peer gets at most
one chunk (64 KiB + 50 B) buffered per connection. The first chunk is
tried under every installed key; the rest only under the one that opened it.

Nonces stay 12 random bytes per chunk rather than a per-frame random prefix
plus a chunk counter: with a 64-bit random prefix, prefixes of two frames
collide with probability n**2 / 2**65 after n frames (1 in 2**17 at 2**24
frames), and a collision reuses every nonce of the shorter frame, which
breaks GCM outright. Random 96-bit nonces keep the usual 2**32-messages
bound, now counted in chunks (2**32 chunks of 64 KiB is 256 TiB per key),
for 12 bytes per chunk (0.02 %). Replaying a whole captured frame is
possible, as with datagrams (see the threat model in docs/security.md).

Opening fails with one error type, ``SealError``, whatever went wrong (not
sealed, truncated, unknown version, no key opens it): the caller counts and
drops. Misuse (a malformed key, removing the primary) is ``KeyringError``.

This module does no I/O apart from reading the nonce source.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from gossip_registry.core.messages import PROTOCOL_VERSION

if TYPE_CHECKING:  # cryptography is imported when a keyring is built (``_cipher``)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "CHUNK_OVERHEAD",
    "CHUNK_SIZE",
    "FRAME_HEADER",
    "FRAME_VERSION",
    "KEY_SIZE",
    "SEAL_OVERHEAD",
    "SEAL_VERSION",
    "TCP",
    "UDP",
    "FrameReader",
    "GossipSeal",
    "Keyring",
    "KeyringError",
    "SealError",
    "encode_key",
    "fingerprint",
    "generate_key",
    "is_sealed",
    "parse_key",
    "sealed_frame_size",
]

KEY_SIZE = 32
"""AES-256: the only key size we accept (memberlist also takes 16 and 24)."""
NONCE_SIZE = 12
TAG_SIZE = 16
SEAL_VERSION = 0xC1
"""First byte of every sealed message; never valid msgpack (see the module docstring)."""
SEAL_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
"""Bytes sealing adds to a message: 29, which the UDP packet budget must leave room for."""
UDP = b"udp"
"""Associated-data label of a datagram."""
TCP = b"tcp"
"""Associated-data label of a stream frame (requests and replies)."""
FRAME_VERSION = 2
"""Second byte of a sealed TCP frame: chunked sealing (version 1, one seal per frame, is gone)."""
FRAME_ID_SIZE = 16
FRAME_HEADER = 2 + FRAME_ID_SIZE
"""``0xC1 | FRAME_VERSION | frame id``: what a sealed frame starts with."""
CHUNK_SIZE = 64 * 1024
"""Plaintext bytes in every chunk but the last: the most a peer without the key can
make us buffer per connection, and the most decrypted at once (~30 us)."""
_CHUNK_HEADER = 4
_FINAL = 1 << 31
CHUNK_OVERHEAD = _CHUNK_HEADER + NONCE_SIZE + TAG_SIZE
"""Bytes a chunk adds to its plaintext: 32."""

NonceSource = Callable[[int], bytes]


class KeyringError(ValueError):
    """A key or keyring operation we refuse: malformed key, unknown key, removing the primary."""


class SealError(Exception):
    """Data that could not be opened: not sealed, truncated, tampered, or under no key we hold."""


def parse_key(text: str) -> bytes:
    """The 32-byte key in ``text`` (standard base64, as ``gossip-registry keygen`` prints).

    Raises:
        KeyringError: not base64, or not 32 bytes once decoded.
    """
    if not isinstance(text, str):
        raise KeyringError(f"key must be a base64 string, got {type(text).__name__}")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError("key is not valid base64 (use `gossip-registry keygen`)") from None
    if len(key) != KEY_SIZE:
        raise KeyringError(
            f"key must decode to {KEY_SIZE} bytes (AES-256), got {len(key)} "
            "(use `gossip-registry keygen`)"
        )
    return key


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def generate_key(source: NonceSource = os.urandom) -> bytes:
    """A fresh random key."""
    return source(KEY_SIZE)


def fingerprint(key: bytes) -> str:
    """A short public name for a key (first 8 bytes of its SHA-256, hex).

    What ``keys list`` shows: it tells keys apart without revealing them,
    so listing keys needs no more trust than reading the status.
    """
    return hashlib.sha256(key).hexdigest()[:16]


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` claims to be sealed (its first byte); says nothing of its validity."""
    return bool(data) and data[0] == SEAL_VERSION


def _aad(label: bytes) -> bytes:
    return bytes((PROTOCOL_VERSION,)) + label


def sealed_frame_size(size: int) -> int:
    """Bytes of a sealed frame carrying ``size`` bytes of plaintext (at least one chunk)."""
    return FRAME_HEADER + max(1, -(-size // CHUNK_SIZE)) * CHUNK_OVERHEAD + size


def _chunk_aad(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


class Keyring:
    """Installed keys, the primary first; seals under the primary, opens under any.

    Mutable (install, use, remove) because rotation happens on a running
    node; the node owns its keyring and serialises changes (one trio thread).

    Raises:
        KeyringError: from the constructor, for no key or a key of the wrong size.
    """

    def __init__(self, keys: Iterable[bytes], *, nonce: NonceSource = os.urandom) -> None:
        ordered = list(dict.fromkeys(keys))
        if not ordered:
            raise KeyringError("a keyring needs at least one key")
        self._ciphers: dict[bytes, AESGCM] = {}
        for key in ordered:
            self._ciphers[self._check(key)] = _cipher(key)
        self._primary = ordered[0]
        self._nonce = nonce

    @classmethod
    def from_base64(cls, texts: Iterable[str]) -> Keyring:
        """From base64 keys, the primary first.

        Raises:
            KeyringError: no key, or a key that does not parse.
        """
        return cls([parse_key(t) for t in texts])

    @staticmethod
    def _check(key: bytes) -> bytes:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise KeyringError(f"key must be {KEY_SIZE} bytes")
        return key

    @property
    def primary(self) -> bytes:
        return self._primary

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every installed key, the primary first, the others in installation order."""
        return (self._primary, *(k for k in self._ciphers if k != self._primary))

    def copy(self) -> Keyring:
        return Keyring(self.keys, nonce=self._nonce)

    def __eq__(self, other: object) -> bool:
        """Same keys, same primary: two loads of one config compare equal."""
        return isinstance(other, Keyring) and self.keys == other.keys

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        """Fingerprints only: a keyring must never reach a log in clear."""
        return f"Keyring(primary={fingerprint(self._primary)}, keys={len(self._ciphers)})"

    def __contains__(self, key: object) -> bool:
        return key in self._ciphers

    # ------------------------------------------------------------ rotation

    def install(self, key: bytes) -> None:
        """Add ``key`` for opening (idempotent); the primary does not change."""
        key = self._check(key)
        if key not in self._ciphers:
            self._ciphers[key] = _cipher(key)

    def use(self, key: bytes) -> None:
        """Make ``key`` the primary.

        Raises:
            KeyringError: the key is not installed (install it everywhere first).
        """
        if self._check(key) not in self._ciphers:
            raise KeyringError(f"key {fingerprint(key)} is not installed; install it first")
        self._primary = key

    def remove(self, key: bytes) -> None:
        """Forget ``key`` (idempotent for a key not installed).

        Raises:
            KeyringError: ``key`` is the primary (make another key primary first).
        """
        if self._check(key) == self._primary:
            raise KeyringError(f"key {fingerprint(key)} is the primary key; use another first")
        self._ciphers.pop(key, None)

    # -------------------------------------------------------------- sealing

    def seal(self, plaintext: bytes, label: bytes) -> bytes:
        """``plaintext`` encrypted and authenticated under the primary key."""
        nonce = self._nonce(NONCE_SIZE)
        sealed = self._ciphers[self._primary].encrypt(nonce, plaintext, _aad(label))
        return b"".join((bytes((SEAL_VERSION,)), nonce, sealed))

    def open(self, data: bytes, label: bytes) -> bytes:
        """The plaintext of a sealed message; the primary is tried first, then the others.

        Raises:
            SealError: not a sealed message, too short, or no installed key
                authenticates it with this label and protocol version.
        """
        if len(data) < SEAL_OVERHEAD:
            raise SealError(f"{len(data)} bytes is too short for a sealed message")
        if data[0] != SEAL_VERSION:
            raise SealError(f"not sealed (first byte 0x{data[0]:02x})")
        from cryptography.exceptions import InvalidTag  # loaded already by _cipher

        # A view, not a slice: a slice would copy a frame of up to max_stream_bytes
        # that is not yet authenticated (issue 10, finding 2).
        nonce, aad = data[1 : 1 + NONCE_SIZE], _aad(label)
        body = memoryview(data)[1 + NONCE_SIZE :]
        primary = self._ciphers[self._primary]
        for cipher in (primary, *(c for c in self._ciphers.values() if c is not primary)):
            try:
                return cipher.decrypt(nonce, body, aad)
            except InvalidTag:
                continue
        raise SealError("no installed key authenticates the message")

    def seal_frame(self, plaintext: bytes) -> bytes:
        """``plaintext`` as a chunked sealed TCP frame under the primary key (module docstring)."""
        frame_id = self._nonce(FRAME_ID_SIZE)
        head = bytes((SEAL_VERSION, FRAME_VERSION)) + frame_id
        prefix = _aad(TCP) + head[1:]
        cipher = self._ciphers[self._primary]
        view = memoryview(plaintext)
        last = max(0, (len(plaintext) - 1) // CHUNK_SIZE)
        parts = [head]
        for index in range(last + 1):
            piece = view[index * CHUNK_SIZE : (index + 1) * CHUNK_SIZE]
            final = index == last
            nonce = self._nonce(NONCE_SIZE)
            word = len(piece) | (_FINAL if final else 0)
            parts += (word.to_bytes(_CHUNK_HEADER, "big"), nonce)
            parts.append(cipher.encrypt(nonce, piece, _chunk_aad(prefix, index, final)))
        return b"".join(parts)

    def frame_reader(self, size: int) -> FrameReader:
        """A reader for one sealed frame of ``size`` bytes (its length prefix), under these keys.

        Raises:
            SealError: ``size`` is too small for a sealed frame.
        """
        primary = self._ciphers[self._primary]
        return FrameReader(
            (primary, *(c for c in self._ciphers.values() if c is not primary)), size
        )

    def open_frame(self, data: bytes) -> bytes:
        """The plaintext of a whole sealed frame (what the transport reads piece by piece).

        Raises:
            SealError: as ``FrameReader.feed``.
        """
        reader = self.frame_reader(len(data))
        view, pos = memoryview(data), 0
        while reader.wanted:
            piece = view[pos : pos + reader.wanted]
            pos += len(piece)
            reader.feed(piece)
        return reader.plaintext()


class FrameReader:
    """Opens one chunked sealed frame as its bytes arrive, chunk by chunk (sans-I/O, as h11).

    The caller reads exactly ``wanted`` bytes and passes them to ``feed``,
    until ``wanted`` is 0; then ``plaintext()`` is the frame. ``wanted`` is
    never more than one chunk, and a chunk is authenticated before the next
    is asked for, so what an unauthenticated peer makes the caller buffer is
    one chunk. The frame's length comes from the stream's length prefix; the
    chunks must fill it exactly.
    """

    __slots__ = ("_ciphers", "_final", "_index", "_left", "_plain", "_prefix", "_step", "wanted")

    def __init__(self, ciphers: Sequence[AESGCM], size: int) -> None:
        """Raises: SealError: ``size`` is too small for any sealed frame."""
        if size < FRAME_HEADER + CHUNK_OVERHEAD:
            raise SealError(f"{size} bytes is too short for a sealed frame")
        self._ciphers = ciphers
        """Keys to try: all of them for the first chunk, then the one that opened it."""
        self._left = size
        self._plain = bytearray()
        self._prefix = b""
        self._index = 0
        self._final = False
        self._step = self._seal_byte
        self.wanted = 1
        """Bytes the next ``feed`` must carry; 0 once the final chunk is open. The first
        byte is asked for alone: the transport reads it to tell sealed from plaintext."""

    def feed(self, data: bytes | memoryview) -> None:
        """Take exactly ``wanted`` bytes.

        Raises:
            SealError: the frame is not a chunked sealed frame of this size,
                or this chunk does not authenticate; the frame is lost.
            ValueError: ``data`` is not ``wanted`` bytes long (a caller's bug).
        """
        if len(data) != self.wanted or not self.wanted:
            raise ValueError(f"fed {len(data)} bytes, {self.wanted} wanted")
        self._left -= len(data)
        self._step(data)

    def plaintext(self) -> bytes:
        """The frame, once ``wanted`` is 0."""
        if self.wanted:
            raise ValueError("the frame is not complete")
        return bytes(self._plain)

    def _seal_byte(self, data: bytes | memoryview) -> None:
        if data[0] != SEAL_VERSION:
            raise SealError(f"not sealed (first byte 0x{data[0]:02x})")
        self.wanted = FRAME_HEADER - 1
        self._step = self._head

    def _head(self, data: bytes | memoryview) -> None:
        if data[0] != FRAME_VERSION:
            raise SealError(f"unknown sealed frame version {data[0]} (want {FRAME_VERSION})")
        self._prefix = _aad(TCP) + bytes(data)
        self._next_chunk()

    def _next_chunk(self) -> None:
        if self._left < CHUNK_OVERHEAD:
            raise SealError(f"{self._left} bytes left, too few for the final chunk")
        self.wanted = _CHUNK_HEADER
        self._step = self._chunk_head

    def _chunk_head(self, data: bytes | memoryview) -> None:
        word = int.from_bytes(data, "big")
        self._final, length = bool(word & _FINAL), word & ~_FINAL
        body = NONCE_SIZE + length + TAG_SIZE
        if length > CHUNK_SIZE:
            raise SealError(f"chunk of {length} bytes exceeds {CHUNK_SIZE}")
        if self._final and body != self._left:
            raise SealError(f"final chunk of {body} bytes but {self._left} left in the frame")
        if not self._final and (length != CHUNK_SIZE or self._left - body < CHUNK_OVERHEAD):
            raise SealError(f"chunk {self._index} of {length} bytes is not a full chunk")
        self.wanted = body
        self._step = self._chunk

    def _chunk(self, data: bytes | memoryview) -> None:
        from cryptography.exceptions import InvalidTag  # loaded already by _cipher

        view = memoryview(data)
        nonce, aad = view[:NONCE_SIZE], _chunk_aad(self._prefix, self._index, self._final)
        for cipher in self._ciphers:
            try:
                self._plain += cipher.decrypt(nonce, view[NONCE_SIZE:], aad)
            except InvalidTag:
                continue
            self._ciphers = (cipher,)
            break
        else:
            raise SealError(f"chunk {self._index} does not authenticate")
        self._index += 1
        if self._final:
            self.wanted = 0
        else:
            self._next_chunk()


def _cipher(key: bytes) -> AESGCM:
    """AES-GCM under ``key``; cryptography costs ~8 MiB, so only a node with a key loads it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


class GossipSeal:
    """What a node seals and what it accepts: the keyring plus the migration switches.

    ``verify_incoming`` off accepts plaintext as well as sealed messages;
    ``encrypt_outgoing`` off sends plaintext. Both on is the normal state.
    Moving a live cluster to encryption takes three rolling restarts
    (memberlist's GossipVerifyIncoming/Outgoing, Consul's upshift):
    key with both off (everyone still talks plaintext, all can read sealed),
    then outgoing on (everyone sends sealed), then incoming on (plaintext is
    refused). Sealed messages that fail to open are refused in every mode.
    """

    def __init__(
        self, keyring: Keyring, *, verify_incoming: bool = True, encrypt_outgoing: bool = True
    ) -> None:
        self.keyring = keyring
        self.verify_incoming = verify_incoming
        self.encrypt_outgoing = encrypt_outgoing

    def seal(self, data: bytes, label: bytes) -> bytes:
        return self.keyring.seal(data, label) if self.encrypt_outgoing else data

    def seal_frame(self, data: bytes) -> bytes:
        """A TCP frame as this node sends it: chunked and sealed, or plaintext while migrating."""
        return self.keyring.seal_frame(data) if self.encrypt_outgoing else data

    def open(self, data: bytes, label: bytes) -> bytes:
        """The plaintext to hand on.

        Raises:
            SealError: sealed but not opened, or plaintext while verifying incoming.
        """
        if is_sealed(data):
            return self.keyring.open(data, label)
        if self.verify_incoming:
            raise SealError("plaintext refused: this node requires sealed gossip")
        return data
