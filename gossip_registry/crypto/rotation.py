"""Keyring rotation across a running cluster: apply an operation here, then on every member.

Theory of operation (Serf's ``keys`` internal queries): an operator asks one
node (``POST /v1/keyring/install`` ...); that node applies the operation to
its own keyring, then sends it to every alive or suspect member as a
``KeyringRequest`` frame over the TCP stream channel, which the transport
seals like any other frame, and gathers one answer per node. Nothing here
is protocol state, so the node answers these frames itself, before the
protocol core sees them (``Node._on_frame``); and it answers only while it
refuses plaintext gossip, so an unsealed frame can never carry a key
operation.

Guard rails (Serf's): the primary key cannot be removed; ``use`` needs the
key installed. A change is written to the keyring file first and applied
only if that worked, so what a node runs with is what it restarts with.

The reply to a request is sealed by the answering node after it applied the
operation, so under its new primary after ``use``: the initiator applied it
first and holds that key, so it can open it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from gossip_registry.core.codec import CodecError, decode_keyring, encode_keyring
from gossip_registry.core.messages import KEYRING_OPS, Address, KeyringReply, KeyringRequest
from gossip_registry.crypto.keyring import Keyring, KeyringError, fingerprint, parse_key
from gossip_registry.crypto.keyring_file import write_keyring_file

__all__ = ["KeyManager", "node_result"]

logger = logging.getLogger("gossip_registry")

Request = Callable[[Address, bytes], Awaitable[bytes | None]]
"""Send one frame and return the reply (``Transport.request``)."""


def node_result(reply: KeyringReply) -> dict[str, Any]:
    """One node's answer as the HTTP API shows it."""
    return {
        "ok": not reply.error,
        "error": reply.error or None,
        "primary": reply.keys[0] if reply.keys else None,
        "keys": list(reply.keys),
    }


class KeyManager:
    """The node's keyring and where it persists; applies operations and fans them out."""

    def __init__(self, keyring: Keyring, path: Path | None) -> None:
        self.keyring = keyring
        self.path = path

    def fingerprints(self) -> tuple[str, ...]:
        return tuple(fingerprint(k) for k in self.keyring.keys)

    def apply(self, op: str, key: bytes) -> KeyringReply:
        """Apply one operation here; the reply says what went wrong, if anything."""
        if op not in KEYRING_OPS:
            return KeyringReply(f"unknown keyring operation {op!r}", self.fingerprints())
        if op != "list":
            try:
                changed = self.keyring.copy()
                getattr(changed, op)(key)
                if changed != self.keyring and self.path is not None:
                    write_keyring_file(self.path, changed)
                getattr(self.keyring, op)(key)
            except KeyringError as exc:
                return KeyringReply(str(exc), self.fingerprints())
            except OSError as exc:
                return KeyringReply(
                    f"not changed: cannot write {self.path}: {exc.strerror or exc}",
                    self.fingerprints(),
                )
            logger.info("keyring: %s %s", op, fingerprint(key))
        return KeyringReply("", self.fingerprints())

    def answer(self, frame: bytes) -> bytes:
        """The reply frame to a keyring frame from a peer."""
        try:
            message = decode_keyring(frame)
        except CodecError as exc:
            return encode_keyring(KeyringReply(f"bad keyring request: {exc}", ()))
        if not isinstance(message, KeyringRequest):
            return encode_keyring(KeyringReply("expected a keyring request", ()))
        return encode_keyring(self.apply(message.op, message.key))

    async def run_everywhere(
        self,
        op: str,
        key_text: str | None,
        own_name: str,
        members: Sequence[tuple[str, Address]],
        request: Request,
    ) -> dict[str, dict[str, Any]]:
        """Apply ``op`` here, then on each of ``members``; per node name, its result.

        Raises:
            KeyringError: an unknown op, a missing or malformed key (nothing was done).
        """
        if op not in KEYRING_OPS:
            raise KeyringError(f"unknown keyring operation {op!r}; one of {', '.join(KEYRING_OPS)}")
        if op == "list":
            key = b""
        elif key_text is None:
            raise KeyringError(f"{op} needs a key")
        else:
            key = parse_key(key_text)
        results = {own_name: node_result(self.apply(op, key))}
        frame = encode_keyring(KeyringRequest(op, key))

        async def ask(name: str, addr: Address) -> None:
            raw = await request(addr, frame)
            if raw is None:
                results[name] = node_result(
                    KeyringReply("no valid reply (unreachable, or no shared key)", ())
                )
                return
            try:
                reply = decode_keyring(raw)
            except CodecError as exc:
                reply = KeyringReply(f"bad reply: {exc}", ())
            if not isinstance(reply, KeyringReply):
                reply = KeyringReply("bad reply: not a keyring reply", ())
            results[name] = node_result(reply)

        async with trio.open_nursery() as nursery:
            for name, addr in members:
                nursery.start_soon(ask, name, addr)
        return dict(sorted(results.items()))
