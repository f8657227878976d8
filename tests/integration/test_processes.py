"""Real processes through the CLI: agents, signals, crashes, restarts, hostile input, ``up``.

Every process runs ``python -m gossip_registry`` (or an example script)
with the test's interpreter, on 127.0.0.1 and ports found free at run time;
cluster files are written in ``tmp_path``. Every wait is a bounded poll on
the HTTP API, and every process started here is killed by its PID in a
``finally`` (the ``spawn`` fixture) if it is still running. A failed wait
shows the tail of the processes' logs.

The cluster files use a fast protocol (probe every 200 ms, 100 ms ack
timeout, suspicion multiplier 2), so a crash is detected in a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gossip_registry.core.messages import PROTOCOL_VERSION
from gossip_registry.runtime.storage.journal import recover
from tests.integration import default_sigint
from tests.polling import eventually
from tests.support.processes import free_ports

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAST = 'probe_interval = "200ms"\nprobe_timeout = "100ms"\nsuspicion_mult = 2\n'
START_TIMEOUT = 15.0
"""Seconds for processes to start and the cluster to form (imports take most of it)."""
CHANGE_TIMEOUT = 10.0
"""Seconds for a change (registration, death, leave) to reach every node."""
EXIT_TIMEOUT = 15.0
"""Seconds for a process asked to stop to exit (leave_timeout is 3 s)."""


# --- Helpers ----------------------------------------------------------------------------


@dataclass
class Cluster:
    """A cluster file in tmp_path and the ports it names."""

    path: Path
    gossip: dict[str, int]
    http: dict[str, int]

    @property
    def names(self) -> list[str]:
        return list(self.gossip)


def write_cluster(directory: Path, names: list[str]) -> Cluster:
    ports = free_ports(2 * len(names))
    gossip = dict(zip(names, ports[::2], strict=True))
    http = dict(zip(names, ports[1::2], strict=True))
    text = f'[cluster]\nname = "test"\n[defaults]\ndata_root = "data"\n{FAST}'
    for name in names:
        text += f'[[nodes]]\nname = "{name}"\ngossip_port = {gossip[name]}\n'
        text += f"http_port = {http[name]}\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cluster.toml"
    path.write_text(text)
    return Cluster(path, gossip, http)


def api(port: int, path: str, method: str = "GET", **kwargs: Any) -> Any:
    """The JSON answer of one node, or None if it does not answer (yet, or any more)."""
    try:
        response = httpx.request(
            method, f"http://127.0.0.1:{port}{path}", timeout=2.0, trust_env=False, **kwargs
        )
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError):
        return None


def states(port: int) -> dict[str, str]:
    """Member name -> state, as the node on ``port`` sees it ({} if it does not answer)."""
    members = api(port, "/v1/members") or []
    return {m["name"]: m["state"] for m in members}


def incarnation(port: int, name: str) -> int | None:
    for member in api(port, "/v1/members") or []:
        if member["name"] == name:
            return int(member["incarnation"])
    return None


def instance_ids(port: int, service: str) -> list[str] | None:
    instances = api(port, f"/v1/services/{service}")
    return None if instances is None else sorted(i["id"] for i in instances)


class Processes:
    """Starts processes with output in log files, and reports the logs when a wait fails."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, log: str, *args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{log}.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                preexec_fn=default_sigint,  # some are stopped with Ctrl-C
            )
        self.started.append(proc)
        return proc

    def agent(self, cluster: Cluster, name: str) -> subprocess.Popen[bytes]:
        return self.start(
            name, "-m", "gossip_registry", "agent", "--config", str(cluster.path), "--node", name
        )

    def log_tails(self, lines: int = 15) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def eventually(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``predicate`` every 0.1 s for at most ``timeout`` s; a failure shows the logs."""
        eventually(predicate, timeout, what=what, detail=self.log_tails, interval=0.1)

    def wait_exit(self, proc: subprocess.Popen[bytes], timeout: float = EXIT_TIMEOUT) -> int:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"pid {proc.pid} still running after {timeout}s\n{self.log_tails()}"
            ) from None

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.kill_all()


def start_cluster(processes: Processes, cluster: Cluster) -> dict[str, subprocess.Popen[bytes]]:
    """Start every agent (the first one first: the others join through it); wait for all alive."""
    first, *rest = cluster.names
    agents = {first: processes.agent(cluster, first)}
    processes.eventually(
        lambda: api(cluster.http[first], "/healthz") is not None, f"{first} up", START_TIMEOUT
    )
    for name in rest:
        agents[name] = processes.agent(cluster, name)
    everyone = dict.fromkeys(cluster.names, "alive")
    processes.eventually(
        lambda: all(states(cluster.http[n]) == everyone for n in cluster.names),
        "every node sees every node alive",
        START_TIMEOUT,
    )
    return agents


def pid_gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its parent's wait()."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


# --- Tests ------------------------------------------------------------------------------


def test_five_agents_share_registrations_and_handle_crash_restart_and_sigterm(
    tmp_path: Path, processes: Processes
) -> None:
    cluster = write_cluster(tmp_path, [f"n{i}" for i in range(1, 6)])
    agents = start_cluster(processes, cluster)
    http = cluster.http
    everywhere = list(http.values())

    # A registration on n3 is on n3's disk when acknowledged, and returned by every node.
    body = {"name": "web", "id": "w3", "port": 9003}
    assert api(http["n3"], "/v1/services", "PUT", json=body) == {
        "id": "w3",
        "name": "web",
        "address": "127.0.0.1",
        "port": 9003,
        "node": "n3",
        "checks": [],
    }
    saved, _ = recover(tmp_path / "data" / "n3", "n3")
    assert saved is not None
    assert [e.instance_id for e in saved.entries] == ["w3"]
    processes.eventually(
        lambda: all(instance_ids(p, "web") == ["w3"] for p in everywhere),
        "w3 on every node",
        CHANGE_TIMEOUT,
    )
    old_incarnation = incarnation(http["n1"], "n3")
    assert old_incarnation is not None

    # SIGKILL: n3 is declared dead everywhere and its entry removed everywhere.
    os.kill(agents["n3"].pid, signal.SIGKILL)
    assert processes.wait_exit(agents["n3"]) == -signal.SIGKILL
    survivors = [http[n] for n in ("n1", "n2", "n4", "n5")]
    processes.eventually(
        lambda: all(states(p).get("n3") == "dead" for p in survivors),
        "n3 dead on every survivor",
        CHANGE_TIMEOUT,
    )
    processes.eventually(
        lambda: all(instance_ids(p, "web") == [] for p in survivors),
        "w3 removed from every survivor",
        CHANGE_TIMEOUT,
    )

    # Restarted from the same data dir: back at a higher incarnation, with w3 everywhere.
    agents["n3"] = processes.agent(cluster, "n3")
    processes.eventually(
        lambda: all(
            states(p).get("n3") == "alive" and (incarnation(p, "n3") or 0) > old_incarnation
            for p in everywhere
        ),
        f"n3 alive above incarnation {old_incarnation} on every node",
        START_TIMEOUT,
    )
    processes.eventually(
        lambda: all(instance_ids(p, "web") == ["w3"] for p in everywhere),
        "w3 back on every node",
        CHANGE_TIMEOUT,
    )

    # SIGTERM: n5 leaves (the others see "left", not "dead") and exits 0.
    agents["n5"].send_signal(signal.SIGTERM)
    assert processes.wait_exit(agents["n5"]) == 0
    processes.eventually(
        lambda: all(states(http[n]).get("n5") == "left" for n in ("n1", "n2", "n3", "n4")),
        "n5 left on every other node",
        CHANGE_TIMEOUT,
    )
    log = (processes.logs / "n5.log").read_text()
    assert "received SIGTERM: leaving the cluster" in log
    assert "node n5 has left; exiting" in log


def test_malformed_udp_and_tcp_input_is_counted_and_every_node_keeps_running(
    tmp_path: Path, processes: Processes
) -> None:
    cluster = write_cluster(tmp_path, ["m1", "m2", "m3"])
    start_cluster(processes, cluster)
    rng = random.Random(5)
    garbage = [rng.randbytes(rng.randrange(1, 1400)) for _ in range(40)]
    garbage += [b"", b"\x93\x01\xc0\x91\x05", b"\xc1", rng.randbytes(60000)]

    for port in cluster.gossip.values():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for datagram in garbage:
                udp.sendto(datagram, ("127.0.0.1", port))
        envelope = bytes((0x92, PROTOCOL_VERSION))  # how every frame starts
        frames = [
            b"\xff\xff\xff\xff",  # a 4 GiB length prefix: refused before any buffering
            (100).to_bytes(4, "big") + envelope + b"x" * 8,  # truncated: the peer closes mid-frame
            (8).to_bytes(4, "big") + envelope + rng.randbytes(6),  # a whole frame of garbage
            (8).to_bytes(4, "big") + b"\xc1" * 8,  # not even the start of a frame
            rng.randbytes(3000),  # random bytes, random length prefix
            b"",  # connect and close
        ]
        for frame in frames:
            # The node may close a hostile connection before we are done: that is fine.
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as tcp,
                contextlib.suppress(OSError),
            ):
                tcp.sendall(frame)
                tcp.shutdown(socket.SHUT_WR)
                while tcp.recv(65536):
                    pass

    def counted() -> bool:
        for port in cluster.http.values():
            stats = (api(port, "/v1/status") or {}).get("stats", {})
            wanted = ("malformed_packets", "malformed_streams", "stream_oversized")
            if not all(
                stats.get(k, 0) > 0 for k in (*wanted, "stream_truncated", "stream_malformed")
            ):
                return False
        return True

    processes.eventually(counted, "malformed input counted on every node", CHANGE_TIMEOUT)
    everyone = dict.fromkeys(cluster.names, "alive")
    for name, port in cluster.http.items():
        assert api(port, "/healthz") == {"status": "ok", "name": name}
        assert states(port) == everyone


def test_agent_with_its_port_taken_exits_1_naming_the_address(
    tmp_path: Path, processes: Processes
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        proc = processes.start(
            "taken", "-m", "gossip_registry", "agent", "--name", "x", "--bind", f"127.0.0.1:{port}"
        )
        assert processes.wait_exit(proc) == 1
    log = (processes.logs / "taken.log").read_text()
    assert (
        f"Error: cannot start node x: gossip address 127.0.0.1:{port}: address already in use"
        in (log)
    )
    assert "Traceback" not in log


def test_up_starts_every_node_from_another_directory_and_sigint_stops_them_all(
    tmp_path: Path, processes: Processes
) -> None:
    cluster = write_cluster(tmp_path / "conf", ["u1", "u2", "u3"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    up = processes.start(
        "up", "-m", "gossip_registry", "up", "--config", "../conf/cluster.toml", cwd=elsewhere
    )
    children: list[int] = []
    try:
        everyone = dict.fromkeys(cluster.names, "alive")
        processes.eventually(
            lambda: all(states(p) == everyone for p in cluster.http.values()),
            "every node started by up sees every node alive",
            START_TIMEOUT,
        )
        output = (processes.logs / "up.log").read_text()
        children = [int(pid) for pid in re.findall(r"\[up\] started u\d \(pid (\d+)\)", output)]
        assert len(children) == 3
        assert "[u1] " in output  # the agents' logs, prefixed

        up.send_signal(signal.SIGINT)
        assert processes.wait_exit(up) == 0
        assert all(pid_gone(pid) for pid in children)
        output = (processes.logs / "up.log").read_text()
        assert "[up] received SIGINT" in output
        for name in cluster.names:
            assert f"[up] {name} stopped (exit status 0)" in output
            assert f"[{name}] " in output
            assert f"node {name} has left; exiting" in output
    finally:
        for pid in children:  # up's children are not ours: make sure by PID
            if not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_agents_started_by_up_leave_by_themselves_when_up_is_killed(
    tmp_path: Path, processes: Processes
) -> None:
    cluster = write_cluster(tmp_path, ["k1", "k2"])
    up = processes.start("up", "-m", "gossip_registry", "up", "--config", str(cluster.path))
    children: list[int] = []
    try:
        everyone = dict.fromkeys(cluster.names, "alive")
        processes.eventually(
            lambda: all(states(p) == everyone for p in cluster.http.values()),
            "both nodes alive",
            START_TIMEOUT,
        )
        output = (processes.logs / "up.log").read_text()
        children = [int(pid) for pid in re.findall(r"\[up\] started k\d \(pid (\d+)\)", output)]
        assert len(children) == 2
        os.kill(up.pid, signal.SIGKILL)  # no chance to stop its children
        processes.eventually(
            lambda: all(pid_gone(pid) for pid in children),
            "orphaned agents exited",
            EXIT_TIMEOUT,
        )
    finally:
        for pid in children:
            if not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_examples_discover_each_other_and_call_round_robin(
    tmp_path: Path, processes: Processes
) -> None:
    gossip, http = free_ports(2)
    seed = processes.start(
        "seed", "-m", "gossip_registry", "agent", "--name", "seed",
        "--bind", f"127.0.0.1:{gossip}", "--http", f"127.0.0.1:{http}",
    )  # fmt: skip
    processes.eventually(lambda: api(http, "/healthz") is not None, "seed up", START_TIMEOUT)
    join = f"127.0.0.1:{gossip}"
    services = [
        processes.start(f"echo{i}", str(EXAMPLES / "echo_service.py"), "--join", join)
        for i in (1, 2)
    ]
    processes.eventually(
        lambda: len(instance_ids(http, "echo") or []) == 2, "two echo instances", START_TIMEOUT
    )
    ids = instance_ids(http, "echo")
    assert ids is not None

    caller = processes.start(
        "caller", str(EXAMPLES / "caller.py"), "--join", join, "--count", "4",
        "--min-instances", "2", "--interval", "0",
    )  # fmt: skip
    assert processes.wait_exit(caller, START_TIMEOUT) == 0
    calls = re.findall(
        r"call (\d): (echo-\w+) at \S+ echoed 'hello \1'",
        (processes.logs / "caller.log").read_text(),
    )
    assert [int(n) for n, _ in calls] == [0, 1, 2, 3]
    answered = [instance for _, instance in calls]
    assert set(answered) == set(ids)  # both instances served
    assert answered[0] != answered[1]
    assert answered[0::2] == [answered[0]] * 2  # and strictly in turn

    for proc in services:
        proc.send_signal(signal.SIGTERM)
    for proc in services:
        assert processes.wait_exit(proc) == 0
    processes.eventually(
        lambda: instance_ids(http, "echo") == [], "echo instances gone", CHANGE_TIMEOUT
    )
    seed.send_signal(signal.SIGINT)
    assert processes.wait_exit(seed) == 0
