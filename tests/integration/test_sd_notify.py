"""The agent tells systemd when it is ready and when it leaves (``Type=notify``).

systemd's side is played by a Unix datagram socket of the test's own, named
in ``NOTIFY_SOCKET`` as systemd would; the agent runs as a real process on
loopback and is stopped by PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes
from gossip_registry.cli.agent import sd_notify
from tests.support.processes import free_ports

READY_TIMEOUT = 30.0
"""Seconds for a fresh interpreter to start the agent and say it is ready."""


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(READY_TIMEOUT)
    with sock:
        yield sock


def message(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_the_agent_notifies_ready_once_it_serves_and_stopping_when_it_leaves(
    systemd: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gossip, http = free_ports(2)
    argv = agent_argv(
        "--name", "notified", "--bind", f"127.0.0.1:{gossip}", "--http", f"127.0.0.1:{http}"
    )  # fmt: skip
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    agent = spawn(argv, tmp_path / "agent.log", tmp_path)
    procs: list[subprocess.Popen[bytes]] = [agent]
    try:
        ready = message(systemd)
        assert ready == {"READY": "1", "STATUS": "node notified listening"}
        # Ready means serving: the HTTP API answers without any wait.
        reply = httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=5, trust_env=False)
        assert reply.json()["name"] == "notified"
        agent.send_signal(signal.SIGTERM)
        assert message(systemd) == {
            "STOPPING": "1",
            "STATUS": "node notified leaving the cluster",
        }
        assert agent.wait(timeout=15) == 0
    finally:
        stop_processes(procs, 15)


def test_notifying_without_systemd_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False


def test_an_abstract_notify_socket_is_reached_too(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"gossip-registry-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("READY=1") is True
        assert sock.recv(100) == b"READY=1"


def test_a_notify_socket_nobody_listens_on_is_a_warning_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sd_notify("READY=1") is False
    assert "could not notify systemd" in caplog.text
