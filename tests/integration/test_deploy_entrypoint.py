"""The container's entry point runs the agent from environment variables alone (no Docker).

``deploy/docker/entrypoint.sh`` is started as a container runtime would start
it: no arguments, a clean environment holding only PATH, the interpreter and
``GOSSIP_REGISTRY_*`` settings. Two agents on loopback, the second joining
through a DNS name (``localhost``); the image's health check
(``deploy/docker/healthcheck.py``) must pass while an agent runs and fail
once it is gone; SIGTERM, sent by PID to the process the script exec'd into,
leaves gracefully and exits 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gossip_registry.chaos.processes import ROOT, stop_processes
from tests.support.processes import free_ports

ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
START_TIMEOUT = 30.0
"""Seconds for a fresh interpreter to start an agent and for two to see each other."""
LEAVE_GRACE = 15.0


def clean_env(**settings: str) -> dict[str, str]:
    """What a container would pass: PATH, the interpreter, and the agent's settings only."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "GOSSIP_REGISTRY_PYTHON": sys.executable,
        **settings,
    }


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["/bin/sh", str(ENTRYPOINT)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def get(url: str) -> Any:
    try:
        reply = httpx.get(url, timeout=2, trust_env=False)
    except httpx.HTTPError:
        return None
    return reply.json() if reply.status_code == 200 else None


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {START_TIMEOUT:.0f}s: {what}")
        time.sleep(0.1)


def healthy(http_bind: str) -> int:
    """The image's health check, run as Docker's HEALTHCHECK would run it; its exit status."""
    env = {"PATH": os.environ.get("PATH", ""), "GOSSIP_REGISTRY_HTTP_BIND": http_bind}
    result = subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, timeout=20, check=False
    )
    return result.returncode


def states(http: str) -> dict[str, str]:
    return {m["name"]: m["state"] for m in get(f"http://{http}/v1/members") or []}


def test_the_entry_point_runs_agents_from_the_environment_and_sigterm_leaves(
    tmp_path: Path,
) -> None:
    gossip_a, http_a, gossip_b, http_b = free_ports(4)

    def agent_env(name: str, gossip: int, http: str, **more: str) -> dict[str, str]:
        return clean_env(
            GOSSIP_REGISTRY_NAME=f"entry-{name}",
            GOSSIP_REGISTRY_BIND=f"127.0.0.1:{gossip}",
            GOSSIP_REGISTRY_HTTP_BIND=http,
            GOSSIP_REGISTRY_DATA_DIR=str(tmp_path / name),
            GOSSIP_REGISTRY_PROFILE="local",
            **more,
        )

    a_env = agent_env("a", gossip_a, f"127.0.0.1:{http_a}")
    b_env = agent_env(
        "b",
        gossip_b,
        f"http://127.0.0.1:{http_b}",  # the URL form
        GOSSIP_REGISTRY_JOIN=f"localhost:{gossip_a}",
        GOSSIP_REGISTRY_RETRY_JOIN_TIMEOUT="1m",
    )
    a = start(a_env, tmp_path / "a.log")
    b = start(b_env, tmp_path / "b.log")
    procs = [a, b]
    try:
        wait_for(lambda: states(f"127.0.0.1:{http_a}") == {"entry-a": "alive", "entry-b": "alive"},
                 "both agents alive, seen from a")  # fmt: skip
        assert get(f"http://127.0.0.1:{http_b}/healthz") == {"status": "ok", "name": "entry-b"}
        # The script exec'd: the PID the runtime signals is the agent's own.
        assert b"gossip_registry" in Path(f"/proc/{b.pid}/cmdline").read_bytes()
        assert healthy(f"0.0.0.0:{http_b}") == 0
        assert (tmp_path / "b").is_dir()  # the data dir came from the environment too

        b.terminate()
        assert b.wait(timeout=LEAVE_GRACE) == 0
        wait_for(lambda: states(f"127.0.0.1:{http_a}").get("entry-b") == "left", "b left")
        assert healthy(f"0.0.0.0:{http_b}") == 1

        a.terminate()
        assert a.wait(timeout=LEAVE_GRACE) == 0
    finally:
        stop_processes(procs, LEAVE_GRACE)
    log = (tmp_path / "b.log").read_text(errors="replace")
    assert "received SIGTERM" in log, log
    assert "node entry-b has left; exiting" in log, log
