"""Real third-party programs the integration tests drive (Prometheus; HAProxy, nginx elsewhere).

``.ci/run`` installs them from Debian's packages when missing, without
starting their system services; the tests start them on free loopback ports
with their config and state in a temp dir, and stop them by PID. Outside CI
a missing program skips its tests with the reason; in CI (``CI=true``) it
fails them, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["require_program"]


def require_program(name: str, package: str | None = None) -> str:
    """The path of program ``name``; skips the test without it, or fails it under CI."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is not installed (apt-get install {package or name})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must have it: .ci/run installs it")
    pytest.skip(reason)
