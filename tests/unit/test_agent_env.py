"""The agent's flags from environment variables (a container's only configuration).

The command line is parsed as click parses it for a real run; the config is
built by the same function the agent uses. That the agent runs from the
environment alone is tested end to end with the container's entry point
(``tests/integration/test_deploy_entrypoint.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from gossip_registry.cli._common import ConfigFailure
from gossip_registry.cli.agent import _node_config, agent
from gossip_registry.config.node import NodeConfig

POD = {
    "GOSSIP_REGISTRY_NAME": "registry-2",
    "GOSSIP_REGISTRY_BIND": "0.0.0.0:7946",
    "GOSSIP_REGISTRY_ADVERTISE": "10.244.1.17",
    "GOSSIP_REGISTRY_HTTP_BIND": "0.0.0.0:8500",
    "GOSSIP_REGISTRY_JOIN": "registry-seeds.default.svc.cluster.local:7946 198.18.0.9:7000",
    "GOSSIP_REGISTRY_RETRY_JOIN_TIMEOUT": "5m",
    "GOSSIP_REGISTRY_DATA_DIR": "/var/lib/gossip-registry",
    "GOSSIP_REGISTRY_PROFILE": "lan",
    "GOSSIP_REGISTRY_DNS_BIND": "0.0.0.0:8600",
}


def params(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str) -> dict[str, object]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return agent.make_context("agent", list(args)).params


FLAGS = ("name", "bind", "advertise", "http", "join", "retry_join_timeout", "data_dir", "profile")


def config_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str) -> NodeConfig:
    p: dict[str, Any] = params(monkeypatch, env, *args)
    return _node_config(None, None, dns_flags={"dns": p["dns"]}, **{k: p[k] for k in FLAGS})


def test_a_pods_environment_alone_configures_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_from(monkeypatch, POD)
    assert config.name == "registry-2"
    assert config.bind == ("0.0.0.0", 7946)
    assert config.advertise == ("10.244.1.17", 7946)  # the pod IP, at the bound port
    assert config.http == ("0.0.0.0", 8500)
    assert config.dns == ("0.0.0.0", 8600)
    assert config.seeds == (
        ("registry-seeds.default.svc.cluster.local", 7946),
        ("198.18.0.9", 7000),
    )
    assert config.protocol.retry_join_timeout == 300.0
    assert config.data_dir == Path("/var/lib/gossip-registry")


def test_a_flag_on_the_command_line_wins_over_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = config_from(monkeypatch, POD, "--advertise", "198.18.0.3:7000", "--name", "n1")
    assert config.advertise == ("198.18.0.3", 7000)
    assert config.name == "n1"


def test_tokens_log_level_and_gossip_keys_come_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        "GOSSIP_REGISTRY_READ_TOKEN": "r" * 24,
        "GOSSIP_REGISTRY_WRITE_TOKEN": "w" * 24,
        "GOSSIP_REGISTRY_LOG_LEVEL": "debug",
        "GOSSIP_REGISTRY_ENCRYPT": "a-key",
    }
    p = params(monkeypatch, env)
    assert (p["read_token"], p["write_token"]) == ("r" * 24, "w" * 24)
    assert p["log_level"] == "debug"
    assert p["encrypt"] == "a-key"


def test_a_bad_value_in_a_variable_is_reported_by_its_flags_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigFailure, match="--retry-join-timeout: must be a duration"):
        config_from(monkeypatch, {**POD, "GOSSIP_REGISTRY_RETRY_JOIN_TIMEOUT": "300"})
    with pytest.raises(ConfigFailure, match="--retry-join-timeout: retry_join_timeout must be"):
        config_from(monkeypatch, {**POD, "GOSSIP_REGISTRY_RETRY_JOIN_TIMEOUT": "0s"})
    with pytest.raises(click.BadParameter):
        params(monkeypatch, {"GOSSIP_REGISTRY_PROFILE": "fast"})


def test_every_variable_is_shown_in_help_and_listed_in_the_deploy_guide() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    help_text = agent.get_help(click.Context(agent))
    variables = [p.envvar for p in agent.params if isinstance(p, click.Option) and p.envvar]
    assert len(variables) >= 15
    for variable in variables:
        assert isinstance(variable, str)
        assert variable in help_text
        short = variable.removeprefix("GOSSIP_REGISTRY")
        assert f"`{variable}`" in guide or f"`{short}`" in guide, variable
