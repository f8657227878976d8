"""Agents on separate hosts join by one DNS name (issue 14: running across machines).

Each agent runs in a network namespace of its own, with its own address on
198.18.0.0/15 and no default route (``chaos/hosts.py`` builds them: veth
pairs on a bridge of this run's own). The agents bind 0.0.0.0 and are given
no advertise address, so each must find the address its peers can reach;
they join through ``--join seeds.gossip.test:7946``, which the system
resolver in each namespace (``/etc/netns/NS/resolv.conf``, which ``ip netns
exec`` mounts over ``/etc/resolv.conf``) asks of the test's own DNS server
on the bridge. That server answers with several A records, as a headless
service does with one per pod, and the test changes them while the agents
run: the first agent starts while the name lists only itself and a stale
address (a listener that hangs up at once, as where a pod is gone), and must
resolve the name again at a retry to find the others; every agent must have
asked every address, the stale one included.

Needs root, ``ip`` and ``nft``: skipped without them, failed without them in CI.
Every agent is stopped by PID (SIGTERM: it leaves and exits 0); the
namespaces, links and resolver files are removed, and the test checks that
nothing of the run is left.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gossip_registry.chaos.hosts import GOSSIP_PORT, HTTP_PORT, NetnsHosts, netns_available
from gossip_registry.chaos.processes import agent_argv, spawn, stop_processes
from tests.support.dns_stub import DnsStub
from tests.support.programs import missing

NAME = "seeds.gossip.test"
AGENTS = 3
JOIN_TIMEOUT = 45.0
"""Seconds for the agents to start (a fresh interpreter each) and all see each other."""
LEAVE_GRACE = 15.0
"""Seconds an agent gets after SIGTERM to leave and exit."""
NETNS_CONFIG = Path("/etc/netns")

pytestmark = pytest.mark.slow


@pytest.fixture
def hosts() -> Iterator[NetnsHosts]:
    if not netns_available():
        missing("the multi-host test needs root with ip and nft (network namespaces)")
    made = NetnsHosts(AGENTS)
    resolv = [NETNS_CONFIG / ns for ns in made.namespaces]
    created = not NETNS_CONFIG.exists()
    try:
        for directory in resolv:
            directory.mkdir(parents=True)
            (directory / "resolv.conf").write_text(
                f"nameserver {made.controller}\noptions timeout:1 attempts:2\n"
            )
        yield made
    finally:
        for directory in resolv:
            shutil.rmtree(directory, ignore_errors=True)
        if created:
            NETNS_CONFIG.rmdir()
        made.teardown()
    assert made.leftovers() == []
    assert not any(d.exists() for d in resolv)


class StaleSeed:
    """A listed address whose agent is gone: accepts each connection and closes it at once.

    It counts who connected, to show that the agents ask every address the name
    has, not only the first one that answers.
    """

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, GOSSIP_PORT))
        self.sock.settimeout(0.1)
        self.callers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stale-seed", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, (host, _) = self.sock.accept()
            except TimeoutError:
                continue
            conn.close()
            self.callers.append(host)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.1)


def members(address: str) -> list[dict[str, Any]] | None:
    """The agent's member list from its HTTP API, or None while it does not answer."""
    try:
        reply = httpx.get(f"http://{address}:{HTTP_PORT}/v1/members", timeout=2, trust_env=False)
    except httpx.HTTPError:
        return None
    return reply.json() if reply.status_code == 200 else None


def alive(view: list[dict[str, Any]] | None) -> dict[str, str]:
    """name -> "host:port" of every alive member in a member list."""
    return {m["name"]: f"{m['address']}:{m['port']}" for m in view or [] if m["state"] == "alive"}


def test_agents_on_separate_hosts_join_by_a_dns_name_resolved_again_at_each_attempt(
    hosts: NetnsHosts, tmp_path: Path
) -> None:
    dns = DnsStub(hosts.controller, NAME, [hosts.controller, hosts.addresses[0]])
    dns.start()
    stale = StaleSeed(hosts.controller)
    procs: list[subprocess.Popen[bytes]] = []

    def start(i: int) -> None:
        argv = agent_argv(
            "--name", f"n{i}",
            "--bind", f"0.0.0.0:{GOSSIP_PORT}",
            "--http", f"0.0.0.0:{HTTP_PORT}",
            "--join", f"{NAME}:{GOSSIP_PORT}",
            "--retry-join-timeout", "2m",
            "--profile", "local",
        )  # fmt: skip
        procs.append(spawn(hosts.command(i, argv), tmp_path / f"n{i}.log", tmp_path))

    try:
        # The name lists a stale address (its agent is gone) and n0 itself:
        # n0 has nobody to join, and retries.
        start(0)
        first = hosts.addresses[0]
        wait_for(lambda: dns.asked_by(first) >= 2, "n0 resolving the name again", JOIN_TIMEOUT)
        assert alive(members(first)) == {"n0": f"{first}:{GOSSIP_PORT}"}

        # The other pods come up: the name now lists every one of them.
        dns.serve([hosts.controller, *hosts.addresses])
        for i in range(1, AGENTS):
            start(i)
        expected = {f"n{i}": f"{a}:{GOSSIP_PORT}" for i, a in enumerate(hosts.addresses)}
        wait_for(
            lambda: all(alive(members(a)) == expected for a in hosts.addresses),
            f"every agent seeing {expected}",
            JOIN_TIMEOUT,
        )
        # Every host resolved the name through the system resolver (n0 more than once) and
        # asked every address it got, the stale one too.
        assert all(dns.asked_by(a) >= 1 for a in hosts.addresses)
        assert set(stale.callers) == set(hosts.addresses)
        assert {qtype for _, name, qtype in dns.questions if name == f"{NAME}."} == {"A"}
    finally:
        stop_processes(procs, LEAVE_GRACE)
        stale.close()
        dns.stop()
    logs = "".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("n*.log"))
    assert [p.returncode for p in procs] == [0] * AGENTS, logs
    assert "has left; exiting" in (tmp_path / "n0.log").read_text(), logs
