"""Agent processes started and stopped by PID, never by name.

Each agent runs in its own session (a Ctrl-C in the terminal reaches only the
driving script, which then stops the agents in order) with its output in a
log file. ``stop_processes`` is the one way they end: SIGTERM, a bounded
wait for the graceful leave, then SIGKILL; signals go through
``Popen.send_signal``, which skips a process already reaped (its PID may
belong to someone else by now).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["KILL_WAIT", "ROOT", "agent_argv", "spawn", "stop_processes"]

ROOT = Path(__file__).resolve().parents[2]
"""The checkout; put on the agents' PYTHONPATH so they run this code, installed or not."""
KILL_WAIT = 5.0
"""Seconds to wait for SIGKILLed agents to be reaped."""


def agent_argv(*args: str) -> list[str]:
    """``python -m gossip_registry agent ARGS`` with this interpreter."""
    return [sys.executable, "-m", "gossip_registry", "agent", *args]


def spawn(argv: Sequence[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log``, in a session of its own."""
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM every running process, wait up to ``grace`` seconds, SIGKILL the rest.

    A stopped (SIGSTOP) process is continued first, or it could not act on
    SIGTERM. A Ctrl-C while waiting skips the grace period: everything left
    is SIGKILLed.
    """
    procs = list(procs)
    try:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + grace
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=KILL_WAIT)
