"""``up`` before it starts anything: ports taken by a running cluster, and --fresh data dirs."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from click.testing import CliRunner

from gossip_registry.cli import cli
from tests.integration.test_processes import (
    START_TIMEOUT,
    Processes,
    processes,
    states,
    write_cluster,
)

__all__ = ["processes"]  # the fixture, shared with test_processes


def test_up_refuses_to_start_when_the_clusters_ports_are_taken(tmp_path: Path) -> None:
    cluster = write_cluster(tmp_path, ["p1", "p2"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", cluster.http["p2"]))
        squatter.listen(1)
        result = CliRunner().invoke(cli, ["up", "--config", str(cluster.path)])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: a cluster is already running on these ports "
        f"(127.0.0.1:{cluster.http['p2']} in use): stop it first, "
        "or give these nodes other ports in the cluster file\n"
    )
    assert not (tmp_path / "data").exists()  # nothing started


def test_up_fresh_starts_from_empty_data_dirs(tmp_path: Path, processes: Processes) -> None:
    cluster = write_cluster(tmp_path, ["f1"])
    earlier = tmp_path / "data" / "f1" / "left-over-from-an-earlier-run"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("x")
    up = processes.start(
        "up", "-m", "gossip_registry", "up", "--fresh", "--config", str(cluster.path)
    )
    processes.eventually(
        lambda: states(cluster.http["f1"]) == {"f1": "alive"}, "f1 runs", START_TIMEOUT
    )
    assert not earlier.exists()
    up.send_signal(signal.SIGINT)
    assert processes.wait_exit(up) == 0
