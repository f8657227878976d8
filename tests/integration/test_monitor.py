"""``gossip-registry monitor``: a real process watching a real node's events."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from click.testing import CliRunner

from gossip_registry.cli import cli
from gossip_registry.cli.monitor import format_event
from gossip_registry.runtime.node import Node
from tests.integration import fast_config, start_node, wait_until


class Output:
    """Everything a process wrote to one pipe so far, read in the background."""

    def __init__(self) -> None:
        self.text = ""

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some(65536):
            self.text += chunk.decode()


@asynccontextmanager
async def monitor(
    nursery: trio.Nursery, node: Node, *flags: str
) -> AsyncIterator[tuple[trio.Process, Output, Output]]:
    """``gossip-registry monitor`` on ``node`` as a child process, killed by PID on the way out."""
    assert node.http_addr is not None
    command = [sys.executable, "-m", "gossip_registry", "monitor"]
    command += ["--http", f"127.0.0.1:{node.http_addr[1]}", *flags]
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = Output(), Output()
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        nursery.start_soon(out.read, process.stdout)
        nursery.start_soon(err.read, process.stderr)
        await wait_until(lambda: node.events.subscribers == 1, timeout=20)
        yield process, out, err
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_monitor_prints_a_registration_then_exits_cleanly_when_the_node_stops() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            node, crash = await start_node(nursery, fast_config("mon", http=("127.0.0.1", 0)))
            async with monitor(nursery, node, "--kind", "entry,member") as (process, out, err):
                await wait_until(lambda: "monitoring 127.0.0.1:" in err.text)
                await node.register("web", instance_id="web-1", port=8080)
                await wait_until(lambda: "registered" in out.text)
                [line] = out.text.splitlines()
                assert line.split()[1:] == [
                    "entry",
                    "registered",
                    "web/web-1",
                    "127.0.0.1:8080",
                    "on",
                    "mon",
                    "passing",
                ]
                crash.cancel()
                with trio.fail_after(10):
                    assert await process.wait() == 0
                assert "the node stopped" in err.text or "it stopped" in err.text
            nursery.cancel_scope.cancel()


async def test_monitor_json_prints_the_apis_lines_as_they_come() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, fast_config("mon", http=("127.0.0.1", 0)))
            async with monitor(nursery, node, "--json") as (_, out, _):
                await node.register("web", instance_id="web-1", port=8080)
                await wait_until(lambda: out.text.count("\n") >= 2)
            hello, event = (json.loads(line) for line in out.text.splitlines()[:2])
            assert hello["event"] == "subscribed"
            assert (event["kind"], event["event"]) == ("entry", "registered")
            assert event["id"] == "web-1"
            nursery.cancel_scope.cancel()


async def test_monitor_sends_the_token_to_a_node_that_wants_one() -> None:
    config = fast_config("mon", http=("127.0.0.1", 0), read_token="r" * 24)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            node, _ = await start_node(nursery, config)
            async with monitor(nursery, node, "--json", "--token", "r" * 24) as (_, out, _):
                await node.register("web", instance_id="web-1", port=8080)
                await wait_until(lambda: '"registered"' in out.text)
            nursery.cancel_scope.cancel()


def test_an_unknown_kind_is_a_usage_error_before_connecting() -> None:
    result = CliRunner().invoke(cli, ["monitor", "--http", "127.0.0.1:9", "--kind", "nodes"])
    assert result.exit_code == 2
    assert "unknown nodes" in result.output


def test_an_unreachable_node_is_one_line_and_exit_status_1() -> None:
    result = CliRunner().invoke(cli, ["monitor", "--http", "127.0.0.1:9", "--timeout", "2"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach node at 127.0.0.1:9")


def test_events_read_as_one_line_each() -> None:
    base = {"time": 0.0, "address": "10.0.0.1", "port": 80}
    member = base | {"kind": "member", "event": "suspect", "name": "n2", "incarnation": 4}
    check = base | {"kind": "check", "event": "critical", "service": "web", "id": "w1"}
    check |= {"node": "n1", "previous": "passing", "output": "HTTP 503"}
    dropped = {"time": 0.0, "kind": "dropped", "event": "dropped", "count": 12}
    line = format_event(member | {"previous": "alive"})
    assert (
        line.split("  ", 1)[1]
        == "member  suspect       n2  10.0.0.1:80  incarnation 4  (was alive)"
    )
    assert format_event(check).endswith("web/w1  10.0.0.1:80  on n1  (was passing): HTTP 503")
    assert format_event(dropped).endswith("12 events (this monitor fell behind)")
