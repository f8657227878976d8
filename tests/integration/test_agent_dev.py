"""``agent --dev``: one node in one command, with a banner that says where it listens."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading

import httpx
from click.testing import CliRunner

from gossip_registry.cli import cli
from gossip_registry.cli.agent import _node_config, default_name

BANNER_TIMEOUT = 20.0
"""Seconds for a fresh interpreter to import the node, bind and print its banner."""


def test_a_dev_agent_prints_where_it_listens_answers_there_and_leaves_on_sigterm() -> None:
    # Free ports instead of the --dev defaults, which a cluster on this machine may hold.
    argv = [
        sys.executable, "-m", "gossip_registry", "agent", "--dev",
        "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--dns", "127.0.0.1:0",
    ]  # fmt: skip
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        # A banner that never comes must not hang the test: the timer kills, readline ends.
        watchdog = threading.Timer(BANNER_TIMEOUT, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            lines: list[str] = []
            while not lines or not lines[-1].startswith("Ctrl-C"):
                line = proc.stdout.readline()
                assert line, f"the agent exited (or hung) before its banner: {lines}"
                lines.append(line.rstrip("\n"))
            watchdog.cancel()
            assert lines[0] == (
                f"gossip-registry dev agent: node {default_name()}, in memory (nothing is kept)"
            )
            fields = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
            assert sorted(fields) == ["DNS", "HTTP", "gossip"]
            url = fields["HTTP"][0]
            assert url.startswith("http://127.0.0.1:")
            members = httpx.get(f"{url}/v1/members", timeout=5, trust_env=False).json()
            assert [m["name"] for m in members] == [default_name()]
            assert fields["HTTP"][1:] == ["try:", "gossip-registry", "members", "--http", url[7:]]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_dev_cannot_be_combined_with_a_cluster_file_or_a_data_dir() -> None:
    runner = CliRunner()
    with_file = runner.invoke(cli, ["agent", "--dev", "--config", "c.toml", "--node", "n1"])
    with_data = runner.invoke(cli, ["agent", "--dev", "--data-dir", "data"])
    assert with_file.exit_code == 2
    assert "--dev cannot be combined with --config/--node" in with_file.stderr
    assert with_data.exit_code == 2
    assert "--dev keeps nothing: it cannot take --data-dir" in with_data.stderr


def test_an_agent_without_a_name_takes_the_host_name() -> None:
    config = _node_config(
        None,
        None,
        name=None,
        bind=None,
        advertise=None,
        http=None,
        join=(),
        data_dir=None,
        profile=None,
    )
    assert config.name == default_name()
    assert default_name() == socket.gethostname().split(".")[0] or not socket.gethostname()
