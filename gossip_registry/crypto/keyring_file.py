"""Where a node's keys live between runs: ``<data_dir>/keyring.json``, owner-only.

Theory of operation (Serf's keyring file): the file is a JSON list of base64
keys, the primary first. A node with a data dir writes it when it first
starts with a key and rewrites it after every rotation, so a restarted node
comes back with the keys the cluster uses now, not the ones its command line
named months ago. When the file exists it wins over ``--encrypt``/``encrypt``
(a warning says so): those only seed a new node.

The file is a secret. It is written 0600 (``snapshot.write_atomically``),
and a file that group or others may read is refused with an error that says
how to fix it, rather than used: someone may already have read it, and the
operator should know.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

from gossip_registry.crypto.keyring import Keyring, KeyringError, encode_key
from gossip_registry.runtime.storage.regular_file import read_regular_file
from gossip_registry.runtime.storage.snapshot import write_atomically

__all__ = [
    "KEYRING_FILE",
    "configured_keyring",
    "keyring_path",
    "load_keyring_file",
    "node_keyring",
    "write_keyring_file",
]

logger = logging.getLogger("gossip_registry")

KEYRING_FILE = "keyring.json"
MAX_KEYRING_FILE = 64 * 1024
"""A keyring file larger than this is refused unread (a few keys take a few hundred bytes)."""


def keyring_path(data_dir: Path) -> Path:
    return data_dir / KEYRING_FILE


def load_keyring_file(path: Path) -> Keyring:
    """The keyring in ``path``.

    Raises:
        KeyringError: unreadable, a link or anything but a regular file,
            larger than MAX_KEYRING_FILE, readable by group or others, not a
            JSON list of base64 keys, or empty; the message names the file.
    """

    def owner_only(info: os.stat_result) -> None:
        # The opened file's mode (a regular file, not a link: regular_file.py), so the chmod
        # advised is about the very file that would be used.
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyringError(
                f"{path}: keyring file is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
            )

    try:
        text = read_regular_file(path, MAX_KEYRING_FILE, owner_only).decode("utf-8")
    except OSError as exc:
        raise KeyringError(f"{path}: cannot read keyring file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise KeyringError(f"{path}: keyring file is not UTF-8 text") from None
    try:
        keys = json.loads(text)
    except ValueError as exc:
        raise KeyringError(f"{path}: keyring file is not valid JSON: {exc}") from None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise KeyringError(f"{path}: keyring file must be a JSON list of base64 keys")
    try:
        return Keyring.from_base64(keys)
    except KeyringError as exc:
        raise KeyringError(f"{path}: {exc}") from None


def write_keyring_file(path: Path, keyring: Keyring) -> None:
    """Replace the file atomically, mode 0600.

    Raises:
        OSError: it could not be written (the old file stays).
    """
    data = json.dumps([encode_key(k) for k in keyring.keys], indent=2) + "\n"
    write_atomically(path.parent, path.name, data.encode("ascii"))


def configured_keyring(encrypt: str | None, keyring_file: Path | None) -> Keyring | None:
    """The keyring an operator configured: one base64 key, or a keyring file, or neither.

    Raises:
        KeyringError: both given, or either is invalid.
    """
    if encrypt is not None and keyring_file is not None:
        raise KeyringError("give a key (encrypt) or a keyring file, not both")
    if encrypt is not None:
        return Keyring.from_base64([encrypt])
    if keyring_file is not None:
        return load_keyring_file(keyring_file)
    return None


def node_keyring(configured: Keyring | None, data_dir: Path | None) -> Keyring | None:
    """The keyring a node starts with: its data dir's file if there is one, else a copy
    of ``configured`` (a copy, because rotations change the node's keyring, not its config).

    Raises:
        KeyringError: the data dir's file exists but is refused.
    """
    if data_dir is not None and os.path.lexists(keyring_path(data_dir)):
        stored = load_keyring_file(keyring_path(data_dir))
        if configured is not None and configured != stored:
            logger.warning(
                "using the keys in %s: the keyring file wins over configured keys",
                keyring_path(data_dir),
            )
        return stored
    return None if configured is None else configured.copy()
