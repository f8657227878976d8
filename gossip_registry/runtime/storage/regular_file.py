"""Reading a file of the node's data dir without following links or blocking on it.

Theory of operation: a data dir is a place an operator (or another user,
when permissions are loose) can put anything. ``snapshot.msgpack`` as a
FIFO blocked ``open`` forever at start, ignoring SIGTERM; as a symbolic link
to ``/dev/zero`` it was read until MemoryError; a ``keyring.json`` linked to
``/etc/passwd`` had the node advise ``chmod 600`` on the link's target
(issue 10, finding 6). So: open with ``O_NOFOLLOW`` (a link as the last
component is refused) and ``O_NONBLOCK`` (a FIFO opens at once), look at
what was opened with ``fstat`` (the same object that is read, so no race
with a rename), refuse anything but a regular file, and read at most
``limit`` bytes.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["NotARegularFile", "read_regular_file"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotARegularFile(OSError):
    """The path is a link, a FIFO, a device, a directory or a socket, or too large to read.

    An OSError, so callers that handle unreadable files handle these too;
    its ``strerror`` says what the path is, never what to do to its target.
    """


def read_regular_file(
    path: Path, limit: int, check: Callable[[os.stat_result], None] | None = None
) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    ``check`` sees the opened file's ``fstat`` before anything is read (the
    keyring file's permission check), and may raise.

    Raises:
        FileNotFoundError: there is nothing at ``path``.
        NotARegularFile: a symbolic link, anything but a regular file, or
            more than ``limit`` bytes.
        OSError: it cannot be opened or read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP and path.is_symlink():
            raise NotARegularFile(
                errno.ELOOP, "is a symbolic link, not a regular file", str(path)
            ) from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
            raise NotARegularFile(errno.EINVAL, f"is {kind}, not a regular file", str(path))
        if check is not None:
            check(info)
        too_large = NotARegularFile(errno.EFBIG, f"is larger than {limit} bytes", str(path))
        if info.st_size > limit:
            raise too_large
        data = f.read(limit + 1)
    if len(data) > limit:
        raise too_large
    return data
