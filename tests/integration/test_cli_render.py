"""``gossip-registry render`` as a process against a real node's HTTP API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from gossip_registry.chaos.processes import ROOT
from gossip_registry.cli import cli
from gossip_registry.runtime.node import Node
from tests.integration import fast_config, start_node, wait_until

UPSTREAM = (
    "upstream web {\n"
    "{% for i in service('web') %}    server {{ i.address }}:{{ i.port }};\n"
    "{% else %}    server 127.0.0.1:1 down;\n{% endfor %}"
    "}\n"
)


def render_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "gossip_registry", "render", *args]


def url(node: Node) -> str:
    assert node.http_addr is not None
    return f"http://{node.http_addr[0]}:{node.http_addr[1]}"


@asynccontextmanager
async def http_node() -> AsyncIterator[Node]:
    async with trio.open_nursery() as nursery:
        node, _ = await start_node(nursery, fast_config("n0", http=("127.0.0.1", 0)))
        yield node
        nursery.cancel_scope.cancel()


async def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            argv,
            cwd=cwd,
            check=False,
            capture_stdout=True,
            capture_stderr=True,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )


async def test_render_once_writes_the_file_and_runs_the_command(tmp_path: Path) -> None:
    (tmp_path / "web.j2").write_text(UPSTREAM)
    with trio.fail_after(60):
        async with http_node() as node:
            await node.register("web", instance_id="w1", port=9001)
            await node.register("web", instance_id="w2", port=9002)
            done = await run(
                render_argv(
                    "--http",
                    url(node),
                    "--template",
                    "web.j2",
                    "--out",
                    "web.conf",
                    "--once",
                    "--exec",
                    "touch ran",
                ),
                tmp_path,
            )
    assert done.returncode == 0, done.stderr.decode()
    assert (tmp_path / "web.conf").read_text() == (
        "upstream web {\n    server 127.0.0.1:9001;\n    server 127.0.0.1:9002;\n}\n"
    )
    assert (tmp_path / "ran").exists()


async def test_render_follows_the_node_and_survives_a_failing_command(tmp_path: Path) -> None:
    (tmp_path / "web.j2").write_text(UPSTREAM)
    (tmp_path / "names.j2").write_text("{% for s in services() %}{{ s.name }}\n{% endfor %}")
    out = tmp_path / "web.conf"
    names = tmp_path / "names.txt"
    with trio.fail_after(60):
        async with http_node() as node:
            process = await trio.lowlevel.open_process(
                render_argv(
                    "--http",
                    url(node),
                    "--template",
                    "web.j2:web.conf",
                    "--template",
                    "names.j2:names.txt",
                    "--exec",
                    "exit 7",
                ),
                cwd=tmp_path,
                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                stderr=subprocess.PIPE,
            )
            try:
                await wait_until(lambda: out.exists() and "down" in out.read_text(), 20)
                await node.register("web", instance_id="w1", port=9001)
                await wait_until(lambda: "127.0.0.1:9001;" in out.read_text(), 20)
                await wait_until(lambda: names.exists() and names.read_text() == "web\n", 20)
                await node.deregister("w1")
                await wait_until(lambda: "down" in out.read_text(), 20)
                assert process.poll() is None, "a failing command must not stop the renderer"
            finally:
                process.kill()  # by its PID (the Process object), never by name
                with trio.move_on_after(10):
                    await process.wait()
            assert process.stderr is not None
            log = (await process.stderr.receive_some(1 << 16)).decode()
    assert "exited with status 7" in log


async def test_a_template_error_exits_1_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "web.j2").write_text("upstream web {\n{{ service('web')[0].nosuch }}\n}\n")
    with trio.fail_after(60):
        async with http_node() as node:
            await node.register("web", instance_id="w1", port=9001)
            done = await run(
                render_argv("--http", url(node), "--template", "web.j2", "--out", "web.conf"),
                tmp_path,
            )
    assert done.returncode == 1
    assert "web.j2:2: UndefinedError" in done.stderr.decode()
    assert not (tmp_path / "web.conf").exists()


def render_without_node(*args: str) -> Result:
    """``render`` in-process, pointed at a port where no node listens."""
    return CliRunner().invoke(cli, ["render", "--http", "127.0.0.1:1", *args])


def test_a_template_syntax_error_exits_1_before_asking_any_node(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("{% for %}")
    result = render_without_node("--template", f"{tmp_path}/bad.j2", "--out", f"{tmp_path}/x")
    assert result.exit_code == 1
    assert "bad.j2:1:" in result.output
    assert "template" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--template", "a.j2"], "SRC:DEST"),
        (["--template", "a.j2", "--template", "b.j2", "--out", "x"], "one --template"),
        (["--template", "a.j2:x", "--template", "b.j2:x"], "twice"),
        (["--template", "a.j2:x", "--wait", "2s:1s"], "--wait"),
        (["--template", "a.j2:x", "--exec-timeout", "0s"], "--exec-timeout"),
        (["--template", "a.j2:x", "--exec-timeout", "1s:2s"], "--exec-timeout"),
    ],
)
def test_bad_template_options_are_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = render_without_node(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_once_with_no_node_exits_1_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "web.j2").write_text(UPSTREAM)
    result = render_without_node("--template", f"{tmp_path}/web.j2:{tmp_path}/o", "--once")
    assert result.exit_code == 1
    assert "no registry node answered" in result.output
