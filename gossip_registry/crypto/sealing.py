"""Gossip encryption as one node runs it: its keys, its seal, and who may change them.

Theory of operation: ``crypto/keyring.py`` seals and opens, ``crypto/keyring_file.py``
persists, ``crypto/rotation.py`` applies and fans out key operations. This
module ties them to one node's configuration: which keyring it starts with
(``<data_dir>/keyring.json`` wins over the configured keys, since it holds
them as rotated since), what the transport accepts and sends (the
``GossipSeal``), and the one rule that makes remote key operations safe:
they are run, from an operator or from a peer, only while this node refuses
plaintext gossip, so an unsealed frame can never carry a key operation.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gossip_registry.crypto.keyring import GossipSeal, Keyring
from gossip_registry.crypto.keyring_file import keyring_path, node_keyring, write_keyring_file
from gossip_registry.crypto.rotation import KeyManager

__all__ = ["GossipEncryption"]

logger = logging.getLogger("gossip_registry")


class GossipEncryption:
    """A node's keyring (``keys``) and the seal its transport uses (``seal``)."""

    def __init__(self, keys: KeyManager, seal: GossipSeal) -> None:
        self.keys = keys
        self.seal = seal

    @classmethod
    def from_config(
        cls,
        keyring: Keyring | None,
        data_dir: Path | None,
        *,
        allow_plaintext: bool,
        encrypt_outgoing: bool,
    ) -> GossipEncryption | None:
        """The node's encryption, or None to gossip in plaintext (no keyring anywhere).

        Raises:
            ValueError: an unreadable keyring file (``KeyringError``), or a
                node that would send plaintext while refusing it.
        """
        keyring = node_keyring(keyring, data_dir)
        if keyring is None:
            return None
        if not (encrypt_outgoing or allow_plaintext):
            raise ValueError(
                "gossip_encrypt_outgoing = false needs gossip_allow_plaintext = true: "
                "a node sending plaintext must accept it from its peers too"
            )
        path = None if data_dir is None else keyring_path(data_dir)
        seal = GossipSeal(
            keyring, verify_incoming=not allow_plaintext, encrypt_outgoing=encrypt_outgoing
        )
        return cls(KeyManager(keyring, path), seal)

    def save_first(self) -> None:
        """Seed ``<data_dir>/keyring.json`` from the config on a first start; errors are logged.

        Blocking file I/O: the node calls it in a worker thread.
        """
        keys = self.keys
        if keys.path is None or keys.path.exists():
            return
        try:
            write_keyring_file(keys.path, keys.keyring)
        except OSError as exc:
            logger.error("could not write the keyring file %s: %s", keys.path, exc)

    def answer(self, frame: bytes) -> bytes | None:
        """The reply to a peer's key operation; None (refused) while plaintext is let in."""
        if not self.seal.verify_incoming:
            return None
        return self.keys.answer(frame)

    def operable_keys(self) -> KeyManager:
        """The keys, for an operator's key operation (``KeyManager.run_everywhere``).

        Raises:
            ValueError: plaintext gossip is accepted here, so key rotation is refused.
        """
        if not self.seal.verify_incoming:
            raise ValueError("key rotation is refused while plaintext gossip is accepted")
        return self.keys
