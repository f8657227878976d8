"""The newcomer's first hour: the README, then every page of docs/, run verbatim against a cluster.

The cluster is what ``scripts/run`` starts: ``gossip-registry up`` with the
repository's cluster.toml, five agent processes. Only its port numbers are
moved to free ones (in the file, the snippets and their output alike), so
the test never collides with a cluster someone is running. Then every
runnable block (see ``tests/readme_blocks.py``) runs in order, the README's
first and then each docs page's (in name order, each page after the
README's blocks, so a page may rely on what the README registered), from a
directory that has the project's ``.venv`` as the quick start assumes, and
prints what the text says it prints. A program marked ``interrupt`` gets
a Ctrl-C (SIGINT) once it has, and must then leave: every node sees its
node ``left``, and none hands out its instances, within a second.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration import default_sigint
from tests.integration.test_processes import (
    START_TIMEOUT,
    Processes,
    api,
    processes,
    states,
)
from tests.readme_blocks import Block, expect_lines, map_ports, runnable_blocks
from tests.support.processes import free_ports

__all__ = ["processes"]  # the fixture, shared with test_processes

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
NODES = 5
GOSSIP, HTTP, DNS = 7946, 8501, 8601
"""The first port of each kind in the shipped cluster.toml (node1 .. node5 count up)."""
BLOCK_TIMEOUT = 120.0
"""Seconds one block may run (the simulator's is the longest, a few seconds unloaded)."""
SEEN_LEFT_WITHIN = 1.0


class Cluster:
    """The shipped cluster.toml, moved to free ports in a directory of its own."""

    def __init__(self, directory: Path) -> None:
        fresh = free_ports(3 * NODES)
        self.ports = {
            **{GOSSIP + i: fresh[i] for i in range(NODES)},
            **{HTTP + i: fresh[NODES + i] for i in range(NODES)},
            **{DNS + i: fresh[2 * NODES + i] for i in range(NODES)},
        }
        self.directory = directory
        (directory / "cluster.toml").write_text(
            map_ports((ROOT / "cluster.toml").read_text(), self.ports)
        )
        # The quick start runs .venv/bin/gossip-registry from the repository root.
        (directory / ".venv").symlink_to(Path(sys.prefix))
        self.http = [self.ports[HTTP + i] for i in range(NODES)]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_REGISTRY_")}
        return {**env, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def cluster(tmp_path: Path, processes: Processes) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path)
    up = processes.start("up", "-m", "gossip_registry", "up", cwd=tmp_path)
    everyone = {f"node{i + 1}": "alive" for i in range(NODES)}
    processes.eventually(
        lambda: all(states(port) == everyone for port in cluster.http),
        "every node of cluster.toml sees every node alive",
        START_TIMEOUT,
    )
    yield cluster
    up.send_signal(signal.SIGINT)
    processes.wait_exit(up)


def _where(doc: Path, block: Block) -> str:
    return f"{doc.relative_to(ROOT)} line {block.line}"


def _run_to_end(doc: Path, block: Block, cluster: Cluster) -> str:
    code = map_ports(block.code, cluster.ports)
    argv = ["bash", "-euo", "pipefail", "-c", code] if block.lang == "sh" else [
        sys.executable, "-c", code
    ]  # fmt: skip
    done = subprocess.run(
        argv,
        cwd=cluster.directory,
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (
        f"{_where(doc, block)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def _run_until_output_then_interrupt(doc: Path, block: Block, cluster: Cluster) -> None:
    """Run the program until it printed its output, Ctrl-C it, and check that it left."""
    assert block.output is not None, f"{_where(doc, block)}: an interrupt block needs output"
    expected = map_ports(block.output, cluster.ports)
    want = len([line for line in expected.splitlines() if line.strip() != "..."])
    name = re.search(r'name="([^"]+)"', block.code)
    assert name is not None, f"{_where(doc, block)}: no NodeConfig(name=...) to watch"
    with subprocess.Popen(
        [sys.executable, "-c", map_ports(block.code, cluster.ports)],
        cwd=cluster.directory,
        env=cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    ) as proc:
        watchdog = threading.Timer(BLOCK_TIMEOUT, proc.kill)  # readline must not hang the test
        watchdog.start()
        try:
            assert proc.stdout is not None
            printed: list[str] = []
            while len(printed) < want:
                line = proc.stdout.readline()
                assert line, f"{_where(doc, block)}: ended after {printed}"
                printed.append(line)
            watchdog.cancel()
            expect_lines(expected, "".join(printed))
            watch = LeftWatch(cluster, name[1])
            watch.since = time.monotonic()
            proc.send_signal(signal.SIGINT)
            watch.check(re.findall(r'\.register\("([^"]+)"', block.code))
            proc.wait(timeout=15)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


class LeftWatch:
    """Blocking queries on every node's member list, started before the Ctrl-C.

    Each node answers the moment its member list changes, so the time a
    thread notes is when that node saw ``node`` leave, not when a poll
    happened to ask (polling over HTTP on a loaded machine adds its own
    delay to what it measures).
    """

    def __init__(self, cluster: Cluster, node: str) -> None:
        self.node = node
        self.seen: dict[int, float] = {}
        self.since = math.inf
        self._threads = [threading.Thread(target=self._watch, args=(p,)) for p in cluster.http]
        self._indexes = {port: self._members(port, None)[1] for port in cluster.http}
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _members(port: int, index: int | None) -> tuple[dict[str, str], int]:
        params = {} if index is None else {"index": str(index), "wait": "5s"}
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/members", params=params, timeout=10, trust_env=False
        )
        states = {m["name"]: m["state"] for m in response.json()}
        return states, int(response.headers["X-Registry-Index"])

    def _watch(self, port: int) -> None:
        index = self._indexes[port]
        deadline = time.monotonic() + BLOCK_TIMEOUT
        while time.monotonic() < deadline:
            states, index = self._members(port, index)
            if states.get(self.node) == "left":
                self.seen[port] = time.monotonic()
                return

    def check(self, services: list[str]) -> None:
        for thread in self._threads:
            thread.join()
        late = {p: round(t - self.since, 3) for p, t in self.seen.items() if t - self.since >= 1}
        assert sorted(self.seen) == sorted(self._indexes), f"{self.node} never seen left"
        assert late == {}, f"{self.node} seen left after 1 s by the nodes on ports {late}"
        for port in self.seen:  # fenced in the same step as the member change
            assert not any(i["node"] == self.node for s in services for i in _instances(port, s))


def _instances(port: int, service: str) -> list[dict[str, str]]:
    result: list[dict[str, str]] = api(port, f"/v1/services/{service}?passing=false") or []
    return result


def test_readme_and_docs_snippets_run_verbatim_against_the_shipped_cluster(
    cluster: Cluster,
) -> None:
    readme = runnable_blocks(README.read_text())
    # The quick start's commands, the embedding program and the threaded one, at least.
    assert [b.lang for b in readme][:4] == ["sh", "sh", "python", "python"]
    for doc, blocks in [(README, readme), *((d, runnable_blocks(d.read_text())) for d in DOCS)]:
        for block in blocks:
            if block.interrupt:
                _run_until_output_then_interrupt(doc, block, cluster)
                continue
            printed = _run_to_end(doc, block, cluster)
            if block.output is not None:
                try:
                    expect_lines(map_ports(block.output, cluster.ports), printed)
                except AssertionError as exc:
                    raise AssertionError(f"{_where(doc, block)}: {exc}") from None
