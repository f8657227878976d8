"""Real third-party programs the integration tests drive (HAProxy, nginx, Prometheus).

``.ci/run`` installs them from Debian's packages when missing, without
starting their system services; the tests start them on free loopback ports
with their config and state in a temp dir, and stop them by PID. Outside CI
a missing program skips its tests with the reason; in CI (``CI=true``) it
fails them, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["find_program", "missing", "require_program"]


def find_program(name: str) -> str | None:
    """The path of ``name`` on PATH or in /usr/sbin and /sbin (Debian puts haproxy there)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def require_program(name: str, package: str | None = None) -> str:
    """The path of program ``name``; skips the test without it, or fails it under CI."""
    path = find_program(name)
    if path is None:
        missing(f"{name} is not installed (apt-get install {package or name})")
    return path


def missing(reason: str) -> NoReturn:
    """Skip the test for ``reason``; under CI (``CI=true``) fail it: nothing may be missing."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must have it: .ci/run installs it")
    pytest.skip(reason)
