"""Writing a rendered file: only when it changed, and never half-written.

A reader (nginx on reload, a tail -f, a crash mid-write) sees the old file
or the new one, never a mix: the text goes to a temporary file in the same
directory (same file system), is flushed to disk, and replaces the
destination with one ``rename``. An unchanged rendering is not written, so
its modification time, and whatever watches it, stay still.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["write_if_changed"]

DEFAULT_MODE = 0o644
"""A new file's mode: configuration read by a service running as another user."""


def write_if_changed(dest: Path, text: str) -> bool:
    """Make ``dest`` hold ``text``; True if it was written, False if it already did.

    A replaced file keeps its mode.

    Raises:
        OSError: the directory is missing or not writable (the message names the path).
    """
    data = text.encode()
    try:
        if dest.read_bytes() == data:
            return False
        mode = stat.S_IMODE(dest.stat().st_mode)
    except FileNotFoundError:
        mode = DEFAULT_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True
