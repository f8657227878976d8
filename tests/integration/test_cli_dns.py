"""The DNS flags of ``gossip-registry agent`` and the DNS line of ``up``."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from gossip_registry.cli.agent import config_from_flags
from gossip_registry.cli.up import Console, Supervisor
from gossip_registry.config.cluster_file import load_cluster
from tests.integration.test_cli import run


def test_agent_dns_flags_configure_the_dns_interface() -> None:
    config = config_from_flags(
        "n1",
        bind="127.0.0.1:0",
        advertise=None,
        http=None,
        join=(),
        data_dir=None,
        profile="lan",
        dns="127.0.0.1:0",
        dns_domain="sd.example",
        dns_ttl="1m",
    )
    assert (config.dns, config.dns_domain, config.dns_ttl) == (("127.0.0.1", 0), "sd.example", 60.0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dns", "127.0.0.1:70000"], "Error: --dns: port must be 0..65535, got 70000\n"),
        (["--dns", "127.0.0.1:0", "--dns-ttl", "5"], "Error: --dns-ttl: must be a duration"),
        (["--dns", "127.0.0.1:0", "--dns-ttl", "48h"], "Error: --dns-ttl: at most 86400"),
        (["--dns", "127.0.0.1:0", "--dns-domain", "."], "Error: --dns-domain: dns domain"),
    ],
)
def test_agent_names_the_dns_flag_with_a_bad_value(flags: list[str], message: str) -> None:
    result = run("agent", "--name", "n1", *flags)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)


def test_agent_refuses_dns_flags_with_a_cluster_file() -> None:
    result = run("agent", "--config", "cluster.toml", "--node", "n1", "--dns", "127.0.0.1:1")
    assert result.exit_code == 2
    assert "--dns cannot be combined with --config/--node" in result.stderr


def test_up_says_where_each_node_answers_dns(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[nodes]]\nname = "n0"\ngossip_port = 7000\ndns_port = 8600\n'
        '[[nodes]]\nname = "n1"\ngossip_port = 7001\n'
    )
    cluster = load_cluster(config)
    console = Console(io.StringIO(), live=False)
    supervisor = Supervisor(cluster, ["n0", "n1"], log_level="info", console=console)
    assert supervisor.dns_line() == "DNS (UDP and TCP): n0 127.0.0.1:8600"
    assert Supervisor(cluster, ["n1"], log_level="info", console=console).dns_line() is None


def test_agent_names_the_dns_address_it_cannot_bind() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run("agent", "--name", "a1", "--bind", "127.0.0.1:0", "--dns", f"127.0.0.1:{port}")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        f"cannot start node a1: DNS address 127.0.0.1:{port}: address already in use\n"
    )
